//! Old and reference log-probs (step 2 of the trainer): the response tokens' log-probs under the
//! training policy before the update (PPO's `old_log_prob`) and under the frozen reference
//! policy (the KL term's), computed without gradients, one tensor per micro-batch of
//! [`MiniBatches`] that this worker owns.
//!
//! When the step's data is used for exactly one deterministic update of the training policy,
//! the old log-probs equal the current ones and the loss takes them from its own forward pass
//! (verl's on-policy shortcut): no separate pass is made.

use burn::module::Module;
use burn::tensor::Tensor;

use super::config::TrainConfig;
use super::mini_batches::MiniBatches;
use super::rollout::{Sample, sequences};
use super::sequence::response_logprobs;
use super::setup::RunContext;
use crate::model::Qwen2ForCausalLM;
use crate::phase::Phase;

/// Per mini-batch and micro-batch, the `[rows, response tokens]` log-probs of the micro-batches
/// this worker owns (`None` for the other workers').
pub(super) type PerMicroBatch = Vec<Vec<Option<Tensor<2>>>>;

/// Log-probs of `samples` under `model` (no gradient), cut as `batches` says.
pub(super) fn logprobs(
    ctx: &RunContext,
    batches: &MiniBatches,
    model: &Qwen2ForCausalLM,
    samples: &[Sample],
) -> PerMicroBatch {
    let model = model.valid();
    batches
        .iter()
        .map(|micros| {
            micros
                .iter()
                .enumerate()
                .map(|(u, r)| {
                    batches.owns(u).then(|| {
                        response_logprobs(&model, &sequences(ctx, &samples[r.clone()]), false).0
                    })
                })
                .collect()
        })
        .collect()
}

/// Whether the step's data makes exactly one update of a deterministic training policy (one PPO
/// epoch, one mini-batch, no LoRA dropout, no HW noise in training), so that the old log-probs
/// are the policy's current ones. Rollout correction needs them before the update (its weights
/// and rejected tokens enter the loss), so it always computes them.
pub(super) fn on_policy(config: &TrainConfig) -> bool {
    !config.algorithm.rollout_correction.enabled()
        && config.batch.ppo_epochs == 1
        && config.batch.mini() == config.batch.train()
        && config.finetune.lora.dropout == 0.0
        && !config
            .hw_noise
            .as_ref()
            .is_some_and(|h| h.phase.includes(Phase::Training))
}

/// The log-probs a step's update reads.
pub(super) struct StepLogProbs {
    /// Under the training policy before the update (`None` on-policy).
    pub old: Option<PerMicroBatch>,
    /// Under the reference policy (`None` without a KL term).
    pub reference: Option<PerMicroBatch>,
}

impl StepLogProbs {
    /// Both, for `samples`, under the training model and the reference.
    pub fn compute(
        ctx: &RunContext,
        batches: &MiniBatches,
        train_model: &Qwen2ForCausalLM,
        reference: Option<&Qwen2ForCausalLM>,
        samples: &[Sample],
    ) -> Self {
        Self {
            old: (!on_policy(ctx.config)).then(|| logprobs(ctx, batches, train_model, samples)),
            reference: reference.map(|r| logprobs(ctx, batches, r, samples)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::ConfigSources;

    fn config(sets: &[&str]) -> TrainConfig {
        TrainConfig::resolve(&ConfigSources {
            profile: "tiny".into(),
            preset: "default".into(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn one_deterministic_update_per_step_is_on_policy() {
        assert!(on_policy(&config(&[])));
        assert!(!on_policy(&config(&["batch.ppo_epochs=2"])));
        assert!(!on_policy(&config(&["finetune.lora.dropout=0.1"])));
        assert!(!on_policy(&config(&[
            "algorithm.rollout_correction.rollout_is=\"token\""
        ])));
    }
}
