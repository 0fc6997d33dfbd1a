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

/// The step's log-probs on the host, per sample and unpadded: the training policy's old ones and
/// the rollout policy's, each converted once.
pub(super) struct StepRows {
    old: Vec<Vec<f64>>,
    rollout: Vec<Vec<f64>>,
}

impl StepRows {
    /// The old log-probs of every sample (this worker's micro-batches copied from `per_micro`,
    /// the others' gathered from their workers) beside the samples' rollout log-probs.
    pub fn gather(
        ctx: &RunContext,
        batches: &MiniBatches,
        per_micro: &PerMicroBatch,
        samples: &[Sample],
    ) -> Self {
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
        let mut old = vec![Vec::new(); samples.len()];
        for (i, row) in all_gather_json(ctx.collective, &mine).into_iter().flatten() {
            old[i] = row;
        }
        let rollout = samples
            .iter()
            .map(|s| s.rollout_log_probs.iter().map(|&x| f64::from(x)).collect())
            .collect();
        Self { old, rollout }
    }

    fn paired(&self) -> PairedLogProbs<'_> {
        PairedLogProbs {
            old: &self.old,
            rollout: &self.rollout,
        }
    }

    /// The step's correction (IS weights, kept tokens, their metrics): what the update applies
    /// when rollout correction is on, only the metrics otherwise.
    pub fn correction(&self, ctx: &RunContext) -> Result<Correction, TrainError> {
        ctx.config
            .algorithm
            .rollout_correction
            .correct(self.paired())
            .context("rollout correction")
    }

    /// The step's `rollout_corr/*` metrics: the off-policy diagnostics and the correction's.
    pub fn metrics(&self, correction: &Correction) -> Result<StepMetrics, TrainError> {
        let diagnostics = mismatch_metrics(self.paired()).context("rollout mismatch metrics")?;
        Ok(diagnostics
            .into_iter()
            .chain(correction.metrics.clone())
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }
}
