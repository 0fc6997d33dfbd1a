//! Pre-quantized checkpoints (issue 23): the tiny `qwen2-untied` model quantized to NVFP4 by
//! llm-compressor and saved by compressed-tensors (`tests/fixtures/qwen2-nvfp4-ct`, made by
//! `scripts/fixtures/compressed_tensors_nvfp4.py`) loads into the packed base with codes and
//! scales identical to the file, computes the logits transformers computes on the model that
//! compressed-tensors decompresses, and a plan that contradicts the checkpoint is refused by name.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aqn_core::checkpoint::compressed_tensors::{detect, tensor_names};
use aqn_core::checkpoint::hf_names::weight_name;
use aqn_core::checkpoint::loader::{LoadPlan, load_qwen2_with};
use aqn_core::model::{Padding, Qwen2ForCausalLM, WeightDtype};
use aqn_core::qat::{QuantConfig, QuantMode};
use aqn_core::tensor_file::{TensorFile, read_bytes};
use burn::tensor::{Device, Int, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn ct_dir() -> PathBuf {
    fixture("qwen2-nvfp4-ct")
}

fn load(quant: QuantConfig) -> Result<Qwen2ForCausalLM, String> {
    load_qwen2_with(
        &ct_dir(),
        &Device::ndarray(),
        &LoadPlan::packed(quant, WeightDtype::F32),
    )
    .map_err(|e| e.to_string())
}

/// `|a - b|` at most `rel` times the largest `|b|`.
fn assert_close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "{what}: max |diff| {worst:e} = {:e} of max |value|",
        worst / scale
    );
    assert!(
        worst <= rel * scale,
        "{what}: max |diff| {worst:e} > {rel:e} x {scale}"
    );
}

#[test]
fn codes_and_scales_are_the_files_and_the_mode_is_the_checkpoints() {
    let pre = detect(&ct_dir())
        .unwrap()
        .expect("a pre-quantized checkpoint");
    assert_eq!(pre.spec, "nvfp4".parse().unwrap());
    assert_eq!(pre.ignore, vec!["lm_head".to_string()]);
    let bytes = read_bytes(&ct_dir().join("model.safetensors")).unwrap();
    let file = TensorFile::parse(&bytes, "model.safetensors").unwrap();
    let model = load(QuantConfig::new(QuantMode::W4A16)).unwrap();
    let mut checked = 0;
    model.visit_linears(|site, linear| {
        let name = weight_name(site, false);
        let Some([codes, scales, global]) =
            tensor_names(&name).filter(|n| file.names().contains(&n[0]))
        else {
            // The lm_head: dense in the file, kept in f32 by the default exclusions.
            assert!(site.layer.is_none(), "{name} is dense in the file");
            return;
        };
        let packed = linear
            .packed
            .as_ref()
            .and_then(|p| p.packed())
            .unwrap_or_else(|| panic!("{name} is not held packed"));
        assert_eq!(packed.codes, file.view(&codes).unwrap().data(), "{codes}");
        assert_eq!(
            packed.scales,
            file.view(&scales).unwrap().data(),
            "{scales}"
        );
        let g = f32::from_le_bytes(file.view(&global).unwrap().data().try_into().unwrap());
        assert_eq!(packed.tensor_scale, 1.0 / g, "{global}");
        checked += 1;
    });
    assert_eq!(checked, 7 * model.num_layers());
}

