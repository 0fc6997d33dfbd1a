//! What a run reports while it goes: its plan before the first step ([`RunPlan`], with the
//! one-line [`describe`] of its semantics and the sizes of the model) and an [`Event`] after each
//! evaluation, step and checkpoint (and for each incomplete checkpoint a resumed run passes over).
//! The CLI turns them into its progress bar and lines.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::config::{FinetuneMode, TrainConfig};
use super::evaluate::EvalResult;
use super::memory::MemoryEstimate;
use crate::model::Qwen2ForCausalLM;
use crate::rl::rollout_corr::{IsLevel, RsLevel};
use crate::run::StepMetrics;

/// What the run is about to do, reported before it starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPlan {
    /// The model folder.
    pub model: String,
    /// Training prompts.
    pub train_problems: usize,
    /// Held-out prompts per evaluation.
    pub eval_problems: usize,
    /// Generation batches per pass over the data.
    pub steps_per_epoch: u64,
    /// Prompts of each pass never used (the last incomplete generation batch).
    pub remainder: usize,
    /// Epochs.
    pub epochs: u64,
    /// `steps_per_epoch * epochs`: the length the schedules span.
    pub total_steps: u64,
    /// Steps this run executes (fewer with `trainer.max_steps`).
    pub run_steps: u64,
    /// The step a resumed run starts after.
    pub start_step: u64,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// A one-line description of quantization, fine-tuning and noise.
    pub description: String,
    /// How the base weights are held: `packed` (codes + scales; with how a pre-quantized
    /// checkpoint's were read) or `latent` (f32 tensors).
    pub base_storage: String,
    /// Bytes of the model's projection weights and embedding table as held (codes, f32 values
    /// and cached `Q(W)`s), the policy's; a reference policy shares or packs them.
    pub weight_bytes: usize,
    /// The estimated memory of the run (checked against the machine on the CPU backends).
    pub memory: MemoryEstimate,
    /// Seconds spent loading and preparing the model (before the first evaluation).
    pub load_s: f64,
}

/// Progress reported while the run goes.
pub enum Event<'a> {
    /// A resumed run passed over a checkpoint folder that is not complete (before the plan; one
    /// event per folder, latest first).
    SkippedCheckpoint {
        /// The folder.
        path: &'a Path,
        /// What is wrong with it.
        reason: &'a str,
    },
    /// Before the first step.
    Plan(&'a RunPlan),
    /// An evaluation finished.
    Eval {
        /// The step (0 before training).
        step: u64,
        /// The result in the trained quantization mode.
        result: &'a EvalResult,
    },
    /// A step finished.
    Step {
        /// The step.
        step: u64,
        /// Its metrics.
        metrics: &'a StepMetrics,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// The step.
        step: u64,
        /// Where.
        path: &'a Path,
    },
    /// An older checkpoint was removed (`trainer.max_actor_ckpt_to_keep`).
    CheckpointRemoved {
        /// The folder.
        path: &'a Path,
    },
}

/// A one-line description of the run's semantics.
pub fn describe(config: &TrainConfig) -> String {
    let quant = match config.quant.mode {
        crate::qat::QuantMode::Bf16 => "BF16".to_string(),
        m => format!(
            "{} {}",
            config.quant.weights.label(),
            m.name().to_uppercase()
        ),
    };
    let ft = match config.finetune.mode {
        FinetuneMode::Lora => format!(
            "LoRA r{} a{}",
            config.finetune.lora.rank, config.finetune.lora.alpha
        ),
        FinetuneMode::Full => "full fine-tuning".into(),
    };
    let aqn = config.aqn.as_ref().map_or("no AQN".to_string(), |a| {
        format!(
            "AQN {} {}->{} K={}{}",
            a.schedule.kind,
            a.schedule.sigma_start,
            a.schedule.sigma_end,
            a.schedule.stages,
            a.rin
                .as_ref()
                .map_or(String::new(), |r| format!(" RIN {}", r.policy.label()))
        )
    });
    let hw = config
        .hw_noise
        .as_ref()
        .map_or("no HW noise".to_string(), |h| {
            format!("HW noise {} ({})", h.model, h.phase)
        });
    let rc = &config.algorithm.rollout_correction;
    let mut correction = String::new();
    if rc.rollout_is != IsLevel::Off {
        correction += &format!(" | {} TIS C={}", rc.rollout_is, rc.rollout_is_threshold);
    }
    if let (true, Some((lo, hi))) = (rc.rollout_rs != RsLevel::Off, rc.rs_bounds()) {
        correction += &format!(" | {} rejection [{lo}, {hi}]", rc.rollout_rs);
    }
    format!(
        "{} | {quant} | {ft} | {aqn} | {hw} | {}{correction}",
        config.experiment.id,
        if config.algorithm.reward.kind == crate::task::reward::RewardKind::Dapo {
            "DAPO"
        } else {
            "GRPO"
        }
    )
}

/// Counts the trainable parameters (those that require gradients).
pub(super) fn trainable_params(model: &Qwen2ForCausalLM) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0 += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Bytes of the projection weights and the embedding table as held.
pub(super) fn weight_bytes(model: &Qwen2ForCausalLM) -> usize {
    let mut bytes = 0;
    model.visit_linears(|site, l| {
        // A tied latent head is the embedding matrix, counted once below.
        if !(site.layer.is_none() && model.config().tie_word_embeddings && !l.is_packed()) {
            bytes += l.weight_bytes();
        }
    });
    bytes
        + match (model.embedding_packed(), model.embedding_weight()) {
            (Some(p), _) if !model.config().tie_word_embeddings => p.storage_bytes(),
            (None, Some(w)) => 4 * w.shape().num_elements(),
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::ConfigSources;

    #[test]
    fn describe_names_quantization_finetuning_noise_and_algorithm() {
        let config = TrainConfig::resolve(&ConfigSources {
            profile: "tiny".into(),
            preset: "e3a".into(),
            ..Default::default()
        })
        .unwrap();
        let d = describe(&config);
        assert!(d.starts_with(&config.experiment.id), "{d}");
        assert!(d.contains("full fine-tuning") && d.contains("DAPO"), "{d}");
        let lora = TrainConfig::resolve(&ConfigSources {
            profile: "tiny".into(),
            preset: "default".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(describe(&lora).contains("LoRA r"), "{}", describe(&lora));
        let mut tis = lora.clone();
        tis.algorithm.rollout_correction.rollout_is = IsLevel::Token;
        tis.algorithm.rollout_correction.rollout_rs = RsLevel::Geometric;
        tis.algorithm.rollout_correction.rollout_rs_threshold = Some(1.5);
        let d = describe(&tis);
        assert!(
            d.ends_with("| token TIS C=2 | geometric rejection [0.6666666666666666, 1.5]"),
            "{d}"
        );
    }
}
