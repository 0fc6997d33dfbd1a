//! `aqn-native schedule`: the sigma schedule of docs/spec.md section 3 as a step/sigma table, JSON,
//! CSV or an SVG chart; with an SRDD report and a RIN policy (section 5), the per-layer
//! effective sigma `sigma(step) * m_l` at every step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aqn_core::catalogue::SchedulePreset;
use aqn_core::rin::RinConfig;
use aqn_core::schedule::{
    QERL_SIGMA_END, QERL_SIGMA_START, QERL_STAGES, RunLength, ScheduleKind, SigmaPoint,
    SigmaSchedule,
};
use aqn_core::srdd::SrddReport;
use clap::Args;
use plotters::prelude::*;
use serde::Serialize;

use crate::output::{self, OutputKind};
use crate::{limits, table};

/// Run length without a preset: one epoch of the seed's DAPO runs (7473 prompts / 256).
const DEFAULT_RUN: RunLength = RunLength {
    epochs: 1,
    steps_per_epoch: 29,
};
/// Size of the SVG chart in pixels.
const PLOT_SIZE: (u32, u32) = (960, 540);
/// Log-scale y range: this factor below the smallest and above the largest positive value.
const LOG_MARGIN: f64 = 1.5;
/// Layer curves listed one by one in the legend up to this many.
const MAX_LEGEND_LAYERS: usize = 8;
/// Linear y range: this fraction above the largest value.
const LINEAR_HEADROOM: f64 = 0.05;
/// Most steps printed (every step is a line of the table, JSON or CSV, and a point of the chart).
const MAX_STEPS: u64 = 1_000_000;
/// Most per-layer values printed with `--srdd` (steps times layers).
const MAX_LAYER_VALUES: u64 = 50_000_000;

/// Refuses a schedule too long to print before any step is computed.
fn check_size(schedule: &SigmaSchedule, layers: Option<usize>) -> Result<()> {
    let steps = schedule.total_steps();
    let why = "every step is printed (and held in memory) as a row; print a shorter run, or let \
               the trainer evaluate the schedule step by step";
    limits::ensure_at_most(
        "the run length (--steps, or --epochs x --steps-per-epoch)",
        steps.into(),
        MAX_STEPS.into(),
        "steps",
        why,
    )?;
    if let Some(layers) = layers {
        let values = u128::from(steps) * layers as u128;
        limits::ensure_at_most(
            &format!("steps x layers ({steps} x {layers} with --srdd)"),
            values,
            MAX_LAYER_VALUES.into(),
            "per-layer values",
            why,
        )?;
    }
    Ok(())
}

/// Arguments of `schedule`.
#[derive(Args)]
pub struct ScheduleArgs {
    /// A schedule of the seed's experiments: e5b, e5c, e9a, e9a-high, e9b, e6b (= e3b, e4b,
    /// e5b-lora), e12, qerl, qerl-high. Its kind, sigmas, stages, run length and RIN policy
    /// become the defaults of the flags below, which override them. `--list-presets` shows each
    /// with the source of its numbers.
    #[arg(long, value_name = "NAME")]
    preset: Option<SchedulePreset>,
    /// List the presets with their parameters and sources, then exit.
    #[arg(long)]
    list_presets: bool,
    /// Schedule kind: constant, linear, geometric (QeRL's K-stage decay with warm-up, its code's
    /// float intervals; the default), geometric-paper (the paper's integer intervals),
    /// epoch-aware (a geometric range and warm-up per epoch).
    #[arg(long, value_name = "KIND")]
    kind: Option<ScheduleKind>,
    /// s0: the first non-zero sigma (the constant's sigma). Default 0.01.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    sigma_start: Option<f64>,
    /// s1: the last sigma. Default 1e-4.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    sigma_end: Option<f64>,
    /// K: intervals including the warm-up (geometric kinds) or stages per epoch (epoch-aware),
    /// at least 3. Default 10.
    #[arg(long, value_name = "K")]
    stages: Option<u32>,
    /// T: total optimizer steps. Alone it means one epoch of T steps; with --epochs it is split
    /// into equal epochs. Default: the preset's run, else 29.
    #[arg(long, value_name = "T")]
    steps: Option<u64>,
    /// E: epochs (the epoch-aware kind restarts its range and warm-up every epoch).
    #[arg(long, value_name = "E")]
    epochs: Option<u64>,
    /// S: optimizer steps per epoch.
    #[arg(long, value_name = "S")]
    steps_per_epoch: Option<u64>,
    /// Print JSON: the schedule, its description and every step (with per-layer multipliers and
    /// effective sigmas under --srdd).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV: step,epoch,stage,sigma (and one sigma_layer_N column per layer under --srdd).
    #[arg(long)]
    csv: bool,
    /// Also write an SVG chart of sigma against the step (and every layer's effective sigma
    /// under --srdd).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Logarithmic sigma axis for --plot (warm-up steps, where sigma is 0, are left out).
    #[arg(long, requires = "plot")]
    log_scale: bool,
    /// Replace an existing --plot file that aqn-native did not write.
    #[arg(long, requires = "plot")]
    overwrite: bool,
    /// An SRDD report (docs/spec.md section 5 JSON): show the per-layer effective sigma
    /// sigma(step) x m_l of the RIN policy (--rin, else the preset's).
    #[arg(long, value_name = "FILE")]
    srdd: Option<PathBuf>,
    /// RIN policy `POLICY[:OPTION]...`: uniform, variable, inverse, inverse-normalized,
    /// targeted:layers=14-17 | :top-k=4 | :threshold=0.4,
    /// tiered[:band=4][:neighbours=4][:high=1.5][:mid=1.2][:base=1],
    /// zones:10-19=1.6[:default=1][:at=0.5:10-19=1]; or a preset: e9a, e9b, e12, e13i-global,
    /// e13i-targeted, e13i-high, e13i-low, e13l, e13m, e13n. Options for all: clip=MIN..MAX,
    /// metric=NAME (the SRDD field read as the error, default relative_error).
    #[arg(long, value_name = "POLICY", requires = "srdd")]
    rin: Option<RinConfig>,
}

