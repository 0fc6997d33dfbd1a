//! The configuration of a training run: a *profile* (the scale: model, data, batch sizes,
//! lengths, learning rate) and a *preset* (the experiment's semantics: algorithm, LoRA or full
//! fine-tuning, quantization, AQN schedule and targets, RIN, HW noise, epochs), merged in this
//! order over the built-in defaults, then a user TOML file, then `--set key=value` overrides.
//!
//! Presets live in `core/presets/*.toml` (one per row of the seed's experiment tables), profiles
//! in `core/profiles/*.toml`; both are compiled in. A profile may hold `[category.hw]`,
//! `[category.quant]` and `[category.lora]` tables: the one matching the preset's category is
//! merged too (SPEC.md section 8: the HW runs and the LoRA runs used different batch sizes and
//! learning rates). A preset may set `batch.train_batch_scale` (the QeRL-style variants use a
//! batch 8x smaller than their profile's).
//!
//! Every struct refuses unknown fields, so a misspelled key is an error that names it and lists
//! the valid ones.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Table;

use crate::aqn::{AqnConfig, AqnTargets};
use crate::config::{OverrideError, apply_override, merge};
use crate::hw_noise::HwNoiseConfig;
use crate::lora::LoraConfig;
use crate::model::WeightDtype;
use crate::named::named_enum;
use crate::qat::QuantConfig;
use crate::rl::adamw::AdamWSettings;
use crate::rl::advantage::AdvantageEstimator;
use crate::rl::dynamic_sampling::FilterGroupsConfig;
use crate::rl::kl::KlConfig;
use crate::rl::lr_schedule::LrScheduleConfig;
use crate::rl::policy_loss::PolicyLossConfig;
use crate::site::{LinearKind, LinearSite};
use crate::task::dataset::PromptTemplate;
use crate::task::reward::RewardConfig;
use crate::task::synthetic::SyntheticConfig;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A preset name that is not compiled in.
    #[error("unknown preset `{name}`; valid presets: {valid}")]
    UnknownPreset {
        /// The name.
        name: String,
        /// The valid names.
        valid: String,
    },
    /// A profile name that is not compiled in.
    #[error("unknown profile `{name}`; valid profiles: {valid}")]
    UnknownProfile {
        /// The name.
        name: String,
        /// The valid names.
        valid: String,
    },
    /// A TOML file or string that does not parse.
    #[error("{source_name}: {message}")]
    Parse {
        /// Where it came from.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A malformed `--set`.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// The merged document does not fit the schema (unknown key, wrong type, bad enum name).
    #[error("invalid configuration: {0}")]
    Schema(String),
    /// A value out of range.
    #[error("invalid setting {name} = {value}: {requirement}")]
    Invalid {
        /// The dotted key.
        name: String,
        /// Its value.
        value: String,
        /// What it must be.
        requirement: String,
    },
    /// An `--unset` of a key that is not there.
    #[error("--unset {0}: there is no such key in the configuration")]
    UnsetMissing(String),
    /// A name that is not one of an enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
}

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
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::Grpo,
            reward: RewardConfig::default(),
            kl: KlConfig::none(),
            entropy_coeff: 0.0,
            filter_groups: FilterGroupsConfig::default(),
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

/// Whether AQN on `targets` perturbs projection weights (which a packed base does not hold as
/// latent tensors). A pattern counts when it matches a projection weight's name in any of the
/// first 256 decoder layers.
fn aqn_needs_latent(targets: &AqnTargets) -> bool {
    match targets {
        AqnTargets::Rmsnorm { .. } => false,
        AqnTargets::Linear { .. } => true,
        AqnTargets::Pattern { pattern } => {
            pattern.matches("lm_head.weight")
                || pattern.matches("model.embed_tokens.weight")
                || (0..256).any(|l| {
                    LinearKind::DECODER.iter().any(|k| {
                        pattern.matches(&format!(
                            "{}.weight",
                            LinearSite::decoder(l, *k).module_path()
                        ))
                    })
                })
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
    /// An HF checkpoint folder, or `builtin:tiny` (the committed `assets/tiny`).
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
            max_response_len: 64,
            max_prompt_len: 256,
            micro_batch_size: 0,
        }
    }
}

