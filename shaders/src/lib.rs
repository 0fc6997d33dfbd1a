//! The WGSL kernels of the browser playground: fake quantization bit-identical to aqn-core
//! (`wgsl/quantize.wgsl`, on the integer soft-float of `wgsl/softfloat.wgsl`) and the two-pass
//! error statistics of `aqn_core::error_stats` (`wgsl/error_stats.wgsl`).
//!
//! - [`kernel`]: the host contract every host follows (the page's `www/gpu.js`, through the wasm
//!   exports of `aqn-web`, and [`runner`]): the WGSL source, entry points, bindings, the uniform
//!   words and the dispatch shape. Pure Rust, builds for wasm32.
//! - [`runner`] (feature `runner`, default): a native wgpu host, used by
//!   `tests/shaders_bit_exact.rs` on Mesa lavapipe.

pub mod kernel;
#[cfg(feature = "runner")]
pub mod runner;

pub use kernel::{GpuPlanError, KernelPlan, WGSL};
