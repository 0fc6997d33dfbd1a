//! Why a hardware-error model was refused.

use thiserror::Error;

/// A refused hardware-error model or call.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum HwNoiseError {
    /// A name that is not one of the enum's variants (model kind, noise source, phase).
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A parameter outside its range.
    #[error("{model} {name} = {value} is refused: {expected}")]
    BadParameter {
        /// The model.
        model: &'static str,
        /// The parameter.
        name: &'static str,
        /// The rejected value, as written.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// Gradient noise needs a custom autodiff step, registered for the listed backends only.
    #[error(
        "gradient noise is not available on this backend ({backend}): its custom autodiff step \
         is registered for NdArray (with or without gradient checkpointing); add the backend in \
         hw_noise/grad.rs"
    )]
    GradNoiseBackend {
        /// The tensor's device.
        backend: String,
    },
}
