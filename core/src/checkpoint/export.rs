//! Deployable checkpoints of a trained model ([`export`]): an HF folder in bf16 or f32, or
//! compressed-tensors' `nvfp4-pack-quantized` (what vLLM serves; the mapping is the one
//! [`super::compressed_tensors`] reads), with the base's tokenizer, chat template and generation
//! config. A LoRA adapter is merged into the weights (`merge`) or written beside them as a PEFT
//! adapter (`adapter/`), so nothing trained is left behind.
//!
//! What each projection becomes:
//! - compressed-tensors, a projection the run quantizes as NVFP4 (two-level, 1-D blocks of 16,
//!   round to nearest): its codes and scales. Unmerged, they are the run's codes as held (a
//!   pre-quantized base is written back byte for byte); merged, the f32 sum of the decoded
//!   weight and the adapter's `scaling * B A` is re-quantized exactly as aqn quantizes.
//! - a projection the run keeps in full precision: its weight (merged when asked), dense, and
//!   listed in `ignore`.
//! - the HF formats: the weight the run computes with (the decoded codes of a quantized one),
//!   merged when asked, in the chosen dtype.
//!
//! Refused by name: a W4A4 model (neither format carries activation quantization, so the
//! export would not compute what was trained), a projection quantized in another format than
//! NVFP4 for compressed-tensors, rows that are not whole NVFP4 blocks, a tied LM head with an
//! adapter to merge (the shared matrix is also the embedding), and an output folder that exists
//! and is not empty (nothing of the user's is overwritten).

use std::path::Path;

use burn::tensor::Tensor;
use safetensors::tensor::Dtype;
use serde_json::{Value, json};
use thiserror::Error;

use super::compressed_tensors::{COMPRESSED_STATUS, NVFP4_PACK_FORMAT, QUANT_METHOD};
use super::gguf::{GgufTensor, gguf_name};
use super::hf_names::{CONFIG_FILE, SINGLE_FILE, TIED_HEAD, weight_name};
use super::named_params::NamedParamVisitor;
use super::prequantized::Producer;
use crate::formats::spec::{BlockLayout, MXFP4_BLOCK_SIZE, NVFP4_BLOCK_SIZE};
use crate::formats::{FormatError, PackedTensor, QuantFormat, QuantSpec};
use crate::lora::LoraError;
use crate::model::{QLinear, Qwen2ForCausalLM};
use crate::named::named_enum;
use crate::site::LinearSite;
use crate::tensor_file::{FloatDtype, OutTensor, TensorFileError, serialize};

named_enum! {
    /// What `export` writes.
    ExportFormat, "export format", ExportError {
        /// An HF folder, every weight dense in bf16.
        HfBf16 => "hf-bf16",
        /// An HF folder, every weight dense in f32.
        HfF32 => "hf-f32",
        /// compressed-tensors `nvfp4-pack-quantized`: NVFP4 projections as codes and scales,
        /// the rest dense in bf16.
        CompressedTensorsNvfp4 => "compressed-tensors-nvfp4",
        /// One GGUF file (llama.cpp), matrices in BF16, norms and biases in F32.
        GgufBf16 => "gguf-bf16",
        /// One GGUF file, MXFP4 projections in GGML's MXFP4 type, the rest as `gguf-bf16`.
        GgufMxfp4 => "gguf-mxfp4",
    }
}

impl ExportFormat {
    /// The dtype of the dense tensors: the format's own, or for compressed-tensors `asked`
    /// (default bf16, as llm-compressor's outputs of bf16 models hold them). An HF format
    /// names its dtype, so another one asked for is refused.
    pub fn dense_dtype(self, asked: Option<FloatDtype>) -> Result<FloatDtype, ExportError> {
        let own = match self {
            ExportFormat::HfF32 => FloatDtype::F32,
            ExportFormat::HfBf16 | ExportFormat::GgufBf16 => FloatDtype::Bf16,
            ExportFormat::CompressedTensorsNvfp4 | ExportFormat::GgufMxfp4 => {
                return Ok(asked.unwrap_or(FloatDtype::Bf16));
            }
        };
        match asked {
            Some(d) if d != own => Err(ExportError::Refused(format!(
                "{self} writes every weight in {}; a dense dtype of {} applies to {} and {} only",
                own.name(),
                d.name(),
                ExportFormat::CompressedTensorsNvfp4,
                ExportFormat::GgufMxfp4
            ))),
            _ => Ok(own),
        }
    }

