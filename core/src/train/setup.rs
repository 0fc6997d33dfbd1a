//! The run's setup: the model folder, the tokenizer, the problems and their tokenized prompts
//! ([`RunContext`]), the policy and the reference policy ([`Policies`]), and the base model of
//! an evaluation ([`load_eval_model`]).
//!
//! The model is the base (high precision) -> fake-quantized -> LoRA adapters on the frozen base,
//! or every weight trainable (full fine-tuning) -> HW noise wired in. A resumed full fine-tuning
//! run starts from the checkpoint's weights, a resumed LoRA run from the original base plus the
//! checkpoint's adapter.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::checkpoints::{ADAPTER_DIR, OPTIMIZER_FILE, WEIGHTS_DIR};
use super::collective::Collective;
use super::config::{BUILTIN_TINY, BaseStorage, FinetuneMode, TrainConfig};
use super::data::{DataStream, ProblemSet};
use super::error::{Context, TrainError};
use super::evaluate::prompt_ids;
use super::problem_checks::check_problems;
use crate::aqn::{Aqn, BaseModelScan};
use crate::checkpoint::hf_cache;
use crate::checkpoint::loader::{
    CONFIG_FILE as MODEL_CONFIG_FILE, LoadError, LoadPlan, load_qwen2_with,
};
use crate::generation::GenerationConfig;
use crate::model::config::Qwen2Config;
use crate::model::{Qwen2ForCausalLM, WeightDtype};
use crate::qat::{QuantConfig, QuantMode};
use crate::rl::kl::KlPlacement;
use crate::rng::counter_hash;
use crate::run::RunDir;
use crate::run::dir::SRDD_FILE;
use crate::schedule::RunLength;
use crate::task::Problem;
use crate::tokenizer::Qwen2Tokenizer;

/// Salt of the LoRA initialization stream (XORed into the seed).
const LORA_SALT: u64 = 0x4c4f_5241;

/// The model folder of `path`: `builtin:tiny` (unpacked from the binary), a local HF
/// checkpoint folder, or a Hub id `org/name[@revision]` that is not a local folder, from the
/// local Hugging Face cache (offline; [`hf_cache`]).
pub fn resolve_model_dir(path: &str) -> Result<PathBuf, TrainError> {
    if path == BUILTIN_TINY {
        return crate::checkpoint::builtin::materialize_tiny()
            .context("unpacking the built-in tiny model");
    }
    let dir = PathBuf::from(path);
    if dir.join("config.json").exists() {
        return Ok(dir);
    }
    if !dir.exists() && hf_cache::parse_repo_id(path).is_some() {
        return hf_cache::resolve(path, &hf_cache::CacheEnv::from_process())
            .map_err(|e| TrainError::Setup(format!("model.path = {path:?}: {e}")));
    }
    Err(TrainError::Setup(format!(
        "model.path = {path:?} is not an HF checkpoint folder (no config.json there); give a folder with config.json, model.safetensors and tokenizer.json, a Hub id (org/name) in the local Hugging Face cache, or {BUILTIN_TINY:?}"
    )))
}

/// The weights of `dir` fake-quantized as `quant` says: held packed (codes + scales, straight
/// from the file: no f32 copy of a quantized weight exists), or as latent f32 tensors with the
/// quantization attached.
fn load_quantized(
    dir: &Path,
    device: &Device,
    quant: &QuantConfig,
    dtype: WeightDtype,
    packed: bool,
) -> Result<Qwen2ForCausalLM, TrainError> {
    let loading = || format!("loading {}", dir.display());
    if packed {
        load_qwen2_with(dir, device, &LoadPlan::packed(quant.clone(), dtype)).context(loading())
    } else {
        load_qwen2_with(
            dir,
            device,
            &LoadPlan {
                packed: None,
                dtype,
            },
        )
        .context(loading())?
        .with_quantization(quant)
        .context("applying [quant]")
    }
}

/// The model a run evaluates: the configured base, fake-quantized as `config.quant` says, with
/// the checkpoint's LoRA adapter or full weights when one is given (no AQN, no HW noise: the
/// noise-free evaluation policy).
///
/// Nothing is trained, so the weights are held packed (codes + scales, bit for bit the same
/// logits) unless `keep_latent` asks for the latent f32 weights (an evaluation of the same
/// weights without fake quantization needs them) or `model.base_storage = "latent"`.
pub fn load_eval_model(
    config: &TrainConfig,
    checkpoint: Option<&Path>,
    device: &Device,
    keep_latent: bool,
) -> Result<Qwen2ForCausalLM, TrainError> {
    let model_dir = resolve_model_dir(&config.model.path)?;
    let weights_dir = match (checkpoint, config.finetune.mode) {
        (Some(path), FinetuneMode::Full) => path.join(WEIGHTS_DIR),
        _ => model_dir,
    };
    let packed = !(keep_latent || config.model.base_storage == BaseStorage::Latent);
    let model = load_quantized(
        &weights_dir,
        device,
        &config.quant,
        config.model.dtype,
        packed,
    )?;
    match (checkpoint, config.finetune.mode) {
        (Some(path), FinetuneMode::Lora) => model
            .with_lora_adapter(&path.join(ADAPTER_DIR))
            .context(format!("loading the adapter of {}", path.display())),
        _ => Ok(model),
    }
}

