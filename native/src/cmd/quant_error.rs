//! `aqn-native quant-error`: the docs/spec.md section 1 error metrics per format.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aqn_core::distributions::Distribution;
use aqn_core::formats::QuantSpec;
use aqn_core::non_finite::NonFiniteCounts;
use aqn_core::quant_error::ErrorMetrics;
use aqn_core::tensor_file::{TensorFile, read_bytes};
use clap::Args;
use serde::Serialize;

use crate::backend::BackendArgs;
use crate::device_quantize::fake_quantize_along;
use crate::table;
use crate::{limits, progress};

/// Default formats compared when `--format` is not given.
const DEFAULT_FORMATS: &[&str] = &["mxfp4", "nvfp4", "nvfp4:single-level", "fp8", "bf16"];
/// Tensors generated when neither `--input` nor `--generate` is given.
const DEFAULT_GENERATED: &[Distribution] =
    &[Distribution::STANDARD_NORMAL, Distribution::WEIGHT_LIKE];
/// Default elements of each generated tensor.
const GENERATED_LEN: usize = 1 << 20;
/// Row length of the generated tensors (the quantization axis).
pub const GENERATED_ROW_LEN: usize = 1 << 10;
/// Largest `--elements`: 2^28 values (1 GiB of f32 per tensor, as `bench`'s default).
pub const MAX_GENERATED_ELEMENTS: usize = 1 << 28;
/// Bytes held per generated element: the f32 tensor, its quantized copy and the device's copy.
const BYTES_PER_GENERATED_ELEMENT: u128 = 12;

/// Arguments of `quant-error`.
#[derive(Args)]
pub struct QuantErrorArgs {
    /// A safetensors checkpoint (f32, f16 or bf16 tensors): report every float tensor. Without it,
    /// the tensors of `--generate`.
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    input: Option<PathBuf>,
    /// Generated tensors, `KIND[:PARAM=VALUE]...` (repeat or comma-separate): normal[:std=S],
    /// laplace[:b=B], uniform[:a=A], weight-like[:std=S][:outliers=F][:factor=K]. Default: normal
    /// (N(0,1)) and weight-like (N(0, 0.02) with 1% of the elements multiplied by 10). The browser
    /// playground draws the same tensors for the same seed.
    #[arg(long, value_name = "DIST", value_delimiter = ',')]
    generate: Vec<Distribution>,
    /// Elements of each generated tensor, in rows of 1024 (a multiple of 1024, at most 2^28 and
    /// what the machine's memory holds).
    #[arg(long, default_value_t = GENERATED_LEN, value_name = "N")]
    elements: usize,
    /// Formats to compare, `FORMAT[:OPTION]...` (repeat or comma-separate). Formats: mxfp4,
    /// nvfp4, fp8, bf16. Options: MX scale mode floor|ceil|even|rceil; NVFP4 scaling
    /// two-level|single-level; blocks row|tile16x16 (nvfp4); sr=SEED for stochastic rounding.
    /// Default: mxfp4, nvfp4, nvfp4:single-level, fp8, bf16.
    #[arg(long = "format", value_name = "SPEC", value_delimiter = ',')]
    formats: Vec<QuantSpec>,
    /// Seed of the generated tensors.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Quantization axis for checkpoint tensors (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    axis: i64,
    /// Print JSON (one object per tensor and format) instead of a table.
    #[arg(long)]
    json: bool,
    /// Exit 0 even when an input tensor holds NaN or infinite values. Either way they are
    /// counted per tensor (column `non_finite`, JSON `input_non_finite`) and left out of the
    /// metrics, and a tensor with no finite value gets no metrics at all; without this flag such
    /// a tensor makes the command fail after the report, naming it.
    #[arg(long)]
    allow_non_finite: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// One row of the report.
#[derive(Serialize)]
pub struct Row {
    /// Tensor name.
    pub tensor: String,
    /// Its dtype in the file, or "generated".
    pub dtype: String,
    /// Number of elements.
    pub elements: usize,
    /// The quantizer.
    pub format: String,
    /// NaN / +inf / -inf values of the input tensor (left out of the metrics).
    pub input_non_finite: NonFiniteCounts,
    /// The metrics over the finite pairs; absent when there is none (every value NaN or
    /// infinite), where any number would be meaningless.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ErrorMetrics>,
}

impl Row {
    fn new(tensor: String, dtype: &str, x: &[f32], q: &[f32], format: String) -> Self {
        let metrics = ErrorMetrics::compute(x, q);
        Self {
            tensor,
            dtype: dtype.into(),
            elements: x.len(),
            format,
            input_non_finite: NonFiniteCounts::of(x),
            metrics: (metrics.count > 0).then_some(metrics),
        }
    }
}

/// Resolves a possibly negative axis against a rank.
pub fn resolve_axis(axis: i64, rank: usize, tensor: &str) -> Result<usize> {
    let a = if axis < 0 { rank as i64 + axis } else { axis };
    if rank == 0 || a < 0 || a >= rank as i64 {
        anyhow::bail!("axis {axis} is out of range for tensor `{tensor}` of rank {rank}");
    }
    Ok(a as usize)
}

/// Runs `quant-error`.
pub fn run(args: QuantErrorArgs) -> Result<()> {
    let formats: Vec<QuantSpec> = if args.formats.is_empty() {
        DEFAULT_FORMATS
            .iter()
            .map(|f| f.parse().expect("default formats parse"))
            .collect()
    } else {
        args.formats.clone()
    };
    let device = args.backend.device()?;
    let mut rows = Vec::new();
    match &args.input {
        None => {
            if args.elements == 0 || !args.elements.is_multiple_of(GENERATED_ROW_LEN) {
                anyhow::bail!(
                    "--elements {} is not a positive multiple of the row length {GENERATED_ROW_LEN}",
                    args.elements
                );
            }
            limits::ensure_at_most(
                "--elements",
                args.elements as u128,
                MAX_GENERATED_ELEMENTS as u128,
                "elements",
                "each generated tensor, its quantized copy and the device's copy are held in memory",
            )?;
            limits::ensure_fits_memory(
                &format!("--elements {}", args.elements),
                args.elements as u128 * BYTES_PER_GENERATED_ELEMENT,
            )?;
            let dists = if args.generate.is_empty() {
                DEFAULT_GENERATED.to_vec()
            } else {
                args.generate.clone()
            };
            for dist in dists {
                let x = dist.generate(args.elements, args.seed)?;
                for spec in &formats {
                    let shape = [x.len() / GENERATED_ROW_LEN, GENERATED_ROW_LEN];
                    let q = fake_quantize_along(&device, spec, &x, &shape, 1)?;
                    rows.push(Row::new(dist.label(), "generated", &x, &q, spec.label()));
                }
            }
        }
        Some(path) => {
            limits::ensure_file_fits("--input", path, 1)?;
            let bytes = read_bytes(path)?;
            let file = TensorFile::parse(&bytes, &path.display().to_string())?;
            let pb = progress::bar(file.names().len() as u64, "tensors");
            for name in file.names() {
                pb.inc(1);
                let t = file
                    .read(name)
                    .with_context(|| format!("reading {}", path.display()))?;
                if t.data.is_empty() {
                    continue;
                }
                let shape = if t.shape.is_empty() {
                    vec![1]
                } else {
                    t.shape.clone()
                };
                let axis = resolve_axis(args.axis, shape.len(), name)?;
                for spec in &formats {
                    let q = fake_quantize_along(&device, spec, &t.data, &shape, axis)
                        .with_context(|| {
                            format!("quantizing tensor `{name}` {:?} with {spec}", t.shape)
                        })?;
                    rows.push(Row::new(
                        name.clone(),
                        t.dtype.name(),
                        &t.data,
                        &q,
                        spec.label(),
                    ));
                }
            }
            pb.finish_and_clear();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&rows));
    }
    refuse_non_finite(&rows, args.allow_non_finite)
}

