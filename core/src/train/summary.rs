//! `summary.json`: what a finished run reports, in the terms of the seed's experiment table
//! (`aqn-native report` reads it).

use serde::{Deserialize, Serialize};

use super::config::{Category, FinetuneMode, TrainConfig};
use crate::formats::QuantFormat;
use crate::qat::QuantMode;
use crate::schedule::ScheduleKind;
use crate::task::reward::RewardKind;

/// The final summary of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The seed table's Exp ID.
    pub exp_id: String,
    /// HW, Quant or LoRA.
    pub category: Category,
    /// A TensorBoard-style name in the seed's pattern, ending in the score.
    pub run_name: String,
    /// Held-out accuracy at the final step, in the trained quantization mode (the run's score).
    pub score: f64,
    /// The step of that evaluation.
    pub score_step: u64,
    /// Accuracy of the base model before training (step 0).
    pub base_score: f64,
    /// Best evaluation and its step.
    pub peak: (f64, u64),
    /// Every evaluation: (step, accuracy).
    pub eval_history: Vec<(u64, f64)>,
    /// Epochs.
    pub epochs: u64,
    /// Steps run.
    pub steps: u64,
    /// `No`, `Yes` (AQN) or `RIN` (AQN with RIN multipliers).
    pub aqn: String,
    /// Whether the AQN schedule is epoch-aware (`None` without AQN).
    pub epoch_aware: Option<bool>,
    /// The RIN policy, if any.
    pub rin_mode: Option<String>,
    /// Whether LoRA adapters were trained.
    pub lora: bool,
    /// `BF16`, `MXFP4`, `NVFP4`, `FP8`.
    pub dtype: String,
    /// `W4A16` or `W4A4` (`None` for BF16).
    pub quant_mode: Option<String>,
    /// The preset's notes.
    pub notes: String,
    /// The run's seed.
    pub seed: u64,
    /// Wall time in seconds.
    pub wall_time_s: f64,
    /// The run folder.
    pub run_dir: String,
    /// `DAPO` or `GRPO`.
    pub algorithm: String,
    /// The AQN schedule's start and end sigma.
    pub sigma: Option<(f64, f64)>,
    /// The HW-noise model, if any.
    pub hw_noise: Option<String>,
}

/// How the seed's table labels a run's semantics.
struct Labels {
    /// `BF16`, `MXFP4`, `NVFP4`, `FP8`.
    dtype: &'static str,
    /// `W4A16` or `W4A4` (`None` for BF16).
    quant_mode: Option<String>,
    /// The RIN policy, if any.
    rin_mode: Option<String>,
    /// `No`, `Yes` or `RIN`.
    aqn: &'static str,
    /// `DAPO` or `GRPO`.
    algorithm: &'static str,
}

impl Labels {
    fn of(config: &TrainConfig) -> Self {
        let quantized = config.quant.mode != QuantMode::Bf16;
        let dtype = if quantized {
            match config.quant.weights.format {
                QuantFormat::Mxfp4 => "MXFP4",
                QuantFormat::Nvfp4 => "NVFP4",
                QuantFormat::Fp8 => "FP8",
                QuantFormat::Bf16 => "BF16",
            }
        } else {
            "BF16"
        };
        let rin_mode = config
            .aqn
            .as_ref()
            .and_then(|a| a.rin.as_ref())
            .map(|r| r.policy.label());
        let aqn = match (&config.aqn, &rin_mode) {
            (None, _) => "No",
            (Some(_), None) => "Yes",
            (Some(_), Some(_)) => "RIN",
        };
        let algorithm = if config.algorithm.reward.kind == RewardKind::Dapo {
            "DAPO"
        } else {
            "GRPO"
        };
        Self {
            dtype,
            quant_mode: quantized.then(|| config.quant.mode.name().to_uppercase()),
            rin_mode,
            aqn,
            algorithm,
        }
    }

    /// The TensorBoard-style name in the seed's pattern, ending in the score.
    fn run_name(&self, config: &TrainConfig, score: f64) -> String {
        let mut name = vec![
            match config.experiment.category {
                Category::Hw => "HW".to_string(),
                Category::Quant => "Q".to_string(),
                Category::Lora => "LoRA".to_string(),
            },
            self.dtype.to_string(),
        ];
        if let Some(m) = &self.quant_mode
            && m != "W4A16"
        {
            name.push(m.clone());
        }
        name.push(self.algorithm.to_string());
        if config.finetune.mode == FinetuneMode::Full && config.experiment.category != Category::Hw
        {
            name.push("fullFT".into());
        }
        name.push(format!("{}ep", config.experiment.epochs));
        if let Some(h) = &config.hw_noise {
            name.push(format!("noise-{}", h.model));
        }
        match (self.aqn, &self.rin_mode) {
            ("Yes", _) => name.push("AQN".into()),
            ("RIN", Some(r)) => name.push(format!("RIN-{}", r.split(':').next().unwrap_or(r))),
            _ => {}
        }
        name.push(format!("{:.2}", 100.0 * score));
        name.join("_")
    }
}

impl RunSummary {
    /// The summary of a run of `config` with these evaluations.
    pub fn new(
        config: &TrainConfig,
        eval_history: &[(u64, f64)],
        steps: u64,
        wall_time_s: f64,
        run_dir: &str,
    ) -> Self {
        let (score_step, score) = eval_history.last().copied().unwrap_or((0, 0.0));
        let base_score = eval_history.first().map_or(0.0, |&(_, a)| a);
        let peak =
            eval_history.iter().fold(
                (f64::MIN, 0u64),
                |best, &(s, a)| if a > best.0 { (a, s) } else { best },
            );
        let labels = Labels::of(config);
        let run_name = labels.run_name(config, score);
        let Labels {
            dtype,
            quant_mode,
            rin_mode,
            aqn,
            algorithm,
        } = labels;
        Self {
            exp_id: config.experiment.id.clone(),
            category: config.experiment.category,
            run_name,
            score,
            score_step,
            base_score,
            peak: if eval_history.is_empty() {
                (0.0, 0)
            } else {
                peak
            },
            eval_history: eval_history.to_vec(),
            epochs: config.experiment.epochs,
            steps,
            aqn: aqn.to_string(),
            epoch_aware: config
                .aqn
                .as_ref()
                .map(|a| a.schedule.kind == ScheduleKind::EpochAware),
            rin_mode,
            lora: config.finetune.mode == FinetuneMode::Lora,
            dtype: dtype.to_string(),
            quant_mode,
            notes: config.experiment.notes.clone(),
            seed: config.trainer.seed,
            wall_time_s,
            run_dir: run_dir.to_string(),
            algorithm: algorithm.to_string(),
            sigma: config
                .aqn
                .as_ref()
                .map(|a| (a.schedule.sigma_start, a.schedule.sigma_end)),
            hw_noise: config.hw_noise.as_ref().map(|h| h.model.to_string()),
        }
    }
}
