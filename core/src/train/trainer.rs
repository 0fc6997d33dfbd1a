//! The GRPO / Dr.GRPO / DAPO trainer (docs/spec.md section 7) with fake quantization, LoRA, AQN and
//! hardware-error injection: `aqn-native train`.
//!
//! [`train`] sets the run up ([`setup`](super::setup): model, tokenizer, problems, policy and
//! reference, AQN, optimizer), evaluates the initial model, then runs its steps. One step:
//! 0. AQN draws the step's noise on a copy of the weights (one draw, shared by the phases that
//!    get it), and each phase gets its model: the rollout policy (the weights + AQN noise + the
//!    rollout phase's HW noise, quantized as configured) and the training policy (the same
//!    weights, clean unless AQN/HW noise is configured for the training phase);
//! 1. rollouts ([`rollout`](super::rollout)): the rollout policy samples `n` responses for each
//!    prompt of a generation batch; DAPO's dynamic sampling generates further batches (bounded)
//!    until the train batch is full;
//! 2. log-probs ([`log_probs`](super::log_probs)): the training policy's old log-probs, and the
//!    reference policy's (the initial model: the frozen base for LoRA, a frozen copy for full
//!    fine-tuning) when a KL term is configured;
//! 3. rewards and advantages ([`advantages`](super::advantages)): the KL penalty when it goes
//!    into the reward, group advantages;
//! 4. the update ([`update`](super::update)): `ppo_epochs` passes over mini-batches
//!    ([`mini_batches`](super::mini_batches)), each one optimizer step (clipped loss, KL and
//!    entropy terms, global-norm clipping, AdamW at the scheduled learning rate);
//! 5. the step's metrics ([`metric_keys`](crate::run::metric_keys)), one line of `metrics.jsonl`.
//!
//! Evaluation ([`validation`](super::validation)) runs at step 0, every `test_freq` steps and
//! always at the final step; checkpoints ([`checkpoints`](super::checkpoints)) are saved every
//! `save_freq` steps and at the final step. Every random draw is keyed by (seed, step, ...), so
//! a run resumed from a checkpoint reproduces the uninterrupted one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::advantages;
use super::checkpoints::{Origin, Snapshot, TrainerState, resume_point, save_checkpoint};
use super::collective::Collective;
use super::config::{RunFacts, TrainConfig};
use super::data::DataStream;
use super::error::{Context, TrainError};
use super::log_probs::StepLogProbs;
use super::memory::{MemoryEstimate, available_memory, shortfall};
use super::mini_batches::MiniBatches;
use super::mismatch::StepRows;
use super::progress::{Event, RunPlan, describe, trainable_params, weight_bytes};
use super::retention::prune_checkpoints;
use super::rollout;
use super::setup::{self, Policies, RunContext};
use super::summary::RunSummary;
use super::update::{Learner, UpdateData, ppo_update};
use super::validation::validate;
use crate::aqn::Aqn;
use crate::cpu::host::is_host_device;
use crate::model::Qwen2ForCausalLM;
use crate::phase::Phase;
use crate::rl::lr_schedule::LrSchedule;
use crate::rng::counter_hash;
use crate::run::dir::{CONFIG_FILE, RunDir, SUMMARY_FILE, StepMetrics};
use crate::run::metric_keys::{
    EPOCH, TIMING_ROLLOUT_S, TIMING_ROLLOUT_TOKENS_PER_S, TIMING_STEP_S, TIMING_UPDATE_S,
};
use crate::schedule::RunLength;

/// Salt of the AQN noise streams (XORed into the seed).
const AQN_SALT: u64 = 0x0041_514e;

/// Where and how to run.
pub struct TrainOptions {
    /// The run folder. `train` writes into it without asking whose it is: the caller takes it
    /// first with [`crate::run::claim::claim`] (the mark and the lock), as the CLI does.
    pub run_dir: PathBuf,
    /// An autodiff device.
    pub device: Device,
    /// Continue from the latest complete checkpoint in `run_dir`.
    pub resume: bool,
    /// The workers of a data-parallel run ([`SingleProcess`](super::SingleProcess) for one):
    /// rollouts, evaluation and micro-batches are sharded across them, gradients summed; rank 0
    /// writes the run folder.
    pub collective: Box<dyn Collective>,
    /// The configuration keys the user chose ([`ConfigSources::resolve_with_choices`]): those
    /// bounded by the loaded run (`trainer.save_freq`, `trainer.max_actor_ckpt_to_keep`,
    /// `rollout.top_k`, `eval.problems`) are
    /// checked against it before the model loads. Empty for `--resume` (checked at the start).
    ///
    /// [`ConfigSources::resolve_with_choices`]: super::config::ConfigSources::resolve_with_choices
    pub chosen_keys: BTreeSet<String>,
}

