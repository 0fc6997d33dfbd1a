//! The formats of [`crate::formats`] as Burn tensor operations, on any backend, and the
//! straight-through estimator of docs/spec.md section 2.

mod dispatch;
mod fake_quantize;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod fused;
pub mod packed;
mod pow2;
mod ste;

pub use dispatch::{fake_quantize_on_device, is_host_device};
pub use fake_quantize::{fake_quantize, fake_quantize_reference};
pub use packed::{PackedWeight, packed_linear};
pub use ste::{QuantGradient, quantize_with_gradient};
