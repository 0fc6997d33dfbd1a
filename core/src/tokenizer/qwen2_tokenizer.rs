//! The tokenizer of an HF checkpoint: `tokenizer.json` through the `tokenizers` crate, special
//! tokens from `tokenizer_config.json`, and the chat template rendered by a Jinja engine
//! (minijinja) configured as transformers configures Jinja2 for `apply_chat_template`:
//! `trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception(msg)`, and a `tojson` filter that
//! writes what Python's `json.dumps(x, ensure_ascii=False)` writes (no HTML escaping).
//!
//! The template comes from `chat_template.jinja` (transformers 5 saves it there) or else from the
//! `chat_template` field of `tokenizer_config.json` (the released Qwen2.5 checkpoints).

use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// The tokenizer file of an HF checkpoint.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Special tokens and (in older checkpoints) the chat template.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The chat template as transformers 5 saves it.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The name the chat template is registered under in the Jinja environment.
const TEMPLATE_NAME: &str = "chat_template";

/// Why tokenizing or rendering failed.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `tokenizer.json` could not be parsed.
    #[error("{source_name} is not a tokenizer the `tokenizers` crate reads: {reason}")]
    Load {
        /// Where the text came from.
        source_name: String,
        /// The crate's message.
        reason: String,
    },
    /// `tokenizer_config.json` is not valid.
    #[error("{source_name}: {reason}")]
    Config {
        /// Where the text came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A special token named by the config is not in the vocabulary.
    #[error("special token `{token}` ({role}) is not in the tokenizer's vocabulary")]
    UnknownSpecialToken {
        /// Its text.
        token: String,
        /// `eos_token`, `pad_token`, ...
        role: &'static str,
    },
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// The checkpoint has no chat template.
    #[error(
        "no chat template: neither {CHAT_TEMPLATE_FILE} nor a `chat_template` in {TOKENIZER_CONFIG_FILE}"
    )]
    NoChatTemplate,
    /// The template does not parse or its rendering failed (including `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Special tokens as `tokenizer_config.json` names them (text, not ids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (Qwen2: none).
    pub bos_token: Option<String>,
    /// End of sequence (Qwen2.5 instruct: `<|im_end|>`).
    pub eos_token: Option<String>,
    /// Padding (Qwen2: `<|endoftext|>`).
    pub pad_token: Option<String>,
    /// Unknown token (Qwen2: none).
    pub unk_token: Option<String>,
}

/// `tokenizer.json` + special tokens + the chat template.
pub struct Qwen2Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    env: Option<Environment<'static>>,
}

impl std::fmt::Debug for Qwen2Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen2Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.env.is_some())
            .finish()
    }
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A special token in `tokenizer_config.json`: a string, an `AddedToken` object or null.
fn special_token(
    config: &serde_json::Value,
    key: &str,
    source_name: &str,
) -> Result<Option<String>, TokenizerError> {
    match config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Object(o)) => match o.get("content") {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::Config {
                source_name: source_name.to_string(),
                reason: format!("`{key}` is an object without a string `content`"),
            }),
        },
        Some(other) => Err(TokenizerError::Config {
            source_name: source_name.to_string(),
            reason: format!("`{key}` must be a string or an AddedToken object, got {other}"),
        }),
    }
}

/// `chat_template` is a string, or (older files) a list of `{name, template}` of which `default` is used.
fn template_from_config(
    config: &serde_json::Value,
    source_name: &str,
) -> Result<Option<String>, TokenizerError> {
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(list)) => Ok(list.iter().find_map(|t| {
            (t.get("name")?.as_str()? == "default")
                .then(|| t.get("template")?.as_str().map(str::to_string))
                .flatten()
        })),
        Some(_) => Err(TokenizerError::Config {
            source_name: source_name.to_string(),
            reason: "`chat_template` must be a string or a list of {name, template}".to_string(),
        }),
    }
}

/// The Jinja environment of HF's `apply_chat_template`.
fn chat_environment(template: String) -> Result<Environment<'static>, TokenizerError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| TokenizerError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_filter("tojson", python_tojson);
    env.add_template_owned(TEMPLATE_NAME, template)
        .map_err(|e| TokenizerError::Template(format!("{e:#}")))?;
    Ok(env)
}