/// What every step reads and none changes.
pub(super) struct RunContext<'a> {
    /// The configuration.
    pub config: &'a TrainConfig,
    /// The workers of a data-parallel run.
    pub collective: &'a dyn Collective,
    /// An autodiff device.
    pub device: Device,
    /// The base model's folder.
    pub model_dir: PathBuf,
    /// Its tokenizer.
    pub tokenizer: Qwen2Tokenizer,
    /// The training and held-out problems.
    pub problems: ProblemSet,
    /// The chat-formatted token ids of each training problem's prompt.
    pub train_prompts: Vec<Vec<u32>>,
    /// Generation settings of rollouts and evaluation (`rollout.max_response_len` new tokens).
    pub generation: GenerationConfig,
}

impl<'a> RunContext<'a> {
    /// Loads the tokenizer and the problems, and tokenizes the training prompts (each checked
    /// against `rollout.max_prompt_len`).
    pub fn load(
        config: &'a TrainConfig,
        collective: &'a dyn Collective,
        device: Device,
    ) -> Result<Self, TrainError> {
        let model_dir = resolve_model_dir(&config.model.path)?;
        let tokenizer = Qwen2Tokenizer::from_dir(&model_dir)
            .context(format!("loading the tokenizer of {}", model_dir.display()))?;
        let problems = ProblemSet::load(&config.data).context("loading the problems")?;
        if problems.train.is_empty() || problems.test.is_empty() {
            return Err(TrainError::Setup(
                "the training or test set is empty".into(),
            ));
        }
        check_problems(config, &tokenizer, &problems.train, &problems.test)?;
        let mut train_prompts = Vec::with_capacity(problems.train.len());
        for (i, p) in problems.train.iter().enumerate() {
            let ids = prompt_ids(&tokenizer, &p.prompt)
                .context(format!("tokenizing training prompt {i}"))?;
            if ids.len() > config.rollout.max_prompt_len {
                return Err(TrainError::Setup(format!(
                    "training prompt {i} has {} tokens, more than rollout.max_prompt_len = {}: {:?}",
                    ids.len(),
                    config.rollout.max_prompt_len,
                    p.prompt
                )));
            }
            train_prompts.push(ids);
        }
        let generation =
            GenerationConfig::from_checkpoint(&model_dir, config.rollout.max_response_len)
                .context("reading the generation config")?;
        Ok(Self {
            config,
            collective,
            device,
            model_dir,
            tokenizer,
            problems,
            train_prompts,
            generation,
        })
    }

    /// The model's architecture (its `config.json`), read before the weights load.
    pub fn model_config(&self) -> Result<Qwen2Config, TrainError> {
        let path = self.model_dir.join(MODEL_CONFIG_FILE);
        Qwen2Config::from_file(&path)
            .map_err(LoadError::from)
            .context(format!("reading {}", path.display()))
    }

    /// The held-out problems of each evaluation (`eval.problems` of the test set; 0: all).
    pub fn eval_problems(&self) -> &[Problem] {
        let n = self.config.eval.problems;
        if n == 0 {
            &self.problems.test
        } else {
            &self.problems.test[..n.min(self.problems.test.len())]
        }
    }
}

/// The policy a run trains and the frozen reference its KL term reads.
pub(super) struct Policies {
    /// The trained model (LoRA on a frozen base, or every weight), with HW noise wired in.
    pub policy: Qwen2ForCausalLM,
    /// The initial model, when a KL term is configured.
    pub reference: Option<Qwen2ForCausalLM>,
}

impl Policies {
    /// Builds both from the base in `ctx.model_dir` (or a full fine-tuning `checkpoint`'s
    /// weights), holding the frozen base `packed` when asked.
    pub fn build(
        ctx: &RunContext,
        checkpoint: Option<&Path>,
        packed: bool,
    ) -> Result<Self, TrainError> {
        let config = ctx.config;
        let weights_dir = match (checkpoint, config.finetune.mode) {
            (Some(path), FinetuneMode::Full) => path.join(WEIGHTS_DIR),
            _ => ctx.model_dir.clone(),
        };
        let quantized = load_quantized(
            &weights_dir,
            &ctx.device,
            &config.quant,
            config.model.dtype,
            packed,
        )?;
        let needs_reference = config.algorithm.kl.placement != KlPlacement::None;
        let Self { policy, reference } = match config.finetune.mode {
            FinetuneMode::Lora => Self::lora(config, quantized, checkpoint, needs_reference)?,
            FinetuneMode::Full => Self::full(ctx, quantized, checkpoint, needs_reference)?,
        };
        let policy = match &config.hw_noise {
            Some(hw) => policy.with_hw_noise(hw).context("wiring [hw_noise]")?,
            None => policy,
        };
        // Ids from names, so a resumed run's optimizer state attaches to the rebuilt model.
        Ok(Self {
            policy: policy.with_name_param_ids(),
            reference,
        })
    }

