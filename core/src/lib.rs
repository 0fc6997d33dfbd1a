//! aqn-core: quantization-aware RL with Adaptive Quantization Noise.
//!
//! The pure-math modules (`formats`, `metrics`, `error_stats`, `samples`, `rng`, `tensor_file`,
//! `npy_file`, `run_log`, `schedule`, `rin`) build for `wasm32-unknown-unknown` without the
//! `burn` feature; everything that needs tensors lives behind it.

#[cfg(feature = "burn")]
pub mod aqn;
pub mod config;
#[cfg(feature = "burn")]
pub mod cpu;
pub mod error_stats;
pub mod formats;
#[cfg(feature = "burn")]
pub mod hw_noise;
#[cfg(feature = "burn")]
pub mod lora;
pub mod metrics;
#[cfg(feature = "burn")]
pub mod model;
pub mod name_pattern;
mod named;
pub mod npy_file;
pub mod phase;
#[cfg(feature = "burn")]
pub mod qat;
#[cfg(feature = "burn")]
pub mod quant;
pub mod rin;
pub mod rl;
pub mod rng;
pub mod run;
pub mod run_log;
pub mod samples;
pub mod schedule;
#[cfg(feature = "burn")]
pub mod srdd;
pub mod task;
pub mod tensor_file;
#[cfg(feature = "burn")]
pub mod train;
#[cfg(feature = "wgpu")]
pub mod wgpu_device;
