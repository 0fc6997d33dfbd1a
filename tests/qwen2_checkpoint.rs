//! Reading HF checkpoints: the loader's typed errors (missing, unexpected, wrong-shape and
//! non-float tensors, bad shard index, missing files, refused config), the f32/f16/bf16 paths,
//! and the tokenizer (round trips and chat templates against transformers' output in the fixtures).
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aqn_core::checkpoint::{LoadError, NamedParamVisitor, load_qwen2};
use aqn_core::tensor_file::{
    FloatDtype, OutTensor, TensorFile, TensorFileError, read_bytes, serialize,
};
use aqn_core::tokenizer::{ChatMessage, Qwen2Tokenizer, TokenizerError};
use burn::module::Param;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A scratch copy of a fixture directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn copy(name: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("aqn-qwen2-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Scratch(dir)
    }

    /// Rewrites `file` with `edit` applied to its tensors (name -> (shape, dtype, values)).
    fn edit(&self, file: &str, edit: impl FnOnce(&mut BTreeMap<String, OutTensor>)) {
        let path = self.0.join(file);
        let bytes = read_bytes(&path).unwrap();
        let parsed = TensorFile::parse(&bytes, file).unwrap();
        let mut tensors: BTreeMap<String, OutTensor> = parsed
            .names()
            .iter()
            .map(|n| {
                let t = parsed.read(n).unwrap();
                (
                    n.clone(),
                    OutTensor::float(n.clone(), t.shape, t.dtype, &t.data),
                )
            })
            .collect();
        edit(&mut tensors);
        let out: Vec<OutTensor> = tensors.into_values().collect();
        std::fs::write(&path, serialize(&out, None).unwrap()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(dir: &Path) -> LoadError {
    load_qwen2(dir, &Device::ndarray()).unwrap_err()
}

#[test]
fn missing_unexpected_and_wrong_shape_tensors_are_named() {
    let s = Scratch::copy("qwen2-tied", "missing");
    s.edit("model.safetensors", |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
    });
    let e = load_err(&s.0);
    assert!(matches!(e, LoadError::Missing { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "tensor `model.layers.1.mlp.up_proj.weight` (shape [96, 64]) is missing from the checkpoint"
    );

    let s = Scratch::copy("qwen2-tied", "shape");
    s.edit("model.safetensors", |t| {
        t.insert(
            "model.norm.weight".into(),
            OutTensor::float("model.norm.weight", vec![63], FloatDtype::Bf16, &[1.0; 63]),
        );
    });
    assert_eq!(
        load_err(&s.0).to_string(),
        "tensor `model.norm.weight` has shape [63] in model.safetensors; the model expects [64]"
    );

    let s = Scratch::copy("qwen2-tied", "unexpected");
    s.edit("model.safetensors", |t| {
        let extra = "model.layers.2.input_layernorm.weight";
        t.insert(
            extra.into(),
            OutTensor::float(extra, vec![64], FloatDtype::Bf16, &[1.0; 64]),
        );
    });
    let e = load_err(&s.0);
    assert!(
        e.to_string()
            .starts_with("unexpected tensor `model.layers.2.input_layernorm.weight` (shape [64])"),
        "{e}"
    );
}

#[test]
fn non_float_dtypes_are_refused_with_the_tensor_name() {
    let s = Scratch::copy("qwen2-tied", "dtype");
    s.edit("model.safetensors", |t| {
        let name = "model.layers.0.self_attn.k_proj.bias";
        t.insert(name.into(), OutTensor::bytes(name, vec![16], vec![0; 16]));
    });
    let e = load_err(&s.0);
    assert!(
        matches!(e, LoadError::File(TensorFileError::UnsupportedDtype { ref tensor, .. }) if tensor == "model.layers.0.self_attn.k_proj.bias"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("has dtype U8; supported float dtypes: f32, f16, bf16"),
        "{e}"
    );
}

#[test]
fn tied_head_stored_twice_must_be_the_same_matrix() {
    let s = Scratch::copy("qwen2-tied", "tied-same");
    s.edit("model.safetensors", |t| {
        let embed = &t["model.embed_tokens.weight"];
        let copy = OutTensor {
            name: "lm_head.weight".into(),
            shape: embed.shape.clone(),
            dtype: embed.dtype,
            data: embed.data.clone(),
        };
        t.insert("lm_head.weight".into(), copy);
    });
    load_qwen2(&s.0, &Device::ndarray()).unwrap();
    s.edit("model.safetensors", |t| {
        t.get_mut("lm_head.weight").unwrap().data[0] ^= 1;
    });
    assert!(matches!(load_err(&s.0), LoadError::TiedHeadDiffers { .. }));
}

#[test]
fn shard_index_and_files_are_checked() {
    let s = Scratch::copy("qwen2-untied", "index");
    let index = s.0.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["weight_map"]["model.norm.weight"] = "model-00001-of-00005.safetensors".into();
    std::fs::write(&index, json.to_string()).unwrap();
    let e = load_err(&s.0);
    assert!(
        e.to_string()
            .contains("places tensor `model.norm.weight` in model-00001-of-00005.safetensors"),
        "{e}"
    );
    std::fs::write(&index, "{\"weights\": {}}").unwrap();
    assert!(
        load_err(&s.0)
            .to_string()
            .contains("not a safetensors index")
    );
    std::fs::remove_file(&index).unwrap();
    assert!(matches!(load_err(&s.0), LoadError::NoWeights { .. }));

    let s = Scratch::copy("qwen2-untied", "shard-gone");
    std::fs::remove_file(s.0.join("model-00003-of-00005.safetensors")).unwrap();
    let e = load_err(&s.0);
    assert!(
        e.to_string().contains("model-00003-of-00005.safetensors"),
        "{e}"
    );

    let s = Scratch::copy("qwen2-untied", "config");
    let path = s.0.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"silu\"", "\"gelu\"")).unwrap();
    let e = load_err(&s.0);
    assert!(
        matches!(e, LoadError::Config(_)) && e.to_string().contains("`hidden_act` = gelu"),
        "{e}"
    );
}

/// Every parameter's values by HF name.
struct Values(BTreeMap<String, Vec<f32>>);

impl NamedParamVisitor for Values {
    fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        let v = param.val().into_data().to_vec::<f32>().unwrap();
        self.0.insert(name.to_string(), v);
    }
}

#[test]
fn f32_f16_and_bf16_weights_load_exactly() {
    let reference = load_qwen2(&fixture("qwen2-untied"), &Device::ndarray()).unwrap();
    let mut want = Values(BTreeMap::new());
    reference.visit_named(&mut want);
    assert_eq!(want.0.len(), reference.named_shapes().len());
    for dtype in [FloatDtype::F16, FloatDtype::Bf16] {
        let s = Scratch::copy("qwen2-untied", dtype.name());
        for i in 1..=5 {
            s.edit(&format!("model-0000{i}-of-00005.safetensors"), |t| {
                for out in t.values_mut() {
                    let values = FloatDtype::F32.decode(&out.data);
                    *out = OutTensor::float(out.name.clone(), out.shape.clone(), dtype, &values);
                }
            });
        }
        let model = load_qwen2(&s.0, &Device::ndarray()).unwrap();
        let mut got = Values(BTreeMap::new());
        model.visit_named(&mut got);
        for (name, w) in &want.0 {
            let rounded = dtype.decode(&dtype.encode(w));
            assert_eq!(got.0[name], rounded, "{dtype}: {name}");
        }
    }
}

#[derive(Deserialize)]
struct RoundTrip {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<ChatMessage>,
    tools: Option<Vec<serde_json::Value>>,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<u32>,
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    // qwen2-untied keeps its template in tokenizer_config.json, qwen2-tied in chat_template.jinja.
    for name in ["qwen2-untied", "qwen2-tied"] {
        let tok = Qwen2Tokenizer::from_dir(&fixture(name)).unwrap();
        let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let trips: Vec<RoundTrip> = serde_json::from_value(json["round_trips"].clone()).unwrap();
        for t in trips {
            assert_eq!(
                tok.encode(&t.text, false).unwrap(),
                t.ids,
                "{name}: {:?}",
                t.text
            );
            assert_eq!(tok.decode(&t.ids, false).unwrap(), t.decoded, "{name}");
        }
        let chats: Vec<Chat> = serde_json::from_value(json["chat"].clone()).unwrap();
        assert!(chats.iter().any(|c| c.tools.is_some()));
        for c in chats {
            let rendered = tok
                .apply_chat_template(&c.messages, c.tools.as_deref(), c.add_generation_prompt)
                .unwrap();
            assert_eq!(rendered, c.text, "{name}");
            assert_eq!(tok.encode(&rendered, false).unwrap(), c.ids, "{name}");
        }
        assert_eq!(tok.eos_token_id(), tok.token_to_id("<|im_end|>"));
        assert_eq!(tok.pad_token_id(), tok.token_to_id("<|endoftext|>"));
        assert_eq!(tok.decode(&[353, 354], true).unwrap(), "");
    }
}

#[test]
fn tokenizer_errors_are_clear() {
    let s = Scratch::copy("qwen2-tied", "tok");
    std::fs::remove_file(s.0.join("chat_template.jinja")).unwrap();
    let tok = Qwen2Tokenizer::from_dir(&s.0).unwrap();
    let e = tok
        .apply_chat_template(&[ChatMessage::new("user", "hi")], None, true)
        .unwrap_err();
    assert!(matches!(e, TokenizerError::NoChatTemplate), "{e}");

    std::fs::write(s.0.join("chat_template.jinja"), "{% if %}").unwrap();
    let e = Qwen2Tokenizer::from_dir(&s.0).unwrap_err();
    assert!(e.to_string().starts_with("chat template:"), "{e}");

    std::fs::remove_file(s.0.join("chat_template.jinja")).unwrap();
    std::fs::write(
        s.0.join("tokenizer_config.json"),
        r#"{"eos_token": "<|nope|>"}"#,
    )
    .unwrap();
    let e = Qwen2Tokenizer::from_dir(&s.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "special token `<|nope|>` (eos_token) is not in the tokenizer's vocabulary"
    );

    std::fs::write(s.0.join("tokenizer.json"), "{}").unwrap();
    let e = Qwen2Tokenizer::from_dir(&s.0).unwrap_err();
    assert!(matches!(e, TokenizerError::Load { .. }), "{e}");
}