    /// LoRA adapters (fresh, or the checkpoint's) on the frozen base; the reference is the
    /// frozen base itself (its tensors or codes are shared).
    fn lora(
        config: &TrainConfig,
        base: Qwen2ForCausalLM,
        checkpoint: Option<&Path>,
        needs_reference: bool,
    ) -> Result<Self, TrainError> {
        let reference = needs_reference.then(|| base.clone().no_grad().valid());
        let policy = match checkpoint {
            Some(path) => base
                .with_lora_adapter(&path.join(ADAPTER_DIR))
                .context(format!("loading the adapter of {}", path.display()))?,
            None => {
                let mut lora = config.finetune.lora.clone();
                lora.seed = counter_hash(config.trainer.seed ^ LORA_SALT, lora.seed);
                base.with_lora(&lora)
                    .context("attaching LoRA adapters ([finetune.lora])")?
            }
        };
        Ok(Self { policy, reference })
    }

    /// Every weight trainable; the reference is the initial model, also when resuming. It is
    /// frozen, so it is held packed (the same bits, the codes' memory).
    fn full(
        ctx: &RunContext,
        base: Qwen2ForCausalLM,
        checkpoint: Option<&Path>,
        needs_reference: bool,
    ) -> Result<Self, TrainError> {
        let config = ctx.config;
        let dtype = config.model.dtype;
        let policy = base
            .for_full_finetuning()
            .context("preparing full fine-tuning")?;
        let reference = match (needs_reference, checkpoint) {
            (false, _) => None,
            (true, None) => Some(
                policy
                    .clone()
                    .no_grad()
                    .valid()
                    .into_packed(dtype)
                    .context("packing the reference policy")?,
            ),
            (true, Some(_)) => Some(
                load_qwen2_with(
                    &ctx.model_dir,
                    &ctx.device,
                    &LoadPlan::packed(config.quant.clone(), dtype),
                )
                .context(format!("loading the reference {}", ctx.model_dir.display()))?
                .valid(),
            ),
        };
        Ok(Self { policy, reference })
    }
}

/// The stream of training prompts, refusing a data set that makes no whole generation batch.
pub(super) fn data_stream(
    config: &TrainConfig,
    train_problems: usize,
) -> Result<DataStream, TrainError> {
    let gen_batch = config.batch.generation();
    let stream = DataStream::new(config.trainer.seed, train_problems, gen_batch);
    if stream.steps_per_epoch() == 0 {
        return Err(TrainError::Setup(format!(
            "{train_problems} training prompts make no whole generation batch of {gen_batch} (batch.gen_batch_size)"
        )));
    }
    Ok(stream)
}

/// The run's AQN on `policy` (none without `[aqn]`). When its RIN policy had to scan the base
/// model for per-layer errors, the report is kept in the run folder ([`SRDD_FILE`]).
pub(super) fn aqn(
    ctx: &RunContext,
    policy: &Qwen2ForCausalLM,
    run: RunLength,
    dir: &RunDir,
) -> Result<Option<Aqn>, TrainError> {
    let Some(config) = &ctx.config.aqn else {
        return Ok(None);
    };
    let quant = &ctx.config.quant;
    let base = BaseModelScan {
        model_dir: &ctx.model_dir,
        dtype: ctx.config.model.dtype,
        device: &ctx.device,
        format: (quant.mode != QuantMode::Bf16).then_some(quant.weights),
        prompts: &ctx.train_prompts,
    };
    let (aqn, scanned) = Aqn::for_run(config, policy, run, &base)?;
    if let Some(report) = scanned {
        dir.write_file(SRDD_FILE, &report.to_json())?;
    }
    Ok(Some(aqn))
}

/// AdamW as configured, with the checkpoint's state when resuming from `checkpoint`.
pub(super) fn optimizer(
    config: &TrainConfig,
    checkpoint: Option<&Path>,
) -> Result<ModuleOptimizer, TrainError> {
    let optim = config.optim.adamw.init().context("[optim.adamw]")?;
    match checkpoint {
        Some(path) => {
            let file = path.join(OPTIMIZER_FILE);
            optim
                .load(&file)
                .context(format!("loading {}", file.display()))
        }
        None => Ok(optim),
    }
}
