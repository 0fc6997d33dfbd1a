//! The sections of a run's configuration other than those owned by their modules (`[actor]`,
//! `[quant]`, `[aqn]`, `[hw_noise]`, `[batch]`): each a struct that refuses unknown fields, with
//! documented defaults.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::lora::LoraConfig;
use crate::model::WeightDtype;
use crate::named::named_enum;
use crate::rl::adamw::AdamWSettings;
use crate::rl::advantage::AdvantageEstimator;
use crate::rl::dynamic_sampling::FilterGroupsConfig;
use crate::rl::kl::KlConfig;
use crate::rl::lr_schedule::LrScheduleConfig;
use crate::rl::rollout_corr::RolloutCorrectionConfig;
use crate::task::dataset::PromptTemplate;
use crate::task::reward::RewardConfig;
use crate::task::synthetic::SyntheticConfig;

named_enum! {
    /// The experiment tables of the seed: which table a run belongs to.
    #[derive(Default)]
    Category, "experiment category", ConfigError {
        /// Hardware-error injection (BF16 base, simulated matmul noise).
        Hw => "hw",
        /// Fake quantization with full fine-tuning.
        Quant => "quant",
        /// A quantized frozen base with 16-bit LoRA (default).
        #[default]
        Lora => "lora",
    }
}

named_enum! {
    /// What is trained.
    #[derive(Default)]
    FinetuneMode, "fine-tuning mode", ConfigError {
        /// LoRA adapters on a frozen (quantized) base (default).
        #[default]
        Lora => "lora",
        /// Every weight, latent f32.
        Full => "full",
    }
}

/// The experiment's identity and length (TOML `[experiment]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// The seed table's Exp ID (`E12`, `baseline`, ...).
    pub id: String,
    /// The table it belongs to.
    pub category: Category,
    /// Free text for the report's Notes column.
    pub notes: String,
    /// Passes over the training prompts.
    pub epochs: u64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            id: "custom".into(),
            category: Category::Lora,
            notes: String::new(),
            epochs: 1,
        }
    }
}

/// The RL algorithm (TOML `[algorithm]`); the clipped loss itself is `[actor]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlgorithmConfig {
    /// GRPO (std-normalized advantages) or Dr.GRPO.
    pub estimator: AdvantageEstimator,
    /// The reward of a response.
    pub reward: RewardConfig,
    /// KL to the reference policy.
    pub kl: KlConfig,
    /// Entropy bonus coefficient (0: off).
    pub entropy_coeff: f64,
    /// DAPO's dynamic sampling.
    pub filter_groups: FilterGroupsConfig,
    /// Importance-sampling weights and rejection for the rollout-training mismatch (off by
    /// default; the mismatch metrics are logged either way).
    pub rollout_correction: RolloutCorrectionConfig,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::Grpo,
            reward: RewardConfig::default(),
            kl: KlConfig::none(),
            entropy_coeff: 0.0,
            filter_groups: FilterGroupsConfig::default(),
            rollout_correction: RolloutCorrectionConfig::default(),
        }
    }
}

/// LoRA or full fine-tuning (TOML `[finetune]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// What is trained.
    pub mode: FinetuneMode,
    /// The adapters (used when `mode = "lora"`).
    pub lora: LoraConfig,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            mode: FinetuneMode::Lora,
            lora: LoraConfig::default(),
        }
    }
}

/// The built-in tiny model.
pub const BUILTIN_TINY: &str = "builtin:tiny";

named_enum! {
    /// How the frozen base of a LoRA run is held (`model.base_storage`).
    #[derive(Default)]
    BaseStorage, "base storage", ConfigError {
        /// `packed` where it applies (LoRA, and nothing that needs the latent base weights:
        /// AQN on linear weights, `eval.bf16`), else `latent`. The run's plan says which.
        #[default]
        Auto => "auto",
        /// Every base projection and the embedding table as codes + scales (MXFP4 0.53 bytes
        /// per weight, NVFP4 0.56, FP8 1, BF16 2; f32 values for what stays unquantized), read
        /// straight from the checkpoint: no f32 copy of a quantized weight exists. Bit for bit
        /// the same results as `latent`.
        Packed => "packed",
        /// f32 latent weights, with an f32 copy of Q(W) cached for frozen quantized weights.
        Latent => "latent",
    }
}

