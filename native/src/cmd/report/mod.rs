//! `aqn-native report RUNS_DIR`: the seed's summary format (../shared/seed: "All AQN Experiments
//! Summary") from finished runs: the experiment table with one row per experiment (the mean over
//! its seeds, each seed's score in the notes), the best result per category, the AQN
//! configuration reference of the schedules used, the rollout-training mismatch per sigma stage
//! ([`mismatch`]), and SVG curves of held-out accuracy.
//!
//! Scores are compared only between runs of the same length: "best per category" has one row
//! per category and run length (a 40-step run is never ranked against 10-step ones), and an
//! experiment whose seeds ran different lengths is flagged. The report and the charts are
//! written like every output (native/src/output.rs): an existing file aqn-native did not write
//! is replaced only with `--overwrite`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aqn_core::aqn::AqnTargets;
use aqn_core::run::dir::{CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};
use aqn_core::run::log::{MetricsLog, parse_metrics};
use aqn_core::train::config::Category;
use aqn_core::train::{RunSummary, TrainConfig};
use clap::Args;

use crate::output::{self, OutputKind};

mod curves;
mod mismatch;
use curves::draw_curves;

/// Arguments of `report`.
#[derive(Args)]
pub struct ReportArgs {
    /// A folder holding run folders (searched two levels deep for `summary.json`).
    #[arg(value_name = "RUNS_DIR")]
    runs: PathBuf,
    /// Where to write the Markdown report (default: RUNS_DIR/REPORT.md); `-` prints it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Where to write the SVG curves (default: RUNS_DIR/curves): one chart of every experiment's
    /// mean held-out accuracy per step, and one per experiment with each seed.
    #[arg(long, value_name = "DIR")]
    svg_dir: Option<PathBuf>,
    /// Replace an existing report or chart file that aqn-native did not write.
    #[arg(long)]
    overwrite: bool,
}

/// One finished run.
struct Run {
    summary: RunSummary,
    config: Option<TrainConfig>,
    /// Its `metrics.jsonl` (`None` when the file is missing).
    metrics: Option<MetricsLog>,
}

/// The runs of one experiment (Exp ID), over seeds.
struct Experiment {
    id: String,
    runs: Vec<Run>,
}

impl Experiment {
    fn first(&self) -> &RunSummary {
        &self.runs[0].summary
    }

