//! `aqn-native eval RUN_DIR|MODEL_DIR`: greedy, noise-free held-out accuracy of a run's
//! checkpoint or of an HF model folder, scored with the strict GSM8K reward (docs/spec.md section 7).
//!
//! Nothing is scored from weights that are not finite: the checkpoint loader refuses a tensor
//! (base, full fine-tuning weights or adapter) holding a NaN or an infinity, naming it and
//! counting each kind, so an all-NaN model is an error rather than "0.0%".

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aqn_core::checkpoint::hf_cache;
use aqn_core::checkpoint::loader::CONFIG_FILE as CONFIG_JSON;
use aqn_core::generation::GenerationConfig;
use aqn_core::model::Qwen2Config;
use aqn_core::qat::{QuantConfig, QuantMode};
use aqn_core::run::dir::CONFIG_FILE;
use aqn_core::tokenizer::Qwen2Tokenizer;
use aqn_core::train::TrainConfig;
use aqn_core::train::config::{ConfigSources, FinetuneMode};
use aqn_core::train::data::ProblemSet;
use aqn_core::train::evaluate::{EvalResult, evaluate};
use aqn_core::train::{find_checkpoint, load_eval_model, resolve_model_dir};
use clap::Args;
use serde::Serialize;

use crate::backend::BackendArgs;
use crate::progress;

/// Arguments of `eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A run folder of `aqn-native train` (its config.toml and a checkpoint: the model is the
    /// run's base, quantized as trained, with the checkpoint's adapter or weights), an HF
    /// model folder (config.json, model.safetensors, tokenizer.json), or a Hub id
    /// `org/name[@revision]` found in the local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`;
    /// offline, nothing is downloaded).
    #[arg(value_name = "RUN_DIR|MODEL_DIR|ORG/NAME")]
    path: PathBuf,
    /// The checkpoint step of a run folder (default: the latest).
    #[arg(long, value_name = "N")]
    step: Option<u64>,
    /// Held-out problems to evaluate (default: the run's `eval.problems`; 0: the whole test set;
    /// more than the test set holds is refused).
    #[arg(long, value_name = "N")]
    problems: Option<usize>,
    /// For a model folder: the preset whose `[quant]` and data apply (`--set` overrides them,
    /// e.g. `--set quant.mode=bf16`, `--set data.test=gsm8k_test.parquet`).
    #[arg(long, default_value = "default")]
    preset: String,
    /// For a model folder: the profile whose data and lengths apply.
    #[arg(long, default_value = "tiny")]
    profile: String,
    /// For a model folder: override one setting, `KEY=VALUE` (repeatable), as in `train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Also evaluate the same weights without fake quantization (reported as `bf16`, never as
    /// the model's score). It needs the latent f32 weights, so the base is then loaded as f32
    /// rather than packed (codes + scales, the default: same logits, a quarter of the memory or
    /// less).
    #[arg(long)]
    bf16: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// What `eval` reports.
#[derive(Serialize)]
struct EvalReport {
    /// The evaluated folder.
    path: String,
    /// The checkpoint step (run folders).
    step: Option<u64>,
    /// The quantization the score was measured in.
    quant: String,
    /// The score: accuracy in the trained quantization mode.
    result: EvalResult,
    /// The same weights without fake quantization, when asked.
    bf16: Option<EvalResult>,
}

fn quant_label(quant: &QuantConfig) -> String {
    match quant.mode {
        QuantMode::Bf16 => "bf16".into(),
        mode => format!("{} {mode}", quant.weights),
    }
}

/// The configuration and checkpoint of a run folder, or the configuration a model folder is
/// evaluated under.
fn setup(args: &EvalArgs) -> Result<(TrainConfig, Option<(u64, PathBuf)>)> {
    let run_config = args.path.join(CONFIG_FILE);
    if run_config.exists() {
        if !args.sets.is_empty() || args.preset != "default" || args.profile != "tiny" {
            bail!(
                "{} is a run folder: it is evaluated with its own configuration ({}); --preset, --profile and --set apply to model folders only",
                args.path.display(),
                run_config.display()
            );
        }
        let text = std::fs::read_to_string(&run_config)
            .with_context(|| format!("reading {}", run_config.display()))?;
        let config: TrainConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", run_config.display()))?;
        let checkpoint = find_checkpoint(&args.path, args.step)?;
        return Ok((config, Some(checkpoint)));
    }
    let hub_id = !args.path.exists()
        && args
            .path
            .to_str()
            .and_then(hf_cache::parse_repo_id)
            .is_some();
    if !args.path.join("config.json").exists() && !hub_id {
        bail!(
            "{} is neither a run folder (no {CONFIG_FILE}), an HF model folder (no config.json) nor a Hub id (org/name) for the local Hugging Face cache",
            args.path.display()
        );
    }
    if args.step.is_some() {
        bail!(
            "--step applies to run folders; {} is a model folder",
            args.path.display()
        );
    }
    let mut sets = args.sets.clone();
    sets.push(format!("model.path={}", toml_string(&args.path)?));
    let mut config = TrainConfig::resolve(&ConfigSources {
        profile: args.profile.clone(),
        preset: args.preset.clone(),
        file: None,
        sets,
        unsets: Vec::new(),
    })?;
    // A model folder is evaluated as it is: no adapter, whatever the preset trains.
    config.finetune.mode = FinetuneMode::Full;
    Ok((config, None))
}

