//! Hardware-error injection of docs/spec.md section 6 as Burn tensor functions (any backend for the
//! forward models; the gradient step on the backends listed in [`grad`]).
//!
//! - [`HwErrorModel`]: relative / absolute Gaussian, systematic bias, deadzone;
//!   [`HwErrorModel::inject`] perturbs a matmul output in the forward pass (the gradient passes
//!   through unchanged);
//! - [`grad_noise`]: identity forward, the same models on the gradient in the backward pass;
//! - [`NoiseKey`] + [`NoiseSource`]: which noise each draw gets. A key is (seed, step, call site,
//!   call index, pass), hashed to a counter-RNG stream, so every draw is distinct and
//!   reproducible; see [`key`].
//!
//! Wiring them into the model's matmuls, per phase (rollout, training): [`HwNoiseConfig`] (model,
//! sites, passes, phase, seed; [`config`]), applied by `Qwen2ForCausalLM::with_hw_noise`
//! (`crate::model::attach::hw_noise`) as one [`SiteNoise`] per targeted matmul ([`site`]), armed per phase and step by
//! `Qwen2ForCausalLM::for_phase`: each call of a site draws with its own key.

pub mod config;
pub mod error;
pub mod grad;
pub mod key;
pub mod model;
pub mod site;
pub mod source;

pub use config::{HwNoiseConfig, HwSite, NoisePasses};
pub use error::HwNoiseError;
pub use grad::grad_noise;
pub use key::{NoiseKey, NoisePass};
pub use model::{HwErrorModel, HwModelKind};
pub use site::SiteNoise;
pub use source::NoiseSource;
