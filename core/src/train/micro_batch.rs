//! Gradient accumulation: one PPO mini-batch as several forward/backward passes
//! (`batch.ppo_micro_batch_size`, verl's name), whose summed gradients are the mini-batch's.
//!
//! Each micro-batch's loss is aggregated with the *mini-batch's* normalizers
//! ([`AggNorm::batch_num_tokens`] for `token-mean`, [`AggNorm::global_batch_size`] for the
//! seq-mean modes; `seq-mean-token-sum-norm` divides by a constant anyway), so the sum of the
//! micro-batch losses is the mini-batch loss and the sum of their gradients is its gradient, up
//! to float rounding (tests/micro_batch.rs: 1e-5). Only one micro-batch's activations are alive
//! at a time. A mini-batch in one piece keeps its own counts (bit for bit the earlier trainer).

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Tensor, TensorData};

use super::sequence::{SequenceBatch, response_logprobs};
use crate::model::Qwen2ForCausalLM;
use crate::rl::RlError;
use crate::rl::actor_loss::{ActorLossInputs, compute_actor_loss};
use crate::rl::agg_loss::AggNorm;
use crate::rl::kl::KlConfig;
use crate::rl::metrics::{ENTROPY, KL_COEF, KL_LOSS, PG_LOSS};
use crate::rl::policy_loss::PolicyLossConfig;
use crate::run::dir::StepMetrics;

/// One micro-batch: its sequences and what the loss needs besides the policy's log-probs.
pub struct PolicyMicroBatch {
    /// The sequences.
    pub batch: SequenceBatch,
    /// One advantage per sequence.
    pub advantages: Vec<f64>,
    /// The rollout policy's log-probs (`None`: on-policy, the current log-probs detached).
    pub old_log_prob: Option<Tensor<2>>,
    /// The reference policy's log-probs (KL as a loss term).
    pub ref_log_prob: Option<Tensor<2>>,
    /// Rollout correction of these rows (`None`: off): each row's token weights and kept
    /// tokens, unpadded.
    pub correction: Option<RowCorrection>,
}

/// Rollout correction (docs/spec.md section 9) of a micro-batch's rows.
#[derive(Clone, Debug, PartialEq)]
pub struct RowCorrection {
    /// Per row, each response token's IS weight (`None`: no weights).
    pub weights: Option<Vec<Vec<f64>>>,
    /// Per row, whether each response token stays in the loss.
    pub keep: Vec<Vec<bool>>,
}

impl PolicyMicroBatch {
    /// Each row's response tokens in the loss: all of them, or those rejection kept.
    pub fn loss_lengths(&self) -> Vec<usize> {
        match &self.correction {
            Some(c) => c
                .keep
                .iter()
                .map(|r| r.iter().filter(|&&k| k).count())
                .collect(),
            None => self.batch.response_lengths.clone(),
        }
    }

    /// The loss mask (the response mask without the rejected tokens) and the IS weights, as
    /// `[rows, R]` tensors, padding 0.
    fn mask_and_weights(&self) -> (Tensor<2>, Option<Tensor<2>>) {
        let Some(c) = &self.correction else {
            return (self.batch.response_mask.clone(), None);
        };
        let (rows, width) = (self.batch.batch_size(), self.batch.response_width());
        let device = self.batch.response_mask.device();
        let padded = |row: &mut dyn Iterator<Item = f32>| {
            let mut v: Vec<f32> = row.take(width).collect();
            v.resize(width, 0.0);
            v
        };
        let mask: Vec<f32> = c
            .keep
            .iter()
            .flat_map(|r| padded(&mut r.iter().map(|&k| f32::from(u8::from(k)))))
            .collect();
        let weights = c.weights.as_ref().map(|w| {
            let v: Vec<f32> = w
                .iter()
                .flat_map(|r| padded(&mut r.iter().map(|&x| x as f32)))
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [rows, width]), &device)
        });
        (
            Tensor::<2>::from_data(TensorData::new(mask, [rows, width]), &device),
            weights,
        )
    }
}

/// The loss settings of the actor update.
pub struct PolicyLossSettings<'a> {
    /// The clipped policy loss and its aggregation.
    pub actor: &'a PolicyLossConfig,
    /// The KL term.
    pub kl: &'a KlConfig,
    /// The entropy bonus coefficient.
    pub entropy_coeff: f64,
    /// `seq-mean-token-sum-norm`'s constant when the actor config gives none.
    pub loss_scale_factor: Option<f64>,
}

/// Metrics that are losses normalized by the whole mini-batch: they add up over micro-batches.
const SUMMED: [&str; 3] = [PG_LOSS, ENTROPY, KL_LOSS];

/// What the loss of a micro-batch is normalized by: counts over the whole mini-batch, of which
/// a worker may hold only some micro-batches (data-parallel training).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiniBatchCounts {
    /// Micro-batches in the mini-batch.
    pub micro_batches: usize,
    /// Response tokens in the mini-batch.
    pub tokens: usize,
    /// Sequences with at least one response token.
    pub sequences: usize,
}