    /// Whether a projection `module` with `inp` inputs that the run quantizes as `spec` is
    /// written as codes; a quantization the format cannot hold is refused.
    fn packs(self, module: &str, spec: &QuantSpec, inp: usize) -> Result<bool, ExportError> {
        let (holds, block, what, instead) = match self {
            ExportFormat::CompressedTensorsNvfp4 => (
                *spec == ct_spec(),
                NVFP4_BLOCK_SIZE,
                "nvfp4:two-level only (round to nearest, 1-D blocks of 16)",
                "hf-bf16, or gguf-mxfp4 for MXFP4",
            ),
            ExportFormat::GgufMxfp4 => (
                spec.format == QuantFormat::Mxfp4 && spec.blocks == BlockLayout::Row,
                MXFP4_BLOCK_SIZE,
                "MXFP4 blocks of 32 along the input only",
                "gguf-bf16, or compressed-tensors-nvfp4 for NVFP4",
            ),
            _ => return Ok(false),
        };
        if !holds {
            return Err(ExportError::Refused(format!(
                "`{module}` is quantized as {}; {self} holds {what}: export as {instead}",
                spec.label()
            )));
        }
        if !inp.is_multiple_of(block) {
            return Err(ExportError::Refused(format!(
                "`{module}` has {inp} inputs, not whole blocks of {block} ({self})"
            )));
        }
        Ok(true)
    }

    fn is_gguf(self) -> bool {
        matches!(self, ExportFormat::GgufBf16 | ExportFormat::GgufMxfp4)
    }
}

/// A tensor of the export before encoding: dense values, or a projection's codes.
enum Weight {
    Dense(Vec<f32>),
    Packed(PackedTensor),
}

/// Why a model could not be exported.
#[derive(Debug, Error)]
pub enum ExportError {
    /// A name that is not one of an enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// Something the format cannot hold, or an output folder in the way.
    #[error("{0}")]
    Refused(String),
    /// A tensor could not be encoded or serialized.
    #[error(transparent)]
    Tensors(#[from] TensorFileError),
    /// A weight could not be quantized.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The adapter could not be written.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportSummary {
    /// Projections written as NVFP4 codes.
    pub packed: usize,
    /// Projections written dense.
    pub dense: usize,
    /// Projections whose adapter was merged in.
    pub merged: usize,
    /// Whether a PEFT adapter was written to `adapter/`.
    pub adapter: bool,
}

/// The file a GGUF export writes.
pub const GGUF_FILE: &str = "model.gguf";
/// The folder a PEFT adapter goes to when it is not merged.
pub const ADAPTER_SUBDIR: &str = "adapter";

/// Files of the base folder copied as they are (those it has).
pub const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
];

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// The weight a projection computes with, `[out, in]` row-major, and its codes when held packed.
fn effective_weight(linear: &QLinear) -> Result<(Vec<f32>, Option<PackedTensor>), ExportError> {
    if let Some(packed) = &linear.packed {
        return Ok((packed.dequantize(), packed.packed().cloned()));
    }
    let weight = linear.weight.as_ref().expect("a latent or packed weight");
    let values = host(weight.val());
    match linear.quantization() {
        Some(q) => {
            let codes = q.weights.quantize(&values, linear.d_input())?;
            Ok((codes.dequantize()?, Some(codes)))
        }
        None => Ok((values, None)),
    }
}

/// The NVFP4 spec compressed-tensors' format holds.
fn ct_spec() -> QuantSpec {
    QuantSpec::new(QuantFormat::Nvfp4)
}

/// The three tensors of a packed projection, named as compressed-tensors names them.
fn ct_tensors(module: &str, t: &PackedTensor) -> Vec<OutTensor> {
    let suffixes = Producer::CompressedTensors.suffixes();
    let (codes, scales, global) = (suffixes[0], suffixes[1], suffixes[2]);
    vec![
        OutTensor::bytes(
            format!("{module}.{codes}"),
            vec![t.rows, t.row_len / 2],
            t.codes.clone(),
        ),
        OutTensor {
            name: format!("{module}.{scales}"),
            shape: vec![t.rows, t.row_len / NVFP4_BLOCK_SIZE],
            dtype: Dtype::F8_E4M3,
            data: t.scales.clone(),
        },
        OutTensor::float(
            format!("{module}.{global}"),
            vec![1],
            FloatDtype::F32,
            &[1.0 / t.tensor_scale],
        ),
    ]
}

/// Accumulates the output tensors.
struct Writer {
    format: ExportFormat,
    merge: bool,
    tied: bool,
    /// HF name, shape, weight.
    tensors: Vec<(String, Vec<usize>, Weight)>,
    ignore: Vec<String>,
    summary: ExportSummary,
}

