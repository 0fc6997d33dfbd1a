//! Errors of the format code.

use thiserror::Error;

/// Why a quantization request was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// The buffer cannot be viewed as `[rows, row_len]`.
    #[error("a tensor of {len} elements cannot be split into rows of {row_len}")]
    BadShape {
        /// Number of elements.
        len: usize,
        /// Requested row length.
        row_len: usize,
    },
    /// Output and input lengths differ.
    #[error("output holds {out} elements but the input has {input}")]
    OutputLength {
        /// Output length.
        out: usize,
        /// Input length.
        input: usize,
    },
    /// An option that the chosen format does not offer.
    #[error("{option} is not offered for {format}: {hint}")]
    Unsupported {
        /// The option.
        option: &'static str,
        /// The format name.
        format: &'static str,
        /// What is offered instead.
        hint: &'static str,
    },
    /// An axis outside the tensor's rank.
    #[error("axis {axis} is out of range for a tensor of rank {rank}")]
    BadAxis {
        /// The axis.
        axis: usize,
        /// The rank.
        rank: usize,
    },
    /// Packed buffers whose sizes do not match their description.
    #[error("packed tensor is inconsistent: {0}")]
    BadPacked(String),
    /// A packed frozen weight asked to do what its codes cannot (be trained, be re-quantized).
    #[error("{what}: {reason}")]
    PackedWeight {
        /// What was asked.
        what: String,
        /// Why not, and what to do instead.
        reason: String,
    },
    /// A tensor the fused GPU kernels cannot take (device, dtype, size).
    #[error("fused quantization kernel: {0}")]
    Device(String),
}
