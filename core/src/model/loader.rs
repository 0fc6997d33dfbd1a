//! Loading a Qwen2 checkpoint in HF layout: `config.json` plus `model.safetensors`, or the shards
//! listed by `model.safetensors.index.json`; tensors in f32, f16 or bf16 (converted exactly to f32).
//!
//! Tensors are matched to parameters by their HF names through [`NAME_TABLE`], the one remapping
//! table. Every parameter must find its tensor with the module's shape, and every tensor must be
//! used: a missing, unexpected, wrong-shape or non-float tensor is a [`LoadError`] naming it.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::config::{ConfigError, Qwen2Config};
use super::named_params::NamedParamMapper;
use super::qwen2::Qwen2ForCausalLM;
use crate::tensor_file::{TensorFile, TensorFileError, read_bytes};

/// The single-file weights of an HF checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded HF checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The architecture file of an HF checkpoint.
pub const CONFIG_FILE: &str = "config.json";

/// The remapping table: module path (as Burn's traversal spells it, a layer index written `{i}`) to
/// HF checkpoint name. The modules' fields carry HF's names, so every row is the identity; the one
/// exception is the tied head, see [`TIED_HEAD`].
pub const NAME_TABLE: &[(&str, &str)] = &[
    // Token embedding [vocab, hidden]; absent from the module when the embeddings are tied.
    ("model.embed_tokens.weight", "model.embed_tokens.weight"),
    // Attention: q/k/v with bias, o without; weights [out, in] as in PyTorch.
    (
        "model.layers.{i}.self_attn.q_proj.weight",
        "model.layers.{i}.self_attn.q_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.q_proj.bias",
        "model.layers.{i}.self_attn.q_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.weight",
        "model.layers.{i}.self_attn.k_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.bias",
        "model.layers.{i}.self_attn.k_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.weight",
        "model.layers.{i}.self_attn.v_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.bias",
        "model.layers.{i}.self_attn.v_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.weight",
        "model.layers.{i}.self_attn.o_proj.weight",
    ),
    // SwiGLU MLP, no biases.
    (
        "model.layers.{i}.mlp.gate_proj.weight",
        "model.layers.{i}.mlp.gate_proj.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.weight",
        "model.layers.{i}.mlp.up_proj.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.weight",
        "model.layers.{i}.mlp.down_proj.weight",
    ),
    // RMSNorm weights (AQN's default targets).
    (
        "model.layers.{i}.input_layernorm.weight",
        "model.layers.{i}.input_layernorm.weight",
    ),
    (
        "model.layers.{i}.post_attention_layernorm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
    ),
    ("model.norm.weight", "model.norm.weight"),
    // Untied lm_head [vocab, hidden].
    ("lm_head.weight", "lm_head.weight"),
    // LoRA factors (crate::lora), named as PEFT names them without its `base_model.model.`
    // prefix: A [r, in], B [out, r]. Not part of a base checkpoint.
    (
        "model.layers.{i}.self_attn.q_proj.lora.lora_a",
        "model.layers.{i}.self_attn.q_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.q_proj.lora.lora_b",
        "model.layers.{i}.self_attn.q_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.lora.lora_a",
        "model.layers.{i}.self_attn.k_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.lora.lora_b",
        "model.layers.{i}.self_attn.k_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.lora.lora_a",
        "model.layers.{i}.self_attn.v_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.lora.lora_b",
        "model.layers.{i}.self_attn.v_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.lora.lora_a",
        "model.layers.{i}.self_attn.o_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.lora.lora_b",
        "model.layers.{i}.self_attn.o_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.gate_proj.lora.lora_a",
        "model.layers.{i}.mlp.gate_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.gate_proj.lora.lora_b",
        "model.layers.{i}.mlp.gate_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.lora.lora_a",
        "model.layers.{i}.mlp.up_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.lora.lora_b",
        "model.layers.{i}.mlp.up_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.lora.lora_a",
        "model.layers.{i}.mlp.down_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.lora.lora_b",
        "model.layers.{i}.mlp.down_proj.lora_B.weight",
    ),
];

/// With tied embeddings the lm_head owns the shared matrix, which HF checkpoints store (once) as
/// the embedding.
pub const TIED_HEAD: (&str, &str) = ("lm_head.weight", "model.embed_tokens.weight");

/// Checkpoint tensors that are not parameters here: the RoPE frequencies some older exports store
/// (recomputed from `rope_theta`).
pub const IGNORED_TENSORS: &[&str] = &["model.layers.{i}.self_attn.rotary_emb.inv_freq"];

/// The HF name of a module path, or `None` if the table has no row for it.
pub fn hf_name(module_path: &str, tied: bool) -> Option<String> {
    if tied && module_path == TIED_HEAD.0 {
        return Some(TIED_HEAD.1.to_string());
    }
    let (pattern, index) = generalize(module_path);
    NAME_TABLE
        .iter()
        .find(|(path, _)| *path == pattern)
        .map(|(_, hf)| match index {
            Some(i) => hf.replace("{i}", i),
            None => hf.to_string(),
        })
}

/// `model.layers.3.x` -> (`model.layers.{i}.x`, Some("3")).
fn generalize(name: &str) -> (String, Option<&str>) {
    let mut index = None;
    let parts: Vec<&str> = name
        .split('.')
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                index = Some(p);
                "{i}"
            } else {
                p
            }
        })
        .collect();
    (parts.join("."), index)
}

