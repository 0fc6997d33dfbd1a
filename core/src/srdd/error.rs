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
    /// A captured tensor with NaN or infinite values: its quantization error is meaningless, so
    /// the scan stops rather than report a number for it.
    #[error(
        "{what} holds {counts} among its {elements} values; SRDD cannot measure the quantization \
         error of a model whose {kind} are not finite"
    )]
    NonFinite {
        /// The tensor (`layer 3 output, prompt 2`, `layer 0 weight model.layers.0.mlp.up_proj`).
        what: String,
        /// `outputs`, `inputs`, `weights`.
        kind: &'static str,
        /// Its values.
        elements: usize,
        /// How many are NaN, +inf, -inf.
        counts: crate::non_finite::NonFiniteCounts,
    },
}