/// Fails naming every input tensor with NaN or infinite values (once per tensor), unless
/// `allowed`.
fn refuse_non_finite(rows: &[Row], allowed: bool) -> Result<()> {
    let mut flagged: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| !r.input_non_finite.is_clean()) {
        let line = format!(
            "`{}` holds {} of {} values{}",
            r.tensor,
            r.input_non_finite,
            r.elements,
            if r.metrics.is_none() {
                " (no finite pair of x and q(x): no metrics)"
            } else {
                " (left out of its metrics)"
            }
        );
        if !flagged.contains(&line) {
            flagged.push(line);
        }
    }
    if flagged.is_empty() || allowed {
        return Ok(());
    }
    anyhow::bail!(
        "{} input tensor(s) are not finite: {}; pass --allow-non-finite to accept the report anyway",
        flagged.len(),
        flagged.join("; ")
    )
}

fn render(rows: &[Row]) -> String {
    let header = [
        "tensor",
        "format",
        "rel_err",
        "norm_rel",
        "sqnr_db",
        "deadzone",
        "saturated",
        "max_abs_err",
        "non_finite",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.tensor.clone(), r.format.clone()];
            match &r.metrics {
                Some(m) => cells.extend([
                    format!("{:.4}", m.mean_relative_error),
                    format!("{:.4}", m.norm_relative_error),
                    format!("{:.2}", m.sqnr_db),
                    format!("{:.2}%", 100.0 * m.deadzone_ratio),
                    format!("{:.2}%", 100.0 * m.saturation_ratio),
                    format!("{:.3e}", m.max_abs_error),
                ]),
                None => cells.extend(std::iter::repeat_n("n/a".to_string(), 6)),
            }
            cells.push(if r.input_non_finite.is_clean() {
                "-".into()
            } else {
                r.input_non_finite.to_string()
            });
            cells
        })
        .collect();
    table::render(&header, &cells)
}
