//! `aqn-native pretrain`: trains the built-in tiny model on the synthetic task (supervised) and
//! writes it in HF layout.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aqn_core::config::apply_override;
use aqn_core::train::pretrain::{PretrainConfig, pretrain};
use clap::Args;

use crate::backend::BackendArgs;
use crate::progress;

/// Arguments of `pretrain`.
#[derive(Args)]
pub struct PretrainArgs {
    /// Output folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
    /// generation_config.json, pretrain_log.jsonl).
    #[arg(long, value_name = "DIR", default_value = "assets/tiny")]
    out: PathBuf,
    /// A TOML file of pretraining settings (fields of `PretrainConfig`: hidden_size,
    /// num_layers, steps, batch_size, lr, task.levels, ...); missing fields keep their defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one setting, `KEY=VALUE` (repeatable), e.g. `--set steps=300 --set task.seed=1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print the resolved settings and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// The resolved settings: defaults, then the file, then the overrides.
fn resolve(args: &PretrainArgs) -> Result<PretrainConfig> {
    let mut doc =
        toml::Table::try_from(PretrainConfig::default()).context("serializing the defaults")?;
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        aqn_core::config::merge(&mut doc, file);
    }
    for s in &args.sets {
        apply_override(&mut doc, s)?;
    }
    doc.try_into::<PretrainConfig>()
        .context("invalid pretrain settings")
}

/// Runs `pretrain`.
pub fn run(args: PretrainArgs) -> Result<()> {
    let config = resolve(&args)?;
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let device = args.backend.autodiff_device()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pb = progress::bar(config.steps as u64, "pretrain");
    let mut log = String::new();
    let mut last_acc = None;
    let started = std::time::Instant::now();
    let records = pretrain(&config, &device, &args.out, |r| {
        pb.inc(1);
        if let Some(e) = &r.eval {
            last_acc = Some(e.accuracy);
            progress::line(
                &pb,
                format!(
                    "step {:>5}  loss {:.4}  held-out accuracy {:.1}%",
                    r.step,
                    r.loss,
                    100.0 * e.accuracy
                ),
            );
        }
        pb.set_message(format!(
            "loss {:.3}{}",
            r.loss,
            last_acc
                .map(|a| format!(" acc {:.0}%", 100.0 * a))
                .unwrap_or_default()
        ));
        log.push_str(&serde_json::to_string(r).expect("record serializes"));
        log.push('\n');
    })
    .context("pretraining")?;
    pb.finish_and_clear();
    std::fs::write(args.out.join("pretrain_log.jsonl"), log)
        .context("writing pretrain_log.jsonl")?;
    std::fs::write(
        args.out.join("pretrain_config.toml"),
        toml::to_string_pretty(&config)?,
    )
    .context("writing pretrain_config.toml")?;
    let final_eval = records.iter().rev().find_map(|r| r.eval.as_ref());
    eprintln!(
        "wrote {} after {} steps in {:.0}s; held-out accuracy {}",
        args.out.display(),
        records.len(),
        started.elapsed().as_secs_f64(),
        final_eval
            .map(|e| format!("{:.1}% ({} problems)", 100.0 * e.accuracy, e.problems))
            .unwrap_or_else(|| "-".into())
    );
    Ok(())
}
