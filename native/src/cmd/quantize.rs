//! `aqn-native quantize`: a fake-quantized (or packed) copy of a safetensors checkpoint.
//!
//! By default it quantizes what `train` quantizes: every tensor of at least two dimensions except
//! the modules `train` keeps in full precision (`quant.exclude.modules`: `lm_head`,
//! `embed_tokens`). An input tensor with NaN or infinite values is refused (naming it) unless
//! `--allow-non-finite`. The output is never the input (nor a link to it), an existing file
//! aqn-native did not write is replaced only with `--overwrite`, and it is written to a temporary
//! file renamed into place (native/src/output.rs).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use aqn_core::formats::QuantSpec;
use aqn_core::qat::QuantExclude;
use aqn_core::tensor_file::{
    FloatDtype, HostTensor, OutTensor, TensorFile, TensorFileError, read_bytes, serialize,
};
use clap::{Args, ValueEnum};

use crate::backend::{Backend, BackendArgs};
use crate::cmd::quant_error::resolve_axis;
use crate::device_quantize::fake_quantize_along;
use crate::output::{self, OutputKind, WRITER_KEY};
use crate::{limits, progress};

/// Buffers held per byte of the input file: the file, and the serialized output (up to twice
/// the input's size when bf16/f16 tensors are written as f32).
const BUFFERS_PER_INPUT_BYTE: u128 = 3;

/// Output dtype of the fake-quantized tensors.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutDtype {
    /// f32: every dequantized value is exact.
    F32,
    /// The dtype each tensor had in the input (bf16/f16 round the dequantized values).
    Input,
    /// bf16.
    Bf16,
    /// f16.
    F16,
}

/// Arguments of `quantize`.
#[derive(Args)]
pub struct QuantizeArgs {
    /// The quantizer, `FORMAT[:OPTION]...`: mxfp4, nvfp4, fp8, bf16; options floor|ceil|even|rceil
    /// (mxfp4), two-level|single-level (nvfp4), row|tile16x16 (nvfp4), sr=SEED.
    #[arg(long, value_name = "SPEC")]
    format: QuantSpec,
    /// Input safetensors file (f32, f16 or bf16 tensors).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Output safetensors file. Never the input (nor a link to it); an existing file that
    /// aqn-native did not write is replaced only with --overwrite.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Replace an existing --output file that aqn-native did not write.
    #[arg(long)]
    overwrite: bool,
    /// dtype of the written fake-quantized tensors. With bf16/f16 a dequantized value that the
    /// dtype cannot hold exactly is rounded (FP4 values times E8M0 scales always fit bf16).
    #[arg(long, value_enum, default_value_t = OutDtype::F32)]
    dtype: OutDtype,
    /// Write codes + scales instead: `NAME.codes` (u8), `NAME.scales` (u8), `NAME.tensor_scale`
    /// (f32[1]); the spec and shapes go into the header metadata.
    #[arg(long)]
    packed: bool,
    /// Quantization axis (negative counts from the end). The default is the last axis, the
    /// reduction axis of an HF linear weight [out, in].
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    axis: i64,
    /// Quantize only tensors of at least this many dimensions; smaller ones (biases, norm
    /// weights) are copied unchanged.
    #[arg(long, default_value_t = 2)]
    min_dims: usize,
    /// Copy tensors whose name contains this text unchanged (repeatable), besides `lm_head` and
    /// `embed_tokens`, which are always copied unless --with-head-and-embedding.
    #[arg(long, value_name = "TEXT")]
    exclude: Vec<String>,
    /// Also quantize `lm_head` and `embed_tokens`, which `train` keeps in full precision by
    /// default (`quant.exclude.modules`) and so does this command.
    #[arg(long)]
    with_head_and_embedding: bool,
    /// Accept input tensors with NaN or infinite values (they are quantized or copied as they
    /// are). Without it such a tensor is refused, naming it and counting its NaN, +inf and -inf.
    #[arg(long)]
    allow_non_finite: bool,
    /// Where the fake quantization runs (the same bits on every backend). `--packed` encodes on
    /// the CPU only.
    #[command(flatten)]
    backend: BackendArgs,
}