/// Runs (or resumes) a training run; returns its summary.
pub fn train(
    config: &TrainConfig,
    options: &TrainOptions,
    mut on_event: impl FnMut(Event),
) -> Result<RunSummary, TrainError> {
    let started = Instant::now();
    let checkpoint = if options.resume {
        let point = resume_point(&options.run_dir)?;
        for skipped in &point.skipped {
            on_event(Event::SkippedCheckpoint {
                path: &skipped.path,
                reason: &skipped.reason,
            });
        }
        Some((point.step, point.path))
    } else {
        None
    };
    let mut run = Run::new(config, options, checkpoint.as_ref())?;
    let start_step = match &checkpoint {
        Some((_, path)) => run.restore(TrainerState::read(path)?),
        None => 0,
    };
    let run_steps = run_steps(config, run.total_steps);
    on_event(Event::Plan(&run.plan(start_step, run_steps)));
    if start_step == 0 {
        run.evaluate(0, &mut on_event)?;
    }
    for step in start_step + 1..=run_steps {
        let metrics = run.step(step)?;
        on_event(Event::Step {
            step,
            metrics: &metrics,
        });
        let last = step == run_steps;
        if step % config.eval.test_freq == 0 || last {
            run.evaluate(step, &mut on_event)?;
        }
        if (config.trainer.save_freq > 0 && step % config.trainer.save_freq == 0) || last {
            let path = run.save(step)?;
            on_event(Event::Checkpoint { step, path: &path });
            if let (Some(keep), true) = (config.trainer.max_actor_ckpt_to_keep, run.dir.writes()) {
                for removed in prune_checkpoints(run.dir.root(), keep)? {
                    on_event(Event::CheckpointRemoved { path: &removed });
                }
            }
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

/// The steps this run takes: the whole run, or `trainer.max_steps` of it.
fn run_steps(config: &TrainConfig, total_steps: u64) -> u64 {
    config
        .trainer
        .max_steps
        .map_or(total_steps, |m| m.min(total_steps))
}

/// The trainer's state between steps.
struct Run<'a> {
    ctx: RunContext<'a>,
    dir: RunDir,
    policy: Qwen2ForCausalLM,
    reference: Option<Qwen2ForCausalLM>,
    aqn: Option<Aqn>,
    optim: ModuleOptimizer,
    lr: LrSchedule,
    stream: DataStream,
    total_steps: u64,
    eval_history: Vec<(u64, f64)>,
    packed_base: bool,
    /// How a pre-quantized base was read (its codes and scales as stored), for the plan.
    prequantized: Option<String>,
    /// The run's memory estimate.
    memory: MemoryEstimate,
    load_s: f64,
}

impl<'a> Run<'a> {
    /// Opens the run folder and sets the run up (from `checkpoint` when resuming).
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
            RunDir::open(&options.run_dir, checkpoint.map(|(step, _)| *step))?
        } else {
            RunDir::follower(&options.run_dir)
        };
        if checkpoint.is_none() {
            dir.write_file(CONFIG_FILE, &config.to_toml())?;
        }
        let ctx = RunContext::load(config, collective, device)?;
        let stream = setup::data_stream(config, ctx.problems.train.len())?;
        let total_steps = stream.steps_per_epoch() * config.experiment.epochs;
        let model_config = ctx.model_config()?;
        let facts = RunFacts {
            run_steps: run_steps(config, total_steps),
            vocab_size: model_config.vocab_size,
            test_problems: ctx.problems.test.len(),
        };
        config.check_run_effect(&facts, &options.chosen_keys)?;
        let packed = config.base_storage_packed()?;
        let prequantized = crate::checkpoint::quantization_config::detect(&ctx.model_dir)
            .map_err(TrainError::Setup)?
            .map(|p| p.describe());
        let longest_prompt = ctx.train_prompts.iter().map(Vec::len).max().unwrap_or(0);
        let memory = MemoryEstimate::of(config, &model_config, packed, longest_prompt);
        // On the CPU backends the machine's memory holds everything.
        if is_host_device(&options.device)
            && let Some(why) = available_memory().and_then(|a| shortfall(&memory, a))
        {
            return Err(TrainError::Setup(why));
        }
        let checkpoint = checkpoint.map(|(_, path)| path.as_path());
        let t_load = Instant::now();
        let Policies { policy, reference } = Policies::build(&ctx, checkpoint, packed)?;
        let run_length = RunLength {
            epochs: config.experiment.epochs,
            steps_per_epoch: stream.steps_per_epoch(),
        };
        let aqn = setup::aqn(&ctx, &policy, run_length, &dir)?;
        let optim = setup::optimizer(config, checkpoint)?;
        let lr = config
            .optim
            .schedule
            .build(config.optim.lr, total_steps)
            .context("[optim.schedule]")?;
        Ok(Self {
            ctx,
            dir,
            policy,
            reference,
            aqn,
            optim,
            lr,
            stream,
            total_steps,
            eval_history: Vec::new(),
            packed_base: packed,
            prequantized,
            memory,
            load_s: t_load.elapsed().as_secs_f64(),
        })
    }

    /// Continues from a checkpoint's trainer state; returns its step.
    fn restore(&mut self, state: TrainerState) -> u64 {
        self.stream = state.stream;
        self.eval_history = state.eval_history;
        state.step
    }

    /// What the run is about to do.
    fn plan(&self, start_step: u64, run_steps: u64) -> RunPlan {
        let config = self.ctx.config;
        RunPlan {
            model: self.ctx.model_dir.display().to_string(),
            train_problems: self.ctx.problems.train.len(),
            eval_problems: self.ctx.eval_problems().len(),
            steps_per_epoch: self.stream.steps_per_epoch(),
            remainder: self.stream.remainder(),
            epochs: config.experiment.epochs,
            total_steps: self.total_steps,
            run_steps,
            start_step,
            trainable_params: trainable_params(&self.policy),
            description: describe(config),
            base_storage: match (&self.prequantized, self.packed_base) {
                (Some(how), _) => format!("packed ({how})"),
                (None, true) => "packed".into(),
                (None, false) => "latent".into(),
            },
            weight_bytes: weight_bytes(&self.policy),
            memory: self.memory,
            load_s: self.load_s,
        }
    }

    /// One step, as the module docs number it; returns its metrics.
    fn step(&mut self, step: u64) -> Result<StepMetrics, TrainError> {
        let t0 = Instant::now();
        let ctx = &self.ctx;
        let mut metrics = StepMetrics::new();

        // 0. AQN's noise of the step, and each phase's model.
        let aqn = self.aqn.as_ref();
        let (rollout_model, train_model) =
            phase_models(ctx, aqn, &self.policy, &mut self.dir, step, &mut metrics)?;

        // 1. Rollouts, with dynamic sampling when configured.
        let rollouts = rollout::collect(ctx, &rollout_model, &mut self.stream, step)?;
        metrics.extend(rollouts.sampler_metrics.clone());
        let t_rollout = t0.elapsed().as_secs_f64();

        // 2. Old and reference log-probs.
        let t1 = Instant::now();
        let (c, samples) = (ctx.collective, &rollouts.samples);
        let batches = MiniBatches::of(ctx.config, samples.len(), c.rank(), c.world_size());
        let reference = self.reference.as_ref();
        let log_probs = StepLogProbs::compute(ctx, &batches, &train_model, reference, samples);

        // Rollout correction: its weights and rejected tokens, from the old log-probs.
        let mut rows = log_probs
            .old
            .as_ref()
            .map(|old| StepRows::gather(ctx, &batches, old, samples));
        let correction = match &rows {
            Some(rows) => Some(rows.correction(ctx)?),
            None => None,
        };

        // 3. Rewards (KL in the reward when configured), advantages.
        let scored = advantages::score(ctx, &batches, &rollouts, &log_probs, &train_model)?;
        metrics.extend(scored.metrics);

        // 4. PPO epochs over mini-batches, each in micro-batches.
        let learner = Learner {
            policy: &mut self.policy,
            optim: &mut self.optim,
            lr: self.lr.lr(step),
        };
        let corrected = ctx.config.algorithm.rollout_correction.enabled();
        let data = UpdateData {
            samples,
            advantages: &scored.advantages,
            log_probs: &log_probs,
            batches: &batches,
            correction: correction.as_ref().filter(|_| corrected),
        };
        let update = ppo_update(ctx, learner, &train_model, step, &data)?;
        metrics.extend(update.metrics);
        let t_update = t1.elapsed().as_secs_f64();

        // The mismatch metrics (on-policy, from the log-probs the update saw).
        if rows.is_none()
            && let Some(seen) = &update.on_policy_log_probs
        {
            rows = Some(StepRows::gather(ctx, &batches, seen, samples));
        }
        if let Some(rows) = &rows {
            let correction = match correction {
                Some(c) => c,
                None => rows.correction(ctx)?,
            };
            metrics.extend(rows.metrics(&correction)?);
        }

        // 5. The step's metrics, one line of metrics.jsonl.
        metrics.extend(rollouts.metrics(&scored.scores));
        let epoch = (step - 1) / self.stream.steps_per_epoch() + 1;
        metrics.insert(EPOCH.into(), epoch as f64);
        let tokens_per_s = rollouts.gen_tokens as f64 / t_rollout.max(1e-9);
        for (key, value) in [
            (TIMING_ROLLOUT_S, t_rollout),
            (TIMING_ROLLOUT_TOKENS_PER_S, tokens_per_s),
            (TIMING_UPDATE_S, t_update),
            (TIMING_STEP_S, t0.elapsed().as_secs_f64()),
        ] {
            metrics.insert(key.into(), value);
        }
        self.dir.log_step(step, &metrics)?;
        Ok(metrics)
    }

    /// The evaluation of `step`, logged, reported and kept in the history.
    fn evaluate(&mut self, step: u64, on_event: &mut impl FnMut(Event)) -> Result<(), TrainError> {
        let result = validate(&self.ctx, &self.policy, &mut self.dir, step)?;
        on_event(Event::Eval {
            step,
            result: &result,
        });
        self.eval_history.push((step, result.accuracy));
        Ok(())
    }

    /// Saves the checkpoint of `step`; returns its folder.
    fn save(&self, step: u64) -> Result<PathBuf, TrainError> {
        let snapshot = Snapshot {
            policy: &self.policy,
            optim: &self.optim,
            state: TrainerState {
                step,
                stream: self.stream.clone(),
                eval_history: self.eval_history.clone(),
            },
        };
        let origin = Origin {
            mode: self.ctx.config.finetune.mode,
            model_dir: &self.ctx.model_dir,
            generation: &self.ctx.generation,
        };
        save_checkpoint(&origin, &self.dir, snapshot)
    }
}

