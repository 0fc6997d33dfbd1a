//! The metrics of the RL building blocks, under verl's namespaced keys.

use std::collections::BTreeMap;

/// Metrics of one call: verl's key -> value.
pub type Metrics = BTreeMap<&'static str, f64>;

/// Fraction of response tokens where the clipped surrogate was the larger term.
pub const PG_CLIPFRAC: &str = "actor/pg_clipfrac";
/// Fraction of response tokens with A < 0 where the dual clip bound `-A c` was taken.
pub const PG_CLIPFRAC_LOWER: &str = "actor/pg_clipfrac_lower";
/// Masked mean of `logp_old - logp` (clamped): the approximate KL to the rollout policy.
pub const PPO_KL: &str = "actor/ppo_kl";
/// The aggregated policy-gradient loss.
pub const PG_LOSS: &str = "actor/pg_loss";
/// The aggregated KL loss (before its coefficient).
pub const KL_LOSS: &str = "actor/kl_loss";
/// The KL loss coefficient.
pub const KL_COEF: &str = "actor/kl_coef";
/// The aggregated entropy of the policy on the response tokens.
pub const ENTROPY: &str = "actor/entropy";
/// The global L2 norm of the gradients before clipping.
pub const GRAD_NORM: &str = "actor/grad_norm";
/// The learning rate of the step.
pub const LR: &str = "actor/lr";
/// The KL in the reward: mean over sequences of the per-token mean KL.
pub const REWARD_KL_PENALTY: &str = "actor/reward_kl_penalty";
/// The coefficient of the KL in the reward.
pub const REWARD_KL_PENALTY_COEFF: &str = "actor/reward_kl_penalty_coeff";
/// Generation batches used by DAPO's dynamic sampling in this step.
pub const NUM_GEN_BATCHES: &str = "train/num_gen_batches";
