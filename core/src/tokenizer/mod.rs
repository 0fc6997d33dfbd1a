//! Tokenizers: HF `tokenizer.json` with the chat template of `tokenizer_config.json`
//! ([`Qwen2Tokenizer`]), and the built-in tiny model's character-level vocabulary.

pub mod char_tokenizer;
pub mod qwen2_tokenizer;

pub use qwen2_tokenizer::{ChatMessage, Qwen2Tokenizer, TokenizerError};
