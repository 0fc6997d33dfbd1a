//! aqn-core: quantization-aware RL with Adaptive Quantization Noise.
//!
//! The pure-math modules (`formats`, `metrics`, `error_stats`, `samples`, `rng`, `tensor_file`,
//! `npy_file`, `run_log`, `schedule`, `rin`) build for `wasm32-unknown-unknown` without the
//! `burn` feature; everything that needs tensors lives behind it.

pub mod error_stats;
pub mod formats;
#[cfg(feature = "burn")]
pub mod hw_noise;
pub mod metrics;
#[cfg(feature = "burn")]
pub mod model;
mod named;
pub mod npy_file;
#[cfg(feature = "burn")]
pub mod quant;
pub mod rin;
pub mod rl;
pub mod rng;
pub mod run;
pub mod run_log;
pub mod samples;
pub mod schedule;
pub mod task;
pub mod tensor_file;
