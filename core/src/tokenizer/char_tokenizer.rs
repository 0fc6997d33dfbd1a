//! A character-level tokenizer in HF `tokenizer.json` form, for the built-in tiny model: one token
//! per character of a fixed ASCII alphabet plus Qwen2's three special tokens, and a Qwen2-style
//! chat template in `tokenizer_config.json`. Written with the `tokenizers` crate so that
//! [`Qwen2Tokenizer::from_dir`](super::Qwen2Tokenizer::from_dir) (and Python's `tokenizers`)
//! read it like any HF tokenizer.
//!
//! Model: a byte-level BPE (GPT-2's byte-to-character map, as Qwen2's tokenizer) whose vocabulary
//! is the alphabet's bytes and which has no merges, so every character is one token; the
//! `ByteLevel` pre-tokenizer and decoder. Byte-level because transformers 5 loads every
//! `model_type = "qwen2"` checkpoint's tokenizer as its `Qwen2Tokenizer`, which rebuilds a
//! byte-level pipeline around the file's vocabulary whatever `tokenizer_class` says: a plain
//! character vocabulary (`" "`, `"\n"`) then silently loses spaces and newlines, while this
//! one (`"Ġ"`, `"Ċ"`) gives the same ids in aqn, in transformers 4 and in transformers 5.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::qwen2_tokenizer::TokenizerError;

/// The class `tokenizer_config.json` names: what transformers loads for a Qwen2 checkpoint.
pub const TOKENIZER_CLASS: &str = "Qwen2Tokenizer";

/// The character GPT-2's byte-level encoding gives an ASCII byte (its `bytes_to_unicode`):
/// printable characters `!`..`~` stand for themselves, the others (control characters, space,
/// DEL) are shifted above U+0100 in byte order (space -> `Ġ` U+0120, newline -> `Ċ` U+010A).
pub fn byte_level_char(byte: u8) -> Option<char> {
    match byte {
        b'!'..=b'~' => Some(byte as char),
        0..=0x20 => char::from_u32(0x100 + u32::from(byte)),
        0x7f => char::from_u32(0x100 + 0x21),
        _ => None,
    }
}

/// Padding and end of text.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Start of a chat turn.
pub const IM_START: &str = "<|im_start|>";
/// End of a chat turn: the end-of-sequence token of the assistant.
pub const IM_END: &str = "<|im_end|>";

/// Qwen2's chat template without the system-prompt and tool branches (the tiny model has
/// neither).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The ids the tokenizer gives its special tokens, after the characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    /// `<|endoftext|>` (padding).
    pub endoftext: u32,
    /// `<|im_start|>`.
    pub im_start: u32,
    /// `<|im_end|>` (end of sequence).
    pub im_end: u32,
}

/// The characters a chat-formatted conversation adds to `alphabet`: the role names and newline.
pub fn chat_alphabet(alphabet: &[char]) -> Vec<char> {
    let mut chars: Vec<char> = alphabet
        .iter()
        .copied()
        .chain("user\nassistant".chars())
        .collect();
    chars.sort_unstable();
    chars.dedup();
    chars
}

