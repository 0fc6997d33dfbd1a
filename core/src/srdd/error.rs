//! Why an SRDD scan was refused.

use thiserror::Error;

use crate::formats::FormatError;

/// A refused SRDD input.
#[derive(Debug, Error)]
pub enum SrddError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
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
    /// An SRDD report that cannot be built or read (the message names the field or layer).
    #[error("SRDD report is refused: {0}")]
    Report(String),
}
