//! The rollout-training mismatch of a step (docs/spec.md section 9): the log-probs the rollout
//! policy sampled each token with (recorded by generation) against the training policy's old
//! log-probs, as verl's off-policy diagnostics and IS metrics every step, and, when
//! `algorithm.rollout_correction` is on, the weights and rejected tokens the update applies.
//!
//! The old log-probs come from step 2 when it computes them (off-policy, or rollout correction
//! on); on-policy they are the log-probs the update's first (only) epoch saw before its optimizer
//! step, so the metrics cost no extra forward pass.

use super::collective::all_gather_json;
use super::error::{Context, TrainError};
use super::log_probs::PerMicroBatch;
use super::mini_batches::MiniBatches;
use super::rollout::Sample;
use super::setup::RunContext;
use crate::rl::rollout_corr::Correction;
use crate::rl::rollout_mismatch::{PairedLogProbs, mismatch_metrics};
use crate::run::StepMetrics;

/// Every sample's old log-probs on the host, unpadded: this worker's micro-batches copied from
/// `per_micro`, the others' gathered from their workers.
pub(super) fn host_rows(
    ctx: &RunContext,
    batches: &MiniBatches,
    per_micro: &PerMicroBatch,
    samples: &[Sample],
) -> Vec<Vec<f64>> {
    let mut mine: Vec<(usize, Vec<f64>)> = Vec::new();
    for (micros, tensors) in batches.iter().zip(per_micro) {
        for (range, tensor) in micros.iter().zip(tensors) {
            let Some(tensor) = tensor else { continue };
            let [_, width] = tensor.dims();
            let values = tensor
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 log-probs");
            for (r, i) in range.clone().enumerate() {
                let len = samples[i].response.len();
                let row = &values[r * width..r * width + len];
                mine.push((i, row.iter().map(|&x| f64::from(x)).collect()));
            }
        }
    }
    let mut rows = vec![Vec::new(); samples.len()];
    for (i, row) in all_gather_json(ctx.collective, &mine).into_iter().flatten() {
        rows[i] = row;
    }
    rows
}

/// The rollout policy's log-probs of the samples.
fn rollout_rows(samples: &[Sample]) -> Vec<Vec<f64>> {
    samples
        .iter()
        .map(|s| s.rollout_log_probs.iter().map(|&x| f64::from(x)).collect())
        .collect()
}

/// The step's correction of `samples` (IS weights, kept tokens, their metrics) from their old
/// log-probs `old`: what the update applies when rollout correction is on, only the metrics
/// otherwise.
pub(super) fn correction(
    ctx: &RunContext,
    old: &[Vec<f64>],
    samples: &[Sample],
) -> Result<Correction, TrainError> {
    let rollout = rollout_rows(samples);
    ctx.config
        .algorithm
        .rollout_correction
        .correct(PairedLogProbs {
            old,
            rollout: &rollout,
        })
        .context("rollout correction")
}

/// The step's `rollout_corr/*` metrics: the off-policy diagnostics and the correction's.
pub(super) fn step_metrics(
    old: &[Vec<f64>],
    samples: &[Sample],
    correction: &Correction,
) -> Result<StepMetrics, TrainError> {
    let rollout = rollout_rows(samples);
    let diagnostics = mismatch_metrics(PairedLogProbs {
        old,
        rollout: &rollout,
    })
    .context("rollout mismatch metrics")?;
    Ok(diagnostics
        .into_iter()
        .chain(correction.metrics.clone())
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}
