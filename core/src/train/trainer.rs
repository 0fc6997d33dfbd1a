//! The GRPO / Dr.GRPO / DAPO trainer (SPEC.md section 7) with fake quantization, LoRA, AQN and
//! hardware-error injection: `aqn-native train`.
//!
//! One step:
//! 1. the rollout policy (the weights + AQN noise of this step + the rollout phase's HW noise,
//!    quantized as configured) samples `n` responses for each prompt of a generation batch;
//!    DAPO's dynamic sampling generates further batches (bounded) until the train batch is full;
//! 2. the training policy (the same weights, clean unless AQN/HW noise is configured for the
//!    training phase) computes the old log-probs, the reference policy (the initial model: the
//!    frozen base for LoRA, a frozen copy for full fine-tuning) the reference log-probs when a
//!    KL term is configured;
//! 3. rewards (with the KL penalty when it goes into the reward), group advantages;
//! 4. PPO: `ppo_epochs` passes over mini-batches, each one optimizer step (clipped loss,
//!    KL and entropy terms, global-norm clipping, AdamW at the scheduled learning rate).
//!
//! Evaluation runs at step 0, every `test_freq` steps and always at the final step, greedy and
//! noise-free, in the quantization mode that is trained (a BF16 evaluation of the same weights
//! is added on request, labelled `val_bf16/*`, never the run's score). Every random draw is keyed
//! by (seed, step, ...), so a run resumed from a checkpoint reproduces the uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::collective::{Collective, all_gather_json, shard, sum_gradients, sum_metrics};
use super::config::{BUILTIN_TINY, BaseStorage, FinetuneMode, TrainConfig};
use super::data::{DataStream, ProblemSet};
use super::evaluate::{EvalError, EvalPart, EvalResult, evaluate_part, prompt_ids};
use super::micro_batch::{
    MiniBatchCounts, PolicyLossSettings, PolicyMicroBatch, policy_gradients_of,
};
use super::sequence::{SequenceBatch, response_logprobs};
use super::summary::RunSummary;
use crate::aqn::{Aqn, AqnError};
use crate::checkpoint::loader::{LoadPlan, load_qwen2_with};
use crate::generation::{GenerationConfig, RowSampling, SamplingConfig, generate_with};
use crate::model::Qwen2ForCausalLM;
use crate::phase::Phase;
use crate::qat::QuantConfig;
use crate::rl::agg_loss::AggMode;
use crate::rl::dynamic_sampling::{FilterMetric, SamplerStatus};
use crate::rl::grad_clip::{ClippedGrads, clip_grad_norm};
use crate::rl::kl::{KlPlacement, compute_kl_in_reward};
use crate::rl::lr_schedule::LrSchedule;
use crate::rng::{CounterRng, counter_hash};
use crate::run::dir::{CONFIG_FILE, RunDir, RunDirError, SUMMARY_FILE, StepMetrics};
use crate::schedule::RunLength;
use crate::srdd::{SrddCapture, build_report, scan};
use crate::tokenizer::Qwen2Tokenizer;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration, in a way only the run could detect.
    #[error("{0}")]
    Setup(String),
    /// A file of the run folder.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// Evaluation.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// AQN.
    #[error(transparent)]
    Aqn(#[from] AqnError),
    /// Anything else, with context.
    #[error("{context}: {message}")]
    Other {
        /// What was being done.
        context: String,
        /// The underlying error.
        message: String,
    },
}

fn ctx<E: std::fmt::Display>(context: impl Into<String>) -> impl FnOnce(E) -> TrainError {
    let context = context.into();
    move |e| TrainError::Other {
        context,
        message: e.to_string(),
    }
}

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
    /// How the base weights are held: `packed` (codes + scales) or `latent` (f32 tensors).
    pub base_storage: String,
    /// Bytes of the model's projection weights and embedding table as held (codes, f32 values
    /// and cached `Q(W)`s), the policy's; a reference policy shares or packs them.
    pub weight_bytes: usize,
    /// Seconds spent loading and preparing the model (before the first evaluation).
    pub load_s: f64,
}

/// Progress reported while the run goes.
pub enum Event<'a> {
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
}

/// Where and how to run.
pub struct TrainOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// An autodiff device.
    pub device: Device,
    /// Continue from the latest checkpoint in `run_dir`.
    pub resume: bool,
    /// The workers of a data-parallel run ([`SingleProcess`] for one): rollouts, evaluation and
    /// micro-batches are sharded across them, gradients summed; rank 0 writes the run folder.
    pub collective: Box<dyn Collective>,
}

/// What a checkpoint holds besides the weights and the optimizer.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    stream: DataStream,
    eval_history: Vec<(u64, f64)>,
}

const TRAINER_STATE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.bin";
const ADAPTER_DIR: &str = "adapter";
const WEIGHTS_DIR: &str = "model";
/// Salts of the random streams (XORed into the seed).
const ROLLOUT_SALT: u64 = 0x524f_4c4c;
const AQN_SALT: u64 = 0x0041_514e;
const MINIBATCH_SALT: u64 = 0x4d49_4e49;
const LORA_SALT: u64 = 0x4c4f_5241;

