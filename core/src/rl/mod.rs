//! The algorithmic pieces of GRPO / Dr.GRPO / DAPO (docs/spec.md section 7), after verl's
//! `core_algos.py`: one function per algorithm, `compute_<algo>_<what>`, returning
//! `(loss, metrics)` with verl's namespaced metric keys ([`metrics`]); every aggregation goes
//! through [`agg_loss`]. Each tensor function has a plain f64 reference beside it
//! (`*_reference`) and a test that they agree. The trainer drives these pieces; none of them
//! loops over generation or owns a model.
//!
//! | file | concept | tensors |
//! |---|---|---|
//! | [`advantage`] | GRPO / Dr.GRPO outcome advantages | no |
//! | [`agg_loss`] | the four loss aggregation modes | yes |
//! | [`policy_loss`] | clipped surrogate with clip-higher and dual clip | yes |
//! | [`kl`] | k1 / k2 / k3 to the reference policy, as loss or in the reward | yes |
//! | [`entropy`] | per-token entropy and the entropy bonus | yes |
//! | [`actor_loss`] | the actor loss of one batch (policy + entropy + KL) | yes |
//! | [`dynamic_sampling`] | DAPO's group filter and bounded batch accumulator | no |
//! | [`rollout_mismatch`] | rollout vs training policy: verl's off-policy diagnostics | no |
//! | [`rollout_corr`] | rollout correction: IS weights (TIS) and rejection | no |
//! | [`lr_schedule`] | warm-up + constant / cosine learning rate | no |
//! | [`grad_clip`] | global-norm gradient clipping (`actor/grad_norm`) | yes |
//! | [`adamw`] | AdamW with PyTorch's defaults on Burn's optimizer | settings: no |
//!
//! The parts marked "tensors" need the `burn` feature (the pure parts of those files, enums,
//! settings and references, build without it).

#[cfg(feature = "burn")]
pub mod actor_loss;
pub mod adamw;
pub mod advantage;
pub mod agg_loss;
pub mod dynamic_sampling;
pub mod entropy;
pub mod error;
#[cfg(feature = "burn")]
pub mod grad_clip;
pub mod kl;
pub mod lr_schedule;
pub mod metrics;
pub mod policy_loss;
pub mod rollout_corr;
pub mod rollout_mismatch;

#[cfg(feature = "burn")]
pub use actor_loss::{ActorLossInputs, compute_actor_loss};
pub use adamw::AdamWSettings;
pub use advantage::{AdvantageEstimator, compute_grpo_outcome_advantage};
#[cfg(feature = "burn")]
pub use agg_loss::agg_loss;
pub use agg_loss::{AggMode, AggNorm, agg_loss_reference};
pub use dynamic_sampling::{
    DynamicSampler, FilterGroupsConfig, FilterMetric, SamplerStatus, SamplerStep, filter_groups,
};
#[cfg(feature = "burn")]
pub use entropy::{compute_entropy_loss, entropy_from_logits};
pub use error::RlError;
#[cfg(feature = "burn")]
pub use grad_clip::{ClippedGrads, GradClipReport, clip_grad_norm};
pub use kl::{KlConfig, KlEstimator, KlPlacement, kl_penalty_reference};
#[cfg(feature = "burn")]
pub use kl::{compute_kl_in_reward, compute_kl_loss, kl_penalty};
pub use lr_schedule::{LrSchedule, LrScheduleConfig, LrScheduleKind};
pub use metrics::Metrics;
#[cfg(feature = "burn")]
pub use policy_loss::compute_policy_loss_vanilla;
pub use policy_loss::{PolicyLossConfig, policy_loss_reference};
pub use rollout_corr::{Correction, IsLevel, RolloutCorrectionConfig, RsLevel};
pub use rollout_mismatch::{PairedLogProbs, mismatch_metrics};
