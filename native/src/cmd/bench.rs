//! `aqn-native bench`: the GPU benchmarks of the native runner, as JSON for
//! `scripts/gpu_bench/hf_baseline.py --compare` (`scripts/gpu_bench.sh` runs both).
//!
//! - fake-quantize bandwidth: the fused kernels on `--elements` f32 values beside a
//!   device-to-device copy of the same bytes (GB/s counts the bytes read and written once);
//! - rollout tokens/s: batched sampling with the KV cache (temperature 1, full vocabulary, no
//!   stop token, so every row generates exactly `--new-tokens`) of a randomly initialized model of
//!   the `--model` config.json;
//! - one GRPO step: forward + backward of the response log-probabilities over prompt + response.
//!
//! Each measurement is one warm-up run, then the median of `--repeats`, each closed by a device
//! synchronization. Targets are checked by the comparison script, not here.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use aqn_core::formats::QuantSpec;
use aqn_core::generation::{GenerationConfig, SamplingConfig, generate};
use aqn_core::model::{Padding, Qwen2Config};
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use serde::Serialize;

use crate::backend::BackendArgs;
use crate::output::{self, OutputKind};
use crate::{limits, progress};

/// Row length of the fake-quantize benchmark tensor (`[elements / ROW_LEN, ROW_LEN]`): a multiple
/// of every block width and of the 16x16 tiles, like a linear layer's reduction axis.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const ROW_LEN: usize = 4096;
/// Bytes per f32 element.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const F32_BYTES: usize = 4;
/// The formats measured when `--format` is not given: the two FP4 formats of the issue, in their
/// default (spec) scale modes.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const DEFAULT_FORMATS: [&str; 2] = ["mxfp4", "nvfp4"];

/// Arguments of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Elements of the fake-quantize benchmark tensor (a multiple of 4096; 256M = 2^28 by
    /// default, 1 GiB of f32).
    #[arg(long, value_name = "N", default_value_t = 1 << 28)]
    elements: usize,
    /// Formats of the fake-quantize benchmark, `FORMAT[:OPTION]...` (repeat or comma-separate).
    #[arg(long = "format", value_name = "SPEC", value_delimiter = ',')]
    formats: Vec<QuantSpec>,
    /// A folder with the config.json of the model to benchmark (random weights;
    /// `scripts/gpu_bench/qwen25_config.py` writes Qwen2.5-1.5B's). Without it, only the
    /// fake-quantize benchmark runs.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Rollout batch (prompts).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    /// Generated tokens per prompt (also the response length of the GRPO step).
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed runs per measurement (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Skip the fake-quantize benchmark.
    #[arg(long)]
    skip_quantize: bool,
    /// Seed of the generated data and weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the results as JSON to this file (`-` for stdout) instead of a summary on stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Replace an existing --json file that is not an earlier bench report.
    #[arg(long)]
    overwrite: bool,
}

/// The keys of a bench report, by which an earlier one is recognized.
const REPORT_KEYS: &[&str] = &["backend", "device", "repeats", "quantize", "model"];
/// Host bytes per element of the fake-quantize benchmark: the generated f32 values and their
/// read-back copy.
const HOST_BYTES_PER_ELEMENT: u128 = 8;

/// One fake-quantize measurement.
#[derive(Serialize)]
struct QuantizeResult {
    format: String,
    elements: usize,
    seconds: f64,
    gb_per_s: f64,
    copy_seconds: f64,
    copy_gb_per_s: f64,
    ratio_to_copy: f64,
}

/// A timed workload.
#[derive(Serialize)]
struct Timed {
    seconds: f64,
    tokens_per_s: f64,
}

/// The model benchmarks.
#[derive(Serialize)]
struct ModelResult {
    config: String,
    parameters: usize,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    rollout: Timed,
    grpo_step: Timed,
}

/// Everything `bench` measured.
#[derive(Serialize)]
struct BenchReport {
    backend: String,
    device: String,
    repeats: usize,
    quantize: Vec<QuantizeResult>,
    model: Option<ModelResult>,
}

/// The median wall time of `repeats` runs of `f` after one warm-up, each run closed by a device
/// synchronization (GPU work is asynchronous).
fn median_seconds(
    device: &Device,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let sync = || {
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device sync: {e:?}"))
    };
    f()?;
    sync()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.repeats == 0 {
        anyhow::bail!("--repeats must be at least 1");
    }
    if !args.skip_quantize {
        limits::ensure_fits_memory(
            &format!("--elements {}", args.elements),
            args.elements as u128 * HOST_BYTES_PER_ELEMENT,
        )?;
    }
    if let Some(path) = args.json.as_ref().filter(|p| p.as_os_str() != "-") {
        output::check_target(
            "--json",
            path,
            OutputKind::Json(REPORT_KEYS),
            &[],
            args.overwrite,
        )?;
    }
    let (device, device_name) = args.backend.named_device()?;
    let mut report = BenchReport {
        backend: args.backend.backend.to_string(),
        device: device_name,
        repeats: args.repeats,
        quantize: Vec::new(),
        model: None,
    };
    if !args.skip_quantize {
        report.quantize = bench_quantize(&args, &device)?;
    }
    if let Some(dir) = &args.model {
        report.model = Some(bench_model(&args, dir, &device)?);
    }
    match &args.json {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&report)?)
        }
        Some(path) => output::write(
            path,
            (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
        )?,
        None => print_summary(&report),
    }
    Ok(())
}

