//! Writes a model in HF layout (`config.json`, `model.safetensors` by HF names,
//! `generation_config.json`), so it loads through [`super::load_qwen2`] like any checkpoint and in
//! transformers.

use std::path::Path;

use burn::module::Param;
use burn::tensor::Tensor;
use thiserror::Error;

use super::named_params::NamedParamVisitor;
use crate::model::Qwen2ForCausalLM;
use crate::tensor_file::{FloatDtype, OutTensor, TensorFileError, serialize};

/// Why a model could not be written.
#[derive(Debug, Error)]
pub enum SaveError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tensors could not be serialized.
    #[error(transparent)]
    Tensors(#[from] TensorFileError),
    /// A tensor's data could not be read back from the device.
    #[error("reading parameter `{name}` from the device: {reason}")]
    Read {
        /// The parameter.
        name: String,
        /// Why.
        reason: String,
    },
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    std::fs::write(path, bytes).map_err(|source| SaveError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Collects every parameter's values by HF name.
struct Collect {
    dtype: FloatDtype,
    out: Vec<OutTensor>,
    error: Option<SaveError>,
}

impl NamedParamVisitor for Collect {
    fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let t = param.val();
        let shape = t.dims().to_vec();
        match t.into_data().convert::<f32>().try_into_vec::<f32>() {
            Ok(values) => self
                .out
                .push(OutTensor::float(name, shape, self.dtype, &values)),
            Err(e) => {
                self.error = Some(SaveError::Read {
                    name: name.to_string(),
                    reason: format!("{e:?}"),
                })
            }
        }
    }
}

/// Writes `model` into `dir` in HF layout with weights in `dtype`. `eos` and `pad` go into
/// `config.json` and `generation_config.json`.
pub fn save_qwen2(
    model: &Qwen2ForCausalLM,
    dir: &Path,
    dtype: FloatDtype,
    eos: u32,
    pad: u32,
) -> Result<(), SaveError> {
    std::fs::create_dir_all(dir).map_err(|source| SaveError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut collect = Collect {
        dtype,
        out: Vec::new(),
        error: None,
    };
    model.visit_named(&mut collect);
    if let Some(e) = collect.error {
        return Err(e);
    }
    write(
        &dir.join("model.safetensors"),
        &serialize(&collect.out, None)?,
    )?;

    let mut config = serde_json::to_value(model.config()).expect("config serializes");
    let obj = config.as_object_mut().expect("config is an object");
    obj.insert(
        "architectures".into(),
        serde_json::json!(["Qwen2ForCausalLM"]),
    );
    obj.insert("model_type".into(), serde_json::json!("qwen2"));
    obj.insert(
        "torch_dtype".into(),
        serde_json::json!(match dtype {
            FloatDtype::F32 => "float32",
            FloatDtype::F16 => "float16",
            FloatDtype::Bf16 => "bfloat16",
        }),
    );
    obj.insert("eos_token_id".into(), serde_json::json!(eos));
    obj.insert("pad_token_id".into(), serde_json::json!(pad));
    obj.retain(|_, v| !v.is_null());
    write(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)
            .expect("json")
            .as_bytes(),
    )?;
    let generation =
        serde_json::json!({ "eos_token_id": [eos], "pad_token_id": pad, "do_sample": false });
    write(
        &dir.join("generation_config.json"),
        serde_json::to_string_pretty(&generation)
            .expect("json")
            .as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(deprecated)]
    use super::*;
    use crate::checkpoint::load_qwen2;
    use crate::model::{Padding, Qwen2Config};
    use burn::tensor::{Device, Int, TensorData};

    #[test]
    fn saved_model_loads_back_bit_for_bit() {
        let device = Device::ndarray();
        for tied in [false, true] {
            let cfg = Qwen2Config::new(40, 32, 64, 2, 4, 2).with_tie_word_embeddings(tied);
            let model = cfg.init(&device);
            let dir = std::env::temp_dir().join(format!("aqn-save-{}-{tied}", std::process::id()));
            save_qwen2(&model, &dir, FloatDtype::F32, 38, 39).unwrap();
            let back = load_qwen2(&dir, &device).unwrap();
            let ids =
                Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 7, 3], [1, 4]), &device);
            let a = model
                .forward(ids.clone(), &Padding::none(1), None)
                .into_data();
            let b = back.forward(ids, &Padding::none(1), None).into_data();
            assert_eq!(a, b);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