/// Writes `tokenizer.json` and `tokenizer_config.json` for `alphabet` (deduplicated, in order)
/// into `dir`; returns the vocabulary size (characters + 3 special tokens) and the special ids.
pub fn write_char_tokenizer(
    alphabet: &[char],
    dir: &Path,
) -> Result<(usize, SpecialIds), TokenizerError> {
    let chars = chat_alphabet(alphabet);
    let vocab: tokenizers::models::bpe::Vocab = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            u8::try_from(c)
                .ok()
                .and_then(byte_level_char)
                .map(|b| (b.to_string(), i as u32))
                .ok_or_else(|| {
                    TokenizerError::Tokenize(format!(
                        "the character tokenizer holds ASCII characters only (one byte each), not {c:?}"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let n = chars.len() as u32;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(|e| TokenizerError::Tokenize(format!("building the character BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    let specials = [ENDOFTEXT, IM_START, IM_END].map(|t| AddedToken::from(t, true));
    tokenizer.add_special_tokens(&specials);
    std::fs::create_dir_all(dir)
        .map_err(|e| TokenizerError::Tokenize(format!("creating {}: {e}", dir.display())))?;
    tokenizer
        .save(dir.join("tokenizer.json"), true)
        .map_err(|e| {
            TokenizerError::Tokenize(format!(
                "writing {}: {e}",
                dir.join("tokenizer.json").display()
            ))
        })?;
    let config = serde_json::json!({
        "tokenizer_class": TOKENIZER_CLASS,
        "bos_token": null,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": null,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHAT_TEMPLATE,
    });
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
        .map_err(|e| TokenizerError::Tokenize(format!("writing {}: {e}", path.display())))?;
    Ok((
        n as usize + 3,
        SpecialIds {
            endoftext: n,
            im_start: n + 1,
            im_end: n + 2,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{ChatMessage, Qwen2Tokenizer};

    #[test]
    fn one_token_per_character_and_chat_template() {
        let dir = std::env::temp_dir().join(format!("aqn-char-tok-{}", std::process::id()));
        let alphabet: Vec<char> = "Tom has 3 apples.#0123456789".chars().collect();
        let (vocab, ids) = write_char_tokenizer(&alphabet, &dir).unwrap();
        let tok = Qwen2Tokenizer::from_dir(&dir).unwrap();
        let text = "Tom has 37 apples. #### 37";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(enc.len(), text.chars().count());
        // Each character's id is its place in the alphabet, spaces and newlines included.
        let chars = chat_alphabet(&alphabet);
        let want: Vec<u32> = text
            .chars()
            .map(|c| chars.iter().position(|&a| a == c).unwrap() as u32)
            .collect();
        assert_eq!(enc, want);
        let nl = tok.encode("\n \n", false).unwrap();
        assert_eq!(nl, vec![0, 1, 0]);
        assert!(enc.iter().all(|&id| (id as usize) < vocab - 3));
        assert_eq!(tok.decode(&enc, false).unwrap(), text);
        assert_eq!(tok.eos_token_id(), Some(ids.im_end));
        assert_eq!(tok.pad_token_id(), Some(ids.endoftext));
        let chat = tok
            .apply_chat_template(&[ChatMessage::new("user", "Tom has 3 apples.")], None, true)
            .unwrap();
        assert_eq!(
            chat,
            "<|im_start|>user\nTom has 3 apples.<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids_chat = tok.encode(&chat, false).unwrap();
        assert_eq!(ids_chat[0], ids.im_start);
        assert_eq!(
            tok.decode(&ids_chat, true).unwrap(),
            "user\nTom has 3 apples.\nassistant\n"
        );
        let err = write_char_tokenizer(&['a', 'é'], &dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ASCII") && err.contains("'é'"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn byte_level_characters() {
        assert_eq!(byte_level_char(b' '), Some('Ġ'));
        assert_eq!(byte_level_char(b'\n'), Some('Ċ'));
        assert_eq!(byte_level_char(b'a'), Some('a'));
        assert_eq!(byte_level_char(0x7f), Some('ġ'));
        assert_eq!(byte_level_char(0x80), None);
    }

    /// The built-in model's tokenizer files are exactly what this writer makes for its
    /// alphabet, so `aqn-native pretrain` regenerates them.
    #[test]
    fn the_builtin_tokenizer_is_this_writers() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/tiny");
        let tok = Qwen2Tokenizer::from_dir(&assets).unwrap();
        let alphabet: Vec<char> = (0..tok.vocab_size() as u32 - 3)
            .map(|id| tok.decode(&[id], false).unwrap().chars().next().unwrap())
            .collect();
        let dir = std::env::temp_dir().join(format!("aqn-char-tok-assets-{}", std::process::id()));
        write_char_tokenizer(&alphabet, &dir).unwrap();
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            let written = std::fs::read_to_string(dir.join(file)).unwrap();
            let asset = std::fs::read_to_string(assets.join(file)).unwrap();
            assert!(
                written == asset,
                "assets/tiny/{file} differs from {}",
                dir.join(file).display()
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
