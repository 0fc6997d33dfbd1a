//! `aqn-native`: quantization-aware RL with Adaptive Quantization Noise, from the command line.

mod backend;
mod cmd;
mod device_quantize;
mod distributed;
mod limits;
mod output;
mod progress;
mod table;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Quantization-aware reinforcement learning with Adaptive Quantization Noise.
///
/// Exact MXFP4 / NVFP4 / FP8 formats, noise schedules, SRDD/RIN, GRPO/DAPO. Every knob either
/// takes effect, visibly and measurably, or is refused with an error that names it.
#[derive(Parser)]
#[command(
    name = "aqn-native",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure quantization error (docs/spec.md section 1 metrics) per format, on generated data or a
    /// safetensors checkpoint.
    QuantError(cmd::quant_error::QuantErrorArgs),
    /// Write a fake-quantized (or packed) copy of a safetensors checkpoint.
    Quantize(cmd::quantize::QuantizeArgs),
    /// Print a noise schedule (docs/spec.md section 3) as a table, JSON, CSV or SVG chart; with an
    /// SRDD report and a RIN policy, the per-layer effective sigma at every step.
    Schedule(cmd::schedule::ScheduleArgs),
    /// Pretrain the built-in tiny model on the synthetic task (supervised) and save it in HF
    /// layout.
    Pretrain(cmd::pretrain::PretrainArgs),
    /// Train with GRPO / DAPO: a preset (the experiment) on a profile (the scale). With no
    /// arguments: NVFP4 W4A16 + LoRA + AQN on the built-in tiny model, on the CPU.
    Train(cmd::train::TrainArgs),
    /// Held-out accuracy (greedy, noise-free, strict GSM8K reward) of a run's checkpoint in the
    /// quantization it was trained in, or of an HF model folder.
    Eval(cmd::eval::EvalArgs),
    /// Write a run's model as a folder to deploy: compressed-tensors NVFP4 (vLLM), GGUF with
    /// MXFP4 or BF16 (llama.cpp), HF bf16 or f32; the LoRA adapter merged or beside it as PEFT.
    Export(cmd::export::ExportArgs),
    /// The seed's summary format from finished runs (Markdown experiment table, best per
    /// category, AQN configuration reference, rollout-training mismatch per sigma stage; mean
    /// and spread over seeds) plus SVG curves.
    Report(cmd::report::ReportArgs),
    /// Serve the browser playground (www/) on 127.0.0.1.
    Serve(cmd::serve::ServeArgs),
    /// GPU benchmarks as JSON: fused fake-quantize bandwidth beside a device copy, rollout
    /// tokens/s and one GRPO step of a random-weight model (scripts/gpu_bench.sh compares them
    /// with HF transformers).
    Bench(cmd::bench::BenchArgs),
    /// Write a random-weight HF checkpoint of a Qwen2 config.json (HF initialization, streamed to
    /// disk), with a tokenizer, for scale checks and benchmarks without a model hub.
    RandomModel(cmd::random_model::RandomModelArgs),
    /// SRDD (docs/spec.md section 5): per-layer quantization error of a checkpoint's layer outputs
    /// (or projection inputs or weights) in a format; table, JSON report, SVG chart, RIN
    /// multipliers.
    Srdd(cmd::srdd::SrddArgs),
}

fn main() -> ExitCode {
    // The CPU GEMMs split their work over Rayon's threads (before any thread starts), and
    // tensor-sized buffers reuse freed heap memory instead of faulting in fresh pages.
    aqn_core::cpu::configure_gemm_threads();
    aqn_core::cpu::configure_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::QuantError(args) => cmd::quant_error::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
        Command::Schedule(args) => cmd::schedule::run(args),
        Command::Pretrain(args) => cmd::pretrain::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Srdd(args) => cmd::srdd::run(args),
        Command::RandomModel(args) => cmd::random_model::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
