//! aqn-core: quantization-aware RL with Adaptive Quantization Noise.
//!
//! The pure-math modules (`formats`, `metrics`) build for `wasm32-unknown-unknown` without the
//! `burn` feature; everything that needs tensors lives behind it.

pub mod formats;
#[cfg(feature = "burn")]
pub mod hw_noise;
pub mod metrics;
#[cfg(feature = "burn")]
pub mod model;
mod named;
#[cfg(feature = "burn")]
pub mod quant;
pub mod rin;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod tensor_file;
