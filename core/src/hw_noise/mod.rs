//! Hardware-error injection of SPEC.md section 6 as Burn tensor functions (any backend for the
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
//! Wiring them into the model's matmuls, per phase (rollout, training), is the model's job: call
//! `model.inject(y, &key, source)` on the output and, when gradients get noise too,
//! `grad_noise(y, &model, &key, source)` on it as well (the key's pass is set by each function).

pub mod error;
pub mod grad;
pub mod key;
pub mod model;
pub mod source;

pub use error::HwNoiseError;
pub use grad::grad_noise;
pub use key::{NoiseKey, NoisePass};
pub use model::{HwErrorModel, HwModelKind};
pub use source::NoiseSource;
