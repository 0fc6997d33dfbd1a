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

// rollout_corr/*: the rollout-training mismatch and its correction (docs/spec.md section 9), verl's
// names; `logp_old` is the training policy's log-prob before the update, `logp_rollout` the
// rollout policy's as it sampled, C the IS threshold.

/// The namespace of the rollout-correction keys.
pub const ROLLOUT_CORR_PREFIX: &str = "rollout_corr/";
/// Mean over responses of the training policy's perplexity `exp(-mean_t logp_old)`.
pub const TRAINING_PPL: &str = "rollout_corr/training_ppl";
/// Mean over responses of `-mean_t logp_old`.
pub const TRAINING_LOG_PPL: &str = "rollout_corr/training_log_ppl";
/// Mean over responses of the rollout policy's perplexity `exp(-mean_t logp_rollout)`.
pub const ROLLOUT_PPL: &str = "rollout_corr/rollout_ppl";
/// Mean over responses of `-mean_t logp_rollout`.
pub const ROLLOUT_LOG_PPL: &str = "rollout_corr/rollout_log_ppl";
/// KL(rollout || training) by k1: token mean of `logp_rollout - logp_old` (may be < 0).
pub const MISMATCH_KL: &str = "rollout_corr/kl";
/// KL(rollout || training) by k3: token mean of `exp(d) - d - 1`, `d = logp_old - logp_rollout`.
pub const MISMATCH_K3_KL: &str = "rollout_corr/k3_kl";
/// Mean over responses of `mean_t logp_rollout - mean_t logp_old` (training minus rollout log-perplexity).
pub const LOG_PPL_DIFF: &str = "rollout_corr/log_ppl_diff";
/// Mean over responses of the absolute log-perplexity difference.
pub const LOG_PPL_ABS_DIFF: &str = "rollout_corr/log_ppl_abs_diff";
/// Largest log-perplexity difference of a response.
pub const LOG_PPL_DIFF_MAX: &str = "rollout_corr/log_ppl_diff_max";
/// Smallest log-perplexity difference of a response.
pub const LOG_PPL_DIFF_MIN: &str = "rollout_corr/log_ppl_diff_min";
/// Mean over responses of the training / rollout perplexity ratio `exp(log_ppl_diff)`.
pub const PPL_RATIO: &str = "rollout_corr/ppl_ratio";
/// Token chi-squared: token mean of `rho^2` minus 1, `rho = exp(clamp(logp_old - logp_rollout, -20, 20))`.
pub const CHI2_TOKEN: &str = "rollout_corr/chi2_token";
/// Sequence chi-squared: mean over responses of `exp(2 clamp(sum_t log rho, -20, 20))` minus 1.
pub const CHI2_SEQ: &str = "rollout_corr/chi2_seq";
/// Token mean of the IS weight before truncation.
pub const IS_MEAN: &str = "rollout_corr/rollout_is_mean";
/// Largest IS weight before truncation.
pub const IS_MAX: &str = "rollout_corr/rollout_is_max";
/// Smallest IS weight.
pub const IS_MIN: &str = "rollout_corr/rollout_is_min";
/// Standard deviation of the IS weights clamped to [1/C, C].
pub const IS_STD: &str = "rollout_corr/rollout_is_std";
/// Effective sample size of the clamped IS weights, as a fraction in (0, 1].
pub const IS_EFF_SAMPLE_SIZE: &str = "rollout_corr/rollout_is_eff_sample_size";
/// Fraction of tokens (sequences at sequence level) whose ratio is above C.
pub const IS_RATIO_FRACTION_HIGH: &str = "rollout_corr/rollout_is_ratio_fraction_high";
/// Fraction of tokens (sequences at sequence level) whose ratio is below 1/C.
pub const IS_RATIO_FRACTION_LOW: &str = "rollout_corr/rollout_is_ratio_fraction_low";
/// Mean over responses of each response's mean IS weight.
pub const IS_SEQ_MEAN: &str = "rollout_corr/rollout_is_seq_mean";
/// Unbiased standard deviation of the responses' mean IS weights.
pub const IS_SEQ_STD: &str = "rollout_corr/rollout_is_seq_std";
/// Largest mean IS weight of a response.
pub const IS_SEQ_MAX: &str = "rollout_corr/rollout_is_seq_max";
/// Smallest mean IS weight of a response.
pub const IS_SEQ_MIN: &str = "rollout_corr/rollout_is_seq_min";
/// Largest `|mean IS weight - 1|` of a response.
pub const IS_SEQ_MAX_DEVIATION: &str = "rollout_corr/rollout_is_seq_max_deviation";
/// Fraction of responses whose mean IS weight is above C.
pub const IS_SEQ_FRACTION_HIGH: &str = "rollout_corr/rollout_is_seq_fraction_high";
/// Fraction of responses whose mean IS weight is below 1/C.
pub const IS_SEQ_FRACTION_LOW: &str = "rollout_corr/rollout_is_seq_fraction_low";
/// Fraction of response tokens removed from the loss by rejection.
pub const RS_MASKED_FRACTION: &str = "rollout_corr/rollout_rs_masked_fraction";
/// Fraction of responses with at least one rejected token.
pub const RS_SEQ_MASKED_FRACTION: &str = "rollout_corr/rollout_rs_seq_masked_fraction";

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
    TRAINING_PPL,
    TRAINING_LOG_PPL,
    ROLLOUT_PPL,
    ROLLOUT_LOG_PPL,
    MISMATCH_KL,
    MISMATCH_K3_KL,
    LOG_PPL_DIFF,
    LOG_PPL_ABS_DIFF,
    LOG_PPL_DIFF_MAX,
    LOG_PPL_DIFF_MIN,
    PPL_RATIO,
    CHI2_TOKEN,
    CHI2_SEQ,
    IS_MEAN,
    IS_MAX,
    IS_MIN,
    IS_STD,
    IS_EFF_SAMPLE_SIZE,
    IS_RATIO_FRACTION_HIGH,
    IS_RATIO_FRACTION_LOW,
    IS_SEQ_MEAN,
    IS_SEQ_STD,
    IS_SEQ_MAX,
    IS_SEQ_MIN,
    IS_SEQ_MAX_DEVIATION,
    IS_SEQ_FRACTION_HIGH,
    IS_SEQ_FRACTION_LOW,
    RS_MASKED_FRACTION,
    RS_SEQ_MASKED_FRACTION,
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