#[test]
fn logits_equal_the_compressed_tensors_decompression_in_transformers() {
    let expected_bytes = read_bytes(&ct_dir().join("expected.safetensors")).unwrap();
    let expected = TensorFile::parse(&expected_bytes, "expected.safetensors").unwrap();
    let model = load(QuantConfig::new(QuantMode::W4A16)).unwrap();
    // The decoded weights: aqn's `(q s) g` against compressed-tensors' `q (s / G)`, in f32.
    let mut decoded = BTreeMap::new();
    model.visit_linears(|site, linear| {
        if let Some(p) = linear.packed.as_ref().and_then(|p| p.packed()) {
            let module = weight_name(site, false).replace(".weight", "");
            decoded.insert(module, p.dequantize().unwrap());
        }
    });
    let mut weights = 0;
    for name in expected.names() {
        if let Some(module) = name.strip_prefix("dequant.") {
            let want = expected.read(name).unwrap().data;
            let got = &decoded[module];
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= b.abs() * f32::EPSILON,
                    "{module}: {a} vs {b}"
                );
            }
            weights += 1;
        }
    }
    assert_eq!(weights, 2);
    let prompts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("qwen2-untied/expected.json")).unwrap(),
    )
    .unwrap();
    let device = Device::ndarray();
    for (p, prompt) in prompts["prompts"].as_array().unwrap().iter().enumerate() {
        let ids: Vec<i64> = prompt["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let len = ids.len();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        let logits = model
            .forward(input, &Padding::none(1), None)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let want = expected.read(&format!("logits.{p}")).unwrap().data;
        assert_close(&logits, &want, 1e-5, &format!("prompt {p} logits"));
    }
}

#[test]
fn a_plan_that_contradicts_the_checkpoint_is_refused_by_name() {
    let cases: [(QuantConfig, &[&str]); 4] = [
        (
            QuantConfig::new(QuantMode::Bf16),
            &[
                "model.layers.0.self_attn.q_proj",
                "full precision",
                "quant.mode = \"w4a16\"",
            ],
        ),
        (
            QuantConfig::new(QuantMode::W4A16).with_weights("mxfp4".parse().unwrap()),
            &["quantizes it as mxfp4", "quant.weights = \"nvfp4\""],
        ),
        (
            QuantConfig::new(QuantMode::W4A16).with_weights("nvfp4:sr=3".parse().unwrap()),
            &["quantizes it as nvfp4:two-level:sr=3", "round to nearest"],
        ),
        (
            QuantConfig::new(QuantMode::W4A16).with_weights("nvfp4:tile16x16".parse().unwrap()),
            &["nvfp4:two-level:tile16x16", "1-D blocks of 16"],
        ),
    ];
    for (quant, needles) in cases {
        let err = load(quant.clone()).unwrap_err();
        for n in needles {
            assert!(err.contains(n), "{quant:?}: `{n}` missing from: {err}");
        }
    }
    // Latent f32 weights would re-quantize the decoded codes.
    let err = load_qwen2_with(&ct_dir(), &Device::ndarray(), &LoadPlan::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weight_packed") && err.contains("model.base_storage"),
        "{err}"
    );
}

#[test]
fn checkpoints_aqn_cannot_read_are_refused_naming_what() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compressed_tensors");
    let _ = std::fs::remove_dir_all(&root);
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(ct_dir()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(&path, config.to_string()).unwrap();
        dir
    };
    let w4a4 = copy("w4a4", &|c| {
        c["quantization_config"]["config_groups"]["group_0"]["input_activations"] =
            serde_json::json!({"num_bits": 4, "type": "float", "dynamic": "local"});
    });
    let gptq = copy("gptq", &|c| {
        c["quantization_config"]["quant_method"] = "gptq".into();
    });
    let unannounced = copy("unannounced", &|c| {
        c.as_object_mut().unwrap().remove("quantization_config");
    });
    let modelopt = copy("modelopt", &|_| {});
    std::fs::write(modelopt.join("hf_quant_config.json"), "{}").unwrap();
    for (dir, needle) in [
        (w4a4, "input_activations"),
        (gptq, "\"gptq\""),
        (unannounced, "no quantization_config"),
        (modelopt, "hf_quant_config.json"),
    ] {
        let err = load_qwen2_with(
            &dir,
            &Device::ndarray(),
            &LoadPlan::packed(QuantConfig::new(QuantMode::W4A16), WeightDtype::F32),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{}: {err}", dir.display());
    }
}