/// Batch sizes (TOML `[batch]`), in prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Prompts per optimizer step (verl's `train_batch_size`); a step trains on
    /// `train_batch_size * n` responses.
    pub train_batch_size: usize,
    /// Prompts per generation batch (verl's `gen_batch_size`; with dynamic sampling the trainer
    /// generates batches of this size until `train_batch_size` groups are kept).
    pub gen_batch_size: usize,
    /// Prompts per PPO mini-batch (one optimizer step each).
    pub ppo_mini_batch_size: usize,
    /// Passes over each step's data.
    pub ppo_epochs: usize,
    /// Responses per forward/backward pass (verl's name; 0: the whole mini-batch in one pass).
    /// The gradients of the micro-batches of a mini-batch are summed, each loss normalized by
    /// the whole mini-batch's token or sequence count, so the update equals the one-pass update
    /// (to float rounding); also the chunk size of the old and reference log-prob passes.
    pub ppo_micro_batch_size: usize,
    /// Multiplies `gen_batch_size` (at least 1 prompt); the train and mini-batch sizes are then
    /// capped by the scaled generation batch. The QeRL-style presets use 1/8: the seed's 256
    /// prompts per generation batch become 32, and its train batch of 128 becomes 32.
    pub train_batch_scale: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            train_batch_size: 16,
            gen_batch_size: 16,
            ppo_mini_batch_size: 16,
            ppo_epochs: 1,
            ppo_micro_batch_size: 0,
            train_batch_scale: 1.0,
        }
    }
}

impl BatchConfig {
    /// `gen_batch_size` after the scale.
    pub fn generation(&self) -> usize {
        ((self.gen_batch_size as f64 * self.train_batch_scale).round() as usize).max(1)
    }

    /// `train_batch_size`, capped by the scaled generation batch when the scale is below 1.
    pub fn train(&self) -> usize {
        if self.train_batch_scale < 1.0 {
            self.train_batch_size.min(self.generation())
        } else {
            self.train_batch_size
        }
    }

    /// `ppo_mini_batch_size`, capped by the train batch when the scale is below 1.
    pub fn mini(&self) -> usize {
        if self.train_batch_scale < 1.0 {
            self.ppo_mini_batch_size.min(self.train())
        } else {
            self.ppo_mini_batch_size
        }
    }

    /// Responses per forward/backward pass, given the group size `n`: `ppo_micro_batch_size`, or
    /// the whole mini-batch (`mini() * n`) when it is 0 or larger.
    pub fn micro(&self, n: usize) -> usize {
        let mini = self.mini() * n;
        match self.ppo_micro_batch_size {
            0 => mini,
            m => m.min(mini),
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
}

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

/// A compiled-in TOML document.
struct Builtin {
    name: &'static str,
    text: &'static str,
}

macro_rules! builtins {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(Builtin { name: $name, text: include_str!(concat!("../../", $dir, "/", $name, ".toml")) }),+]
    };
}

/// Every preset: the rows of the seed's experiment tables, their 2-epoch and QeRL-style
/// variants, the W4A4 no-STE ablation and the default.
const PRESETS: &[Builtin] = builtins!("presets":
    "default", "baseline", "e5", "e5b", "e5c", "e9a", "e9a-high", "e9b",
    "e8a", "e3a", "e3b", "e4a", "e4b",
    "e7a", "e5a-lora", "e5b-lora", "e6a", "e6b", "e12", "e13g", "e13h", "e13a",
    "e6b-2ep", "e6a-2ep", "e7a-2ep", "e3a-2ep", "e3b-2ep", "e8a-2ep", "e12-2ep",
    "e6b-qerl", "e12-qerl",
);

