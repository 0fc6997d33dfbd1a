//! `aqn-native srdd`: SRDD (docs/spec.md section 5) on a checkpoint. Runs the model in f32 on
//! calibration prompts, fake-quantizes every decoder layer's output (or its projection inputs or
//! weights) with the chosen format, prints a per-layer table, and optionally writes the JSON
//! report RIN reads, an SVG bar chart, and the multipliers a RIN policy derives from it. The model
//! runs on `--backend`; the metrics are computed on the host from the captured tensors.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use aqn_core::checkpoint::load_qwen2;
use aqn_core::formats::QuantSpec;
use aqn_core::rin::RinConfig;
use aqn_core::srdd::{DEFAULT_PROMPTS, SrddCapture, build_report, read_prompts, scan};
use aqn_core::srdd::{SrddMetric, SrddReport, SrddThresholds};
use aqn_core::tokenizer::Qwen2Tokenizer;
use clap::Args;
use plotters::prelude::*;

use crate::backend::BackendArgs;
use crate::output::{self, OutputKind};
use crate::{progress, table};

/// Size of the SVG chart in pixels.
const PLOT_SIZE: (u32, u32) = (960, 540);
/// Bar chart y range: this fraction above the largest value.
const HEADROOM: f64 = 0.1;

/// Arguments of `srdd`.
#[derive(Args)]
pub struct SrddArgs {
    /// The checkpoint directory in HF layout (config.json, model.safetensors or shards,
    /// tokenizer.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The format to scan with, in compact form: mxfp4 (OCP, FLOOR scales), nvfp4 (two-level),
    /// fp8, bf16, with options such as mxfp4:rceil, nvfp4:single-level.
    #[arg(long, value_name = "FORMAT")]
    format: QuantSpec,
    /// Calibration prompts, one per line (blank lines skipped); default: a built-in set of
    /// GSM8K-style problems. Ignored by --what weights.
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// What to capture per decoder layer: outputs (the residual stream after the layer, the
    /// SPEC's scan), linear-inputs (the inputs of its projections), weights (its projection
    /// weights).
    #[arg(long, value_name = "WHAT", default_value = "outputs")]
    what: SrddCapture,
    /// Write the JSON report (the schema RIN and `aqn-native schedule --srdd` read).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write an SVG bar chart of --plot-metric per layer (flagged layers in red, the threshold
    /// as a line).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// The metric of the chart: relative_error, sqnr_db, deadzone_ratio, saturation_ratio,
    /// mean_abs_error, max_abs_error, output_norm.
    #[arg(long, value_name = "METRIC", default_value = "relative_error")]
    plot_metric: SrddMetric,
    /// Print the per-layer noise multipliers a RIN policy derives from this scan:
    /// uniform, variable, inverse, inverse-normalized, targeted:layers=14-17 | :top-k=4 |
    /// :threshold=0.4, tiered[:band=4]..., zones:10-19=1.6..., or a preset (e9a, e9b, e12,
    /// e13l, ...). Zone policies that switch during training show their first phase.
    #[arg(long, value_name = "POLICY")]
    rin: Option<RinConfig>,
    /// Flag a layer whose SQNR is below this many dB. Default: the format's (FP4 15, FP8 25,
    /// BF16 45; the original scanner's 20 flags every FP4 layer of any model).
    #[arg(long, value_name = "DB", allow_negative_numbers = true)]
    sqnr_threshold: Option<f64>,
    /// Flag a layer whose deadzone ratio is above this fraction. Default: the format's (FP4 0.15,
    /// FP8 0.01, BF16 0.001).
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    deadzone_threshold: Option<f64>,
    /// Flag a layer whose saturation ratio is above this fraction. Default: 0.01.
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    saturation_threshold: Option<f64>,
    /// Flag a layer whose mean relative error is above this fraction. Default: the format's (FP4
    /// 0.30, FP8 0.05, BF16 0.01).
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    rel_error_threshold: Option<f64>,
    /// Replace an existing --output or --plot file that aqn-native did not write.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

impl SrddArgs {
    /// The flag thresholds: the format's defaults, overridden by the flags given.
    fn thresholds(&self) -> Result<SrddThresholds> {
        let d = SrddThresholds::for_format(self.format.format);
        let t = SrddThresholds {
            sqnr_db: self.sqnr_threshold.unwrap_or(d.sqnr_db),
            deadzone: self.deadzone_threshold.unwrap_or(d.deadzone),
            saturation: self.saturation_threshold.unwrap_or(d.saturation),
            relative_error: self.rel_error_threshold.unwrap_or(d.relative_error),
        };
        for (flag, v) in [
            ("--deadzone-threshold", t.deadzone),
            ("--saturation-threshold", t.saturation),
            ("--rel-error-threshold", t.relative_error),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{flag} {v} is refused: it must be a finite fraction >= 0");
            }
        }
        if !t.sqnr_db.is_finite() {
            bail!(
                "--sqnr-threshold {} is refused: it must be finite",
                t.sqnr_db
            );
        }
        Ok(t)
    }
}