/// The base model (TOML `[model]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// An HF checkpoint folder, a Hub id `org/name[@revision]` from the local Hugging Face
    /// cache (offline), or `builtin:tiny` (the committed `assets/tiny`).
    pub path: String,
    /// The precision of the weights: `f32` (default) or `bf16` (every value rounded to bf16 as
    /// it is read; frozen unquantized matrices then take 2 bytes per value; trainable tensors
    /// keep an f32 master copy).
    pub dtype: WeightDtype,
    /// How a frozen base is held: `auto` (default), `packed` or `latent`.
    pub base_storage: BaseStorage,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: BUILTIN_TINY.into(),
            dtype: WeightDtype::F32,
            base_storage: BaseStorage::Auto,
        }
    }
}

/// Where problems come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `synthetic` (the built-in task), or a verl GSM8K parquet / HF-style jsonl file.
    pub train: String,
    /// `synthetic`, or a file.
    pub test: String,
    /// The built-in task's settings.
    pub synthetic: SyntheticConfig,
    /// How a file's questions become prompts when the file holds bare questions (jsonl); verl
    /// parquet prompts are used as they are.
    pub prompt_template: PromptTemplate,
}

/// The built-in task as a data source.
pub const SYNTHETIC: &str = "synthetic";

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: SYNTHETIC.into(),
            test: SYNTHETIC.into(),
            synthetic: SyntheticConfig::default(),
            prompt_template: PromptTemplate::Gsm8k,
        }
    }
}

/// Rollout sampling (TOML `[rollout]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Responses per prompt (the group size).
    pub n: usize,
    /// Sampling temperature (> 0).
    pub temperature: f64,
    /// Nucleus sampling (1: off).
    pub top_p: f64,
    /// Top-k sampling (0: off).
    pub top_k: usize,
    /// Min-p sampling: keep the tokens at least this times as likely as the most likely one,
    /// after top-k and top-p (0: off; HF's and vLLM's `min_p`).
    pub min_p: f64,
    /// Longest response in tokens.
    pub max_response_len: usize,
    /// Longest prompt in tokens (longer prompts are an error naming the problem).
    pub max_prompt_len: usize,
    /// Responses generated per call of the model (0: the whole generation batch at once). A
    /// smaller value bounds the KV cache (2 x layers x kv_heads x head_dim x 4 bytes per token
    /// and response); each micro-batch samples from its own random stream, so the responses
    /// depend on it.
    pub micro_batch_size: usize,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            n: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_response_len: 64,
            max_prompt_len: 256,
            micro_batch_size: 0,
        }
    }
}

/// The optimizer (TOML `[optim]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// AdamW's betas, eps and weight decay.
    pub adamw: AdamWSettings,
    /// Warm-up and decay.
    pub schedule: LrScheduleConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            grad_clip: 1.0,
            adamw: AdamWSettings::default(),
            schedule: LrScheduleConfig::default(),
        }
    }
}

/// Evaluation (TOML `[eval]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps (and always at step 0 and at the final step).
    pub test_freq: u64,
    /// Held-out problems per evaluation (0: all of the test set).
    pub problems: usize,
    /// Prompts per generation batch.
    pub batch_size: usize,
    /// Also evaluate the same weights without fake quantization, labelled `val_bf16/*` (never
    /// the run's score).
    pub bf16: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            test_freq: 10,
            problems: 0,
            batch_size: 64,
            bf16: false,
        }
    }
}

/// The run loop (TOML `[trainer]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Seed of everything random (data order, sampling, noise, initialization of adapters).
    pub seed: u64,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub save_freq: u64,
    /// Stop after this many steps instead of `epochs * steps_per_epoch` (short runs and tests;
    /// the schedules still span the full run).
    pub max_steps: Option<u64>,
    /// Keep only the newest this many complete checkpoints, removing older ones after each save
    /// (verl's name; unset: keep all; >= 1).
    pub max_actor_ckpt_to_keep: Option<u64>,
}
