//! aqn-core: quantization-aware RL with Adaptive Quantization Noise.
//!
//! The pure-math modules (`formats`, `quant_error`, `non_finite`, `error_stats`, `distributions`,
//! `rng`, `tensor_file`, `npy_file`, `run`, `schedule`, `rin`, `catalogue`, the SRDD report) build for
//! `wasm32-unknown-unknown` without the `burn` feature; everything that needs tensors lives
//! behind it. ARCHITECTURE.md draws the rooms and what flows between them.

#[cfg(feature = "burn")]
pub mod aqn;
pub mod atomic_write;
pub mod catalogue;
#[cfg(feature = "burn")]
pub mod checkpoint;
pub mod config;
#[cfg(feature = "burn")]
pub mod cpu;
pub mod distributions;
pub mod error_stats;
pub mod formats;
#[cfg(feature = "burn")]
pub mod generation;
#[cfg(feature = "burn")]
pub mod hw_noise;
#[cfg(feature = "burn")]
pub mod lora;
#[cfg(feature = "burn")]
pub mod model;
pub mod name_pattern;
pub mod named;
pub mod non_finite;
pub mod npy_file;
#[cfg(feature = "burn")]
pub mod ops;
pub mod phase;
#[cfg(feature = "burn")]
pub mod qat;
#[cfg(feature = "burn")]
pub mod quant;
pub mod quant_error;
pub mod rin;
pub mod rl;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod site;
pub mod srdd;
pub mod task;
pub mod tensor_file;
#[cfg(feature = "burn")]
pub mod tokenizer;
#[cfg(feature = "burn")]
pub mod train;
#[cfg(feature = "wgpu")]
pub mod wgpu_device;
