//! Loading a Qwen2 checkpoint in HF layout: `config.json` plus `model.safetensors`, or the shards
//! listed by `model.safetensors.index.json`; tensors in f32, f16 or bf16 (converted exactly to f32).
//!
//! Tensors are matched to parameters by their HF names ([`super::hf_names`]). Every parameter
//! must find its tensor with the module's shape, and every tensor must be used (or be one of
//! [`IGNORED_TENSORS`](super::hf_names::IGNORED_TENSORS)): a missing, unexpected, wrong-shape or
//! non-float tensor is a [`LoadError`] naming it, and so is one holding a NaN or an infinity
//! (counted per kind).
//!
//! The files are memory-mapped and read one tensor at a time; the pages of a tensor are handed
//! back to the kernel once it is converted, so the loader never holds the checkpoint twice (nor,
//! once it is done, at all). A [`LoadPlan`] says how the weights are held: by default every
//! parameter is an f32 tensor; a *packed* plan (a frozen model: a LoRA base, a reference
//! policy, an inference model) stores every projection weight and the embedding table straight
//! from the file in packed form ([`crate::quant::PackedWeight`]: the codes of the quantization
//! mode's formats, or f32 / BF16 values for what stays unquantized), so no f32 copy of a
//! quantized weight ever exists; and `dtype = bf16` rounds every value to bf16 as it is read.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::hf_names::{TIED_HEAD, is_ignored, weight_name};
pub use super::load_error::LoadError;
use super::named_params::NamedParamMapper;
use super::prequantized::{PreQuantized, Producer};
use crate::formats::bf16::round_to_bf16;
use crate::formats::{PackedTensor, QuantSpec};
use crate::model::attach::pack::{WeightDtype, storage_spec};
use crate::model::config::Qwen2Config;
use crate::model::linear::QLinear;
use crate::model::qwen2::Qwen2ForCausalLM;
use crate::qat::{LinearQuant, QuantConfig};
use crate::quant::PackedWeight;
use crate::site::LinearSite;
use crate::tensor_file::TensorFile;

/// How the loader holds a checkpoint's weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadPlan {
    /// `Some`: the model is frozen, and every projection weight and the embedding table are
    /// held packed with this quantization: quantized ones as their codes, unquantized ones as
    /// f32 values (BF16 codes with `dtype = bf16`). The quantization is applied to the loaded
    /// model. `None`: latent f32 tensors (what training a weight needs).
    pub packed: Option<QuantConfig>,
    /// The precision of every value.
    pub dtype: WeightDtype,
}

impl LoadPlan {
    /// A frozen model packed with `quant`, in `dtype`.
    pub fn packed(quant: QuantConfig, dtype: WeightDtype) -> Self {
        Self {
            packed: Some(quant),
            dtype,
        }
    }
}

pub use super::hf_names::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE};

/// The weight files of a checkpoint directory: the shards of the index in first-use order, or the
/// single file. The index's placement of each tensor is returned for checking.
fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>), LoadError> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| LoadError::Index {
            path: index.display().to_string(),
            reason: e.to_string(),
        })?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&text).map_err(|e| LoadError::Index {
            path: index.display().to_string(),
            reason: format!("not a safetensors index ({e})"),
        })?;
        let mut files: Vec<String> = Vec::new();
        for shard in parsed.weight_map.values() {
            if shard.contains('/') || shard.contains('\\') || shard == ".." {
                return Err(LoadError::Index {
                    path: index.display().to_string(),
                    reason: format!(
                        "shard `{shard}` is not a file name in the checkpoint directory"
                    ),
                });
            }
            if !files.contains(shard) {
                files.push(shard.clone());
            }
        }
        files.sort();
        return Ok((
            files.iter().map(|f| dir.join(f)).collect(),
            parsed.weight_map,
        ));
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok((vec![single], BTreeMap::new()));
    }
    Err(LoadError::NoWeights {
        dir: dir.display().to_string(),
    })
}

/// Reads `config.json` and the weights of an HF checkpoint directory onto `device`.
pub fn load_qwen2(dir: &Path, device: &Device) -> Result<Qwen2ForCausalLM, LoadError> {
    load_qwen2_with(dir, device, &LoadPlan::default())
}