/// Every profile.
const PROFILES: &[Builtin] = builtins!("profiles": "tiny", "qwen2.5-1.5b-gsm8k");

fn names(list: &[Builtin]) -> String {
    list.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

/// The names of the compiled-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|b| b.name).collect()
}

/// The names of the compiled-in profiles.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|b| b.name).collect()
}

fn parse(text: &str, source_name: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| ConfigError::Parse {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })
}

/// The TOML text of a preset.
pub fn preset_text(name: &str) -> Result<&'static str, ConfigError> {
    let key = name.to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|b| b.name == key)
        .map(|b| b.text)
        .ok_or_else(|| ConfigError::UnknownPreset {
            name: name.to_string(),
            valid: names(PRESETS),
        })
}

/// The TOML text of a profile.
pub fn profile_text(name: &str) -> Result<&'static str, ConfigError> {
    let key = name.to_ascii_lowercase();
    PROFILES
        .iter()
        .find(|b| b.name == key)
        .map(|b| b.text)
        .ok_or_else(|| ConfigError::UnknownProfile {
            name: name.to_string(),
            valid: names(PROFILES),
        })
}

/// What a run's configuration is made of, in merge order after the defaults.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources {
    /// The profile (scale).
    pub profile: String,
    /// The preset (semantics).
    pub preset: String,
    /// A user TOML file, merged after both.
    pub file: Option<(PathBuf, String)>,
    /// `key=value` overrides, applied last.
    pub sets: Vec<String>,
    /// Keys removed after the overrides (e.g. `aqn` to turn AQN off).
    pub unsets: Vec<String>,
}

fn remove_key(doc: &mut Table, key: &str) -> Result<(), ConfigError> {
    let segments: Vec<&str> = key.split('.').collect();
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| ConfigError::UnsetMissing(key.to_string()))?;
    let mut table = doc;
    for seg in parents {
        table = match table.get_mut(*seg) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(ConfigError::UnsetMissing(key.to_string())),
        };
    }
    table
        .remove(*last)
        .map(|_| ())
        .ok_or_else(|| ConfigError::UnsetMissing(key.to_string()))
}