impl Writer {
    fn projection(&mut self, site: &LinearSite, linear: &QLinear) -> Result<(), ExportError> {
        let module = site.module_path();
        let quant = linear.quantization();
        if quant.is_some_and(|q| q.activations.is_some()) {
            return Err(ExportError::Refused(format!(
                "`{module}` quantizes its activations (W4A4): no export format carries \
                 activation quantization, so the exported model would not compute what was \
                 trained"
            )));
        }
        if self.tied && site.layer.is_none() {
            // The tied head is the embedding matrix, written with the embedding.
            if linear.lora.is_some() && self.merge {
                return Err(ExportError::Refused(format!(
                    "`{module}` has an adapter, and its matrix is also the tied embedding: \
                     merging would change the embedding too; export without --merge"
                )));
            }
            return Ok(());
        }
        let [out, inp] = linear.dims();
        let (mut values, codes) = effective_weight(linear)?;
        let delta = match (&linear.lora, self.merge) {
            (Some(lora), true) => {
                let ba = lora.lora_b.val().matmul(lora.lora_a.val()) * lora.scaling();
                Some(host(ba))
            }
            _ => None,
        };
        if let Some(delta) = &delta {
            for (v, d) in values.iter_mut().zip(delta) {
                *v += d;
            }
            self.summary.merged += 1;
        }
        let name = weight_name(site, self.tied);
        if let Some(q) = quant
            && self.format.packs(&module, &q.weights, inp)?
        {
            let packed = match (delta, codes) {
                (None, Some(codes)) => codes,
                _ => q.weights.quantize(&values, inp)?,
            };
            self.tensors
                .push((name, vec![out, inp], Weight::Packed(packed)));
            self.summary.packed += 1;
            return Ok(());
        }
        if self.format == ExportFormat::CompressedTensorsNvfp4 {
            self.ignore.push(module);
        }
        self.tensors
            .push((name, vec![out, inp], Weight::Dense(values)));
        self.summary.dense += 1;
        Ok(())
    }
}

/// Collects the parameters that are neither projection weights nor adapters (norms, biases, a
/// latent embedding), dense.
struct Others<'a> {
    skip: &'a [String],
    out: Vec<(String, Vec<usize>, Weight)>,
}

impl NamedParamVisitor for Others<'_> {
    fn visit<const D: usize>(
        &mut self,
        name: &str,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        if self.skip.iter().any(|s| s == name) || name.contains(".lora_") {
            return;
        }
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 data");
        self.out
            .push((name.to_string(), shape, Weight::Dense(values)));
    }
}

/// compressed-tensors' `quantization_config` for NVFP4 weights (W4A16), as llm-compressor
/// writes it, with `ignore` the dense projections.
fn ct_config(ignore: &[String]) -> Value {
    json!({
        "config_groups": { "group_0": {
            "format": NVFP4_PACK_FORMAT,
            "input_activations": null,
            "output_activations": null,
            "targets": ["Linear"],
            "weights": {
                "actorder": null, "block_structure": null, "dynamic": false,
                "group_size": NVFP4_BLOCK_SIZE, "num_bits": 4, "observer": "memoryless_minmax",
                "observer_kwargs": {}, "scale_dtype": "torch.float8_e4m3fn",
                "strategy": "tensor_group", "symmetric": true, "type": "float", "zp_dtype": null
            }
        } },
        "format": NVFP4_PACK_FORMAT,
        "global_compression_ratio": null,
        "ignore": ignore,
        "kv_cache_scheme": null,
        "quant_method": QUANT_METHOD,
        "quantization_status": COMPRESSED_STATUS,
        "sparsity_config": {},
        "transform_config": {}
    })
}

/// The base's `config.json` with the export's dtype and quantization.
fn config_json(
    base_dir: &Path,
    format: ExportFormat,
    dense: FloatDtype,
    ignore: &[String],
) -> Result<Value, ExportError> {
    let path = base_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut config: Value = serde_json::from_str(&text)
        .map_err(|e| ExportError::Refused(format!("{}: not JSON: {e}", path.display())))?;
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ExportError::Refused(format!("{}: not a JSON object", path.display())))?;
    obj.remove("quantization_config");
    let dtype = match dense {
        FloatDtype::F32 => "float32",
        FloatDtype::F16 => "float16",
        FloatDtype::Bf16 => "bfloat16",
    };
    let key = if obj.contains_key("dtype") {
        "dtype"
    } else {
        "torch_dtype"
    };
    obj.insert(key.into(), json!(dtype));
    if format == ExportFormat::CompressedTensorsNvfp4 {
        obj.insert("quantization_config".into(), ct_config(ignore));
    }
    Ok(config)
}

/// How to export.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// Merge the LoRA adapter into the weights (else it is written to `adapter/`).
    pub merge: bool,
    /// The dtype of dense tensors, for compressed-tensors ([`ExportFormat::dense_dtype`]).
    pub dense_dtype: Option<FloatDtype>,
}

