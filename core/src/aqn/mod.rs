//! Adaptive Quantization Noise (docs/spec.md section 4; QeRL, arXiv:2510.11696): at every optimizer
//! step, fresh Gaussian noise on the targeted weights of the rollout policy (by default), with a
//! scheduled sigma (section 3) and per-layer RIN multipliers (section 5), on a copy of the clean
//! model, with an audit of the noise actually applied.
//!
//! | file | concept |
//! |---|---|
//! | [`config`] | [`AqnConfig`]: schedule, targets, phase, RIN |
//! | [`targets`] | resolving targets to parameter names |
//! | [`noise`] | [`Aqn`]: `apply(&model, step, seed)` |
//! | [`rin_report`] | [`Aqn::for_run`]: the SRDD report a RIN policy reads, scanned when missing |
//! | [`audit`] | [`AqnAudit`], the `noise_audit.jsonl` line |
//! | [`error`] | [`AqnError`] |
//!
//! Usage, per step: `let (rollout_model, audit) = aqn.apply(&model.for_phase(Phase::Rollout,
//! step), step, seed)?;` then write `audit.to_json_line()`; the clean `model` is what the
//! optimizer updates and what evaluation uses.

pub mod audit;
pub mod config;
pub mod error;
pub mod noise;
pub mod rin_report;
pub mod targets;

pub use audit::{AqnAudit, AqnTargetAudit};
pub use config::{AqnConfig, AqnRinConfig, AqnScheduleConfig, AqnTargets};
pub use error::AqnError;
pub use noise::Aqn;
pub use rin_report::{BaseModelScan, SRDD_SCAN_PROMPTS};
pub use targets::{AqnTarget, layer_of, resolve};