/// One step of the JSON output.
#[derive(Serialize)]
struct JsonPoint {
    #[serde(flatten)]
    point: SigmaPoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    multipliers: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_sigma: Option<Vec<f64>>,
}

/// The RIN part of the JSON output.
#[derive(Serialize)]
struct JsonRin {
    policy: String,
    metric: String,
    report: String,
    num_layers: usize,
}

/// The JSON output.
#[derive(Serialize)]
struct JsonOutput<'a> {
    schedule: &'a SigmaSchedule,
    description: String,
    preset: Option<String>,
    preset_source: Option<&'static str>,
    rin: Option<JsonRin>,
    points: Vec<JsonPoint>,
}

/// A computed step: the schedule's point and, with RIN, the multipliers and effective sigmas.
struct Row {
    point: SigmaPoint,
    rin: Option<(Vec<f64>, Vec<f64>)>,
}

/// Runs `schedule`.
pub fn run(args: ScheduleArgs) -> Result<()> {
    if args.list_presets {
        print!("{}", list_presets());
        return Ok(());
    }
    if let Some(path) = &args.plot {
        output::check_target("--plot", path, OutputKind::Marked, &[], args.overwrite)?;
    }
    let schedule = build_schedule(&args)?;
    let rin = match &args.srdd {
        None => None,
        Some(path) => Some(load_rin(&args, path)?),
    };
    check_size(&schedule, rin.as_ref().map(|(_, r, _)| r.config.num_layers))?;
    let rows = compute_rows(&schedule, rin.as_ref())?;
    if args.json {
        let output = JsonOutput {
            schedule: &schedule,
            description: schedule.describe(),
            preset: args.preset.map(|p| p.name().to_string()),
            preset_source: args.preset.map(|p| p.source()),
            rin: rin.as_ref().map(|(config, report, path)| JsonRin {
                policy: config.label(),
                metric: config.metric.name().to_string(),
                report: path.display().to_string(),
                num_layers: report.config.num_layers,
            }),
            points: rows
                .iter()
                .map(|r| JsonPoint {
                    point: r.point,
                    multipliers: r.rin.as_ref().map(|(m, _)| m.clone()),
                    effective_sigma: r.rin.as_ref().map(|(_, e)| e.clone()),
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else if args.csv {
        print!("{}", render_csv(&rows));
    } else {
        println!("# {}", schedule.describe());
        if let Some(p) = args.preset {
            println!("# preset {p}: {}", p.source());
        }
        if let Some((config, report, path)) = &rin {
            println!(
                "# RIN {} on {} of {} ({} layers); columns L0.. are sigma(step) x m_l",
                config.label(),
                config.metric,
                path.display(),
                report.config.num_layers
            );
        } else if let Some(r) = args.preset.and_then(|p| p.rin()) {
            println!("# the preset's RIN policy {r} scales each layer; give --srdd to see it");
        }
        print!("{}", render_table(&rows));
    }
    if let Some(path) = &args.plot {
        let svg = render_plot(&schedule, &rows, args.log_scale).context("drawing the chart")?;
        output::write(path, output::marked("schedule", &svg).as_bytes())?;
        eprintln!("wrote the chart to {}", path.display());
    }
    Ok(())
}

/// The schedule from the preset (if any) and the flags that override it.
fn build_schedule(args: &ScheduleArgs) -> Result<SigmaSchedule> {
    let spec = args.preset.map(|p| p.spec());
    let kind = args
        .kind
        .or(spec.map(|s| s.kind))
        .unwrap_or(ScheduleKind::Geometric);
    let sigma_start = args
        .sigma_start
        .or(spec.map(|s| s.sigma_start))
        .unwrap_or(QERL_SIGMA_START);
    let sigma_end = args
        .sigma_end
        .or(spec.map(|s| s.sigma_end))
        .unwrap_or(QERL_SIGMA_END);
    let stages = args
        .stages
        .or(spec.map(|s| s.stages))
        .unwrap_or(QERL_STAGES);
    let default_run = spec.map(|s| s.run).unwrap_or(DEFAULT_RUN);
    let run = RunLength::resolve(default_run, args.steps, args.epochs, args.steps_per_epoch)
        .context("the run length (--steps, --epochs, --steps-per-epoch)")?;
    SigmaSchedule::build(kind, sigma_start, sigma_end, stages, run)
        .with_context(|| format!("the {kind} schedule"))
}

/// The RIN configuration (--rin, else the preset's) and the SRDD report.
fn load_rin(args: &ScheduleArgs, path: &Path) -> Result<(RinConfig, SrddReport, PathBuf)> {
    let config = match (&args.rin, args.preset.and_then(|p| p.rin())) {
        (Some(c), _) => c.clone(),
        (None, Some(preset)) => preset.config(),
        (None, None) => bail!(
            "--srdd needs a RIN policy: give --rin POLICY (e.g. --rin variable); {}",
            match args.preset {
                Some(p) => format!("the preset {p} has none"),
                None => "no preset gives one".to_string(),
            }
        ),
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the SRDD report {}", path.display()))?;
    let report = SrddReport::from_json(&text)
        .with_context(|| format!("reading the SRDD report {}", path.display()))?;
    Ok((config, report, path.to_path_buf()))
}

/// Every step of the schedule, with the RIN multipliers and effective sigmas if asked.
fn compute_rows(
    schedule: &SigmaSchedule,
    rin: Option<&(RinConfig, SrddReport, PathBuf)>,
) -> Result<Vec<Row>> {
    let total = schedule.total_steps();
    schedule
        .curve()?
        .into_iter()
        .map(|point| {
            let rin = match rin {
                None => None,
                Some((config, report, _)) => {
                    let m = config
                        .multipliers_for_report(report, point.step, total)
                        .with_context(|| format!("RIN policy {}", config.label()))?;
                    let e = m.iter().map(|m| point.sigma * m).collect();
                    Some((m, e))
                }
            };
            Ok(Row { point, rin })
        })
        .collect()
}

/// Scientific notation with `digits` decimals, and a plain `0` for zero (the warm-up).
fn sci(v: f64, digits: usize) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.digits$e}")
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn render_table(rows: &[Row]) -> String {
    let epochs = rows.iter().any(|r| r.point.epoch.is_some());
    let stages = rows.iter().any(|r| r.point.stage.is_some());
    let layers = rows
        .first()
        .and_then(|r| r.rin.as_ref())
        .map_or(0, |(m, _)| m.len());
    let mut header = vec!["step".to_string()];
    if epochs {
        header.push("epoch".into());
    }
    if stages {
        header.push("stage".into());
    }
    header.push("sigma".into());
    header.extend((0..layers).map(|l| format!("L{l}")));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let p = &r.point;
            let mut row = vec![p.step.to_string()];
            if epochs {
                row.push(opt(p.epoch));
            }
            if stages {
                row.push(opt(p.stage));
            }
            row.push(sci(p.sigma, 5));
            if let Some((_, e)) = &r.rin {
                row.extend(e.iter().map(|&v| sci(v, 3)));
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table::render(&header, &cells)
}

fn render_csv(rows: &[Row]) -> String {
    let layers = rows
        .first()
        .and_then(|r| r.rin.as_ref())
        .map_or(0, |(m, _)| m.len());
    let mut out = String::from("step,epoch,stage,sigma");
    for l in 0..layers {
        out.push_str(&format!(",sigma_layer_{l}"));
    }
    out.push('\n');
    for r in rows {
        let p = &r.point;
        out.push_str(&format!(
            "{},{},{},{}",
            p.step,
            opt(p.epoch),
            opt(p.stage),
            p.sigma
        ));
        if let Some((_, e)) = &r.rin {
            for v in e {
                out.push_str(&format!(",{v}"));
            }
        }
        out.push('\n');
    }
    out
}

fn list_presets() -> String {
    let header = [
        "preset",
        "kind",
        "sigma_start",
        "sigma_end",
        "K",
        "epochs",
        "steps/epoch",
        "rin",
        "source",
    ];
    let cells: Vec<Vec<String>> = SchedulePreset::ALL
        .iter()
        .map(|&p| {
            let s = p.spec();
            vec![
                p.name().into(),
                s.kind.name().into(),
                s.sigma_start.to_string(),
                s.sigma_end.to_string(),
                s.stages.to_string(),
                s.run.epochs.to_string(),
                s.run.steps_per_epoch.to_string(),
                s.rin
                    .map(|r| r.name().to_string())
                    .unwrap_or_else(|| "-".into()),
                s.source.into(),
            ]
        })
        .collect();
    table::render(&header, &cells)
}

/// A staircase: step `s` holds its value over `[s, s + 1)`.
fn staircase(values: impl Iterator<Item = (u64, f64)>) -> Vec<(f64, f64)> {
    values
        .flat_map(|(step, v)| [(step as f64, v), (step as f64 + 1.0, v)])
        .collect()
}

/// The curves to draw: the schedule, then each layer's effective sigma.
fn series(rows: &[Row]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = vec![(
        "sigma(step)".to_string(),
        staircase(rows.iter().map(|r| (r.point.step, r.point.sigma))),
    )];
    let layers = rows
        .first()
        .and_then(|r| r.rin.as_ref())
        .map_or(0, |(m, _)| m.len());
    for l in 0..layers {
        out.push((
            format!("layer {l}: sigma x m_{l}"),
            staircase(
                rows.iter()
                    .filter_map(|r| r.rin.as_ref().map(|(_, e)| (r.point.step, e[l]))),
            ),
        ));
    }
    out
}

/// Whether curve `i` of `n` gets a legend entry: the schedule, and the layers when they are few
/// (else only the first stands for all of them).
fn in_legend(i: usize, n: usize) -> bool {
    i == 0 || n <= MAX_LEGEND_LAYERS + 1 || i == 1
}

/// Splits a curve into runs of positive values (a log axis cannot show 0).
fn positive_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for &p in points {
        if p.1 > 0.0 {
            current.push(p);
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The chart of sigma against the step as an SVG document.
fn render_plot(schedule: &SigmaSchedule, rows: &[Row], log: bool) -> Result<String> {
    let curves = series(rows);
    let x_max = schedule.total_steps() as f64 + 1.0;
    let values = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1));
    let y_max = values.clone().fold(0.0f64, f64::max);
    let y_min_pos = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    if y_max <= 0.0 {
        bail!("the schedule is zero at every step; nothing to plot");
    }
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = schedule.describe();
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80);
    let layer_style = |i: usize| Palette99::pick(i).mix(0.45).stroke_width(1);
    let main_style = BLACK.stroke_width(2);
    if log {
        let mut chart = builder
            .build_cartesian_2d(
                1.0..x_max,
                (y_min_pos / LOG_MARGIN..y_max * LOG_MARGIN).log_scale(),
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc("sigma (log scale)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(plot_error)?;
        for (i, (name, points)) in curves.iter().enumerate().rev() {
            let style = if i == 0 { main_style } else { layer_style(i) };
            for (k, run) in positive_runs(points).into_iter().enumerate() {
                let drawn = chart
                    .draw_series(LineSeries::new(run, style))
                    .map_err(plot_error)?;
                if k == 0 && in_legend(i, curves.len()) {
                    drawn
                        .label(legend_name(name, i, curves.len()))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(1.0..x_max, 0.0..y_max * (1.0 + LINEAR_HEADROOM))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc("sigma")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .draw()
            .map_err(plot_error)?;
        for (i, (name, points)) in curves.iter().enumerate().rev() {
            let style = if i == 0 { main_style } else { layer_style(i) };
            let drawn = chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(plot_error)?;
            if in_legend(i, curves.len()) {
                drawn
                    .label(legend_name(name, i, curves.len()))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)?;
    drop(builder);
    drop(root);
    Ok(svg)
}

/// The legend text of curve `i`: its name, or a summary when the layers are too many to list.
fn legend_name(name: &str, i: usize, n: usize) -> String {
    if i == 1 && n > MAX_LEGEND_LAYERS + 1 {
        format!("{} layers: sigma x m_l", n - 1)
    } else {
        name.to_string()
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