/// The models of the step's two phases: the rollout policy and the training policy, each the
/// weights with AQN's noise of the step when AQN noises that phase (one draw, shared; its audit
/// goes into the run folder and its metrics into `metrics`), prepared for the phase.
fn phase_models(
    ctx: &RunContext,
    aqn: Option<&Aqn>,
    policy: &Qwen2ForCausalLM,
    dir: &mut RunDir,
    step: u64,
    metrics: &mut StepMetrics,
) -> Result<(Qwen2ForCausalLM, Qwen2ForCausalLM), TrainError> {
    let noisy = match aqn {
        Some(aqn) => {
            let seed = counter_hash(ctx.config.trainer.seed ^ AQN_SALT, step);
            let (noisy, audit) = aqn.apply(policy, step, seed)?;
            dir.log_audit(&audit.to_json_line())?;
            metrics.extend(audit.metrics().into_iter().map(|(k, v)| (k.to_string(), v)));
            Some(noisy)
        }
        None => None,
    };
    let model_of = |phase: Phase| match (aqn, &noisy) {
        (Some(aqn), Some(noisy)) if aqn.noises(phase) => noisy.for_phase(phase, step),
        _ => policy.for_phase(phase, step),
    };
    Ok((model_of(Phase::Rollout), model_of(Phase::Training)))
}