impl MiniBatchCounts {
    /// The counts of a mini-batch made of `micros` (the tokens in the loss: rejected ones not).
    pub fn of<'a>(micros: impl IntoIterator<Item = &'a PolicyMicroBatch>) -> Self {
        let mut c = Self {
            micro_batches: 0,
            tokens: 0,
            sequences: 0,
        };
        for m in micros {
            let lengths = m.loss_lengths();
            c.micro_batches += 1;
            c.tokens += lengths.iter().sum::<usize>();
            c.sequences += lengths.iter().filter(|&&l| l > 0).count();
        }
        c
    }
}

/// What [`policy_gradients_of`] returns.
pub struct MiniBatchGradients {
    /// The summed gradients.
    pub grads: GradientsParams,
    /// The loss metrics.
    pub metrics: StepMetrics,
    /// Each micro-batch's response log-probs under `model` as the loss saw them (detached,
    /// `[rows, R]`): the old log-probs when the update is on-policy.
    pub log_probs: Vec<Tensor<2>>,
}

/// The gradients of the mini-batch made of `micros` with respect to `model`'s trainable
/// parameters, and its loss metrics (losses summed over micro-batches, token means weighted by
/// each micro-batch's share of the response tokens, constants as they are).
pub fn policy_gradients(
    model: &Qwen2ForCausalLM,
    micros: &[PolicyMicroBatch],
    settings: &PolicyLossSettings,
) -> Result<(GradientsParams, StepMetrics), RlError> {
    let counts = MiniBatchCounts::of(micros);
    policy_gradients_of(model, micros, counts, settings).map(|g| (g.grads, g.metrics))
}

/// [`policy_gradients`] of the micro-batches `micros`, part of a mini-batch with `counts` (a
/// data-parallel worker's share): every loss is normalized by the whole mini-batch, so the sum
/// over the workers of their gradients and metrics is the mini-batch's.
pub fn policy_gradients_of(
    model: &Qwen2ForCausalLM,
    micros: &[PolicyMicroBatch],
    counts: MiniBatchCounts,
    settings: &PolicyLossSettings,
) -> Result<MiniBatchGradients, RlError> {
    let several = counts.micro_batches > 1;
    let tokens_of = |m: &PolicyMicroBatch| m.loss_lengths().iter().sum::<usize>();
    let total_tokens = counts.tokens;
    let norm = AggNorm {
        batch_num_tokens: several.then_some(total_tokens.max(1) as f64),
        global_batch_size: several.then_some(counts.sequences.max(1) as f64),
        loss_scale_factor: settings.loss_scale_factor,
    };
    let mut accumulated = GradientsAccumulator::<Qwen2ForCausalLM>::new();
    let mut metrics = StepMetrics::new();
    let mut log_probs = Vec::with_capacity(micros.len());
    for micro in micros {
        let batch = &micro.batch;
        let rows = batch.batch_size();
        if micro.advantages.len() != rows {
            return Err(RlError::InvalidInput(format!(
                "{} advantages for a micro-batch of {rows} sequences",
                micro.advantages.len()
            )));
        }
        let (logp, entropy) = response_logprobs(model, batch, true);
        log_probs.push(logp.clone().detach());
        let (response_mask, rollout_is_weights) = micro.mask_and_weights();
        let width = batch.response_width();
        let adv: Vec<f32> = micro
            .advantages
            .iter()
            .flat_map(|&a| std::iter::repeat_n(a as f32, width))
            .collect();
        let device = logp.device();
        let adv = Tensor::<2>::from_data(TensorData::new(adv, [rows, width]), &device);
        let inputs = ActorLossInputs {
            old_log_prob: micro
                .old_log_prob
                .clone()
                .unwrap_or_else(|| logp.clone().detach()),
            log_prob: logp,
            advantages: adv,
            response_mask,
            rollout_is_weights,
            ref_log_prob: micro.ref_log_prob.clone(),
            entropy,
        };
        let (loss, m) = compute_actor_loss(
            inputs,
            settings.actor,
            settings.kl,
            settings.entropy_coeff,
            &norm,
        )?;
        let share = if several {
            tokens_of(micro) as f64 / total_tokens.max(1) as f64
        } else {
            1.0
        };
        for (k, v) in m {
            let w = if !several || SUMMED.contains(&k) {
                1.0
            } else if k == KL_COEF {
                1.0 / counts.micro_batches as f64
            } else {
                share
            };
            *metrics.entry(k.to_string()).or_default() += w * v;
        }
        let grads = GradientsParams::from_grads(loss.backward(), model);
        accumulated.accumulate(model, grads);
    }
    Ok(MiniBatchGradients {
        grads: accumulated.grads(),
        metrics,
        log_probs,
    })
}
