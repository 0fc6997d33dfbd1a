//! `aqn-native random-model`: a random-weight HF checkpoint of any Qwen2 `config.json`, written
//! locally (no hub), for scale checks and benchmarks (scripts/scale_check.sh makes the
//! Qwen2.5-1.5B one).
//!
//! Weights follow HF's initialization (`N(0, initializer_range^2)` for matrices, biases 0, norms
//! 1), drawn from the counter RNG keyed by the seed and the tensor's name, and are written tensor
//! by tensor (the file is never in memory). The tokenizer and generation files come from
//! `--tokenizer` (default: the built-in tiny model's character tokenizer, whose ids the larger
//! vocabulary contains).
//!
//! The config's sizes are checked before anything is allocated: a tensor whose size overflows, or
//! whose f32 values (one tensor is in memory at a time) do not fit the machine's memory, is
//! refused naming it. Files already in `--out` are replaced only when they are an earlier
//! `random-model` output (or with `--overwrite`), and never when they are the inputs themselves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aqn_core::model::Qwen2Config;
use aqn_core::rng::{counter_hash, normal_f64};
use aqn_core::tensor_file::{FloatDtype, write_streaming};
use clap::Args;

use crate::output::{OutputKind, WRITER_KEY, check_target};
use crate::{limits, progress};

/// The writer recorded in the checkpoint's metadata.
const WRITER: &str = "aqn-native random-model";

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
    /// Replace files in --out that are not an earlier random-model output.
    #[arg(long)]
    overwrite: bool,
    /// A folder with tokenizer.json (and tokenizer_config.json / generation_config.json) to
    /// copy; default: the built-in tiny model's.
    #[arg(long, value_name = "DIR")]
    tokenizer: Option<PathBuf>,
}

/// Refuses to write into `out` when a file there would be replaced without being an earlier
/// `random-model` output (its `model.safetensors` carries the writer's metadata), or when a
/// source file (`--config`, the tokenizer files) is the file it would be copied onto.
fn check_out_dir(args: &RandomModelArgs, tokenizer: &Path) -> Result<()> {
    let ours = args.overwrite
        || (args.out.join("model.safetensors").exists()
            && check_target(
                "--out",
                &args.out.join("model.safetensors"),
                OutputKind::Safetensors,
                &[],
                false,
            )
            .is_ok());
    let mut targets: Vec<(PathBuf, PathBuf)> =
        vec![(args.config.clone(), args.out.join("config.json"))];
    for f in TOKENIZER_FILES {
        targets.push((tokenizer.join(f), args.out.join(f)));
    }
    for (src, dst) in &targets {
        if aqn_core::atomic_write::same_file(src, dst) {
            bail!(
                "{} would be copied onto itself ({}): choose an --out folder other than the source's",
                src.display(),
                dst.display()
            );
        }
    }
    let model = args.out.join("model.safetensors");
    for dst in targets.iter().map(|(_, d)| d).chain([&model]) {
        if dst.exists() && !ours {
            bail!(
                "--out {}: {} already exists and the folder is not an earlier random-model output; refusing to replace it (pass --overwrite, or choose an empty folder)",
                args.out.display(),
                dst.display()
            );
        }
    }
    Ok(())
}

/// Most decoder layers (real models have a few hundred at most; each layer is a module tree
/// built before any weight).
const MAX_LAYERS: usize = 10_000;

/// Refuses sizes the model cannot even be built with: more than [`MAX_LAYERS`] layers, or a
/// matrix (or the RoPE table) whose element count overflows or whose f32 values do not fit in
/// memory. Checked on the config's numbers, before the (lazily initialized) model is built.
fn check_config_sizes(config: &Qwen2Config, config_path: &Path) -> Result<()> {
    let from = config_path.display();
    limits::ensure_at_most(
        &format!("num_hidden_layers in {from}"),
        config.num_hidden_layers as u128,
        MAX_LAYERS as u128,
        "layers",
        "every layer's modules are built before any weight is written",
    )?;
    let (hidden, hd) = (config.hidden_size as u128, config.head_dim() as u128);
    let matrices = [
        (
            "model.embed_tokens.weight",
            [config.vocab_size as u128, hidden],
        ),
        (
            "mlp.gate_proj.weight",
            [config.intermediate_size as u128, hidden],
        ),
        (
            "self_attn.q_proj.weight",
            [config.num_attention_heads as u128 * hd, hidden],
        ),
        (
            "self_attn.k_proj.weight",
            [config.num_kv_heads() as u128 * hd, hidden],
        ),
        ("the RoPE frequencies", [hd / 2, 1]),
    ];
    for (name, [rows, cols]) in matrices {
        let what = format!("tensor `{name}` [{rows}, {cols}] (from {from})");
        let n = rows
            .checked_mul(cols)
            .with_context(|| format!("{what}: its element count overflows"))?;
        limits::ensure_fits_memory(&format!("{what}, generated in f32,"), n * 4)?;
    }
    Ok(())
}

/// Refuses a tensor whose size overflows, or whose f32 values do not fit in memory.
fn check_sizes(tensors: &[(String, Vec<usize>, FloatDtype)], config_path: &Path) -> Result<u128> {
    let mut total = 0u128;
    for (name, shape, _) in tensors {
        let what = format!("tensor `{name}` {shape:?} (from {})", config_path.display());
        let n = limits::checked_elements(shape)
            .with_context(|| format!("{what}: its element count overflows"))?;
        limits::ensure_fits_memory(&format!("{what}, generated in f32,"), n * 4)?;
        total += n;
    }
    Ok(total)
}

/// Writes the checkpoint.
pub fn run(args: RandomModelArgs) -> Result<()> {
    let config = Qwen2Config::from_file(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let tokenizer = match &args.tokenizer {
        Some(dir) => dir.clone(),
        None => aqn_core::checkpoint::builtin::materialize_tiny()
            .context("unpacking the built-in tiny model's tokenizer")?,
    };
    if !tokenizer.join("tokenizer.json").exists() {
        bail!("{} has no tokenizer.json", tokenizer.display());
    }
    check_config_sizes(&config, &args.config)?;
    // The parameter names and shapes in module order, from a lazily initialized model (no
    // values are computed).
    #[allow(deprecated)] // NdArray: the CPU backend.
    let names = config.init(&burn::tensor::Device::ndarray()).named_shapes();
    let tensors: Vec<(String, Vec<usize>, FloatDtype)> =
        names.into_iter().map(|(n, s)| (n, s, args.dtype)).collect();
    let total = check_sizes(&tensors, &args.config)?;
    check_out_dir(&args, &tokenizer)?;
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
    let std = config.initializer_range;
    let path = args.out.join("model.safetensors");
    let meta: HashMap<String, String> = [
        (WRITER_KEY.to_string(), WRITER.to_string()),
        ("format".to_string(), "pt".to_string()),
    ]
    .into();
    let bar = progress::bar(tensors.len() as u64, "weights");
    write_streaming(&path, &tensors, Some(&meta), |i, values| {
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
