//! `aqn-native random-model`: a random-weight HF checkpoint of any Qwen2 `config.json`, written
//! locally (no hub), for scale checks and benchmarks (scripts/scale_check.sh makes the
//! Qwen2.5-1.5B one).
//!
//! Weights follow HF's initialization (`N(0, initializer_range^2)` for matrices, biases 0, norms
//! 1), drawn from the counter RNG keyed by the seed and the tensor's name, and are written tensor
//! by tensor (the file is never in memory). The tokenizer and generation files come from
//! `--tokenizer` (default: the built-in tiny model's character tokenizer, whose ids the larger
//! vocabulary contains).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use aqn_core::model::Qwen2Config;
use aqn_core::rng::{counter_hash, normal_f64};
use aqn_core::tensor_file::{FloatDtype, write_streaming};
use clap::Args;

use crate::progress;

/// Files copied from the tokenizer folder.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// Arguments of `random-model`.
#[derive(Args)]
pub struct RandomModelArgs {
    /// The model's HF `config.json` (e.g. written by scripts/gpu_bench/qwen25_config.py).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The folder to write (config.json, model.safetensors, tokenizer files); created if
    /// missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The dtype of the weights in the file: f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: FloatDtype,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A folder with tokenizer.json (and tokenizer_config.json / generation_config.json) to
    /// copy; default: the built-in tiny model's.
    #[arg(long, value_name = "DIR")]
    tokenizer: Option<PathBuf>,
}

/// Writes the checkpoint.
pub fn run(args: RandomModelArgs) -> Result<()> {
    let config = Qwen2Config::from_file(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let tokenizer = match args.tokenizer {
        Some(dir) => dir,
        None => aqn_core::checkpoint::builtin::materialize_tiny()
            .context("unpacking the built-in tiny model's tokenizer")?,
    };
    if !tokenizer.join("tokenizer.json").exists() {
        bail!("{} has no tokenizer.json", tokenizer.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::copy(&args.config, args.out.join("config.json"))
        .with_context(|| format!("copying {}", args.config.display()))?;
    for f in TOKENIZER_FILES {
        let src = tokenizer.join(f);
        if src.exists() {
            std::fs::copy(&src, args.out.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    // The parameter names and shapes in module order, from a lazily initialized model (no
    // values are computed).
    #[allow(deprecated)] // NdArray: the CPU backend.
    let names = config.init(&burn::tensor::Device::ndarray()).named_shapes();
    let tensors: Vec<(String, Vec<usize>, FloatDtype)> =
        names.into_iter().map(|(n, s)| (n, s, args.dtype)).collect();
    let total: usize = tensors
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    let std = config.initializer_range;
    let path = args.out.join("model.safetensors");
    let bar = progress::bar(tensors.len() as u64, "weights");
    write_streaming(&path, &tensors, |i, values| {
        let (name, shape, _) = &tensors[i];
        let n: usize = shape.iter().product();
        if name.ends_with(".bias") {
            values.resize(n, 0.0);
        } else if name.ends_with("norm.weight") {
            values.resize(n, 1.0);
        } else {
            let stream = counter_hash(args.seed, aqn_core::hw_noise::NoiseKey::site_id(name));
            use rayon::prelude::*;
            values.resize(n, 0.0);
            values
                .par_iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = (normal_f64(stream, k as u64) * std) as f32);
        }
        bar.inc(1);
    })
    .with_context(|| format!("writing {}", path.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} tensors, {:.2}B parameters in {}, seed {})",
        args.out.display(),
        tensors.len(),
        total as f64 / 1e9,
        args.dtype,
        args.seed
    );
    Ok(())
}
