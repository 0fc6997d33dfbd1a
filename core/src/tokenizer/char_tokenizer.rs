//! A character-level tokenizer in HF `tokenizer.json` form, for the built-in tiny model: one token
//! per character of a fixed alphabet plus Qwen2's three special tokens, and a Qwen2-style chat
//! template in `tokenizer_config.json`. Written with the `tokenizers` crate so that
//! [`Qwen2Tokenizer::from_dir`](super::Qwen2Tokenizer::from_dir) (and Python's `tokenizers`)
//! read it like any HF tokenizer.
//!
//! Model: BPE with the characters as its vocabulary and no merges (so every character is one
//! token), the `Fuse` decoder (tokens are concatenated back without separators).

use std::path::Path;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

use super::qwen2_tokenizer::TokenizerError;

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
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let n = chars.len() as u32;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(|e| TokenizerError::Tokenize(format!("building the character BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(Fuse::new()));
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
        "tokenizer_class": "PreTrainedTokenizerFast",
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
        std::fs::remove_dir_all(&dir).ok();
    }
}
