//! The update (step 4 of the trainer): `ppo_epochs` passes over the step's mini-batches (in
//! order first, then a seeded shuffle per epoch), each mini-batch one optimizer step: the
//! clipped policy loss with its KL and entropy terms over the micro-batches this worker owns
//! (gradients summed over the micro-batches and the workers, each loss normalized by the whole
//! mini-batch), global-norm gradient clipping, AdamW at the step's learning rate. A mini-batch
//! whose gradient is not finite is skipped (counted in `actor/skipped_updates`).

use burn::optim::GradientsParams;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;

use super::collective::{sum_gradients, sum_metrics};
use super::error::{Context, TrainError};
use super::finite_weights::non_finite_weight;
use super::log_probs::{PerMicroBatch, StepLogProbs};
use super::micro_batch::{
    MiniBatchCounts, PolicyLossSettings, PolicyMicroBatch, RowCorrection, policy_gradients_of,
};
use super::mini_batches::MiniBatches;
use super::rollout::{Sample, sequences};
use super::setup::RunContext;
use crate::model::Qwen2ForCausalLM;
use crate::rl::agg_loss::AggMode;
use crate::rl::grad_clip::{ClippedGrads, clip_grad_norm};
use crate::rl::kl::KlPlacement;
use crate::rl::rollout_corr::Correction;
use crate::rng::{CounterRng, counter_hash};
use crate::run::StepMetrics;
use crate::run::metric_keys::{GRAD_NORM, LR, SKIPPED_UPDATES};

/// Salt of the mini-batch shuffling streams (XORed into the seed).
const MINIBATCH_SALT: u64 = 0x4d49_4e49;

/// What the update trains on.
pub(super) struct UpdateData<'a> {
    /// The step's samples.
    pub samples: &'a [Sample],
    /// Their advantages.
    pub advantages: &'a [f64],
    /// Their old and reference log-probs.
    pub log_probs: &'a StepLogProbs,
    /// How they are cut.
    pub batches: &'a MiniBatches,
    /// Rollout correction of the samples (`None`: off).
    pub correction: Option<&'a Correction>,
}

/// What the update returns besides the trained policy.
pub(super) struct UpdateOutcome {
    /// The `actor/*` metrics.
    pub metrics: StepMetrics,
    /// On-policy (no separate old log-probs): the log-probs the first epoch's loss saw, which
    /// are the old ones, for the mismatch metrics. `None` otherwise.
    pub on_policy_log_probs: Option<PerMicroBatch>,
}

/// What the update changes: the trained policy and its optimizer.
pub(super) struct Learner<'a> {
    /// The policy (the optimizer's clean weights).
    pub policy: &'a mut Qwen2ForCausalLM,
    /// AdamW.
    pub optim: &'a mut ModuleOptimizer,
    /// The step's learning rate.
    pub lr: f64,
}

/// Runs the PPO epochs of a step; the gradients come from `train_model` (the training phase's
/// model of the step), the updates go to the learner's policy.
pub(super) fn ppo_update(
    ctx: &RunContext,
    learner: Learner,
    train_model: &Qwen2ForCausalLM,
    step: u64,
    data: &UpdateData,
) -> Result<UpdateOutcome, TrainError> {
    let cfg = ctx.config;
    let mut totals = ActorTotals::default();
    let on_policy = data.log_probs.old.is_none();
    let mut first_log_probs: PerMicroBatch = vec![Vec::new(); data.batches.len()];
    for epoch in 0..cfg.batch.ppo_epochs {
        for mb in epoch_order(data.batches.len(), cfg.trainer.seed, step, epoch) {
            let (grads, metrics, log_probs) = mini_batch_gradients(ctx, train_model, data, mb)?;
            if on_policy && epoch == 0 {
                first_log_probs[mb] = log_probs;
            }
            for (k, v) in metrics {
                *totals.sums.entry(k).or_default() += v;
            }
            let grads = if cfg.optim.grad_clip > 0.0 {
                match clip_grad_norm(learner.policy, grads, cfg.optim.grad_clip)
                    .context("gradient clipping")?
                {
                    ClippedGrads::Finite { grads, report } => {
                        *totals.sums.entry(GRAD_NORM.into()).or_default() += report.grad_norm;
                        Some(grads)
                    }
                    ClippedGrads::NonFinite { .. } => None,
                }
            } else {
                Some(grads)
            };
            match grads {
                Some(grads) => {
                    *learner.policy = learner
                        .optim
                        .step(learner.lr, learner.policy.clone(), grads);
                    if let Some(weight) = non_finite_weight(learner.policy) {
                        return Err(TrainError::NonFiniteWeights {
                            step,
                            weight: Box::new(weight),
                            lr: cfg.optim.lr,
                            grad_clip: cfg.optim.grad_clip,
                        });
                    }
                    totals.updates += 1;
                }
                None => totals.skipped += 1,
            }
        }
    }
    Ok(UpdateOutcome {
        metrics: totals.into_metrics(learner.lr),
        on_policy_log_probs: on_policy.then_some(first_log_probs),
    })
}

