//! LoRA adapters in PEFT's format, so an adapter trained here loads in PEFT
//! (`PeftModel.from_pretrained(base, dir)`) and one trained with PEFT loads here:
//!
//! - `adapter_model.safetensors`: `base_model.model.{module}.lora_A.weight` `[r, in]` and
//!   `...lora_B.weight` `[out, r]` for every adapted projection, e.g.
//!   `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, in f32;
//! - `adapter_config.json`: `peft_type` LORA, `task_type` CAUSAL_LM, `r`, `lora_alpha`,
//!   `lora_dropout`, `target_modules`, `bias` "none", `fan_in_fan_out` false, `use_rslora`,
//!   `base_model_name_or_path` and PEFT's other fields at their defaults (keys sorted, as PEFT
//!   writes them).
//!
//! Loading checks every field that changes the math: a PEFT feature not implemented here (DoRA,
//! rank or alpha patterns, trained biases, `modules_to_save`, layer subsets, regex targets, ...)
//! is refused naming the field; every tensor the config implies must be present with the shape
//! the model and the rank imply and hold only finite values, and no other tensor may be.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use serde_json::{Map, Value, json};

use crate::lora::{LoraAdapter, LoraConfig, LoraError, parse_target};
use crate::model::Qwen2ForCausalLM;
use crate::site::{LinearKind, LinearSite};
use crate::tensor_file::{FloatDtype, OutTensor, TensorFile, read_bytes, serialize};

/// The weights file of a PEFT adapter.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The config file of a PEFT adapter.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's prefix of the wrapped model's module paths.
pub const PEFT_PREFIX: &str = "base_model.model.";
/// PEFT's shorthand for every linear layer but the output head.
pub const ALL_LINEAR: &str = "all-linear";

/// The PEFT key of a projection's A (`which` = "A") or B factor.
pub fn peft_key(site: &LinearSite, which: &str) -> String {
    format!("{PEFT_PREFIX}{}.lora_{which}.weight", site.module_path())
}

/// `adapter_config.json` as PEFT writes it for `config`.
pub fn adapter_config_json(config: &LoraConfig, base_model_name_or_path: &str) -> Value {
    let alpha = if config.alpha.fract() == 0.0 && config.alpha.abs() < 1e15 {
        json!(config.alpha as i64)
    } else {
        json!(config.alpha)
    };
    let targets: Vec<&str> = config.targets.iter().map(|t| t.name()).collect();
    // serde_json's map is sorted by key, as PEFT's `json.dumps(sort_keys=True)`.
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": alpha,
        "lora_bias": false,
        "lora_dropout": config.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": config.rslora,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoraError + '_ {
    move |source| LoraError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The tokenizer files of an HF model folder that an adapter folder carries along, so that
/// `AutoTokenizer.from_pretrained(adapter_dir)` works as it does for adapters on the hub.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// Writes the model's adapters into `dir` (created if needed) in PEFT's format.
///
/// `base_model_name_or_path` is the base model's folder. Its public identity goes into the
/// config (PEFT loads the base from there when asked): the folder's path, or `builtin:tiny` for
/// the built-in model, whose unpacked folder is a temporary path
/// ([`super::builtin::model_identity`]). Its tokenizer files ([`TOKENIZER_FILES`]) are copied
/// next to the adapter.
pub fn save_lora_adapter(
    model: &Qwen2ForCausalLM,
    dir: &Path,
    base_model_name_or_path: &str,
) -> Result<(), LoraError> {
    let base_dir = Path::new(base_model_name_or_path);
    let identity = super::builtin::model_identity(base_dir);
    let config = model.lora_config()?.ok_or(LoraError::NoAdapters)?;
    let mut tensors = Vec::new();
    for (site, adapter) in model.lora_adapters() {
        for (which, t) in [("A", adapter.lora_a.val()), ("B", adapter.lora_b.val())] {
            let name = peft_key(&site, which);
            let shape = t.dims().to_vec();
            let values = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| LoraError::Read {
                    name: name.clone(),
                    reason: format!("{e:?}"),
                })?;
            tensors.push(OutTensor::float(name, shape, FloatDtype::F32, &values));
        }
    }
    let metadata = [("format".to_string(), "pt".to_string())].into();
    let bytes = serialize(&tensors, Some(metadata))?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let weights = dir.join(ADAPTER_WEIGHTS);
    std::fs::write(&weights, bytes).map_err(io(&weights))?;
    let cfg = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&adapter_config_json(&config, &identity))
        .expect("a JSON value serializes");
    std::fs::write(&cfg, text + "\n").map_err(io(&cfg))?;
    for file in TOKENIZER_FILES {
        let src = base_dir.join(file);
        if src.is_file() {
            std::fs::copy(&src, dir.join(file)).map_err(io(&src))?;
        }
    }
    Ok(())
}

/// Fields of PEFT's LoRA config that must be absent, null, false or empty here, with why.
const MUST_BE_OFF: &[(&str, &str)] = &[
    ("use_dora", "DoRA is not implemented"),
    ("rank_pattern", "per-module ranks are not implemented"),
    ("alpha_pattern", "per-module alphas are not implemented"),
    (
        "layers_to_transform",
        "adapters cover every decoder layer here",
    ),
    ("layers_pattern", "adapters cover every decoder layer here"),
    (
        "modules_to_save",
        "fully trained extra modules are not implemented",
    ),
    (
        "fan_in_fan_out",
        "weights are stored [out, in] (fan_in_fan_out = false)",
    ),
    ("lora_bias", "LoRA biases are not implemented"),
    ("exclude_modules", "module exclusions are not implemented"),
    ("target_parameters", "parameter targets are not implemented"),
    ("use_qalora", "QA-LoRA is not implemented"),
    ("layer_replication", "layer replication is not implemented"),
    (
        "trainable_token_indices",
        "trainable tokens are not implemented",
    ),
];

fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// PEFT's `target_modules` of the adapter config at `path`: a list of decoder projections, or
/// [`ALL_LINEAR`].
fn read_targets(value: &Value, path: &str) -> Result<Vec<LinearKind>, LoraError> {
    match value {
        Value::String(s) if s == ALL_LINEAR => Ok(LinearKind::DECODER.to_vec()),
        Value::Array(items) => items
            .iter()
            .map(|t| match t.as_str() {
                Some(name) => parse_target(name),
                None => Err(LoraError::Config {
                    path: path.to_string(),
                    reason: format!("target_modules entry {t} is not a string"),
                }),
            })
            .collect(),
        other => Err(LoraError::Unsupported {
            path: path.to_string(),
            field: "target_modules".into(),
            value: other.to_string(),
            reason: format!(
                "give a list of {} (or \"{ALL_LINEAR}\"); regular expressions are not supported",
                LinearKind::decoder_names()
            ),
        }),
    }
}

/// Reads `adapter_config.json` into a [`LoraConfig`] (seed 0), refusing what is not implemented.
pub fn read_adapter_config(path: &Path) -> Result<LoraConfig, LoraError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let p = path.display().to_string();
    let bad = |reason: String| LoraError::Config {
        path: p.clone(),
        reason,
    };
    let unsupported = |field: &str, value: &Value, reason: &str| LoraError::Unsupported {
        path: p.clone(),
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let obj: &Map<String, Value> = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let field = |name: &str| obj.get(name).unwrap_or(&Value::Null);
    match field("peft_type").as_str() {
        Some("LORA") => {}
        _ => {
            return Err(unsupported(
                "peft_type",
                field("peft_type"),
                "only LORA adapters",
            ));
        }
    }
    if let Some(task) = obj.get("task_type").filter(|t| !t.is_null())
        && task.as_str() != Some("CAUSAL_LM")
    {
        return Err(unsupported("task_type", task, "only CAUSAL_LM adapters"));
    }
    match field("bias").as_str() {
        None | Some("none") => {}
        Some(_) => return Err(unsupported("bias", field("bias"), "only bias = \"none\"")),
    }
    for (name, why) in MUST_BE_OFF {
        if let Some(value) = obj.get(*name)
            && !is_off(value)
        {
            return Err(unsupported(name, value, why));
        }
    }
    let rank = field("r")
        .as_u64()
        .ok_or_else(|| bad(format!("`r` = {} is not a positive integer", field("r"))))?;
    let alpha = field("lora_alpha").as_f64().ok_or_else(|| {
        bad(format!(
            "`lora_alpha` = {} is not a number",
            field("lora_alpha")
        ))
    })?;
    let dropout = match field("lora_dropout") {
        Value::Null => 0.0,
        d => d
            .as_f64()
            .ok_or_else(|| bad(format!("`lora_dropout` = {d} is not a number")))?,
    };
    let rslora = match field("use_rslora") {
        Value::Null => false,
        r => r
            .as_bool()
            .ok_or_else(|| bad(format!("`use_rslora` = {r} is not a boolean")))?,
    };
    let targets = read_targets(field("target_modules"), &p)?;
    let config = LoraConfig {
        rank: rank as usize,
        alpha,
        dropout,
        targets,
        rslora,
        seed: 0,
    };
    config.validate()?;
    Ok(config)
}

impl Qwen2ForCausalLM {
    /// Freezes the base and attaches the PEFT adapter stored in `dir` (see the module docs for
    /// what is checked). The adapters are trainable, so training can resume from them.
    pub fn with_lora_adapter(self, dir: &Path) -> Result<Self, LoraError> {
        let config = read_adapter_config(&dir.join(ADAPTER_CONFIG))?;
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let bytes = read_bytes(&weights_path)?;
        let file = TensorFile::parse(&bytes, ADAPTER_WEIGHTS)?;
        // Every expected tensor, with its shape, before touching the model.
        let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        self.visit_linears(|site, linear| {
            if config.targets.contains(&site.kind) {
                expected.insert(peft_key(site, "A"), vec![config.rank, linear.d_input()]);
                expected.insert(peft_key(site, "B"), vec![linear.d_output(), config.rank]);
            }
        });
        let present: HashSet<&String> = file.names().iter().collect();
        if let Some(name) = file.names().iter().find(|n| !expected.contains_key(*n)) {
            return Err(LoraError::Unexpected {
                tensor: name.clone(),
                source_name: ADAPTER_WEIGHTS.into(),
            });
        }
        let mut host = BTreeMap::new();
        for (name, shape) in &expected {
            if !present.contains(name) {
                return Err(LoraError::Missing {
                    tensor: name.clone(),
                    expected: shape.clone(),
                    source_name: ADAPTER_WEIGHTS.into(),
                });
            }
            let t = file.read_finite(name)?;
            if &t.shape != shape {
                return Err(LoraError::ShapeMismatch {
                    tensor: name.clone(),
                    expected: shape.clone(),
                    found: t.shape,
                    source_name: ADAPTER_WEIGHTS.into(),
                });
            }
            host.insert(name.clone(), t);
        }
        self.attach_lora(&config, |site, _, _, device| {
            let mut factor = |which| {
                let t = host
                    .remove(&peft_key(site, which))
                    .expect("every expected tensor was checked above");
                Tensor::<2>::from_data(TensorData::new(t.data, t.shape), device)
            };
            let (a, b) = (factor("A"), factor("B"));
            LoraAdapter::from_parts(a, b, &config, &site.module_path())
        })
    }
}
