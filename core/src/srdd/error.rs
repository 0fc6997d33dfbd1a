//! Why an SRDD scan was refused.

use thiserror::Error;

use crate::formats::FormatError;
use crate::rin::RinError;

/// A refused SRDD input.
#[derive(Debug, Error)]
pub enum SrddError {
    /// A name that is not one of the enum's variants.
    #[error("unknown {what} `{value}`; valid choices: {valid}")]
    UnknownName {
        /// What was being parsed.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// The accepted names, comma separated.
        valid: String,
    },
    /// The prompt file is unreadable or empty.
    #[error("prompt file {path}: {reason}")]
    Prompts {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A prompt that cannot be run.
    #[error("prompt {index}: {reason}")]
    BadPrompt {
        /// 1-based index (the line among the non-empty lines).
        index: usize,
        /// Why.
        reason: String,
    },
    /// The format refused the captured tensor.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The report could not be built.
    #[error(transparent)]
    Report(#[from] RinError),
}