/// The order PPO epoch `epoch` visits the `n` mini-batches in: in order in the first epoch,
/// then a Fisher-Yates shuffle keyed by (seed, step, epoch).
fn epoch_order(n: usize, seed: u64, step: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if epoch > 0 {
        let mut rng = CounterRng::new(counter_hash(
            seed ^ MINIBATCH_SALT,
            step * 64 + epoch as u64,
        ));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    order
}

/// The gradients of mini-batch `mb` (this worker's micro-batches, summed over the workers), its
/// loss metrics (summed likewise) and the log-probs the loss saw (per micro-batch, `None` for
/// the other workers').
fn mini_batch_gradients(
    ctx: &RunContext,
    train_model: &Qwen2ForCausalLM,
    data: &UpdateData,
    mb: usize,
) -> Result<(GradientsParams, StepMetrics, Vec<Option<Tensor<2>>>), TrainError> {
    let cfg = ctx.config;
    let micro = data.batches.micro(mb);
    // Each sample's tokens in the loss: rejected ones leave every denominator.
    let loss_len = |i: usize| match data.correction {
        Some(c) => c.keep[i].iter().filter(|&&k| k).count(),
        None => data.samples[i].response.len(),
    };
    let rows = || micro.iter().flat_map(Clone::clone);
    // The loss is normalized by the whole mini-batch, every worker's micro-batches included.
    let counts = MiniBatchCounts {
        micro_batches: micro.len(),
        tokens: rows().map(loss_len).sum(),
        sequences: rows().filter(|&i| loss_len(i) > 0).count(),
    };
    let reference = match cfg.algorithm.kl.placement {
        KlPlacement::Loss => data.log_probs.reference.as_ref(),
        _ => None,
    };
    let micros: Vec<PolicyMicroBatch> = micro
        .iter()
        .enumerate()
        .filter(|(u, _)| data.batches.owns(*u))
        .map(|(u, range)| PolicyMicroBatch {
            batch: sequences(ctx, &data.samples[range.clone()]),
            advantages: data.advantages[range.clone()].to_vec(),
            old_log_prob: data.log_probs.old.as_ref().and_then(|o| o[mb][u].clone()),
            ref_log_prob: reference.and_then(|r| r[mb][u].clone()),
            correction: data.correction.map(|c| RowCorrection {
                weights: c.weights.as_ref().map(|w| w[range.clone()].to_vec()),
                keep: c.keep[range.clone()].to_vec(),
            }),
        })
        .collect();
    let settings = PolicyLossSettings {
        actor: &cfg.actor,
        kl: &cfg.algorithm.kl,
        entropy_coeff: cfg.algorithm.entropy_coeff,
        loss_scale_factor: (cfg.actor.loss_agg_mode == AggMode::SeqMeanTokenSumNorm
            && cfg.actor.loss_scale_factor.is_none())
        .then_some(cfg.rollout.max_response_len as f64),
    };
    let out = policy_gradients_of(train_model, &micros, counts, &settings).context("actor loss")?;
    let mut mine = out.log_probs.into_iter();
    let log_probs = (0..micro.len())
        .map(|u| data.batches.owns(u).then(|| mine.next()).flatten())
        .collect();
    // Data-parallel: the mini-batch's gradients and loss metrics are the sums of the workers'
    // (the identity for one process).
    let grads = sum_gradients(ctx.collective, train_model, out.grads);
    Ok((grads, sum_metrics(ctx.collective, &out.metrics), log_probs))
}

/// The `actor/*` metrics of a step's updates, summed, and how many updates were applied or
/// skipped.
#[derive(Debug, Default)]
struct ActorTotals {
    sums: StepMetrics,
    updates: usize,
    skipped: usize,
}

impl ActorTotals {
    /// The step's metrics: each loss metric averaged over the mini-batch steps, the gradient norm
    /// over the applied updates, the learning rate (when a mini-batch ran), and the skipped
    /// updates when there were any.
    fn into_metrics(self, lr: f64) -> StepMetrics {
        let steps = self.updates + self.skipped;
        let mut metrics: StepMetrics = self
            .sums
            .into_iter()
            .map(|(k, v)| {
                let denom = if k == GRAD_NORM {
                    self.updates.max(1)
                } else {
                    steps
                };
                (k, v / denom.max(1) as f64)
            })
            .collect();
        if steps > 0 {
            metrics.insert(LR.into(), lr);
        }
        if self.skipped > 0 {
            metrics.insert(SKIPPED_UPDATES.into(), self.skipped as f64);
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::metric_keys::PG_LOSS;

    #[test]
    fn the_first_epoch_is_in_order_later_ones_are_seeded_permutations() {
        assert_eq!(epoch_order(5, 0, 3, 0), vec![0, 1, 2, 3, 4]);
        let shuffled = epoch_order(8, 0, 3, 1);
        let mut sorted = shuffled.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        assert_eq!(shuffled, epoch_order(8, 0, 3, 1), "reproducible");
        assert_ne!(
            shuffled,
            epoch_order(8, 0, 3, 2),
            "each epoch its own order"
        );
        assert!(epoch_order(0, 0, 1, 1).is_empty());
    }

    #[test]
    fn loss_metrics_average_over_every_step_and_the_grad_norm_over_applied_ones() {
        let totals = ActorTotals {
            sums: [(PG_LOSS.to_string(), 0.9), (GRAD_NORM.to_string(), 4.0)]
                .into_iter()
                .collect(),
            updates: 2,
            skipped: 1,
        };
        let m = totals.into_metrics(1e-3);
        assert!((m[PG_LOSS] - 0.3).abs() < 1e-12, "{m:?}");
        assert_eq!(m[GRAD_NORM], 2.0);
        assert_eq!(m[LR], 1e-3);
        assert_eq!(m[SKIPPED_UPDATES], 1.0);
        let none = ActorTotals::default().into_metrics(1e-3);
        assert!(none.is_empty(), "no mini-batch ran: {none:?}");
        let clean = ActorTotals {
            sums: [(PG_LOSS.to_string(), 0.5)].into_iter().collect(),
            updates: 1,
            skipped: 0,
        };
        assert!(!clean.into_metrics(1e-3).contains_key(SKIPPED_UPDATES));
    }
}
