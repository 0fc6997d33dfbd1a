//! The configuration of a training run: a *profile* (the scale: model, data, batch sizes,
//! lengths, learning rate) and a *preset* (the experiment's semantics: algorithm, LoRA or full
//! fine-tuning, quantization, AQN schedule and targets, RIN, HW noise, epochs), merged in this
//! order over the built-in defaults, then a user TOML file, then `--set key=value` overrides.
//!
//! Presets live in `core/presets/*.toml` (one per row of the seed's experiment tables), profiles
//! in `core/profiles/*.toml`; both are compiled in. A profile may hold `[category.hw]`,
//! `[category.quant]` and `[category.lora]` tables: the one matching the preset's category is
//! merged too (docs/spec.md section 8: the HW runs and the LoRA runs used different batch sizes and
//! learning rates). A preset may set `batch.train_batch_scale` (the QeRL-style variants use a
//! batch 8x smaller than their profile's).
//!
//! Every struct refuses unknown fields, so a misspelled key is an error that names it and lists
//! the valid ones.
//!
//! | file | concept |
//! |---|---|
//! | [`sections`] | the sections' structs and defaults (`[experiment]`, `[model]`, `[rollout]`, ...) |
//! | [`batch`] | `[batch]`: batch sizes and their scaled values |
//! | [`effect`] | when each key takes effect; chosen keys that cannot are refused |
//! | [`resolve`] | [`ConfigSources`] merged into a [`TrainConfig`] |
//! | [`validate`] | the checks of a resolved configuration |
//! | [`error`] | [`ConfigError`] |

pub mod batch;
pub mod effect;
pub mod error;
pub mod resolve;
pub mod sections;
pub mod validate;

use serde::{Deserialize, Serialize};

use crate::aqn::AqnConfig;
use crate::hw_noise::HwNoiseConfig;
use crate::qat::QuantConfig;
use crate::rl::policy_loss::PolicyLossConfig;

pub use crate::catalogue::{preset_names, preset_text, profile_names, profile_text};
pub use batch::BatchConfig;
pub use effect::RunFacts;
pub use error::{ConfigError, SectionError};
pub use resolve::ConfigSources;
pub use sections::{
    AlgorithmConfig, BUILTIN_TINY, BaseStorage, Category, DataConfig, EvalConfig, ExperimentConfig,
    FinetuneConfig, FinetuneMode, ModelConfig, OptimConfig, RolloutConfig, SYNTHETIC,
    TrainerConfig,
};

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Identity and length.
    pub experiment: ExperimentConfig,
    /// Advantages, reward, KL, entropy, dynamic sampling.
    pub algorithm: AlgorithmConfig,
    /// The clipped policy loss.
    pub actor: PolicyLossConfig,
    /// LoRA or full.
    pub finetune: FinetuneConfig,
    /// Fake quantization of the linears.
    pub quant: QuantConfig,
    /// Adaptive Quantization Noise (absent: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aqn: Option<AqnConfig>,
    /// Hardware-error injection (absent: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_noise: Option<HwNoiseConfig>,
    /// The base model.
    pub model: ModelConfig,
    /// The problems.
    pub data: DataConfig,
    /// Sampling.
    pub rollout: RolloutConfig,
    /// Batch sizes.
    pub batch: BatchConfig,
    /// The optimizer.
    pub optim: OptimConfig,
    /// Evaluation.
    pub eval: EvalConfig,
    /// The loop.
    pub trainer: TrainerConfig,
}
