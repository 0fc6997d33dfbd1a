//! The keys of `metrics.jsonl` (and of the TensorBoard scalars beside it): every scalar a run
//! writes, named `namespace/name` after verl (`actor/pg_loss`), each defined once here and used
//! by whoever writes or reads it (the RL building blocks, the trainer, the CLI's progress line).
//! Pure Rust, so the wasm run viewer can read the same names; docs/run_format.md describes the
//! file.

/// The step of a line: 0 is the evaluation before training, then one line per optimizer step.
pub const STEP: &str = "step";
/// The pass over the training prompts the step belongs to (1-based).
pub const EPOCH: &str = "epoch";

// actor/*: the policy update (docs/spec.md section 7).

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
/// The global L2 norm of the gradients before clipping (mean over the step's applied updates).
pub const GRAD_NORM: &str = "actor/grad_norm";
/// The learning rate of the step.
pub const LR: &str = "actor/lr";
/// Updates of the step skipped because a gradient was not finite (absent when none was).
pub const SKIPPED_UPDATES: &str = "actor/skipped_updates";
/// The KL in the reward: mean over sequences of the per-token mean KL.
pub const REWARD_KL_PENALTY: &str = "actor/reward_kl_penalty";
/// The coefficient of the KL in the reward.
pub const REWARD_KL_PENALTY_COEFF: &str = "actor/reward_kl_penalty_coeff";

// Rollouts.

/// Mean reward of the trained samples (after the KL penalty when it goes into the reward).
pub const REWARD_MEAN: &str = "reward/mean";
/// Fraction of the trained samples that are correct.
pub const REWARD_ACC: &str = "reward/acc";
/// Fraction of every generated sample that is correct (dynamic sampling's discarded groups too).
pub const REWARD_GEN_ACC: &str = "reward/gen_acc";
/// Mean response length of the trained samples, in tokens.
pub const RESPONSE_LENGTH_MEAN: &str = "response_length/mean";
/// Fraction of the trained samples cut at the length limit.
pub const RESPONSE_LENGTH_CLIP_RATIO: &str = "response_length/clip_ratio";
/// Generation batches used by DAPO's dynamic sampling in this step (the sampler's count).
pub const NUM_GEN_BATCHES: &str = "train/num_gen_batches";
/// Generation batches of the step as the trainer counts them (1 without dynamic sampling).
pub const DAPO_NUM_GEN_BATCHES: &str = "dapo/num_gen_batches";

// aqn/*: the noise of the step (docs/spec.md section 4).

/// The schedule's sigma at the step.
pub const AQN_SIGMA: &str = "aqn/sigma";
/// Mean over the noised targets of `realized_std / sigma` (1 is exact).
pub const AQN_REALIZED_STD_RATIO: &str = "aqn/realized_std_ratio";

// timing/*: wall-clock measurements, the only keys that differ between identical runs.

/// The namespace of the timing keys.
pub const TIMING_PREFIX: &str = "timing/";
/// Seconds of the step's rollouts (generation and scoring).
pub const TIMING_ROLLOUT_S: &str = "timing/rollout_s";
/// Generated tokens per second of the step's rollouts.
pub const TIMING_ROLLOUT_TOKENS_PER_S: &str = "timing/rollout_tokens_per_s";
/// Seconds of the log-probs, advantages and PPO updates.
pub const TIMING_UPDATE_S: &str = "timing/update_s";
/// Seconds of the whole step.
pub const TIMING_STEP_S: &str = "timing/step_s";

// val/*: the held-out evaluation (greedy, noise-free, in the trained quantization mode).

/// Fraction of held-out problems answered correctly (strict `#### N` extraction): the score.
pub const VAL_ACCURACY: &str = "val/accuracy";
/// The same with verl's flexible extraction (the last number), for reference.
pub const VAL_ACCURACY_FLEXIBLE: &str = "val/accuracy_flexible";
/// Mean response length of the evaluation, in tokens.
pub const VAL_RESPONSE_LENGTH: &str = "val/response_length";
/// Accuracy of the same weights without fake quantization (`eval.bf16`), never the score.
pub const VAL_BF16_ACCURACY: &str = "val_bf16/accuracy";

/// Every key above, for checks over the whole list.
pub const ALL: &[&str] = &[
    STEP,
    EPOCH,
    PG_CLIPFRAC,
    PG_CLIPFRAC_LOWER,
    PPO_KL,
    PG_LOSS,
    KL_LOSS,
    KL_COEF,
    ENTROPY,
    GRAD_NORM,
    LR,
    SKIPPED_UPDATES,
    REWARD_KL_PENALTY,
    REWARD_KL_PENALTY_COEFF,
    REWARD_MEAN,
    REWARD_ACC,
    REWARD_GEN_ACC,
    RESPONSE_LENGTH_MEAN,
    RESPONSE_LENGTH_CLIP_RATIO,
    NUM_GEN_BATCHES,
    DAPO_NUM_GEN_BATCHES,
    AQN_SIGMA,
    AQN_REALIZED_STD_RATIO,
    TIMING_ROLLOUT_S,
    TIMING_ROLLOUT_TOKENS_PER_S,
    TIMING_UPDATE_S,
    TIMING_STEP_S,
    VAL_ACCURACY,
    VAL_ACCURACY_FLEXIBLE,
    VAL_RESPONSE_LENGTH,
    VAL_BF16_ACCURACY,
];

/// Whether `key` is a wall-clock measurement (differs between otherwise identical runs).
pub fn is_timing(key: &str) -> bool {
    key.starts_with(TIMING_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_namespaced() {
        let mut seen = std::collections::BTreeSet::new();
        for key in ALL {
            assert!(seen.insert(*key), "{key} twice");
            let parts: Vec<&str> = key.split('/').collect();
            assert!(
                parts.len() <= 2
                    && parts.iter().all(|p| !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
                "{key}"
            );
        }
        assert!(is_timing(TIMING_STEP_S) && !is_timing(STEP));
        assert_eq!(
            ALL.iter().filter(|k| is_timing(k)).count(),
            4,
            "every timing key is listed"
        );
    }
}