fn is_ignored(name: &str) -> bool {
    let (pattern, _) = generalize(name);
    IGNORED_TENSORS.contains(&pattern.as_str())
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// `config.json` is missing, malformed or refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A weight file is unreadable or malformed, or a tensor has a non-float dtype.
    #[error(transparent)]
    File(#[from] TensorFileError),
    /// The directory has neither weights file.
    #[error("{dir} has neither {SINGLE_FILE} nor {INDEX_FILE}")]
    NoWeights {
        /// The directory.
        dir: String,
    },
    /// The shard index is unreadable or malformed.
    #[error("{path}: {reason}")]
    Index {
        /// The index file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The index names a tensor its shard does not hold.
    #[error("{INDEX_FILE} places tensor `{tensor}` in {shard}, which does not contain it")]
    NotInShard {
        /// The tensor.
        tensor: String,
        /// The shard file.
        shard: String,
    },
    /// Two files hold the same tensor.
    #[error("tensor `{tensor}` is in both {first} and {second}")]
    Duplicate {
        /// The tensor.
        tensor: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// A parameter of the model has no tensor in the checkpoint.
    #[error("tensor `{tensor}` (shape {expected:?}) is missing from the checkpoint")]
    Missing {
        /// The HF name.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor of the checkpoint matches no parameter of the model.
    #[error(
        "unexpected tensor `{tensor}` (shape {shape:?}) in {source_name}: no parameter of this Qwen2 config has that name"
    )]
    Unexpected {
        /// The HF name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// A tensor whose shape differs from the parameter's.
    #[error(
        "tensor `{tensor}` has shape {found:?} in {source_name}; the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The HF name.
        tensor: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        found: Vec<usize>,
        /// The file.
        source_name: String,
    },
    /// A tied checkpoint that also stores a different `lm_head.weight`.
    #[error(
        "config.json ties the embeddings but `lm_head.weight` in {source_name} differs from `model.embed_tokens.weight`"
    )]
    TiedHeadDiffers {
        /// The file.
        source_name: String,
    },
}

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
    let config = Qwen2Config::from_file(&dir.join(CONFIG_FILE))?;
    load_weights(config.init(device), dir, device)
}

/// Replaces every parameter of `model` with the checkpoint's tensor of the same HF name.
pub fn load_weights(
    model: Qwen2ForCausalLM,
    dir: &Path,
    device: &Device,
) -> Result<Qwen2ForCausalLM, LoadError> {
    let (paths, placement) = weight_files(dir)?;
    let blobs = paths
        .iter()
        .map(|p| Ok((file_name(p), read_bytes(p)?)))
        .collect::<Result<Vec<_>, LoadError>>()?;
    let files = blobs
        .iter()
        .map(|(name, bytes)| TensorFile::parse(bytes, name))
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
        sources: blobs.iter().map(|(n, _)| n.as_str()).collect(),
        location: &location,
        used: HashSet::new(),
        error: None,
        device: device.clone(),
    };
    let model = model.map_named(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }

    let mut rest: Vec<&String> = location
        .keys()
        .filter(|n| !loader.used.contains(*n) && !is_ignored(n))
        .collect();
    rest.sort();
    for name in rest {
        let f = location[name];
        let source_name = blobs[f].0.clone();
        if model.config().tie_word_embeddings && name == TIED_HEAD.0 {
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
    Ok(model)
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
    sources: Vec<&'a str>,
    location: &'a HashMap<String, usize>,
    used: HashSet<String>,
    error: Option<LoadError>,
    device: Device,
}

impl Loader<'_, '_> {
    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        expected: Vec<usize>,
    ) -> Result<Tensor<D>, LoadError> {
        let Some(&f) = self.location.get(name) else {
            return Err(LoadError::Missing {
                tensor: name.to_string(),
                expected,
            });
        };
        let host = self.files[f].read(name)?;
        if host.shape != expected {
            return Err(LoadError::ShapeMismatch {
                tensor: name.to_string(),
                expected,
                found: host.shape,
                source_name: self.sources[f].to_string(),
            });
        }
        self.used.insert(name.to_string());
        Ok(Tensor::from_data(
            TensorData::new(host.data, host.shape),
            &self.device,
        ))
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

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;

    #[test]
    fn table_maps_every_parameter_of_a_model() {
        for tied in [false, true] {
            let config = Qwen2Config::new(32, 16, 24, 2, 4, 2).with_tie_word_embeddings(tied);
            let model = config.init(&Device::ndarray());
            let names: Vec<String> = model.named_shapes().into_iter().map(|(n, _)| n).collect();
            // 1 embedding/head + per layer (4 weights + 3 biases + 3 MLP + 2 norms) + final norm
            // (+ lm_head when untied).
            assert_eq!(names.len(), 1 + 2 * 12 + 1 + usize::from(!tied));
            assert!(names.contains(&"model.layers.1.self_attn.k_proj.bias".to_string()));
            assert!(names.contains(&"model.embed_tokens.weight".to_string()));
            assert_eq!(names.contains(&"lm_head.weight".to_string()), !tied);
        }
        assert_eq!(
            hf_name("model.layers.12.mlp.up_proj.weight", false).unwrap(),
            "model.layers.12.mlp.up_proj.weight"
        );
        assert_eq!(
            hf_name("lm_head.weight", true).unwrap(),
            "model.embed_tokens.weight"
        );
        assert!(hf_name("model.layers.0.mlp.act.weight", false).is_none());
        assert!(is_ignored("model.layers.7.self_attn.rotary_emb.inv_freq"));
    }
}