/// [`load_qwen2`] holding the weights as `plan` says.
pub fn load_qwen2_with(
    dir: &Path,
    device: &Device,
    plan: &LoadPlan,
) -> Result<Qwen2ForCausalLM, LoadError> {
    let config = Qwen2Config::from_file(&dir.join(CONFIG_FILE))?;
    // Parameters are initialized lazily: those the checkpoint replaces are never computed.
    load_weights_with(config.init(device), dir, device, plan)
}

/// Replaces every parameter of `model` with the checkpoint's tensor of the same HF name.
pub fn load_weights(
    model: Qwen2ForCausalLM,
    dir: &Path,
    device: &Device,
) -> Result<Qwen2ForCausalLM, LoadError> {
    load_weights_with(model, dir, device, &LoadPlan::default())
}

/// [`load_weights`] holding the weights as `plan` says.
pub fn load_weights_with(
    model: Qwen2ForCausalLM,
    dir: &Path,
    device: &Device,
    plan: &LoadPlan,
) -> Result<Qwen2ForCausalLM, LoadError> {
    let pre = super::quantization_config::detect(dir)
        .map_err(|reason| LoadError::PreQuantized { reason })?;
    let (paths, placement) = weight_files(dir)?;
    let maps = paths
        .iter()
        .map(|p| {
            let map_err = |source| LoadError::Map {
                path: p.display().to_string(),
                source,
            };
            let file = std::fs::File::open(p).map_err(map_err)?;
            // SAFETY: the checkpoint is read-only input; like every loader of mapped weights this
            // assumes no other process truncates the file while it is being read.
            let map = unsafe { Mmap::map(&file) }.map_err(map_err)?;
            Ok((file_name(p), map))
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    let blobs = &maps;
    let files = blobs
        .iter()
        .map(|(name, bytes)| TensorFile::parse(&bytes[..], name))
        .collect::<Result<Vec<_>, _>>()?;

    // Where each tensor is; a tensor in two files is ambiguous.
    let mut location: HashMap<String, usize> = HashMap::new();
    for (f, file) in files.iter().enumerate() {
        for name in file.names() {
            if let Some(&first) = location.get(name) {
                return Err(LoadError::Duplicate {
                    tensor: name.clone(),
                    first: blobs[first].0.clone(),
                    second: blobs[f].0.clone(),
                });
            }
            location.insert(name.clone(), f);
        }
    }
    for (tensor, shard) in &placement {
        if location.get(tensor).map(|&f| &blobs[f].0) != Some(shard) {
            return Err(LoadError::NotInShard {
                tensor: tensor.clone(),
                shard: shard.clone(),
            });
        }
    }

    let mut loader = Loader {
        files: &files,
        maps: blobs.iter().map(|(_, m)| m).collect(),
        sources: blobs.iter().map(|(n, _)| n.as_str()).collect(),
        location: &location,
        used: HashSet::new(),
        error: None,
        device: device.clone(),
        dtype: plan.dtype,
        pre,
    };
    let model = match &plan.packed {
        Some(quant) => loader.pack(model, quant)?,
        None => model,
    };
    let model = model.map_named(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    let model = match &plan.packed {
        Some(quant) => model.with_quantization(quant)?,
        None => model,
    };

    let tied = model.config().tie_word_embeddings;
    let sources: Vec<&str> = blobs.iter().map(|(n, _)| n.as_str()).collect();
    check_unused(&files, &sources, &location, &loader.used, tied)?;
    Ok(model)
}

/// Refuses a tensor no parameter used (an `lm_head.weight` of a tied checkpoint passes when it
/// is the embedding matrix itself).
fn check_unused(
    files: &[TensorFile<'_>],
    sources: &[&str],
    location: &HashMap<String, usize>,
    used: &HashSet<String>,
    tied: bool,
) -> Result<(), LoadError> {
    let mut rest: Vec<&String> = location
        .keys()
        .filter(|n| !used.contains(*n) && !is_ignored(n))
        .collect();
    rest.sort();
    for name in rest {
        let f = location[name];
        let source_name = sources[f].to_string();
        if tied && name == TIED_HEAD.0 {
            // Some exporters store the tied head too; accept it only as the same matrix.
            let head = files[f].read(name)?;
            let embed = files[location[TIED_HEAD.1]].read(TIED_HEAD.1)?;
            if head.shape != embed.shape || head.data != embed.data {
                return Err(LoadError::TiedHeadDiffers { source_name });
            }
            continue;
        }
        let shape = files[f].view(name)?.shape().to_vec();
        return Err(LoadError::Unexpected {
            tensor: name.clone(),
            shape,
            source_name,
        });
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Replaces parameters by name; keeps the first error and leaves the rest of the model untouched.
struct Loader<'a, 'b> {
    files: &'a [TensorFile<'b>],
    maps: Vec<&'a Mmap>,
    sources: Vec<&'a str>,
    location: &'a HashMap<String, usize>,
    used: HashSet<String>,
    error: Option<LoadError>,
    device: Device,
    dtype: WeightDtype,
    /// The checkpoint's own quantization (its projections' codes are read as stored).
    pre: Option<PreQuantized>,
}

impl Loader<'_, '_> {
    /// The values of tensor `name` (checked against `expected`), in the plan's precision; the
    /// file pages they came from are released.
    fn values(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        if let Some(names) = self.stored_packed(name)? {
            return Err(LoadError::PreQuantized {
                reason: format!(
                    "`{name}` is stored as packed codes (`{}`): a pre-quantized checkpoint \
                     loads only as a frozen packed base (LoRA fine-tuning with \
                     model.base_storage = \"auto\" or \"packed\", or an evaluation); this \
                     model needs its latent f32 weights, which would re-quantize decoded codes",
                    names[0]
                ),
            });
        }
        let Some(&f) = self.location.get(name) else {
            return Err(LoadError::Missing {
                tensor: name.to_string(),
                expected: expected.to_vec(),
            });
        };
        let host = self.files[f].read_finite(name)?;
        if host.shape != expected {
            return Err(LoadError::ShapeMismatch {
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: host.shape,
                source_name: self.sources[f].to_string(),
            });
        }
        self.used.insert(name.to_string());
        self.release(f, name);
        let mut data = host.data;
        if self.dtype == WeightDtype::Bf16 {
            for v in &mut data {
                *v = round_to_bf16(*v);
            }
        }
        Ok(data)
    }

    /// Hands the pages of tensor `name` of file `f` back to the kernel (they are file-backed and
    /// read-only: a later read maps them in again).
    fn release(&self, f: usize, name: &str) {
        let Ok(view) = self.files[f].view(name) else {
            return;
        };
        let map = self.maps[f];
        let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
        let len = view.data().len();
        // Whole pages inside the tensor only; a failure costs memory, not correctness.
        let page = 4096;
        let first = start.div_ceil(page) * page;
        let end = (start + len) / page * page;
        if end > first {
            // SAFETY: DONTNEED on a read-only private file mapping drops clean pages, which the
            // next access reads again from the file; no reference into them is kept.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first)
            };
        }
    }

    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        expected: Vec<usize>,
    ) -> Result<Tensor<D>, LoadError> {
        let data = self.values(name, &expected)?;
        Ok(Tensor::from_data(
            TensorData::new(data, expected),
            &self.device,
        ))
    }

    /// The frozen matrix `name` (`[out, in]`) held as `spec`'s codes, or as f32 values.
    fn packed(
        &mut self,
        name: &str,
        [out, inp]: [usize; 2],
        spec: Option<QuantSpec>,
    ) -> Result<PackedWeight, LoadError> {
        let pack_err = |source| LoadError::Pack {
            tensor: name.to_string(),
            source,
        };
        if let Some(names) = self.stored_packed(name)? {
            let tensor = self.prequantized(name, &names, [out, inp], spec)?;
            return PackedWeight::from_packed(tensor).map_err(pack_err);
        }
        let values = self.values(name, &[out, inp])?;
        match spec {
            Some(spec) => PackedWeight::quantize(&values, out, inp, &spec).map_err(pack_err),
            None => PackedWeight::f32(values, out, inp).map_err(pack_err),
        }
    }

    /// The names of the stored codes, block scales and (NVFP4) per-tensor scale of the
    /// projection whose weight is `name`, when the checkpoint stores it packed. Packed tensors in a checkpoint whose configuration does not say how to read
    /// them are refused.
    fn stored_packed(&self, name: &str) -> Result<Option<Vec<String>>, LoadError> {
        if let Some(pre) = &self.pre {
            let packed = pre
                .marker(name)
                .is_some_and(|m| self.location.contains_key(&m));
            return Ok(packed.then(|| pre.tensor_names(name)).flatten());
        }
        let module = name.trim_end_matches(".weight");
        for (producer, marker) in [(Producer::CompressedTensors, 0), (Producer::ModelOpt, 2)] {
            let scale = format!("{module}.{}", producer.suffixes()[marker]);
            if self.location.contains_key(&scale) {
                return Err(LoadError::PreQuantized {
                    reason: format!(
                        "`{scale}` belongs to packed codes ({}), but the checkpoint has no \
                         quantization_config (config.json) or hf_quant_config.json saying how \
                         to read them",
                        producer.label()
                    ),
                });
            }
        }
        Ok(None)
    }

    /// The stored codes and scales of the pre-quantized projection `name` (its three tensors
    /// `names`), which the plan must quantize exactly as the checkpoint did.
    fn prequantized(
        &mut self,
        name: &str,
        names: &[String],
        dims: [usize; 2],
        spec: Option<QuantSpec>,
    ) -> Result<PackedTensor, LoadError> {
        let err = |reason: String| LoadError::PreQuantized { reason };
        let module = name.trim_end_matches(".weight");
        let pre = self
            .pre
            .clone()
            .expect("stored_packed found a pre-quantized checkpoint");
        pre.check_plan(module, spec.as_ref()).map_err(err)?;
        if names[0] != name && self.location.contains_key(name) {
            return Err(err(format!(
                "`{module}` has both a dense `{name}` and packed `{}`",
                names[0]
            )));
        }
        let mut located = Vec::with_capacity(names.len());
        for n in names {
            let &f = self
                .location
                .get(n)
                .ok_or_else(|| err(format!("`{}` is packed, but `{n}` is missing", names[0])))?;
            located.push((f, self.files[f].view(n)?));
        }
        let source = self.sources[located[0].0];
        let views: Vec<_> = located.iter().map(|(_, v)| v).collect();
        let tensor = pre
            .packed_tensor(names, &views, dims)
            .map_err(|reason| err(format!("{source}: {reason}")))?;
        for (n, (f, _)) in names.iter().zip(&located) {
            self.used.insert(n.clone());
            self.release(*f, n);
        }
        Ok(tensor)
    }

    /// Reads every projection weight and the embedding table of a packed plan into their
    /// packed form (the rest is loaded by name afterwards).
    fn pack(
        &mut self,
        model: Qwen2ForCausalLM,
        quant: &QuantConfig,
    ) -> Result<Qwen2ForCausalLM, LoadError> {
        quant.validate()?;
        let dtype = self.dtype;
        let tied = model.config().tie_word_embeddings;
        let embed_quant = quant.quantizes_embedding().then_some(LinearQuant {
            weights: quant.weights,
            activations: None,
            gradient: quant.gradient,
        });
        let embed_storage = storage_spec(embed_quant.as_ref(), dtype);
        let embed_dims = [model.config().vocab_size, model.config().hidden_size];
        let model = model.try_map_linears(|site: &LinearSite, linear: QLinear| {
            let site_quant = quant.for_site(site);
            let storage = storage_spec(site_quant.as_ref(), dtype);
            // A tied head is the embedding table: one packed matrix serves both only when both
            // uses hold it the same way; otherwise it stays a latent tensor.
            if tied && site.layer.is_none() && storage != embed_storage {
                return Ok(linear);
            }
            let name = weight_name(site, tied);
            let packed = self.packed(&name, linear.dims(), storage)?;
            let mut packed_linear =
                QLinear::packed(packed, linear.bias, site_quant).map_err(|source| {
                    LoadError::Pack {
                        tensor: name.clone(),
                        source,
                    }
                })?;
            packed_linear.lora = linear.lora;
            packed_linear.hooks.noise = linear.hooks.noise;
            packed_linear.hooks.recorder = linear.hooks.recorder;
            Ok::<_, LoadError>(packed_linear)
        })?;
        let table = if tied {
            model.lm_head.packed.clone()
        } else {
            Some(self.packed(TIED_HEAD.1, embed_dims, embed_storage)?)
        };
        match table {
            Some(table) => model
                .with_packed_embedding(table, embed_quant)
                .map_err(|source| LoadError::Pack {
                    tensor: TIED_HEAD.1.to_string(),
                    source,
                }),
            None => Ok(model),
        }
    }
}

impl NamedParamMapper for Loader<'_, '_> {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let expected = param.lazy_shape().to_vec();
        match self.tensor::<D>(name, expected) {
            Ok(tensor) => {
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}
