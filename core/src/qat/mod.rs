//! Quantization-aware training (docs/spec.md section 2): the quantization modes of the projections
//! (BF16 / W4A16 / W4A4 over the formats of [`crate::formats`]), their straight-through
//! estimator, the exclusion lists, and the explicit no-STE switch.
//!
//! | file | concept |
//! |---|---|
//! | [`mode`] | [`QuantMode`] |
//! | [`config`] | [`QuantConfig`]: formats, gradient, [`QuantExclude`] |
//! | [`linear_quant`] | [`LinearQuant`] (one projection's quantizers) and the cached `Q(W)` |
//! | [`error`] | [`QatError`] |
//!
//! Usage: `let model = model.with_quantization(&QuantConfig::new(QuantMode::W4A4))?;` after
//! which every `QLinear::forward` computes `Q(x) Q(W)^T` with the STE.

pub mod config;
pub mod error;
pub mod linear_quant;
pub mod mode;

pub use config::{QuantConfig, QuantExclude, QuantModule};
pub use error::QatError;
pub use linear_quant::{LinearQuant, REDUCTION_AXIS, WeightQuantState};
pub use mode::QuantMode;