impl Qwen2Tokenizer {
    /// Reads `tokenizer.json`, and `tokenizer_config.json` / `chat_template.jinja` when present.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join(TOKENIZER_FILE);
        let json = read_text(&path)?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = config_path
            .exists()
            .then(|| read_text(&config_path))
            .transpose()?;
        let jinja_path = dir.join(CHAT_TEMPLATE_FILE);
        let jinja = jinja_path
            .exists()
            .then(|| read_text(&jinja_path))
            .transpose()?;
        Self::from_parts(
            &json,
            &path.display().to_string(),
            config.as_deref(),
            &config_path.display().to_string(),
            jinja,
        )
    }

    /// Builds a tokenizer from the texts of `tokenizer.json`, `tokenizer_config.json` and an
    /// optional separate chat template (which wins over the config's, as in transformers).
    pub fn from_parts(
        tokenizer_json: &str,
        tokenizer_source: &str,
        tokenizer_config: Option<&str>,
        config_source: &str,
        chat_template: Option<String>,
    ) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes()).map_err(|e| {
            TokenizerError::Load {
                source_name: tokenizer_source.to_string(),
                reason: e.to_string(),
            }
        })?;
        let config: serde_json::Value = match tokenizer_config {
            Some(text) => serde_json::from_str(text).map_err(|e| TokenizerError::Config {
                source_name: config_source.to_string(),
                reason: format!("not JSON ({e})"),
            })?,
            None => serde_json::Value::Null,
        };
        let special = SpecialTokens {
            bos_token: special_token(&config, "bos_token", config_source)?,
            eos_token: special_token(&config, "eos_token", config_source)?,
            pad_token: special_token(&config, "pad_token", config_source)?,
            unk_token: special_token(&config, "unk_token", config_source)?,
        };
        for (role, token) in [
            ("bos_token", &special.bos_token),
            ("eos_token", &special.eos_token),
            ("pad_token", &special.pad_token),
            ("unk_token", &special.unk_token),
        ] {
            if let Some(t) = token
                && inner.token_to_id(t).is_none()
            {
                return Err(TokenizerError::UnknownSpecialToken {
                    token: t.clone(),
                    role,
                });
            }
        }
        let template = match chat_template {
            Some(t) => Some(t),
            None => template_from_config(&config, config_source)?,
        };
        Ok(Self {
            inner,
            special,
            env: template.map(chat_environment).transpose()?,
        })
    }

    /// Token ids of `text`; with `add_special_tokens` the post-processor's tokens are added
    /// (Qwen2 adds none). Special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Tokenize(e.to_string()))
    }

    /// The text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Tokenize(e.to_string()))
    }

    /// The id of a token (special or not).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added (special) tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The special tokens of `tokenizer_config.json`.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The id of `eos_token`, if the config names one.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special
            .eos_token
            .as_deref()
            .and_then(|t| self.token_to_id(t))
    }

    /// The id of `pad_token`, if the config names one.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.special
            .pad_token
            .as_deref()
            .and_then(|t| self.token_to_id(t))
    }

    /// Whether a chat template was found.
    pub fn has_chat_template(&self) -> bool {
        self.env.is_some()
    }

    /// Renders the chat template as transformers' `apply_chat_template(messages, tools=tools,
    /// add_generation_prompt=..., tokenize=False)` does. Tool definitions are JSON values (their
    /// object keys in serde_json's order).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let env = self.env.as_ref().ok_or(TokenizerError::NoChatTemplate)?;
        let template = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))?;
        let special = |t: &Option<String>| t.as_deref().map(Value::from).unwrap_or(Value::from(()));
        let ctx = minijinja::context! {
            messages => Value::from(Serde(messages)),
            tools => tools.map(|t| Value::from(Serde(t))).unwrap_or(Value::from(())),
            add_generation_prompt => add_generation_prompt,
            bos_token => special(&self.special.bos_token),
            eos_token => special(&self.special.eos_token),
            pad_token => special(&self.special.pad_token),
            unk_token => special(&self.special.unk_token),
        };
        template
            .render(ctx)
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))
    }
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent)`.
fn python_tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    // Python's separators: ", " and ": " inline; "," and ": " with an indent.
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_json_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json_str(&key.to_string(), out);
                out.push_str(": ");
                write_json(&v.get_item(key)?, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        kind => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a value of kind {kind}"),
            ));
        }
    }
    Ok(())
}

/// Python's `repr(float)` for the finite values JSON holds (`1.0`, `0.5`, `1e-07`).
fn python_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_string();
    }
    let s = format!("{f:?}");
    // Rust's Debug gives the shortest round-trip digits like Python; exponents differ in form.
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// A JSON string as Python writes it with `ensure_ascii=False`.
fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, value: serde_json::Value) -> String {
        let env = chat_environment(template.to_string()).unwrap();
        env.get_template(TEMPLATE_NAME)
            .unwrap()
            .render(minijinja::context! { x => Value::from(Serde(&value)) })
            .unwrap()
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let v =
            serde_json::json!({"a": [1, 2.5, null, true], "b": "<é \"q\"\n>", "c": {}, "d": 1e-7});
        assert_eq!(
            render("{{ x | tojson }}", v.clone()),
            r#"{"a": [1, 2.5, null, true], "b": "<é \"q\"\n>", "c": {}, "d": 1e-07}"#
        );
        assert_eq!(
            render(
                "{{ x | tojson(indent=2) }}",
                serde_json::json!({"a": [1, 2], "b": []})
            ),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": []\n}"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        let t = "{% for m in x %}\n    {{ m }}\n{% endfor %}\n";
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indent before it.
        assert_eq!(render(t, serde_json::json!([1, 2])), "    1\n    2\n");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let env = chat_environment("{{ raise_exception('no system role') }}".to_string()).unwrap();
        let err = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(minijinja::context! {})
            .unwrap_err();
        assert!(format!("{err:#}").contains("no system role"));
    }
}
