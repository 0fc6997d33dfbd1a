//! The formats of [`crate::formats`] as Burn tensor operations, on any backend, and the
//! straight-through estimator of SPEC.md section 2.

mod fake_quantize;
mod pow2;
mod ste;

pub use fake_quantize::{fake_quantize, fake_quantize_reference};
pub use ste::{QuantGradient, quantize_with_gradient};