    fn scores(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.summary.score).collect()
    }

    fn mean(&self) -> f64 {
        mean(&self.scores())
    }

    /// The run length of its seeds: `Some(steps)` when they all ran the same number of steps.
    fn steps(&self) -> Option<u64> {
        let first = self.first().steps;
        self.runs
            .iter()
            .all(|r| r.summary.steps == first)
            .then_some(first)
    }

    /// The run length as shown: `40` or `mixed (10, 40)`.
    fn steps_label(&self) -> String {
        match self.steps() {
            Some(n) => n.to_string(),
            None => {
                let mut all: Vec<u64> = self.runs.iter().map(|r| r.summary.steps).collect();
                all.sort_unstable();
                all.dedup();
                format!(
                    "mixed ({})",
                    all.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }

    fn base_mean(&self) -> f64 {
        mean(
            &self
                .runs
                .iter()
                .map(|r| r.summary.base_score)
                .collect::<Vec<_>>(),
        )
    }

    /// Mean held-out accuracy per evaluated step, over the seeds that evaluated it.
    fn mean_curve(&self) -> Vec<(f64, f64)> {
        let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in &self.runs {
            for &(s, a) in &r.summary.eval_history {
                by_step.entry(s).or_default().push(a);
            }
        }
        by_step
            .into_iter()
            .map(|(s, v)| (s as f64, 100.0 * mean(&v)))
            .collect()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (0 for fewer than two values).
fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn category_rank(c: Category) -> u8 {
    match c {
        Category::Hw => 0,
        Category::Quant => 1,
        Category::Lora => 2,
    }
}

fn category_name(c: Category) -> &'static str {
    match c {
        Category::Hw => "HW",
        Category::Quant => "Quant",
        Category::Lora => "LoRA",
    }
}

/// The summary files under `root`, at most two folders deep.
fn find_summaries(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut frontier = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = frontier.pop() {
        let file = dir.join(SUMMARY_FILE);
        if file.is_file() {
            found.push(file);
            continue;
        }
        if depth == 2 {
            continue;
        }
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries.flatten() {
            if e.path().is_dir() {
                frontier.push((e.path(), depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn load_runs(root: &Path) -> Result<Vec<Experiment>> {
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    let files = find_summaries(root)?;
    if files.is_empty() {
        bail!(
            "no finished runs under {} (a finished run folder has {SUMMARY_FILE}; runs still going or interrupted have none)",
            root.display()
        );
    }
    let mut by_id: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let summary: RunSummary =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let config_path = file.with_file_name(CONFIG_FILE);
        let config = std::fs::read_to_string(&config_path)
            .ok()
            .and_then(|t| toml::from_str::<TrainConfig>(&t).ok());
        let metrics_path = file.with_file_name(METRICS_FILE);
        let metrics = match std::fs::read_to_string(&metrics_path) {
            Ok(text) => Some(parse_metrics(&text, &metrics_path.display().to_string())?),
            Err(_) => None,
        };
        by_id.entry(summary.exp_id.clone()).or_default().push(Run {
            summary,
            config,
            metrics,
        });
    }
    let mut experiments: Vec<Experiment> = by_id
        .into_iter()
        .map(|(id, mut runs)| {
            runs.sort_by_key(|r| r.summary.seed);
            Experiment { id, runs }
        })
        .collect();
    // The seed's order: HW, Quant, LoRA; by Exp ID inside a category.
    experiments.sort_by_key(|e| (category_rank(e.first().category), e.id.clone()));
    Ok(experiments)
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn score_cell(e: &Experiment) -> String {
    let s = e.scores();
    if s.len() == 1 {
        pct(s[0])
    } else {
        format!(
            "{} ± {:.2} ({} seeds)",
            pct(mean(&s)),
            100.0 * std_dev(&s),
            s.len()
        )
    }
}

fn targets_label(config: &TrainConfig) -> String {
    match config.aqn.as_ref().map(|a| &a.targets) {
        None => "-".into(),
        Some(AqnTargets::Rmsnorm { .. }) => "rmsnorm".into(),
        Some(AqnTargets::Linear { .. }) => "linear".into(),
        Some(other) => serde_json::to_string(other).unwrap_or_else(|_| "pattern".into()),
    }
}

/// The best experiment of each category and run length (an experiment whose seeds ran
/// different lengths forms its own group), in the seed's category order, shorter runs first.
fn best_per_category(experiments: &[Experiment]) -> Vec<&Experiment> {
    let mut best: BTreeMap<(u8, Option<u64>, String), &Experiment> = BTreeMap::new();
    for e in experiments {
        let c = e.first().category;
        let key = (
            category_rank(c),
            e.steps(),
            if e.steps().is_some() {
                String::new()
            } else {
                e.steps_label()
            },
        );
        match best.get(&key) {
            Some(b) if b.mean() >= e.mean() => {}
            _ => {
                best.insert(key, e);
            }
        }
    }
    best.into_values().collect()
}

fn markdown(root: &Path, experiments: &[Experiment], svg_dir: &Path) -> String {
    let mut out = String::new();
    let runs: usize = experiments.iter().map(|e| e.runs.len()).sum();
    out.push_str("# All AQN Experiments Summary\n\n");
    out.push_str(&format!("**Generated**: {}\n", today()));
    out.push_str(&format!(
        "**Runs**: `{}` ({runs} runs, {} experiments)\n",
        root.display(),
        experiments.len()
    ));
    out.push_str(&format!("**Curves**: `{}`\n\n---\n\n", svg_dir.display()));

    let best = best_per_category(experiments);
    experiment_table(&mut out, experiments, &best);
    best_table(&mut out, &best);
    aqn_reference(&mut out, experiments);
    let logs: Vec<(&str, Vec<&MetricsLog>)> = experiments
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                e.runs.iter().filter_map(|r| r.metrics.as_ref()).collect(),
            )
        })
        .collect();
    mismatch::section(&mut out, &logs);
    runs_table(&mut out, experiments);
    out
}

/// The complete experiment table (the best of each category in bold).
fn experiment_table(out: &mut String, experiments: &[Experiment], best: &[&Experiment]) {
    out.push_str("## Complete Experiment Table\n\n");
    out.push_str("Score: held-out accuracy at the final step, greedy and noise-free, in the trained quantization mode (mean ± sample std over seeds).\n\n");
    out.push_str("| Exp ID | Type | TensorBoard Name | Score | Epochs | AQN/RIN | Epoch-Aware | RIN Mode | LoRA | dtype | Quant Mode | Notes |\n");
    out.push_str("|--------|------|------------------|-------|--------|---------|-------------|----------|------|-------|-----------|-------|\n");
    let best_ids: Vec<&str> = best.iter().map(|e| e.id.as_str()).collect();
    for e in experiments {
        let f = e.first();
        let is_best = best_ids.contains(&e.id.as_str());
        let bold = |s: String| if is_best { format!("**{s}**") } else { s };
        let name = match f.run_name.rsplit_once('_') {
            Some((stem, _)) => format!("{stem}_{:.2}", 100.0 * e.mean()),
            None => f.run_name.clone(),
        };
        let seeds: Vec<String> = e
            .runs
            .iter()
            .map(|r| {
                format!(
                    "seed {}: {} (base {})",
                    r.summary.seed,
                    pct(r.summary.score),
                    pct(r.summary.base_score)
                )
            })
            .collect();
        let notes = format!(
            "{} {}; {} steps; {} -> {} ({:+.2} points); {}",
            f.notes,
            f.algorithm,
            e.steps_label(),
            pct(e.base_mean()),
            pct(e.mean()),
            100.0 * (e.mean() - e.base_mean()),
            seeds.join(", ")
        );
        out.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            bold(e.id.clone()),
            category_name(f.category),
            name,
            bold(score_cell(e)),
            f.epochs,
            f.aqn,
            match f.epoch_aware {
                None => "-",
                Some(true) => "✅ Yes",
                Some(false) => "❌ No",
            },
            f.rin_mode.as_deref().unwrap_or("No"),
            if f.lora { "Yes" } else { "No" },
            f.dtype,
            f.quant_mode.as_deref().unwrap_or("-"),
            notes.replace('|', "/")
        ));
    }
}

/// The best experiment per category and run length.
fn best_table(out: &mut String, best: &[&Experiment]) {
    out.push_str("\n---\n\n## Best Results per Category\n\n");
    out.push_str("Scores are compared only between runs of the same length: one row per category and run length (steps).\n\n");
    out.push_str("| Category | Steps | Best Experiment | Score | Epochs | Key Config |\n");
    out.push_str("|----------|-------|----------------|-------|--------|------------|\n");
    for e in best {
        let f = e.first();
        let mut key = vec![f.dtype.clone()];
        if let Some(m) = &f.quant_mode {
            key.push(m.clone());
        }
        key.push(if f.lora {
            "LoRA".into()
        } else {
            "full FT".into()
        });
        if let Some(h) = &f.hw_noise {
            key.push(format!("HW noise {h}"));
        }
        if let Some((s0, s1)) = f.sigma {
            key.push(format!("AQN σ={s0}→{s1}"));
        }
        if let Some(r) = &f.rin_mode {
            key.push(format!("RIN {r}"));
        }
        out.push_str(&format!(
            "| **{}** | {} | {} | {} | {} | {} |\n",
            category_name(f.category),
            e.steps_label(),
            e.id,
            score_cell(e),
            f.epochs,
            key.join(" + ")
        ));
    }
}

/// One column per distinct AQN configuration among the runs.
fn aqn_reference(out: &mut String, experiments: &[Experiment]) {
    out.push_str("\n---\n\n## AQN Configuration Reference\n\n");
    // One column per distinct AQN configuration among the runs, named by the experiments using it.
    let mut columns: Vec<(Vec<String>, [String; 5])> = Vec::new();
    for e in experiments {
        let f = e.first();
        let Some((s0, s1)) = f.sigma else { continue };
        let targets = e.runs[0]
            .config
            .as_ref()
            .map_or_else(|| "?".into(), targets_label);
        let row = [
            format!("{s0}"),
            format!("{s1}"),
            if f.epoch_aware == Some(true) {
                "✅ Yes"
            } else {
                "❌ No"
            }
            .to_string(),
            targets,
            f.rin_mode.clone().unwrap_or_else(|| "No".into()),
        ];
        match columns.iter_mut().find(|(_, r)| *r == row) {
            Some((ids, _)) => ids.push(e.id.clone()),
            None => columns.push((vec![e.id.clone()], row)),
        }
    }
    if columns.is_empty() {
        out.push_str("No run used AQN.\n");
    } else {
        let descriptions = [
            ("`sigma_start`", "Initial noise magnitude"),
            ("`sigma_end`", "Final noise magnitude"),
            ("`epoch_aware`", "Per-epoch sigma scheduling"),
            ("`layer_types`", "Noise targets"),
            ("RIN (SRDD-guided)", "Layer-specific multipliers"),
        ];
        out.push_str("| Config |");
        for (ids, _) in &columns {
            out.push_str(&format!(" {} |", ids.join(", ")));
        }
        out.push_str(" Description |\n|--------|");
        out.push_str(&"------|".repeat(columns.len()));
        out.push_str("-------------|\n");
        for (i, (name, what)) in descriptions.iter().enumerate() {
            out.push_str(&format!("| {name} |"));
            for (_, row) in &columns {
                out.push_str(&format!(" {} |", row[i]));
            }
            out.push_str(&format!(" {what} |\n"));
        }
    }
}

/// One row per run.
fn runs_table(out: &mut String, experiments: &[Experiment]) {
    out.push_str("\n---\n\n## Runs\n\n| Exp ID | Seed | Base | Score | Peak | Steps | Wall | Run folder |\n|--------|------|------|-------|------|-------|------|------------|\n");
    for e in experiments {
        for r in &e.runs {
            let s = &r.summary;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {}@{} | {} | {:.0} s | `{}` |\n",
                e.id,
                s.seed,
                pct(s.base_score),
                pct(s.score),
                pct(s.peak.0),
                s.peak.1,
                s.steps,
                s.wall_time_s,
                s.run_dir
            ));
        }
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// File-name-safe version of an Exp ID.
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let experiments = load_runs(&args.runs)?;
    let svg_dir = args
        .svg_dir
        .clone()
        .unwrap_or_else(|| args.runs.join("curves"));
    std::fs::create_dir_all(&svg_dir).with_context(|| format!("creating {}", svg_dir.display()))?;
    let all: Vec<(String, Vec<(f64, f64)>)> = experiments
        .iter()
        .map(|e| {
            (
                format!("{} (mean of {})", e.id, e.runs.len()),
                e.mean_curve(),
            )
        })
        .collect();
    let mut charts = vec![(
        svg_dir.join("all.svg"),
        "held-out accuracy per step (mean over seeds)".to_string(),
        all,
    )];
    for e in &experiments {
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = e
            .runs
            .iter()
            .map(|r| {
                (
                    format!("seed {}", r.summary.seed),
                    r.summary
                        .eval_history
                        .iter()
                        .map(|&(s, a)| (s as f64, 100.0 * a))
                        .collect(),
                )
            })
            .collect();
        if e.runs.len() > 1 {
            curves.push(("mean".into(), e.mean_curve()));
        }
        charts.push((
            svg_dir.join(format!("{}.svg", file_stem(&e.id))),
            format!("{}: held-out accuracy per step", e.id),
            curves,
        ));
    }
    let text = markdown(&args.runs, &experiments, &svg_dir);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.runs.join("REPORT.md"));
    let to_stdout = out.as_os_str() == "-";
    // Every target is checked before the first is written.
    if !to_stdout {
        output::check_target("--out", &out, OutputKind::Marked, &[], args.overwrite)?;
    }
    for (path, _, _) in &charts {
        output::check_target("--svg-dir", path, OutputKind::Marked, &[], args.overwrite)?;
    }
    for (path, title, curves) in &charts {
        draw_curves(path, title, curves)?;
    }
    let written = charts.len();
    if to_stdout {
        print!("{text}");
    } else {
        output::write(&out, output::marked("report", &text).as_bytes())?;
        eprintln!(
            "report   {} ({} experiments); curves: {} SVG files in {}",
            out.display(),
            experiments.len(),
            written,
            svg_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn spread() {
        assert_eq!(std_dev(&[1.0]), 0.0);
        assert!((std_dev(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
    }
}