/// `path` as a TOML string value for `--set`.
fn toml_string(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(toml::Value::String(text.into()).to_string())
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let (config, checkpoint) = setup(&args)?;
    let device = args.backend.device()?;
    let model_dir = resolve_model_dir(&config.model.path)?;
    // The architecture first: a config.json that is missing a field or holds a wrong type is
    // named here, before the tokenizer and the generation settings read the same file.
    Qwen2Config::from_file(&model_dir.join(CONFIG_JSON))
        .with_context(|| format!("reading the model of {}", model_dir.display()))?;
    let tokenizer = Qwen2Tokenizer::from_dir(&model_dir)
        .with_context(|| format!("loading the tokenizer of {}", model_dir.display()))?;
    let generation = GenerationConfig::from_checkpoint(&model_dir, config.rollout.max_response_len)
        .with_context(|| format!("reading the generation config of {}", model_dir.display()))?;
    let problems = ProblemSet::load(&config.data).context("loading the held-out problems")?;
    if let Some(n) = args.problems
        && n > problems.test.len()
    {
        bail!(
            "--problems {n} is above the {} problems of the test set ({}); give at most {} (0: all of them)",
            problems.test.len(),
            config.data.test,
            problems.test.len()
        );
    }
    // The configuration's eval.problems is capped at the test set as the trainer caps it.
    let count = match args.problems.unwrap_or(config.eval.problems) {
        0 => problems.test.len(),
        n => n.min(problems.test.len()),
    };
    let test = &problems.test[..count];
    let model = load_eval_model(
        &config,
        checkpoint.as_ref().map(|(_, p)| p.as_path()),
        &device,
        // The unquantized evaluation re-derives the weights from the latent f32 ones.
        args.bf16 && config.quant.mode != QuantMode::Bf16,
    )?;

    let run_eval = |model: &aqn_core::model::Qwen2ForCausalLM, label: &str| -> Result<EvalResult> {
        let bar = progress::bar(test.len() as u64, label);
        let result = evaluate(
            model,
            &tokenizer,
            test,
            &generation,
            config.eval.batch_size,
            |done| bar.set_position(done as u64),
        )?;
        bar.finish_and_clear();
        Ok(result)
    };
    let quant = quant_label(&config.quant);
    let result = run_eval(&model, "eval")?;
    let bf16 = if args.bf16 && config.quant.mode != QuantMode::Bf16 {
        let clean = model
            .clone()
            .with_quantization(&QuantConfig::default())
            .context("removing fake quantization for the BF16 evaluation")?;
        Some(run_eval(&clean, "eval bf16")?)
    } else {
        None
    };
    let report = EvalReport {
        path: args.path.display().to_string(),
        step: checkpoint.as_ref().map(|(s, _)| *s),
        quant,
        result,
        bf16,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The report as text: the accuracy line, the unquantized figure, the examples.
fn print_report(report: &EvalReport) {
    let at = report
        .step
        .map(|s| format!(" step {s}"))
        .unwrap_or_default();
    println!(
        "{}{at}: accuracy {:.1}% (strict; flexible {:.1}%) on {} held-out problems, greedy, noise-free, {}; mean response {:.1} tokens",
        report.path,
        100.0 * report.result.accuracy,
        100.0 * report.result.accuracy_flexible,
        report.result.problems,
        report.quant,
        report.result.mean_response_tokens
    );
    if let Some(b) = &report.bf16 {
        println!(
            "  same weights without fake quantization (bf16, not the score): {:.1}%",
            100.0 * b.accuracy
        );
    }
    for (prompt, response, ok) in &report.result.examples {
        println!(
            "  [{}] {} => {}",
            if *ok { "ok" } else { "wrong" },
            prompt.replace('\n', " "),
            response.replace('\n', " ")
        );
    }
}