/// The model folder of `path` (`builtin:tiny` is unpacked from the binary).
pub fn resolve_model_dir(path: &str) -> Result<PathBuf, TrainError> {
    if path == BUILTIN_TINY {
        return crate::checkpoint::builtin::materialize_tiny()
            .map_err(ctx("unpacking the built-in tiny model"));
    }
    let dir = PathBuf::from(path);
    if !dir.join("config.json").exists() {
        return Err(TrainError::Setup(format!(
            "model.path = {path:?} is not an HF checkpoint folder (no config.json there); use a folder with config.json, model.safetensors and tokenizer.json, or {BUILTIN_TINY:?}"
        )));
    }
    Ok(dir)
}

/// The checkpoint `checkpoints/step_{step}` of a run (`None`: the latest), with its step.
pub fn find_checkpoint(run_dir: &Path, step: Option<u64>) -> Result<(u64, PathBuf), TrainError> {
    match step {
        None => latest_checkpoint(run_dir).ok_or_else(|| {
            TrainError::Setup(format!(
                "{} holds no checkpoint (checkpoints/step_N with {TRAINER_STATE})",
                run_dir.display()
            ))
        }),
        Some(step) => {
            let path = run_dir
                .join(crate::run::dir::CHECKPOINT_DIR)
                .join(format!("step_{step}"));
            if path.join(TRAINER_STATE).exists() {
                Ok((step, path))
            } else {
                let saved: Vec<String> = checkpoint_steps(run_dir)
                    .iter()
                    .map(u64::to_string)
                    .collect();
                Err(TrainError::Setup(format!(
                    "{} has no checkpoint of step {step}; saved steps: {}",
                    run_dir.display(),
                    if saved.is_empty() {
                        "none".into()
                    } else {
                        saved.join(", ")
                    }
                )))
            }
        }
    }
}

/// The steps of a run's saved checkpoints, ascending.
pub fn checkpoint_steps(run_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(crate::run::dir::CHECKPOINT_DIR)) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(TRAINER_STATE).exists())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("step_")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
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
    let dtype = config.model.dtype;
    let model = if keep_latent || config.model.base_storage == BaseStorage::Latent {
        load_qwen2_with(
            &weights_dir,
            device,
            &LoadPlan {
                packed: None,
                dtype,
            },
        )
        .map_err(ctx(format!("loading {}", weights_dir.display())))?
        .with_quantization(&config.quant)
        .map_err(ctx("applying [quant]"))?
    } else {
        load_qwen2_with(
            &weights_dir,
            device,
            &LoadPlan::packed(config.quant.clone(), dtype),
        )
        .map_err(ctx(format!("loading {}", weights_dir.display())))?
    };
    match (checkpoint, config.finetune.mode) {
        (Some(path), FinetuneMode::Lora) => model
            .with_lora_adapter(&path.join(ADAPTER_DIR))
            .map_err(ctx(format!("loading the adapter of {}", path.display()))),
        _ => Ok(model),
    }
}

/// The latest `checkpoints/step_N` folder of a run.
pub fn latest_checkpoint(run_dir: &Path) -> Option<(u64, PathBuf)> {
    let dir = run_dir.join(crate::run::dir::CHECKPOINT_DIR);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step_")?.parse::<u64>().ok()?;
            e.path()
                .join(TRAINER_STATE)
                .exists()
                .then_some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s)
}

/// One sampled response.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sample {
    /// Index into the tokenized training prompts.
    prompt: usize,
    /// Group id (unique within the step).
    group: u64,
    /// Response tokens (EOS included when it was generated), no padding.
    response: Vec<u32>,
    /// Reward.
    score: f64,
    /// Correctness.
    acc: bool,
    /// Whether the response hit the length limit.
    truncated: bool,
}