/// Runs `quantize`.
pub fn run(args: QuantizeArgs) -> Result<()> {
    if args.packed && args.backend.backend != Backend::Cpu {
        anyhow::bail!(
            "--packed encodes codes and scales on the CPU only; drop --backend {} (the GPU \
             kernels fake-quantize) or --packed",
            args.backend.backend
        );
    }
    output::check_target(
        "--output",
        &args.output,
        OutputKind::Safetensors,
        &[("--input", &args.input)],
        args.overwrite,
    )?;
    let device = args.backend.device()?;
    limits::ensure_file_fits("--input", &args.input, BUFFERS_PER_INPUT_BYTE)?;
    let bytes = read_bytes(&args.input)?;
    let source = args.input.display().to_string();
    let file = TensorFile::parse(&bytes, &source)?;
    let spec = args.format;
    let mut excluded = args.exclude.clone();
    if !args.with_head_and_embedding {
        excluded.extend(
            QuantExclude::default()
                .modules
                .iter()
                .map(|m| m.name().to_string()),
        );
    }
    let mut out = Vec::new();
    let mut meta = HashMap::new();
    meta.insert("aqn.format".to_string(), spec.label());
    meta.insert(WRITER_KEY.to_string(), "aqn-native quantize".to_string());
    let (mut quantized, mut copied) = (0usize, 0usize);
    let pb = progress::bar(file.names().len() as u64, "tensors");
    for name in file.names() {
        pb.inc(1);
        let read = if args.allow_non_finite {
            file.read(name)
        } else {
            file.read_finite(name)
        };
        let t = read.map_err(|e| {
            let hint = match e {
                TensorFileError::NonFinite { .. } => " (--allow-non-finite accepts it)",
                _ => "",
            };
            anyhow::Error::new(e).context(format!("reading {source}{hint}"))
        })?;
        let skip =
            t.shape.len() < args.min_dims || excluded.iter().any(|e| name.contains(e.as_str()));
        if skip {
            out.push(OutTensor::float(
                name.clone(),
                t.shape.clone(),
                t.dtype,
                &t.data,
            ));
            copied += 1;
            continue;
        }
        let axis = resolve_axis(args.axis, t.shape.len(), name)?;
        let ctx = || format!("quantizing tensor `{name}` {:?} with {spec}", t.shape);
        if args.packed {
            push_packed(&mut out, &mut meta, &spec, name, &t, axis)?;
        } else {
            let q =
                fake_quantize_along(&device, &spec, &t.data, &t.shape, axis).with_context(ctx)?;
            let dtype = match args.dtype {
                OutDtype::F32 => FloatDtype::F32,
                OutDtype::Input => t.dtype,
                OutDtype::Bf16 => FloatDtype::Bf16,
                OutDtype::F16 => FloatDtype::F16,
            };
            out.push(OutTensor::float(name.clone(), t.shape.clone(), dtype, &q));
        }
        quantized += 1;
    }
    pb.finish_and_clear();
    let bytes = serialize(&out, Some(meta))?;
    output::write(&args.output, &bytes)?;
    eprintln!(
        "wrote {}: {quantized} tensors quantized with {spec}{}, {copied} copied unchanged",
        args.output.display(),
        if args.packed { " (packed)" } else { "" }
    );
    Ok(())
}

/// Tensor `name` stored packed: `NAME.codes`, `NAME.scales` (unless the format has none) and
/// `NAME.tensor_scale`, with its shape in the metadata (`aqn.shape.NAME`).
fn push_packed(
    out: &mut Vec<OutTensor>,
    meta: &mut HashMap<String, String>,
    spec: &QuantSpec,
    name: &str,
    t: &HostTensor,
    axis: usize,
) -> Result<()> {
    let ctx = || format!("quantizing tensor `{name}` {:?} with {spec}", t.shape);
    anyhow::ensure!(
        axis + 1 == t.shape.len(),
        "--packed stores rows along the last axis; tensor `{name}` was asked for axis {axis}"
    );
    let row_len = *t.shape.last().expect("rank >= 1");
    let p = spec.quantize(&t.data, row_len).with_context(ctx)?;
    let scale_shape = vec![p.scales.len()];
    out.push(OutTensor::bytes(
        format!("{name}.codes"),
        vec![p.codes.len()],
        p.codes,
    ));
    if !p.scales.is_empty() {
        out.push(OutTensor::bytes(
            format!("{name}.scales"),
            scale_shape,
            p.scales,
        ));
    }
    out.push(OutTensor::float(
        format!("{name}.tensor_scale"),
        vec![1],
        FloatDtype::F32,
        &[p.tensor_scale],
    ));
    meta.insert(
        format!("aqn.shape.{name}"),
        serde_json::to_string(&t.shape)?,
    );
    Ok(())
}
