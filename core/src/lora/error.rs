//! Why a LoRA configuration, adapter file or model was refused. Every message names the value.

use thiserror::Error;

use crate::tensor_file::TensorFileError;

/// A refused LoRA input.
#[derive(Debug, Error)]
pub enum LoraError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A setting outside its range.
    #[error("LoRA {field} = {value} is refused: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Its value as written.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `adapter_config.json` is not JSON of the expected shape.
    #[error("{path} is not a PEFT adapter config: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A PEFT feature this implementation does not offer.
    #[error("{path}: `{field}` = {value} is not supported: {reason}")]
    Unsupported {
        /// The file.
        path: String,
        /// The PEFT field.
        field: String,
        /// Its value.
        value: String,
        /// What is supported.
        reason: String,
    },
    /// The weights file is unreadable or malformed.
    #[error(transparent)]
    File(#[from] TensorFileError),
    /// A tensor the adapter config implies is not in the weights file.
    #[error("tensor `{tensor}` (shape {expected:?}) is missing from {source_name}")]
    Missing {
        /// The PEFT key.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// A tensor of the weights file that no target of the config explains.
    #[error(
        "unexpected tensor `{tensor}` in {source_name}: no LoRA target of this model and adapter \
         config has that key"
    )]
    Unexpected {
        /// The key.
        tensor: String,
        /// The file.
        source_name: String,
    },
    /// A tensor whose shape differs from what the model and the rank imply.
    #[error(
        "tensor `{tensor}` has shape {found:?} in {source_name}; the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The key.
        tensor: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// Saving adapters of a model that has none.
    #[error("the model has no LoRA adapters to save (attach them with `with_lora`)")]
    NoAdapters,
    /// Attaching adapters to a model that already has them.
    #[error(
        "projection {site} already has a LoRA adapter: attach adapters once (a second set would \
         silently stack)"
    )]
    AlreadyAttached {
        /// The module path.
        site: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading `{name}` from the device: {reason}")]
    Read {
        /// The parameter.
        name: String,
        /// Why.
        reason: String,
    },
}