/// Counts the trainable parameters (those that require gradients).
fn trainable_params(model: &Qwen2ForCausalLM) -> usize {
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
fn weight_bytes(model: &Qwen2ForCausalLM) -> usize {
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

/// The trainer's state between steps.
struct Run<'a> {
    config: &'a TrainConfig,
    collective: &'a dyn Collective,
    device: Device,
    dir: RunDir,
    model_dir: PathBuf,
    tokenizer: Qwen2Tokenizer,
    problems: ProblemSet,
    train_prompts: Vec<Vec<u32>>,
    policy: Qwen2ForCausalLM,
    reference: Option<Qwen2ForCausalLM>,
    aqn: Option<Aqn>,
    optim: ModuleOptimizer,
    lr: LrSchedule,
    stream: DataStream,
    generation: GenerationConfig,
    eval_generation: GenerationConfig,
    total_steps: u64,
    eval_history: Vec<(u64, f64)>,
    packed_base: bool,
    load_s: f64,
}

/// Runs (or resumes) a training run; returns its summary.
pub fn train(
    config: &TrainConfig,
    options: &TrainOptions,
    mut on_event: impl FnMut(Event),
) -> Result<RunSummary, TrainError> {
    let started = Instant::now();
    let checkpoint = if options.resume {
        Some(latest_checkpoint(&options.run_dir).ok_or_else(|| {
            TrainError::Setup(format!(
                "--resume: {} holds no checkpoint (checkpoints/step_N with {TRAINER_STATE})",
                options.run_dir.display()
            ))
        })?)
    } else {
        None
    };
    let mut run = Run::new(config, options, checkpoint.as_ref())?;
    let state: Option<TrainerState> = match &checkpoint {
        Some((_, path)) => {
            let text = std::fs::read_to_string(path.join(TRAINER_STATE))
                .map_err(ctx(format!("reading {}", path.display())))?;
            Some(serde_json::from_str(&text).map_err(ctx(format!(
                "parsing {}",
                path.join(TRAINER_STATE).display()
            )))?)
        }
        None => None,
    };
    let start_step = state.as_ref().map_or(0, |s| s.step);
    if let Some(s) = state {
        run.stream = s.stream;
        run.eval_history = s.eval_history;
    }
    let run_steps = config
        .trainer
        .max_steps
        .map_or(run.total_steps, |m| m.min(run.total_steps));
    let plan = RunPlan {
        model: run.model_dir.display().to_string(),
        train_problems: run.problems.train.len(),
        eval_problems: run.eval_problems().len(),
        steps_per_epoch: run.stream.steps_per_epoch(),
        remainder: run.stream.remainder(),
        epochs: config.experiment.epochs,
        total_steps: run.total_steps,
        run_steps,
        start_step,
        trainable_params: trainable_params(&run.policy),
        description: describe(config),
        base_storage: if run.packed_base { "packed" } else { "latent" }.into(),
        weight_bytes: weight_bytes(&run.policy),
        load_s: run.load_s,
    };
    on_event(Event::Plan(&plan));
    if start_step == 0 {
        let result = run.evaluate(0, &mut on_event)?;
        run.eval_history.push((0, result.accuracy));
    }
    for step in start_step + 1..=run_steps {
        let metrics = run.step(step)?;
        on_event(Event::Step {
            step,
            metrics: &metrics,
        });
        let last = step == run_steps;
        if step % config.eval.test_freq == 0 || last {
            let result = run.evaluate(step, &mut on_event)?;
            run.eval_history.push((step, result.accuracy));
        }
        if (config.trainer.save_freq > 0 && step % config.trainer.save_freq == 0) || last {
            let path = run.save_checkpoint(step)?;
            on_event(Event::Checkpoint { step, path: &path });
        }
    }
    let summary = RunSummary::new(
        config,
        &run.eval_history,
        run_steps,
        started.elapsed().as_secs_f64(),
        &run.dir.root().display().to_string(),
    );
    run.dir.write_file(
        SUMMARY_FILE,
        &serde_json::to_string_pretty(&summary).expect("summary serializes"),
    )?;
    Ok(summary)
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
    format!(
        "{} | {quant} | {ft} | {aqn} | {hw} | {}",
        config.experiment.id,
        if config.algorithm.reward.kind == crate::task::reward::RewardKind::Dapo {
            "DAPO"
        } else {
            "GRPO"
        }
    )
}

impl<'a> Run<'a> {
    fn new(
        config: &'a TrainConfig,
        options: &'a TrainOptions,
        checkpoint: Option<&(u64, PathBuf)>,
    ) -> Result<Self, TrainError> {
        let device = options.device.clone();
        if !device.is_autodiff() {
            return Err(TrainError::Setup(
                "training needs an autodiff device".into(),
            ));
        }
        let collective = options.collective.as_ref();
        // Rank 0 writes the run folder; the other workers of a data-parallel run only read it.
        let dir = if collective.rank() == 0 {
            RunDir::open(&options.run_dir, checkpoint.map(|(s, _)| *s))?
        } else {
            RunDir::follower(&options.run_dir)
        };
        if checkpoint.is_none() {
            dir.write_file(CONFIG_FILE, &config.to_toml())?;
        }
        let model_dir = resolve_model_dir(&config.model.path)?;
        let tokenizer = Qwen2Tokenizer::from_dir(&model_dir).map_err(ctx(format!(
            "loading the tokenizer of {}",
            model_dir.display()
        )))?;
        let problems = ProblemSet::load(&config.data).map_err(ctx("loading the problems"))?;
        if problems.train.is_empty() || problems.test.is_empty() {
            return Err(TrainError::Setup(
                "the training or test set is empty".into(),
            ));
        }
        let mut train_prompts = Vec::with_capacity(problems.train.len());
        for (i, p) in problems.train.iter().enumerate() {
            let ids = prompt_ids(&tokenizer, &p.prompt)
                .map_err(ctx(format!("tokenizing training prompt {i}")))?;
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
                .map_err(ctx("reading the generation config"))?;
        let eval_generation = generation.clone();

        // The model: base (high precision) -> quantized -> LoRA on a frozen base, or all trainable.
        // A resumed full fine-tuning run starts from the checkpoint's weights, a resumed LoRA run
        // from the original base plus the checkpoint's adapter.
        let weights_dir = match (checkpoint, config.finetune.mode) {
            (Some((_, path)), FinetuneMode::Full) => path.join(WEIGHTS_DIR),
            _ => model_dir.clone(),
        };
        let t_load = Instant::now();
        let packed = config
            .base_storage_packed()
            .map_err(|e| TrainError::Setup(e.to_string()))?;
        let dtype = config.model.dtype;
        let latent_plan = LoadPlan {
            packed: None,
            dtype,
        };
        let quantized = if packed {
            // The frozen base straight from the file into codes: no f32 copy of it exists.
            load_qwen2_with(
                &weights_dir,
                &device,
                &LoadPlan::packed(config.quant.clone(), dtype),
            )
            .map_err(ctx(format!("loading {}", weights_dir.display())))?
        } else {
            load_qwen2_with(&weights_dir, &device, &latent_plan)
                .map_err(ctx(format!("loading {}", weights_dir.display())))?
                .with_quantization(&config.quant)
                .map_err(ctx("applying [quant]"))?
        };
        let needs_reference = config.algorithm.kl.placement != KlPlacement::None;
        let (policy, reference) = match config.finetune.mode {
            FinetuneMode::Lora => {
                // The reference is the frozen base itself (its tensors or codes are shared).
                let reference = needs_reference.then(|| quantized.clone().no_grad().valid());
                let policy = match checkpoint {
                    Some((_, path)) => quantized
                        .with_lora_adapter(&path.join(ADAPTER_DIR))
                        .map_err(ctx(format!("loading the adapter of {}", path.display())))?,
                    None => {
                        let mut lora = config.finetune.lora.clone();
                        lora.seed = counter_hash(config.trainer.seed ^ LORA_SALT, lora.seed);
                        quantized
                            .with_lora(&lora)
                            .map_err(ctx("attaching LoRA adapters ([finetune.lora])"))?
                    }
                };
                (policy, reference)
            }
            FinetuneMode::Full => {
                let policy = quantized
                    .for_full_finetuning()
                    .map_err(ctx("preparing full fine-tuning"))?;
                // The reference is the initial model, also when resuming; it is frozen, so it is
                // held packed (the same bits, the codes' memory).
                let reference = match (needs_reference, checkpoint) {
                    (false, _) => None,
                    (true, None) => Some(
                        policy
                            .clone()
                            .no_grad()
                            .valid()
                            .into_packed(dtype)
                            .map_err(ctx("packing the reference policy"))?,
                    ),
                    (true, Some(_)) => Some(
                        load_qwen2_with(
                            &model_dir,
                            &device,
                            &LoadPlan::packed(config.quant.clone(), dtype),
                        )
                        .map_err(ctx(format!(
                            "loading the reference {}",
                            model_dir.display()
                        )))?
                        .valid(),
                    ),
                };
                (policy, reference)
            }
        };
        let policy = match &config.hw_noise {
            Some(hw) => policy.with_hw_noise(hw).map_err(ctx("wiring [hw_noise]"))?,
            None => policy,
        };
        // Ids from names, so a resumed run's optimizer state attaches to the rebuilt model.
        let policy = policy.with_name_param_ids();

        let gen_batch = config.batch.generation();
        let stream = DataStream::new(config.trainer.seed, problems.train.len(), gen_batch);
        if stream.steps_per_epoch() == 0 {
            return Err(TrainError::Setup(format!(
                "{} training prompts make no whole generation batch of {gen_batch} (batch.gen_batch_size)",
                problems.train.len()
            )));
        }
        let total_steps = stream.steps_per_epoch() * config.experiment.epochs;
        let run_length = RunLength {
            epochs: config.experiment.epochs,
            steps_per_epoch: stream.steps_per_epoch(),
        };

        let aqn = match &config.aqn {
            None => None,
            Some(aqn_config) => Some(match Aqn::new(aqn_config, &policy, run_length) {
                Err(AqnError::RinNeedsReport { .. }) => {
                    // The RIN policy reads per-layer errors and no report was given: scan the
                    // high-precision base model now, with the run's format (MXFP4 for BF16 runs,
                    // as the seed's scans), and keep the report in the run folder.
                    let spec = if config.quant.mode == crate::qat::QuantMode::Bf16 {
                        crate::formats::QuantSpec::new(crate::formats::QuantFormat::Mxfp4)
                    } else {
                        config.quant.weights
                    };
                    let prompts: Vec<Vec<u32>> =
                        train_prompts.iter().take(SRDD_PROMPTS).cloned().collect();
                    // The scan reads the high-precision base: loaded for it, then dropped.
                    let base = load_qwen2_with(&model_dir, &device, &latent_plan).map_err(ctx(
                        format!("loading {} for the SRDD scan", model_dir.display()),
                    ))?;
                    let metrics =
                        scan(&base.valid(), &prompts, SrddCapture::Outputs, &spec, |_| {})
                            .map_err(ctx("SRDD scan for RIN"))?;
                    drop(base);
                    let report = build_report(
                        &model_dir.display().to_string(),
                        &spec,
                        SrddCapture::Outputs,
                        Default::default(),
                        &metrics,
                    )
                    .map_err(ctx("SRDD report for RIN"))?;
                    dir.write_file(SRDD_FILE, &report.to_json())?;
                    Aqn::with_report(aqn_config, &policy, run_length, Some(&report))?
                }
                other => other?,
            }),
        };

        let optim = config.optim.adamw.init().map_err(ctx("[optim.adamw]"))?;
        let optim = match checkpoint {
            Some((_, path)) => {
                optim
                    .load(path.join(OPTIMIZER_FILE))
                    .map_err(|e| TrainError::Other {
                        context: format!("loading {}", path.join(OPTIMIZER_FILE).display()),
                        message: format!("{e:?}"),
                    })?
            }
            None => optim,
        };
        let lr = config
            .optim
            .schedule
            .build(config.optim.lr, total_steps)
            .map_err(ctx("[optim.schedule]"))?;
        Ok(Self {
            config,
            collective,
            device,
            dir,
            model_dir,
            tokenizer,
            problems,
            train_prompts,
            policy,
            reference,
            aqn,
            optim,
            lr,
            stream,
            generation,
            eval_generation,
            total_steps,
            eval_history: Vec::new(),
            packed_base: packed,
            load_s: t_load.elapsed().as_secs_f64(),
        })
    }

    fn eval_problems(&self) -> &[crate::task::Problem] {
        let n = self.config.eval.problems;
        if n == 0 {
            &self.problems.test
        } else {
            &self.problems.test[..n.min(self.problems.test.len())]
        }
    }

    /// Noise-free evaluation in the trained quantization mode (and BF16 when asked).
    fn evaluate(
        &mut self,
        step: u64,
        on_event: &mut impl FnMut(Event),
    ) -> Result<EvalResult, TrainError> {
        let model = self.policy.valid();
        let result = self.evaluate_sharded(&model)?;
        let mut metrics = StepMetrics::new();
        metrics.insert("val/accuracy".into(), result.accuracy);
        metrics.insert("val/accuracy_flexible".into(), result.accuracy_flexible);
        metrics.insert("val/response_length".into(), result.mean_response_tokens);
        if self.config.eval.bf16 && self.config.quant.mode != crate::qat::QuantMode::Bf16 {
            let bf16 = model
                .with_quantization(&QuantConfig::default())
                .map_err(ctx("BF16 evaluation"))?;
            let r = self.evaluate_sharded(&bf16)?;
            metrics.insert("val_bf16/accuracy".into(), r.accuracy);
        }
        self.dir.log_step(step, &metrics)?;
        on_event(Event::Eval {
            step,
            result: &result,
        });
        Ok(result)
    }

    /// [`evaluate`] of `model` on the evaluation problems, the generation batches shared among
    /// the workers (every worker returns the whole result).
    fn evaluate_sharded(&self, model: &Qwen2ForCausalLM) -> Result<EvalResult, TrainError> {
        let c = self.collective;
        let part = evaluate_part(
            model,
            &self.tokenizer,
            self.eval_problems(),
            &self.eval_generation,
            self.config.eval.batch_size,
            (c.rank(), c.world_size()),
            |_| {},
        )?;
        let parts = all_gather_json(c, &part);
        Ok(EvalPart::merge(&parts, self.eval_problems().len()))
    }

    /// Generates one batch of groups for `step` (`batch` is the generation batch's index).
    fn rollout(
        &mut self,
        model: &Qwen2ForCausalLM,
        step: u64,
        batch: u64,
    ) -> Result<Vec<Sample>, TrainError> {
        let cfg = self.config;
        let prompts = self.stream.next(cfg.batch.generation());
        let n = cfg.rollout.n;
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|&p| std::iter::repeat_n(self.train_prompts[p].clone(), n))
            .collect();
        let sampling = SamplingConfig {
            temperature: cfg.rollout.temperature,
            top_k: (cfg.rollout.top_k > 0).then_some(cfg.rollout.top_k),
            top_p: (cfg.rollout.top_p < 1.0).then_some(cfg.rollout.top_p),
            seed: counter_hash(cfg.trainer.seed ^ ROLLOUT_SALT, step * 1024 + batch),
        };
        // Each row draws from its own stream (seeded by its index in the batch), so a row's
        // response does not depend on how the rows are grouped: in micro-batches (which bound
        // the KV cache) or across the workers of a data-parallel run, which take the groups
        // of a contiguous block of prompts each.
        let c = self.collective;
        let mine = shard(prompts.len(), c.rank(), c.world_size());
        let my_rows = mine.start * n..mine.end * n;
        let micro = match cfg.rollout.micro_batch_size {
            0 => my_rows.len().max(1),
            m => m.min(my_rows.len().max(1)),
        };
        let mut rows: Vec<(Vec<u32>, bool)> = Vec::with_capacity(my_rows.len());
        let row_ids: Vec<usize> = my_rows.collect();
        for chunk in row_ids.chunks(micro) {
            let mut samplers = chunk
                .iter()
                .map(|&r| {
                    SamplingConfig {
                        seed: counter_hash(sampling.seed, r as u64),
                        ..sampling.clone()
                    }
                    .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(ctx("[rollout] sampling"))?;
            let chunk_ids: Vec<Vec<u32>> = chunk.iter().map(|&r| ids[r].clone()).collect();
            let rollout = generate_with(
                model,
                &chunk_ids,
                &self.generation,
                RowSampling::PerRow(&mut samplers),
            )
            .map_err(ctx(format!("generating step {step}")))?;
            for ((len, finished), response) in rollout
                .lengths()
                .into_iter()
                .zip(rollout.finished)
                .zip(rollout.responses)
            {
                rows.push((response[..len].to_vec(), finished));
            }
        }
        let mut samples = Vec::with_capacity(rows.len());
        for (row, (response, finished)) in (mine.start * n..).zip(rows) {
            let len = response.len();
            let prompt = prompts[row / n];
            let text = self
                .tokenizer
                .decode(&response, true)
                .map_err(ctx("decoding a response"))?;
            let outcome = cfg.algorithm.reward.score(
                &text,
                &self.problems.train[prompt].answer,
                len,
                cfg.rollout.max_response_len,
            );
            samples.push(Sample {
                prompt,
                group: batch * 1_000_000 + (row / n) as u64,
                response,
                score: outcome.score,
                acc: outcome.acc,
                truncated: !finished,
            });
        }
        // Every worker continues with the whole batch, in row order.
        Ok(all_gather_json(c, &samples).into_iter().flatten().collect())
    }

    /// The samples of each mini-batch (`[mini][micro]` index ranges into `samples`): mini-batches
    /// of `ppo_mini_batch_size * n` responses, each cut into micro-batches of
    /// `ppo_micro_batch_size` responses (one piece when it is 0).
    ///
    /// In a data-parallel run a mini-batch given in one piece is cut into one micro-batch per
    /// worker (the same update, the loss normalized by the whole mini-batch).
    fn micro_batches(&self, total: usize) -> Vec<Vec<std::ops::Range<usize>>> {
        let cfg = self.config;
        let rows = cfg.batch.mini() * cfg.rollout.n;
        let world = self.collective.world_size();
        let micro = match cfg.batch.micro(cfg.rollout.n) {
            m if m >= rows && world > 1 => rows.div_ceil(world),
            m => m,
        };
        (0..total.div_ceil(rows))
            .map(|mb| {
                let (start, end) = (mb * rows, ((mb + 1) * rows).min(total));
                (start..end)
                    .step_by(micro)
                    .map(|a| a..(a + micro).min(end))
                    .collect()
            })
            .collect()
    }

    /// Whether this worker computes micro-batch `u` of a mini-batch (micro-batches go round-robin
    /// over the workers of a data-parallel run).
    fn owns(&self, u: usize) -> bool {
        u % self.collective.world_size() == self.collective.rank()
    }

    /// Log-probs of `samples` under `model` (no gradient), one tensor per micro-batch of
    /// [`Self::micro_batches`] that this worker owns (`None` for the others').
    fn logprobs(
        &self,
        model: &Qwen2ForCausalLM,
        samples: &[Sample],
    ) -> Vec<Vec<Option<Tensor<2>>>> {
        let model = model.valid();
        self.micro_batches(samples.len())
            .into_iter()
            .map(|micros| {
                micros
                    .into_iter()
                    .enumerate()
                    .map(|(u, r)| {
                        self.owns(u).then(|| {
                            response_logprobs(&model, &self.batch_of(&samples[r]), false).0
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn batch_of(&self, samples: &[Sample]) -> SequenceBatch {
        let prompts: Vec<Vec<u32>> = samples
            .iter()
            .map(|s| self.train_prompts[s.prompt].clone())
            .collect();
        let responses: Vec<Vec<u32>> = samples.iter().map(|s| s.response.clone()).collect();
        SequenceBatch::new(
            &prompts,
            &responses,
            self.generation.pad_token_id,
            &self.device,
        )
    }

    fn step(&mut self, step: u64) -> Result<StepMetrics, TrainError> {
        let cfg = self.config;
        let t0 = Instant::now();
        let mut metrics = StepMetrics::new();
        let seed = cfg.trainer.seed;

        // AQN: one draw per step, shared by the phases that get it.
        let (noisy, audit) = match &self.aqn {
            Some(aqn) => {
                let (m, audit) =
                    aqn.apply(&self.policy, step, counter_hash(seed ^ AQN_SALT, step))?;
                (Some(m), Some(audit))
            }
            None => (None, None),
        };
        if let Some(audit) = &audit {
            self.dir.log_audit(&audit.to_json_line())?;
            metrics.insert("aqn/sigma".into(), audit.sigma);
            let ratios: Vec<f64> = audit.targets.iter().filter_map(|t| t.ratio()).collect();
            if !ratios.is_empty() {
                metrics.insert(
                    "aqn/realized_std_ratio".into(),
                    ratios.iter().sum::<f64>() / ratios.len() as f64,
                );
            }
        }
        let weights_for = |phase: Phase| -> &Qwen2ForCausalLM {
            match (&self.aqn, &noisy) {
                (Some(aqn), Some(m)) if aqn.noises(phase) => m,
                _ => &self.policy,
            }
        };
        let rollout_model = weights_for(Phase::Rollout).for_phase(Phase::Rollout, step);
        let train_model = weights_for(Phase::Training).for_phase(Phase::Training, step);

        // 1. Rollouts, with dynamic sampling when configured.
        let target = cfg.batch.train();
        let mut samples: Vec<Sample> = Vec::new();
        let (mut generated, mut gen_correct, mut gen_batches) = (0usize, 0usize, 0u64);
        let mut gen_tokens = 0usize;
        if cfg.algorithm.filter_groups.enable {
            let mut sampler = cfg
                .algorithm
                .filter_groups
                .sampler(target)
                .map_err(ctx("dynamic sampling"))?;
            loop {
                let batch = self.rollout(&rollout_model, step, gen_batches)?;
                gen_batches += 1;
                generated += batch.len();
                gen_tokens += batch.iter().map(|s| s.response.len()).sum::<usize>();
                gen_correct += batch.iter().filter(|s| s.acc).count();
                let ids: Vec<u64> = batch.iter().map(|s| s.group).collect();
                let metric: Vec<f64> = batch
                    .iter()
                    .map(|s| match cfg.algorithm.filter_groups.metric {
                        FilterMetric::Acc => f64::from(u8::from(s.acc)),
                        FilterMetric::Score | FilterMetric::SeqFinalReward => s.score,
                    })
                    .collect();
                let out = sampler
                    .offer(&ids, &metric)
                    .map_err(|e| TrainError::Setup(format!("step {step}: {e}")))?;
                samples.extend(out.keep.iter().map(|&i| batch[i].clone()));
                if out.status == SamplerStatus::Done {
                    break;
                }
            }
            metrics.extend(
                sampler
                    .metrics()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v)),
            );
        } else {
            samples = self.rollout(&rollout_model, step, 0)?;
            gen_batches = 1;
            generated = samples.len();
            gen_tokens = samples.iter().map(|s| s.response.len()).sum();
            gen_correct = samples.iter().filter(|s| s.acc).count();
        }
        let t_rollout = t0.elapsed().as_secs_f64();

        // 2. Old and reference log-probs.
        let t1 = Instant::now();
        let on_policy = cfg.batch.ppo_epochs == 1
            && cfg.batch.mini() == cfg.batch.train()
            && cfg.finetune.lora.dropout == 0.0
            && !cfg
                .hw_noise
                .as_ref()
                .is_some_and(|h| h.phase.includes(Phase::Training));
        let old: Option<Vec<Vec<Option<Tensor<2>>>>> =
            (!on_policy).then(|| self.logprobs(&train_model, &samples));
        let reference: Option<Vec<Vec<Option<Tensor<2>>>>> =
            self.reference.as_ref().map(|r| self.logprobs(r, &samples));

        // 3. Rewards (KL in the reward when configured), advantages.
        let mut scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        if cfg.algorithm.kl.placement == KlPlacement::Reward {
            let old_all = old
                .clone()
                .unwrap_or_else(|| self.logprobs(&train_model, &samples));
            let refs = reference
                .as_ref()
                .expect("a KL placement builds the reference");
            // The penalized scores of the owned micro-batches (zeros elsewhere, so the sum over
            // the workers is every score), then the KL metrics as sequence-weighted sums.
            let mut penalized = vec![0.0f64; samples.len()];
            let mut kl_metrics = StepMetrics::new();
            let ranges = self.micro_batches(samples.len()).into_iter().flatten();
            for ((range, o), r) in ranges
                .zip(old_all.iter().flatten())
                .zip(refs.iter().flatten())
            {
                let (Some(o), Some(r)) = (o, r) else {
                    continue;
                };
                let mask = self.batch_of(&samples[range.clone()]).response_mask;
                let (p, m) = compute_kl_in_reward(
                    &scores[range.clone()],
                    o.clone(),
                    r.clone(),
                    mask,
                    &cfg.algorithm.kl,
                )
                .map_err(ctx("KL in reward"))?;
                penalized[range.clone()].copy_from_slice(&p);
                for (k, v) in m {
                    *kl_metrics.entry(k.to_string()).or_default() += v * range.len() as f64;
                }
            }
            self.collective.sum_f64(&mut penalized);
            scores = penalized;
            for (k, v) in sum_metrics(self.collective, &kl_metrics) {
                metrics.insert(k, v / samples.len().max(1) as f64);
            }
        }
        let groups: Vec<u64> = samples.iter().map(|s| s.group).collect();
        let advantages = cfg
            .algorithm
            .estimator
            .compute(&scores, &groups)
            .map_err(ctx("advantages"))?;

        // 4. PPO epochs over mini-batches, each in micro-batches.
        let micro_batches = self.micro_batches(samples.len());
        let n_mini = micro_batches.len();
        let mut actor: StepMetrics = StepMetrics::new();
        let mut updates = 0usize;
        let mut skipped = 0usize;
        for epoch in 0..cfg.batch.ppo_epochs {
            let mut order: Vec<usize> = (0..n_mini).collect();
            if epoch > 0 {
                let mut rng = CounterRng::new(counter_hash(
                    seed ^ MINIBATCH_SALT,
                    step * 64 + epoch as u64,
                ));
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            for &mb in &order {
                // This worker's micro-batches of the mini-batch; the loss is normalized by all.
                let counts = MiniBatchCounts {
                    micro_batches: micro_batches[mb].len(),
                    tokens: micro_batches[mb]
                        .iter()
                        .flat_map(|r| &samples[r.clone()])
                        .map(|s| s.response.len())
                        .sum(),
                    sequences: micro_batches[mb]
                        .iter()
                        .flat_map(|r| &samples[r.clone()])
                        .filter(|s| !s.response.is_empty())
                        .count(),
                };
                let micros: Vec<PolicyMicroBatch> = micro_batches[mb]
                    .iter()
                    .enumerate()
                    .filter(|(u, _)| self.owns(*u))
                    .map(|(u, range)| PolicyMicroBatch {
                        batch: self.batch_of(&samples[range.clone()]),
                        advantages: advantages[range.clone()].to_vec(),
                        old_log_prob: old.as_ref().and_then(|o| o[mb][u].clone()),
                        ref_log_prob: match (cfg.algorithm.kl.placement, &reference) {
                            (KlPlacement::Loss, Some(r)) => r[mb][u].clone(),
                            _ => None,
                        },
                    })
                    .collect();
                let settings = PolicyLossSettings {
                    actor: &cfg.actor,
                    kl: &cfg.algorithm.kl,
                    entropy_coeff: cfg.algorithm.entropy_coeff,
                    loss_scale_factor: (cfg.actor.loss_agg_mode == AggMode::SeqMeanTokenSumNorm
                        && cfg.actor.loss_scale_factor.is_none())
                    .then_some(cfg.rollout.max_response_len as f64),
                };
                let (grads, m) = policy_gradients_of(&train_model, &micros, counts, &settings)
                    .map_err(ctx("actor loss"))?;
                // Data-parallel: the mini-batch's gradients and loss metrics are the sums of the
                // workers' (the identity for one process).
                let grads = sum_gradients(self.collective, &train_model, grads);
                for (k, v) in sum_metrics(self.collective, &m) {
                    *actor.entry(k).or_default() += v;
                }
                let lr = self.lr.lr(step);
                let grads = if cfg.optim.grad_clip > 0.0 {
                    match clip_grad_norm(&self.policy, grads, cfg.optim.grad_clip)
                        .map_err(ctx("gradient clipping"))?
                    {
                        ClippedGrads::Finite { grads, report } => {
                            *actor.entry("actor/grad_norm".into()).or_default() += report.grad_norm;
                            Some(grads)
                        }
                        ClippedGrads::NonFinite { .. } => None,
                    }
                } else {
                    Some(grads)
                };
                match grads {
                    Some(grads) => {
                        self.policy = self.optim.step(lr, self.policy.clone(), grads);
                        updates += 1;
                    }
                    None => skipped += 1,
                }
                metrics.insert("actor/lr".into(), lr);
            }
        }
        for (k, v) in actor {
            let denom = if k == "actor/grad_norm" {
                updates.max(1)
            } else {
                updates + skipped
            };
            metrics.insert(k, v / denom.max(1) as f64);
        }
        if skipped > 0 {
            metrics.insert("actor/skipped_updates".into(), skipped as f64);
        }
        let t_update = t1.elapsed().as_secs_f64();

        let n = samples.len().max(1) as f64;
        metrics.insert("reward/mean".into(), scores.iter().sum::<f64>() / n);
        metrics.insert(
            "reward/acc".into(),
            samples.iter().filter(|s| s.acc).count() as f64 / n,
        );
        metrics.insert(
            "reward/gen_acc".into(),
            gen_correct as f64 / generated.max(1) as f64,
        );
        metrics.insert(
            "response_length/mean".into(),
            samples.iter().map(|s| s.response.len()).sum::<usize>() as f64 / n,
        );
        metrics.insert(
            "response_length/clip_ratio".into(),
            samples.iter().filter(|s| s.truncated).count() as f64 / n,
        );
        metrics.insert("dapo/num_gen_batches".into(), gen_batches as f64);
        metrics.insert(
            "epoch".into(),
            ((step - 1) / self.stream.steps_per_epoch() + 1) as f64,
        );
        metrics.insert("timing/rollout_s".into(), t_rollout);
        metrics.insert(
            "timing/rollout_tokens_per_s".into(),
            gen_tokens as f64 / t_rollout.max(1e-9),
        );
        metrics.insert("timing/update_s".into(), t_update);
        metrics.insert("timing/step_s".into(), t0.elapsed().as_secs_f64());
        self.dir.log_step(step, &metrics)?;
        Ok(metrics)
    }

    fn save_checkpoint(&mut self, step: u64) -> Result<PathBuf, TrainError> {
        let path = self.dir.checkpoint(step);
        if !self.dir.writes() {
            // Another worker (rank 0) writes it: every worker holds the same state.
            return Ok(path);
        }
        std::fs::create_dir_all(&path).map_err(ctx(format!("creating {}", path.display())))?;
        match self.config.finetune.mode {
            FinetuneMode::Lora => crate::checkpoint::save_lora_adapter(
                &self.policy.valid(),
                &path.join(ADAPTER_DIR),
                &self.model_dir.display().to_string(),
            )
            .map_err(ctx("saving the adapter"))?,
            FinetuneMode::Full => {
                let eos = self
                    .generation
                    .eos_token_ids
                    .first()
                    .copied()
                    .unwrap_or(self.generation.pad_token_id);
                crate::checkpoint::save::save_qwen2(
                    &self.policy.valid(),
                    &path.join(WEIGHTS_DIR),
                    crate::tensor_file::FloatDtype::F32,
                    eos,
                    self.generation.pad_token_id,
                )
                .map_err(ctx("saving the weights"))?;
                // The tokenizer files make the checkpoint a complete HF folder.
                for f in ["tokenizer.json", "tokenizer_config.json"] {
                    let _ = std::fs::copy(self.model_dir.join(f), path.join(WEIGHTS_DIR).join(f));
                }
            }
        }
        self.optim
            .save(path.join(OPTIMIZER_FILE))
            .map_err(|e| TrainError::Other {
                context: "saving the optimizer".into(),
                message: format!("{e:?}"),
            })?;
        let state = TrainerState {
            step,
            stream: self.stream.clone(),
            eval_history: self.eval_history.clone(),
        };
        std::fs::write(
            path.join(TRAINER_STATE),
            serde_json::to_string_pretty(&state).expect("state serializes"),
        )
        .map_err(ctx(format!(
            "writing {}",
            path.join(TRAINER_STATE).display()
        )))?;
        Ok(path)
    }
}

/// Prompts the SRDD scan of a RIN policy uses.
const SRDD_PROMPTS: usize = 32;
/// The scanned report's file in the run folder.
const SRDD_FILE: &str = "srdd_report.json";
