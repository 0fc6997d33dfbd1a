//! Why a checkpoint could not be loaded ([`LoadError`]): each variant names the file, tensor or
//! setting at fault.

use thiserror::Error;

use super::hf_names::{INDEX_FILE, SINGLE_FILE};
use crate::formats::FormatError;
use crate::model::config::ConfigError;
use crate::qat::QatError;
use crate::tensor_file::TensorFileError;

/// Why a checkpoint could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A name that is not one of an enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A weight file that cannot be memory-mapped.
    #[error("cannot map {path}: {source}")]
    Map {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The packed plan's quantization.
    #[error(transparent)]
    Quant(#[from] QatError),
    /// A tensor that cannot be packed.
    #[error("packing `{tensor}`: {source}")]
    Pack {
        /// The HF name.
        tensor: String,
        /// Why.
        source: FormatError,
    },
    /// `config.json` is missing, malformed or refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A weight file is unreadable or malformed, or a tensor has a non-float dtype.
    #[error(transparent)]
    File(#[from] TensorFileError),
    /// The directory has neither weights file.
    #[error("{dir} has neither {SINGLE_FILE} nor {INDEX_FILE}")]
    NoWeights {
        /// The directory.
        dir: String,
    },
    /// The shard index is unreadable or malformed.
    #[error("{path}: {reason}")]
    Index {
        /// The index file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The index names a tensor its shard does not hold.
    #[error("{INDEX_FILE} places tensor `{tensor}` in {shard}, which does not contain it")]
    NotInShard {
        /// The tensor.
        tensor: String,
        /// The shard file.
        shard: String,
    },
    /// Two files hold the same tensor.
    #[error("tensor `{tensor}` is in both {first} and {second}")]
    Duplicate {
        /// The tensor.
        tensor: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// A parameter of the model has no tensor in the checkpoint.
    #[error("tensor `{tensor}` (shape {expected:?}) is missing from the checkpoint")]
    Missing {
        /// The HF name.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor of the checkpoint matches no parameter of the model.
    #[error(
        "unexpected tensor `{tensor}` (shape {shape:?}) in {source_name}: no parameter of this Qwen2 config has that name"
    )]
    Unexpected {
        /// The HF name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// A tensor whose shape differs from the parameter's.
    #[error(
        "tensor `{tensor}` has shape {found:?} in {source_name}; the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The HF name.
        tensor: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        found: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// A pre-quantized checkpoint that aqn cannot read, or whose quantization the plan
    /// contradicts (the reason names the file, tensor or setting).
    #[error("{reason}")]
    PreQuantized {
        /// What is wrong.
        reason: String,
    },
    /// A tied checkpoint that also stores a different `lm_head.weight`.
    #[error(
        "config.json ties the embeddings but `lm_head.weight` in {source_name} differs from `model.embed_tokens.weight`"
    )]
    TiedHeadDiffers {
        /// The file.
        source_name: String,
    },
}