/// The fused fake-quantize kernels beside a device copy of the same bytes.
fn bench_quantize(args: &BenchArgs, device: &Device) -> Result<Vec<QuantizeResult>> {
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        let _ = (args, device);
        anyhow::bail!(
            "the fake-quantize benchmark measures the fused GPU kernels: use --backend wgpu or cuda \
             (a binary built with --features wgpu or cuda), or --skip-quantize"
        );
    }
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        use aqn_core::quant::fake_quantize_on_device;
        use aqn_core::quant::fused::{device_copy, is_fused_device};
        use burn::tensor::Distribution;
        if !is_fused_device(device) {
            anyhow::bail!(
                "the fake-quantize benchmark measures the fused GPU kernels: use --backend wgpu \
                 or cuda, or --skip-quantize"
            );
        }
        if args.elements == 0 || !args.elements.is_multiple_of(ROW_LEN) {
            anyhow::bail!(
                "--elements must be a positive multiple of {ROW_LEN}, not {}",
                args.elements
            );
        }
        let formats: Vec<QuantSpec> = if args.formats.is_empty() {
            DEFAULT_FORMATS
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?
        } else {
            args.formats.clone()
        };
        device.seed(args.seed);
        let x = Tensor::<2>::random(
            [args.elements / ROW_LEN, ROW_LEN],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let bytes = (2 * F32_BYTES * args.elements) as f64;
        let pb = progress::bar(formats.len() as u64 + 1, "quantize");
        let copy_seconds = median_seconds(device, args.repeats, || {
            device_copy(x.clone())?;
            Ok(())
        })?;
        pb.inc(1);
        let mut results = Vec::new();
        for spec in formats {
            let seconds = median_seconds(device, args.repeats, || {
                fake_quantize_on_device(x.clone(), &spec, 1)?;
                Ok(())
            })?;
            pb.inc(1);
            results.push(QuantizeResult {
                format: spec.label(),
                elements: args.elements,
                seconds,
                gb_per_s: bytes / seconds / 1e9,
                copy_seconds,
                copy_gb_per_s: bytes / copy_seconds / 1e9,
                ratio_to_copy: copy_seconds / seconds,
            });
        }
        pb.finish_and_clear();
        Ok(results)
    }
}

/// Rollout and one policy forward + backward of a randomly initialized model.
fn bench_model(args: &BenchArgs, dir: &std::path::Path, device: &Device) -> Result<ModelResult> {
    let path = dir.join("config.json");
    let config =
        Qwen2Config::from_file(&path).with_context(|| format!("reading {}", path.display()))?;
    let (b, p, t) = (args.batch, args.prompt_len, args.new_tokens);
    if b == 0 || p == 0 || t == 0 {
        anyhow::bail!("--batch, --prompt-len and --new-tokens must be at least 1");
    }
    if p + t > config.max_position_embeddings {
        anyhow::bail!(
            "--prompt-len + --new-tokens = {} exceeds the model's max_position_embeddings {}",
            p + t,
            config.max_position_embeddings
        );
    }
    let pb = progress::bar(2, "model");
    device.seed(args.seed);
    let train_device = device.clone().autodiff();
    let model = config.init(&train_device);
    let vocab = config.vocab_size as u64;
    let token = |stream: u64, i: usize| {
        (aqn_core::rng::counter_hash(args.seed ^ stream, i as u64) % vocab) as u32
    };

    let prompts: Vec<Vec<u32>> = (0..b)
        .map(|r| (0..p).map(|i| token(1 + r as u64, i)).collect())
        .collect();
    let gen_config = GenerationConfig::new(t, vec![], 0);
    let rollout = median_seconds(device, args.repeats, || {
        let mut sampler = SamplingConfig::with_temperature(1.0, args.seed).build()?;
        let out = generate(&model, &prompts, &gen_config, &mut sampler)?;
        anyhow::ensure!(
            out.responses.iter().all(|r| r.len() == t),
            "a row stopped early"
        );
        Ok(())
    })?;
    pb.inc(1);

    let ids: Vec<i64> = (0..b * (p + t)).map(|i| token(0, i) as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, p + t]), &train_device);
    let padding = Padding::none(b);
    let step = median_seconds(device, args.repeats, || {
        let logits = model.forward(input.clone(), &padding, None);
        let logp = log_softmax(logits.narrow(1, p - 1, t), 2);
        let targets = input.clone().narrow(1, p, t);
        let picked = logp.gather(2, targets.unsqueeze_dim(2));
        drop(picked.mean().neg().backward());
        Ok(())
    })?;
    pb.finish_and_clear();
    Ok(ModelResult {
        config: path.display().to_string(),
        parameters: model.num_params(),
        batch: b,
        prompt_len: p,
        new_tokens: t,
        rollout: Timed {
            seconds: rollout,
            tokens_per_s: (b * t) as f64 / rollout,
        },
        grpo_step: Timed {
            seconds: step,
            tokens_per_s: (b * (p + t)) as f64 / step,
        },
    })
}

/// The human-readable summary.
fn print_summary(report: &BenchReport) {
    println!("backend {} ({})", report.backend, report.device);
    for q in &report.quantize {
        println!(
            "fake-quantize {:<24} {:>8.1} GB/s  copy {:>8.1} GB/s  ratio {:.2}  ({} elements)",
            q.format, q.gb_per_s, q.copy_gb_per_s, q.ratio_to_copy, q.elements
        );
    }
    if let Some(m) = &report.model {
        println!(
            "model {} ({} parameters), batch {} x (prompt {} + {} new)",
            m.config, m.parameters, m.batch, m.prompt_len, m.new_tokens
        );
        println!(
            "rollout   {:>10.1} tokens/s  ({:.3} s)",
            m.rollout.tokens_per_s, m.rollout.seconds
        );
        println!(
            "GRPO step {:>10.1} tokens/s  ({:.3} s forward + backward)",
            m.grpo_step.tokens_per_s, m.grpo_step.seconds
        );
    }
}
