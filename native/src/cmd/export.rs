//! `aqn-native export RUN_DIR --to FORMAT --out DIR [--merge]`: a run's checkpoint as a folder
//! that other tools deploy (transformers, vLLM, llama.cpp): an HF folder in bf16 or f32,
//! compressed-tensors' NVFP4 format with the base's tokenizer, chat template and generation
//! config, or one GGUF file (docs/formats.md, "Exporting").

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use aqn_core::checkpoint::export::{ADAPTER_SUBDIR, ExportFormat, ExportOptions, export};
use aqn_core::run::dir::CONFIG_FILE;
use aqn_core::tensor_file::FloatDtype;
use aqn_core::train::TrainConfig;
use aqn_core::train::{find_checkpoint, load_eval_model, resolve_model_dir};
use clap::Args;

use crate::backend::BackendArgs;

/// Arguments of `export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A run folder of `aqn-native train`: the model is the run's base, quantized as trained,
    /// with the checkpoint's adapter or weights (what `eval` scores).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// The format: `compressed-tensors-nvfp4` (NVFP4 projections as codes and scales, as
    /// llm-compressor writes them and vLLM serves them; the rest bf16), `hf-bf16` or `hf-f32`
    /// (every weight dense: a quantized projection as the values its codes decode to),
    /// `gguf-mxfp4` (llama.cpp: MXFP4 projections in GGML's MXFP4 type, the rest BF16, norms and
    /// biases F32) or `gguf-bf16` (`model.gguf`, with the tokenizer and chat template inside).
    #[arg(long, value_name = "FORMAT")]
    to: ExportFormat,
    /// The output folder; it must not exist or be empty (nothing is overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Merge the LoRA adapter into the weights (`W + scaling B A`; a quantized projection is
    /// then re-quantized from that f32 sum exactly as aqn quantizes). Without it the base is
    /// written as held (a pre-quantized base byte for byte) and the adapter beside it as a PEFT
    /// folder, `adapter/`.
    #[arg(long)]
    merge: bool,
    /// compressed-tensors-nvfp4 and gguf-mxfp4 only: the dtype of the dense tensors (the
    /// embedding and unquantized projections; for compressed-tensors also norms and biases, which
    /// GGUF always holds in F32), `bf16` (default) or `f32` (the other formats name their own).
    #[arg(long, value_name = "DTYPE")]
    dense_dtype: Option<FloatDtype>,
    /// The checkpoint step (default: the latest complete one).
    #[arg(long, value_name = "N")]
    step: Option<u64>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Runs `export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let run_config = args.run_dir.join(CONFIG_FILE);
    if !run_config.exists() {
        bail!(
            "{} is not a run folder (no {CONFIG_FILE}); export reads a run of `aqn-native train`",
            args.run_dir.display()
        );
    }
    let text = std::fs::read_to_string(&run_config)
        .with_context(|| format!("reading {}", run_config.display()))?;
    let config: TrainConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", run_config.display()))?;
    let (step, checkpoint) = find_checkpoint(&args.run_dir, args.step)?;
    let base_dir = resolve_model_dir(&config.model.path)?;
    let model = load_eval_model(&config, Some(&checkpoint), &args.backend.device()?, false)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let options = ExportOptions {
        format: args.to,
        merge: args.merge,
        dense_dtype: args.dense_dtype,
    };
    let summary = export(&model, &base_dir, &args.out, options)
        .with_context(|| format!("exporting to {}", args.out.display()))?;
    eprintln!(
        "exported step {step} of {} as {} to {}: {} projections as codes, {} dense{}{}",
        args.run_dir.display(),
        args.to,
        args.out.display(),
        summary.packed,
        summary.dense,
        if summary.merged > 0 {
            format!(", {} with the adapter merged", summary.merged)
        } else {
            String::new()
        },
        if summary.adapter {
            format!(", the adapter in {ADAPTER_SUBDIR}/")
        } else {
            String::new()
        }
    );
    Ok(())
}