/// Writes `model` (its base read from `base_dir`, whose tokenizer files are copied) into `out`
/// as `options` say; an unmerged adapter goes to `out/adapter/` (PEFT, naming `out` as its
/// base).
pub fn export(
    model: &Qwen2ForCausalLM,
    base_dir: &Path,
    out: &Path,
    options: ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let ExportOptions { format, merge, .. } = options;
    let dense = format.dense_dtype(options.dense_dtype)?;
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ExportError::Refused(format!(
            "{} exists and is not empty: give a new folder (nothing there is overwritten)",
            out.display()
        )));
    }
    let has_adapter = !model.lora_adapters().is_empty();
    if merge && !has_adapter {
        return Err(ExportError::Refused(
            "--merge: the model has no LoRA adapter to merge (a full fine-tuning run's weights are already the model)".into(),
        ));
    }
    let mut writer = collect(model, format, merge)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        crate::atomic_write::write_atomic(&path, bytes)
            .map_err(|e| ExportError::Refused(e.to_string()))
    };
    if format.is_gguf() {
        let tensors = writer
            .tensors
            .iter()
            .map(|(name, shape, w)| gguf_tensor(name, shape, w, dense))
            .collect::<Result<Vec<_>, _>>()?;
        let name = base_dir
            .file_name()
            .map_or("aqn".into(), |n| n.to_string_lossy().into_owned());
        let bytes = super::gguf::encode(model.config(), &name, base_dir, &tensors)
            .map_err(ExportError::Refused)?;
        write(GGUF_FILE, &bytes)?;
    } else {
        let tensors: Vec<OutTensor> = writer
            .tensors
            .iter()
            .flat_map(|(name, shape, w)| match w {
                Weight::Dense(values) => {
                    vec![OutTensor::float(name, shape.clone(), dense, values)]
                }
                Weight::Packed(t) => ct_tensors(name.trim_end_matches(".weight"), t),
            })
            .collect();
        write(SINGLE_FILE, &serialize(&tensors, None)?)?;
        let config = config_json(base_dir, format, dense, &writer.ignore)?;
        write(
            CONFIG_FILE,
            serde_json::to_string_pretty(&config)
                .expect("json")
                .as_bytes(),
        )?;
        for name in COPIED_FILES {
            let from = base_dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, out.join(name)).map_err(io(&from))?;
            }
        }
    }
    if has_adapter && !merge {
        super::peft::save_lora_adapter(
            model,
            &out.join(ADAPTER_SUBDIR),
            &out.display().to_string(),
        )?;
        writer.summary.adapter = true;
    }
    Ok(writer.summary)
}

/// Every tensor of the export (sorted by HF name) and the dense projections' names.
fn collect(
    model: &Qwen2ForCausalLM,
    format: ExportFormat,
    merge: bool,
) -> Result<Writer, ExportError> {
    let tied = model.config().tie_word_embeddings;
    let mut writer = Writer {
        format,
        merge,
        tied,
        tensors: Vec::new(),
        ignore: Vec::new(),
        summary: ExportSummary::default(),
    };
    let mut names = vec![TIED_HEAD.1.to_string()];
    let mut result = Ok(());
    model.visit_linears(|site, linear| {
        names.push(weight_name(site, tied));
        if result.is_ok() {
            result = writer.projection(site, linear);
        }
    });
    result?;
    let embedding = match (model.embedding_packed(), model.embedding_weight()) {
        (Some(packed), _) => packed.dequantize(),
        (None, Some(w)) => host(w),
        (None, None) => unreachable!("a model has an embedding table"),
    };
    let c = model.config();
    writer.tensors.push((
        TIED_HEAD.1.to_string(),
        vec![c.vocab_size, c.hidden_size],
        Weight::Dense(embedding),
    ));
    let mut others = Others {
        skip: &names,
        out: Vec::new(),
    };
    model.visit_named(&mut others);
    writer.tensors.extend(others.out);
    writer.tensors.sort_by(|a, b| a.0.cmp(&b.0));
    writer.ignore.sort();

    Ok(writer)
}

/// The GGUF form of one export tensor.
fn gguf_tensor(
    name: &str,
    shape: &[usize],
    weight: &Weight,
    dense: FloatDtype,
) -> Result<GgufTensor, ExportError> {
    let gguf = gguf_name(name)
        .ok_or_else(|| ExportError::Refused(format!("`{name}` has no GGUF name for qwen2")))?;
    Ok(match weight {
        Weight::Dense(values) => super::gguf::dense(gguf, shape.to_vec(), values, dense),
        Weight::Packed(t) => super::gguf::mxfp4(gguf, t),
    })
}