impl TrainConfig {
    /// Resolves `sources` into a validated configuration.
    pub fn resolve(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut doc = Table::try_from(TrainConfig::default())
            .map_err(|e| ConfigError::Schema(e.to_string()))?;
        let mut profile = parse(
            profile_text(&sources.profile)?,
            &format!("profile {}", sources.profile),
        )?;
        let preset = parse(
            preset_text(&sources.preset)?,
            &format!("preset {}", sources.preset),
        )?;
        let file = match &sources.file {
            Some((path, text)) => Some(parse(text, &path.display().to_string())?),
            None => None,
        };
        // The category decides which of the profile's per-category tables applies.
        let category_of = |t: &Table| -> Option<String> {
            t.get("experiment")?
                .get("category")?
                .as_str()
                .map(str::to_string)
        };
        let category = file
            .as_ref()
            .and_then(category_of)
            .or_else(|| category_of(&preset))
            .unwrap_or_else(|| Category::default().name().to_string());
        let category: Category = category.parse()?;
        let per_category = profile.remove("category");
        merge(&mut doc, profile);
        if let Some(toml::Value::Table(mut cats)) = per_category
            && let Some(toml::Value::Table(t)) = cats.remove(category.name())
        {
            merge(&mut doc, t);
        }
        merge(&mut doc, preset);
        if let Some(f) = file {
            merge(&mut doc, f);
        }
        let before_sets = doc.clone();
        for s in &sources.sets {
            apply_override(&mut doc, s)?;
        }
        for key in &sources.unsets {
            remove_key(&mut doc, key)?;
        }
        let schema = |doc: &Table| -> Result<TrainConfig, String> {
            doc.clone()
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_string())
        };
        let config = match schema(&doc) {
            Ok(config) => config,
            Err(message) => {
                // Name the `--set` that broke the schema (an unknown key, a wrong type).
                let mut probe = before_sets;
                let mut culprit = None;
                if schema(&probe).is_ok() {
                    for s in &sources.sets {
                        apply_override(&mut probe, s)?;
                        if let Err(m) = schema(&probe) {
                            culprit = Some(format!("--set {s}: {m}"));
                            break;
                        }
                    }
                }
                return Err(ConfigError::Schema(culprit.unwrap_or(message)));
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name: &str, value: String, requirement: &str| ConfigError::Invalid {
            name: name.to_string(),
            value,
            requirement: requirement.to_string(),
        };
        let positive = [
            ("experiment.epochs", self.experiment.epochs as usize),
            ("rollout.n", self.rollout.n),
            ("rollout.max_response_len", self.rollout.max_response_len),
            ("batch.train_batch_size", self.batch.train_batch_size),
            ("batch.gen_batch_size", self.batch.gen_batch_size),
            ("batch.ppo_mini_batch_size", self.batch.ppo_mini_batch_size),
            ("batch.ppo_epochs", self.batch.ppo_epochs),
            ("eval.batch_size", self.eval.batch_size),
            ("eval.test_freq", self.eval.test_freq as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(invalid(name, "0".into(), "it must be at least 1"));
            }
        }
        if !(self.batch.train_batch_scale.is_finite() && self.batch.train_batch_scale > 0.0) {
            return Err(invalid(
                "batch.train_batch_scale",
                self.batch.train_batch_scale.to_string(),
                "a number > 0",
            ));
        }
        if self.batch.train() > self.batch.generation() {
            return Err(invalid(
                "batch.train_batch_size",
                self.batch.train().to_string(),
                &format!(
                    "it must not exceed batch.gen_batch_size ({})",
                    self.batch.generation()
                ),
            ));
        }
        if self.batch.generation() > self.batch.train() && !self.algorithm.filter_groups.enable {
            return Err(invalid(
                "batch.gen_batch_size",
                self.batch.generation().to_string(),
                &format!(
                    "it must equal batch.train_batch_size ({}) without dynamic sampling \
                     (algorithm.filter_groups.enable): the extra groups would be generated and thrown away",
                    self.batch.train()
                ),
            ));
        }
        if !self.batch.train().is_multiple_of(self.batch.mini()) {
            return Err(invalid(
                "batch.ppo_mini_batch_size",
                self.batch.mini().to_string(),
                &format!(
                    "it must divide batch.train_batch_size ({})",
                    self.batch.train()
                ),
            ));
        }
        self.base_storage_packed()?;
        if !(self.rollout.temperature.is_finite() && self.rollout.temperature > 0.0) {
            return Err(invalid(
                "rollout.temperature",
                self.rollout.temperature.to_string(),
                "a number > 0 (rollouts sample)",
            ));
        }
        if !(self.rollout.top_p > 0.0 && self.rollout.top_p <= 1.0) {
            return Err(invalid(
                "rollout.top_p",
                self.rollout.top_p.to_string(),
                "a number in (0, 1]",
            ));
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            return Err(invalid(
                "optim.lr",
                self.optim.lr.to_string(),
                "a number > 0",
            ));
        }
        if !(self.optim.grad_clip.is_finite() && self.optim.grad_clip >= 0.0) {
            return Err(invalid(
                "optim.grad_clip",
                self.optim.grad_clip.to_string(),
                "a number >= 0 (0: off)",
            ));
        }
        if self.trainer.max_steps == Some(0) {
            return Err(invalid(
                "trainer.max_steps",
                "0".into(),
                "at least 1 (or remove it)",
            ));
        }
        if self.algorithm.filter_groups.enable && self.rollout.n < 2 {
            return Err(invalid(
                "rollout.n",
                self.rollout.n.to_string(),
                "at least 2 with dynamic sampling (a group of one is never filtered)",
            ));
        }
        let map = |e: &dyn std::fmt::Display| ConfigError::Schema(e.to_string());
        self.actor.validate().map_err(|e| map(&e))?;
        self.algorithm.kl.validate().map_err(|e| map(&e))?;
        self.algorithm
            .filter_groups
            .validate()
            .map_err(|e| map(&e))?;
        self.algorithm
            .reward
            .validate(self.rollout.max_response_len)
            .map_err(|e| map(&e))?;
        self.optim.adamw.validate().map_err(|e| map(&e))?;
        self.quant.validate().map_err(|e| map(&e))?;
        if self.finetune.mode == FinetuneMode::Lora {
            self.finetune.lora.validate().map_err(|e| map(&e))?;
        }
        if let Some(hw) = &self.hw_noise {
            hw.validate().map_err(|e| map(&e))?;
        }
        self.data.synthetic.validate().map_err(|e| map(&e))?;
        Ok(())
    }

    /// Whether the run holds its frozen base packed (`model.base_storage`, `auto` resolved); a
    /// `packed` that cannot apply is refused with the setting that prevents it.
    pub fn base_storage_packed(&self) -> Result<bool, ConfigError> {
        let blocker = if self.finetune.mode == FinetuneMode::Full {
            Some("finetune.mode = \"full\" trains the base weights")
        } else if self.eval.bf16 && self.quant.mode != crate::qat::QuantMode::Bf16 {
            Some("eval.bf16 = true evaluates the latent weights unquantized")
        } else if self
            .aqn
            .as_ref()
            .is_some_and(|a| aqn_needs_latent(&a.targets))
        {
            Some(
                "[aqn] targets linear weights, whose noisy copies are re-quantized from the latent weights",
            )
        } else {
            None
        };
        match (self.model.base_storage, blocker) {
            (BaseStorage::Latent, _) => Ok(false),
            (BaseStorage::Auto, b) => Ok(b.is_none()),
            (BaseStorage::Packed, None) => Ok(true),
            (BaseStorage::Packed, Some(why)) => Err(ConfigError::Invalid {
                name: "model.base_storage".into(),
                value: "packed".into(),
                requirement: format!(
                    "a packed base has no latent weights, and {why}; use \"latent\" or \"auto\""
                ),
            }),
        }
    }

    /// The resolved configuration as TOML (written into the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(preset: &str) -> ConfigSources {
        ConfigSources {
            profile: "tiny".into(),
            preset: preset.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_preset_resolves_on_every_profile() {
        for profile in profile_names() {
            for preset in preset_names() {
                let s = ConfigSources {
                    profile: profile.into(),
                    preset: preset.into(),
                    ..Default::default()
                };
                let c = TrainConfig::resolve(&s)
                    .unwrap_or_else(|e| panic!("{profile} x {preset}: {e}"));
                // Round trip through the resolved TOML.
                let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
                assert_eq!(back, c, "{profile} x {preset}");
            }
        }
    }

    #[test]
    fn unknown_names_and_keys_are_errors_naming_them() {
        let e = TrainConfig::resolve(&sources("e99"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown preset `e99`") && e.contains("e12"),
            "{e}"
        );
        let mut s = sources("default");
        s.profile = "huge".into();
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(
            e.contains("unknown profile `huge`") && e.contains("tiny"),
            "{e}"
        );
        let mut s = sources("default");
        s.sets = vec!["actor.clip_ratio_hgh=0.3".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(
            e.contains("clip_ratio_hgh") && e.contains("clip_ratio_high"),
            "{e}"
        );
        let mut s = sources("default");
        s.sets = vec!["actor.loss_agg_mode=token-sum".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("token-sum") && e.contains("token-mean"), "{e}");
        let mut s = sources("default");
        s.sets = vec!["rollout.n=0".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("rollout.n = 0"), "{e}");
        let mut s = sources("default");
        s.unsets = vec!["hw_noise".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("--unset hw_noise"), "{e}");
    }

    #[test]
    fn overrides_and_unsets_take_effect() {
        let mut s = sources("default");
        s.sets = vec![
            "actor.clip_ratio_high=0.3".into(),
            "rollout.n=4".into(),
            "quant.weights=mxfp4:rceil".into(),
        ];
        s.unsets = vec!["aqn".into()];
        let c = TrainConfig::resolve(&s).unwrap();
        assert_eq!(c.actor.clip_ratio_high, 0.3);
        assert_eq!(c.rollout.n, 4);
        assert_eq!(c.quant.weights.label(), "mxfp4:rceil");
        assert!(c.aqn.is_none());
    }

    #[test]
    fn base_storage_resolves_and_refuses_what_needs_latent_weights() {
        let resolve = |preset: &str, sets: &[&str]| {
            let mut s = sources(preset);
            s.sets = sets.iter().map(|x| x.to_string()).collect();
            TrainConfig::resolve(&s)
        };
        // auto: packed for a LoRA run, latent where something needs the latent base.
        assert!(
            resolve("default", &[])
                .unwrap()
                .base_storage_packed()
                .unwrap()
        );
        assert!(!resolve("e3a", &[]).unwrap().base_storage_packed().unwrap());
        let bf16_eval = resolve("default", &["eval.bf16=true"]).unwrap();
        assert!(!bf16_eval.base_storage_packed().unwrap());
        let latent = resolve("default", &["model.base_storage=latent"]).unwrap();
        assert!(!latent.base_storage_packed().unwrap());
        // packed where it cannot apply: refused with the setting that prevents it.
        for (preset, sets, why) in [
            ("e3a", vec!["model.base_storage=packed"], "finetune.mode"),
            (
                "default",
                vec!["model.base_storage=packed", "eval.bf16=true"],
                "eval.bf16",
            ),
            (
                "default",
                vec!["model.base_storage=packed", "aqn.targets=linear"],
                "[aqn] targets linear weights",
            ),
        ] {
            let e = resolve(preset, &sets).unwrap_err().to_string();
            assert!(
                e.contains("model.base_storage") && e.contains(why),
                "{preset} {sets:?}: {e}"
            );
        }
        // Unknown names list the valid ones.
        let e = resolve("default", &["model.base_storage=compressed"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("compressed") && e.contains("latent"), "{e}");
        let e = resolve("default", &["model.dtype=f16"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("f16") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn micro_batch_sizes_resolve_to_responses_per_pass() {
        let mut b = BatchConfig {
            ppo_mini_batch_size: 4,
            ..BatchConfig::default()
        };
        assert_eq!(b.micro(8), 32, "0 = the whole mini-batch");
        b.ppo_micro_batch_size = 6;
        assert_eq!(b.micro(8), 6);
        b.ppo_micro_batch_size = 100;
        assert_eq!(b.micro(8), 32, "capped by the mini-batch");
    }

    #[test]
    fn category_tables_of_the_profile_apply() {
        let s = |preset: &str| ConfigSources {
            profile: "qwen2.5-1.5b-gsm8k".into(),
            preset: preset.into(),
            ..Default::default()
        };
        let hw = TrainConfig::resolve(&s("e5")).unwrap();
        let lora = TrainConfig::resolve(&s("e6b")).unwrap();
        assert_eq!(hw.experiment.category, Category::Hw);
        assert_eq!(lora.experiment.category, Category::Lora);
        assert_eq!(
            (hw.optim.lr, hw.rollout.n, hw.batch.train()),
            (5e-7, 5, 128)
        );
        assert_eq!(
            (
                lora.optim.lr,
                lora.rollout.n,
                lora.batch.train(),
                lora.batch.generation()
            ),
            (1e-5, 8, 128, 256)
        );
        let qerl = TrainConfig::resolve(&s("e6b-qerl")).unwrap();
        assert_eq!((qerl.batch.train(), qerl.batch.generation()), (32, 32));
    }
}
