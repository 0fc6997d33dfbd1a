//! Rewards and advantages (step 3 of the trainer): each sample's score, minus the KL penalty to
//! the reference policy when the KL goes into the reward (verl's `apply_kl_penalty`), and the
//! group advantages of the configured estimator (GRPO or Dr.GRPO) over the groups of
//! [`GroupId`](super::group_id::GroupId).
//!
//! The penalty is computed per micro-batch by the worker that owns it (its old log-probs are
//! there); the workers' penalized scores and KL metrics are summed, so every worker ends with
//! every score.

use super::collective::sum_metrics;
use super::error::{Context, TrainError};
use super::log_probs::{PerMicroBatch, StepLogProbs, logprobs};
use super::mini_batches::MiniBatches;
use super::rollout::{Rollouts, sequences};
use super::setup::RunContext;
use crate::model::Qwen2ForCausalLM;
use crate::rl::kl::{KlPlacement, compute_kl_in_reward};
use crate::run::StepMetrics;

/// The scores a step trains on and their advantages.
pub(super) struct Scored {
    /// Per sample: the reward, minus the KL penalty when it goes into the reward.
    pub scores: Vec<f64>,
    /// Per sample: the group advantage of its score.
    pub advantages: Vec<f64>,
    /// The KL-in-reward metrics (`actor/reward_kl_penalty*`; none without it).
    pub metrics: StepMetrics,
}

/// The scores and advantages of `rollouts`; `train_model` gives the old log-probs the KL
/// penalty needs when the step is on-policy (none were computed).
pub(super) fn score(
    ctx: &RunContext,
    batches: &MiniBatches,
    rollouts: &Rollouts,
    log_probs: &StepLogProbs,
    train_model: &Qwen2ForCausalLM,
) -> Result<Scored, TrainError> {
    let mut scores: Vec<f64> = rollouts.samples.iter().map(|s| s.score).collect();
    let mut metrics = StepMetrics::new();
    if ctx.config.algorithm.kl.placement == KlPlacement::Reward {
        let computed;
        let old = match &log_probs.old {
            Some(old) => old,
            None => {
                computed = logprobs(ctx, batches, train_model, &rollouts.samples);
                &computed
            }
        };
        let reference = log_probs
            .reference
            .as_ref()
            .expect("a KL placement builds the reference");
        (scores, metrics) = kl_in_reward(ctx, batches, rollouts, &scores, old, reference)?;
    }
    let advantages = ctx
        .config
        .algorithm
        .estimator
        .compute(&scores, &rollouts.group_keys())
        .context("advantages")?;
    Ok(Scored {
        scores,
        advantages,
        metrics,
    })
}

/// The scores minus the KL penalty, and the KL metrics as means over the samples.
fn kl_in_reward(
    ctx: &RunContext,
    batches: &MiniBatches,
    rollouts: &Rollouts,
    scores: &[f64],
    old: &PerMicroBatch,
    reference: &PerMicroBatch,
) -> Result<(Vec<f64>, StepMetrics), TrainError> {
    let samples = &rollouts.samples;
    // The penalized scores of the owned micro-batches (zeros elsewhere, so the sum over the
    // workers is every score), then the KL metrics as sequence-weighted sums.
    let mut penalized = vec![0.0f64; samples.len()];
    let mut sums = StepMetrics::new();
    let ranges = batches.iter().flatten();
    for ((range, o), r) in ranges
        .zip(old.iter().flatten())
        .zip(reference.iter().flatten())
    {
        let (Some(o), Some(r)) = (o, r) else {
            continue;
        };
        let mask = sequences(ctx, &samples[range.clone()]).response_mask;
        let (p, m) = compute_kl_in_reward(
            &scores[range.clone()],
            o.clone(),
            r.clone(),
            mask,
            &ctx.config.algorithm.kl,
        )
        .context("KL in reward")?;
        penalized[range.clone()].copy_from_slice(&p);
        for (k, v) in m {
            *sums.entry(k.to_string()).or_default() += v * range.len() as f64;
        }
    }
    ctx.collective.sum_f64(&mut penalized);
    let metrics = sum_metrics(ctx.collective, &sums)
        .into_iter()
        .map(|(k, v)| (k, v / samples.len().max(1) as f64))
        .collect();
    Ok((penalized, metrics))
}
