//! `aqn-native train`: GRPO / DAPO with fake quantization, LoRA, AQN and HW noise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aqn_core::config::ConfigFile;
use aqn_core::run::claim::{ClaimMode, MARK_FILE, RunClaim, check_resumable, claim};
use aqn_core::run::dir::StepMetrics;
use aqn_core::run::dir::{CHECKPOINT_DIR, CONFIG_FILE};
use aqn_core::run::metric_keys::{
    AQN_SIGMA, RESPONSE_LENGTH_MEAN, REWARD_ACC, REWARD_MEAN, TIMING_STEP_S,
};
use aqn_core::train::config::{
    ConfigError, ConfigSources, preset_names, preset_text, profile_names,
};
use aqn_core::train::{Collective, Event, RunPlan, TrainConfig, TrainOptions, train};
use clap::Args;
use indicatif::ProgressBar;

use crate::backend::BackendArgs;
use crate::distributed::{self, Role};
use crate::progress;

/// Arguments of `train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The experiment's semantics: a row of the seed's tables (algorithm, LoRA or full
    /// fine-tuning, quantization, AQN, RIN, HW noise, epochs). `--list-presets` shows them all.
    #[arg(long, default_value = "default")]
    preset: String,
    /// The scale: model, data, batch sizes, lengths, learning rate. `tiny` is the built-in model
    /// on the built-in task; `qwen2.5-1.5b-gsm8k` the seed's setup (local model and data paths).
    #[arg(long, default_value = "tiny")]
    profile: String,
    /// A TOML file merged over the profile and the preset (any section of the configuration).
    /// A setting the configuration refuses is named with the file, its dotted key, line and
    /// column. The keys it changes are held to --set's rules (a run's own config.toml, which
    /// restates every key, is accepted).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one setting, `KEY=VALUE` (repeatable): `--set actor.clip_ratio_high=0.3`,
    /// `--set quant.weights=mxfp4:rceil`, `--set aqn.schedule.sigma_start=0.05`. Unknown keys,
    /// invalid values and keys that would have no effect (`algorithm.kl.coef` without a KL
    /// placement, `finetune.lora.*` in a full fine-tuning run, `trainer.save_freq` beyond the
    /// run, ...) are errors that name them and the setting that prevents them.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Remove a setting or section (repeatable), e.g. `--unset aqn` to turn AQN off.
    #[arg(long = "unset", value_name = "KEY")]
    unsets: Vec<String>,
    /// Shortcut for `--set trainer.seed=N`.
    #[arg(long)]
    seed: Option<u64>,
    /// Shortcut for `--set trainer.max_steps=N`: stop after N steps (schedules still span the
    /// whole run).
    #[arg(long)]
    steps: Option<u64>,
    /// The run folder (default: runs/<preset>-seed<seed>): a new folder, an empty one, or one an
    /// earlier run created (marked by its `.aqn-run` file) that holds no run. A non-empty folder
    /// without the mark is refused, so aqn never writes into a folder of yours. The run holds an
    /// OS lock on the folder (`.aqn-lock`) while it goes: a second train or --resume of the same
    /// folder is refused.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Continue the run in this folder from its latest complete checkpoint (an incomplete or
    /// corrupt later one is skipped with a warning), with its saved configuration
    /// (RUN_DIR/config.toml). A folder without the `.aqn-run` mark is accepted when it holds
    /// config.toml and checkpoints/ (a run of an older aqn), and marked. With it only --steps (a
    /// new stop step; the schedules still span the saved run), --workers, --backend, --wgpu-api
    /// and --print-config apply; --preset, --profile, --config, --set, --unset, --seed,
    /// --run-dir and --overwrite are refused, even with their default values.
    #[arg(
        long,
        value_name = "RUN_DIR",
        conflicts_with_all = ["config", "run_dir", "preset", "profile", "sets", "unsets", "seed"]
    )]
    resume: Option<PathBuf>,
    /// Replace a run already in the run folder: in a folder marked as aqn's (`.aqn-run`), the
    /// previous run's files (config.toml, metrics.jsonl, noise_audit.jsonl, tb/, checkpoints/,
    /// srdd_report.json, summary.json) are deleted first and any other file is kept. A folder
    /// without the mark is never overwritten. Without --overwrite, a folder that holds a run is
    /// refused, so a finished or interrupted run is never overwritten by accident (`--resume`
    /// continues one).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Print the resolved configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
    /// List the presets and profiles and exit.
    #[arg(long)]
    list_presets: bool,
    /// Data-parallel training with N workers on this machine (N > 1 needs the `mpi` build; it
    /// runs `mpirun -n N` over TCP on 127.0.0.1, each worker with cores / N threads). The
    /// generation batch's prompts, the evaluation and the micro-batches of every mini-batch are
    /// shared among the workers, the gradients summed, and every worker takes the same
    /// optimizer step: the same run as one process, up to float rounding. Rank 0 prints and
    /// writes the run folder. Across machines start the workers with `mpirun` yourself
    /// (`mpirun -H host1,host2 -n 2 aqn-native train ...`; README "Data-parallel training").
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// The configuration and the keys the user chose (checked against the loaded run).
fn resolve(args: &TrainArgs) -> Result<(TrainConfig, BTreeSet<String>)> {
    let mut sets = args.sets.clone();
    if let Some(seed) = args.seed {
        sets.push(format!("trainer.seed={seed}"));
    }
    if let Some(steps) = args.steps {
        sets.push(format!("trainer.max_steps={steps}"));
    }
    let file = match &args.config {
        Some(path) => Some((
            path.clone(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let sources = ConfigSources {
        profile: args.profile.clone(),
        preset: args.preset.clone(),
        file,
        sets,
        unsets: args.unsets.clone(),
    };
    sources
        .resolve_with_choices()
        .map_err(|e| locate_in_file(&sources, e))
}

/// Names where a refused setting of the `--config` file is written: the file, the dotted key,
/// the line and the column. A schema error (wrong type, unknown key) is traced to the first
/// setting of the file that the schema refuses when the file's settings are applied one more at
/// a time as overrides; another error that names a key of the file gets the key's place.
fn locate_in_file(sources: &ConfigSources, error: ConfigError) -> anyhow::Error {
    let Some((path, text)) = &sources.file else {
        return error.into();
    };
    let Ok(file) = ConfigFile::parse(&path.display().to_string(), text) else {
        return error.into();
    };
    if let ConfigError::Schema(message) = &error {
        if message.starts_with("--set ") {
            // A --set broke the schema, and resolve has named it.
            return error.into();
        }
        let probe = |prefix: &[aqn_core::config::FileSetting]| {
            let sets: Vec<String> = prefix.iter().map(|s| s.as_override()).collect();
            let last = sets.last().cloned().unwrap_or_default();
            let probe = ConfigSources {
                file: None,
                sets,
                unsets: Vec::new(),
                ..sources.clone()
            };
            match TrainConfig::resolve(&probe) {
                Err(ConfigError::Schema(m)) => Some(
                    m.strip_prefix(&format!("--set {last}: "))
                        .unwrap_or(&m)
                        .to_string(),
                ),
                _ => None,
            }
        };
        // The setting whose addition gives the resolution's own message; failing that (a
        // combination of settings), the first one refused.
        let found = file
            .first_rejected(|prefix| probe(prefix).filter(|m| m == message))
            .or_else(|| file.first_rejected(probe));
        if let Some((setting, why)) = found {
            return anyhow::anyhow!("{}: {why}", file.locate(setting));
        }
        return anyhow::anyhow!("{}: invalid configuration: {message}", file.path);
    }
    match file.mentioned_in(&error.to_string()) {
        Some(setting) => anyhow::Error::new(error)
            .context(format!("in the --config file: {}", file.locate(setting))),
        None => error.into(),
    }
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.workers == Some(0) {
        bail!("--workers 0: a run needs at least one worker");
    }
    if args.list_presets {
        println!("presets:");
        for name in preset_names() {
            let notes = preset_text(name)?
                .lines()
                .find_map(|l| l.strip_prefix("notes = "))
                .unwrap_or("")
                .trim_matches('"');
            println!("  {name:<10} {notes}");
        }
        println!("profiles: {}", profile_names().join(", "));
        return Ok(());
    }
    let (config, chosen_keys, run_dir, resume) = match &args.resume {
        Some(dir) => {
            // clap refuses --preset, --profile, --config, --set, --unset, --seed and --run-dir
            // with --resume (and --overwrite conflicts with it).
            check_resumable(dir)?;
            let path = dir.join(CONFIG_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut config: TrainConfig =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            if let Some(steps) = args.steps {
                config.trainer.max_steps = Some(steps);
            }
            config.validate()?;
            (config, BTreeSet::new(), dir.clone(), true)
        }
        None => {
            let (config, chosen) = resolve(&args)?;
            let dir = args.run_dir.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!(
                    "{}-seed{}",
                    config.experiment.id, config.trainer.seed
                ))
            });
            (config, chosen, dir, false)
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let collective = match distributed::role(args.workers)? {
        Role::Launch(n) => return distributed::launch(n),
        Role::Single => distributed::single(),
        Role::Worker(c) => c,
    };
    let (rank, world) = (collective.rank(), collective.world_size());
    let result = run_training(&args, &config, &run_dir, resume, chosen_keys, collective);
    match result {
        Err(e) if world > 1 => {
            // The others may be waiting for this worker: stop the whole job, naming the rank.
            eprintln!("error: worker rank {rank} of {world}: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            distributed::abort_job(1);
            Err(e)
        }
        other => other,
    }
}

/// Trains as one process or as worker `collective.rank()` of a data-parallel run (rank 0 checks
/// and writes the run folder and prints; the other workers are silent unless they fail).
fn run_training(
    args: &TrainArgs,
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    chosen_keys: BTreeSet<String>,
    collective: Box<dyn Collective>,
) -> Result<()> {
    let leader = collective.rank() == 0;
    // Rank 0 writes the folder, so it alone checks, marks and locks it, for the whole run.
    let _claim = if leader {
        Some(claim_run_dir(run_dir, resume, args.overwrite)?)
    } else {
        None
    };
    let device = args.backend.autodiff_device()?;
    let world = collective.world_size();
    let options = TrainOptions {
        run_dir: run_dir.to_path_buf(),
        device,
        resume,
        collective,
        chosen_keys,
    };
    let mut pb = None;
    let mut last_val: Option<f64> = None;
    let summary = train(config, &options, |event| match event {
        _ if !leader => {}
        Event::SkippedCheckpoint { path, reason } => eprintln!(
            "warning  skipping the checkpoint {}: {reason}; resuming from the previous complete one",
            path.display()
        ),
        Event::Plan(plan) => {
            print_plan(plan, config, run_dir, world);
            let bar = progress::bar(plan.run_steps, "train");
            bar.set_position(plan.start_step);
            pb = Some(bar);
        }
        Event::Eval { step, result } => {
            last_val = Some(result.accuracy);
            let line = format!(
                "eval     step {step:>4}: accuracy {:.1}% ({} problems, greedy, noise-free, {})",
                100.0 * result.accuracy,
                result.problems,
                if config.quant.mode == aqn_core::qat::QuantMode::Bf16 {
                    "BF16".to_string()
                } else {
                    format!("{} {}", config.quant.weights, config.quant.mode)
                }
            );
            match &pb {
                Some(b) => progress::line(b, line),
                None => eprintln!("{line}"),
            }
        }
        Event::Step { step, metrics } => {
            if let Some(b) = &pb {
                show_step(b, step, metrics, last_val);
            }
        }
        Event::Checkpoint { step, path } => {
            if let Some(b) = &pb {
                progress::line(b, format!("save     step {step:>4}: {}", path.display()));
            }
        }
        Event::CheckpointRemoved { path } => {
            if let Some(b) = &pb {
                progress::line(
                    b,
                    format!(
                        "removed  {} (trainer.max_actor_ckpt_to_keep)",
                        path.display()
                    ),
                );
            }
        }
    })
    .with_context(|| format!("training run {}", run_dir.display()))?;
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    if !leader {
        return Ok(());
    }
    eprintln!(
        "done     {}: accuracy {:.1}% at step {} (base {:.1}%, peak {:.1}% at step {}) in {:.0}s; summary in {}",
        summary.run_name,
        100.0 * summary.score,
        summary.score_step,
        100.0 * summary.base_score,
        100.0 * summary.peak.0,
        summary.peak.1,
        summary.wall_time_s,
        run_dir.join("summary.json").display()
    );
    Ok(())
}

/// Takes the run folder for this run (`aqn_core::run::claim`): a new run takes a new, empty or
/// marked folder (with `overwrite`, removing the previous run's files and nothing else), a
/// resumed run a marked one or a run of an aqn without marks (marked now, with a note).
fn claim_run_dir(run_dir: &Path, resume: bool, overwrite: bool) -> Result<RunClaim> {
    let mode = match (resume, overwrite) {
        (true, _) => ClaimMode::Resume,
        (false, true) => ClaimMode::Overwrite,
        (false, false) => ClaimMode::New,
    };
    let claim = claim(run_dir, mode)
        .with_context(|| format!("cannot train in the run folder {}", run_dir.display()))?;
    if claim.adopted {
        eprintln!(
            "note     {} holds a run of an aqn without run-folder marks ({CONFIG_FILE} and {CHECKPOINT_DIR}/): marked as aqn's ({MARK_FILE})",
            run_dir.display()
        );
    }
    Ok(claim)
}

/// The run's plan, printed before the first step.
fn print_plan(plan: &RunPlan, config: &TrainConfig, run_dir: &Path, world: usize) {
    eprintln!("run      {}", run_dir.display());
    if world > 1 {
        eprintln!(
            "workers  {world} (data-parallel: rollouts, evaluation and micro-batches shared, gradients summed)"
        );
    }
    eprintln!("setup    {}", plan.description);
    eprintln!(
        "model    {} ({} trainable parameters)",
        plan.model, plan.trainable_params
    );
    eprintln!("memory   {}", plan.memory);
    eprintln!(
        "weights  {} base, {} of projection and embedding weights, loaded in {:.1} s",
        plan.base_storage,
        indicatif::DecimalBytes(plan.weight_bytes as u64),
        plan.load_s
    );
    eprintln!(
        "data     {} training prompts: {} steps per epoch of {} prompts x {} responses ({} prompts per pass unused: the last incomplete batch is dropped, as verl does); {} held-out problems",
        plan.train_problems,
        plan.steps_per_epoch,
        config.batch.generation(),
        config.rollout.n,
        plan.remainder,
        plan.eval_problems
    );
    eprintln!(
        "steps    {} epochs x {} = {} steps{}{}",
        plan.epochs,
        plan.steps_per_epoch,
        plan.total_steps,
        if plan.run_steps < plan.total_steps {
            format!(", stopping after {} (trainer.max_steps)", plan.run_steps)
        } else {
            String::new()
        },
        if plan.start_step > 0 {
            format!(", resuming after step {}", plan.start_step)
        } else {
            String::new()
        }
    );
}

/// A finished step on the progress bar (and as a line where the bar is hidden).
fn show_step(b: &ProgressBar, step: u64, metrics: &StepMetrics, last_val: Option<f64>) {
    b.set_position(step);
    let get = |k: &str| metrics.get(k).copied();
    b.set_message(format!(
        "reward {:.2} acc {:.0}%{}{}",
        get(REWARD_MEAN).unwrap_or(f64::NAN),
        100.0 * get(REWARD_ACC).unwrap_or(f64::NAN),
        last_val
            .map(|v| format!(" val {:.0}%", 100.0 * v))
            .unwrap_or_default(),
        get(AQN_SIGMA)
            .map(|s| format!(" sigma {s:.1e}"))
            .unwrap_or_default()
    ));
    if b.is_hidden() {
        eprintln!(
            "step {step:>4}: reward {:.3} acc {:.3} len {:.1} {:.1}s",
            get(REWARD_MEAN).unwrap_or(f64::NAN),
            get(REWARD_ACC).unwrap_or(f64::NAN),
            get(RESPONSE_LENGTH_MEAN).unwrap_or(f64::NAN),
            get(TIMING_STEP_S).unwrap_or(f64::NAN)
        );
    }
}
