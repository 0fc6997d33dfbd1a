//! aqn-core: quantization-aware RL with Adaptive Quantization Noise.
//!
//! The pure-math modules (`formats`, `metrics`) build for `wasm32-unknown-unknown` without the
//! `burn` feature; everything that needs tensors lives behind it.

pub mod formats;
pub mod metrics;
#[cfg(feature = "burn")]
pub mod model;
#[cfg(feature = "burn")]
pub mod quant;
pub mod rng;
pub mod run;
pub mod tensor_file;
