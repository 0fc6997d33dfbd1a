//! The metrics of the RL building blocks, under verl's namespaced keys. The keys themselves are
//! defined once, with every other key of `metrics.jsonl`, in [`crate::run::metric_keys`]; the
//! ones these building blocks write are re-exported here.

use std::collections::BTreeMap;

pub use crate::run::metric_keys::{
    ENTROPY, GRAD_NORM, KL_COEF, KL_LOSS, LR, NUM_GEN_BATCHES, PG_CLIPFRAC, PG_CLIPFRAC_LOWER,
    PG_LOSS, PPO_KL, REWARD_KL_PENALTY, REWARD_KL_PENALTY_COEFF,
};

/// Metrics of one call: verl's key -> value.
pub type Metrics = BTreeMap<&'static str, f64>;