/// Runs `srdd`.
pub fn run(args: SrddArgs) -> Result<()> {
    let thresholds = args.thresholds()?;
    if let Some(path) = &args.output {
        output::check_target(
            "--output",
            path,
            OutputKind::SrddReport,
            &[],
            args.overwrite,
        )?;
    }
    if let Some(path) = &args.plot {
        output::check_target("--plot", path, OutputKind::Marked, &[], args.overwrite)?;
    }
    if !args.model.is_dir() {
        bail!(
            "--model {}: not a directory (give a checkpoint directory in HF layout)",
            args.model.display()
        );
    }
    let device = args.backend.device()?;
    let model = load_qwen2(&args.model, &device)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let prompts: Vec<Vec<u32>> = if args.what == SrddCapture::Weights {
        Vec::new()
    } else {
        let texts: Vec<String> = match &args.prompts {
            Some(path) => read_prompts(path)?,
            None => DEFAULT_PROMPTS.iter().map(|s| s.to_string()).collect(),
        };
        let tokenizer = Qwen2Tokenizer::from_dir(&args.model)
            .with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                tokenizer
                    .encode(t, false)
                    .with_context(|| format!("tokenizing prompt {}", i + 1))
            })
            .collect::<Result<_>>()?
    };
    let bar = progress::bar(prompts.len() as u64, "prompts");
    let metrics = scan(&model, &prompts, args.what, &args.format, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let report = build_report(
        &args.model.display().to_string(),
        &args.format,
        args.what,
        thresholds,
        &metrics,
    )?;
    print!("{}", report_table(&report, args.what, prompts.len()));
    if let Some(path) = &args.output {
        output::write(path, (report.to_json() + "\n").as_bytes())
            .context("writing the SRDD report")?;
        eprintln!("wrote the SRDD report to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let svg = render_plot(&report, args.plot_metric).context("drawing the SRDD chart")?;
        output::write(path, output::marked("srdd", &svg).as_bytes())?;
        eprintln!(
            "wrote the SRDD chart ({}) to {}",
            args.plot_metric,
            path.display()
        );
    }
    if let Some(rin) = &args.rin {
        let m = rin
            .multipliers_for_report(&report, 1, 1)
            .with_context(|| format!("RIN policy {}", rin.label()))?;
        println!();
        println!("RIN {} (metric {}):", rin.label(), rin.metric);
        let rows: Vec<Vec<String>> = m
            .iter()
            .enumerate()
            .map(|(l, v)| {
                vec![
                    l.to_string(),
                    format!("{:.4}", report.report.per_layer[l].metric(rin.metric)),
                    format!("{v:.4}"),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["layer", rin.metric.name(), "multiplier"], &rows)
        );
    }
    Ok(())
}

/// The per-layer table and the summary lines.
fn report_table(report: &SrddReport, what: SrddCapture, prompts: usize) -> String {
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let rows: Vec<Vec<String>> = report
        .report
        .per_layer
        .iter()
        .map(|l| {
            vec![
                l.layer_id.to_string(),
                format!("{:.2}", l.sqnr_db),
                pct(l.deadzone_ratio),
                pct(l.saturation_ratio),
                pct(l.relative_error),
                format!("{:.4e}", l.mean_abs_error),
                format!("{:.4e}", l.max_abs_error),
                format!("{:.4}", l.output_norm),
                if l.issues.is_empty() {
                    "-".into()
                } else {
                    l.issues.join(" ")
                },
            ]
        })
        .collect();
    let mut out = format!(
        "SRDD {} of {} with {} ({})\n",
        what,
        report.config.model_path,
        report.config.quant_type,
        match what {
            SrddCapture::Weights => "no prompts".to_string(),
            _ => format!("{prompts} prompts"),
        }
    );
    out.push_str(&table::render(
        &[
            "layer",
            "sqnr_db",
            "deadzone",
            "saturation",
            "rel_error",
            "mean_abs",
            "max_abs",
            "norm",
            "issues",
        ],
        &rows,
    ));
    let s = &report.report.summary;
    out.push_str(&format!(
        "problematic layers: {} of {} {:?}\n",
        s.problematic_layers, s.total_layers, s.problematic_layer_ids
    ));
    if let Some(strategy) = report.recommendations.strategy {
        out.push_str(&format!("strategy: {strategy}\n"));
    }
    for d in &report.recommendations.details {
        out.push_str(&format!("  {d}\n"));
    }
    out
}

/// The flag threshold of a metric, if it has one.
fn threshold(t: &SrddThresholds, metric: SrddMetric) -> Option<f64> {
    match metric {
        SrddMetric::SqnrDb => Some(t.sqnr_db),
        SrddMetric::DeadzoneRatio => Some(t.deadzone),
        SrddMetric::SaturationRatio => Some(t.saturation),
        SrddMetric::RelativeError => Some(t.relative_error),
        _ => None,
    }
}

/// The bar chart of `metric` per layer as an SVG document.
fn render_plot(report: &SrddReport, metric: SrddMetric) -> Result<String> {
    let values = report.layer_values(metric);
    let limit = threshold(&report.config.thresholds, metric);
    let top = values.iter().copied().chain(limit).fold(0.0f64, f64::max);
    let top = if top > 0.0 {
        top * (1.0 + HEADROOM)
    } else {
        1.0
    };
    let n = values.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "SRDD {} per layer: {} ({})",
            metric, report.config.quant_type, report.config.model_path
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..top)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("decoder layer")
            .y_desc(metric.name())
            .x_labels(n.min(32))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(plot_error)?;
        let layers = &report.report.per_layer;
        chart
            .draw_series(values.iter().enumerate().map(|(l, &v)| {
                let color = if layers[l].is_problematic {
                    RED.mix(0.8)
                } else {
                    BLUE.mix(0.6)
                };
                Rectangle::new([(l as f64 - 0.4, 0.0), (l as f64 + 0.4, v)], color.filled())
            }))
            .map_err(plot_error)?;
        if let Some(limit) = limit {
            chart
                .draw_series(LineSeries::new(
                    [(-0.5, limit), (n as f64 - 0.5, limit)],
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_error)?
                .label(format!("threshold {limit}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
