//! Pre-quantized checkpoints (issue 23): the tiny `qwen2-untied` model quantized to NVFP4 by
//! llm-compressor and saved by compressed-tensors (`tests/fixtures/qwen2-nvfp4-ct`, made by
//! `scripts/fixtures/compressed_tensors_fp4.py`), and by NVIDIA ModelOpt
//! (`tests/fixtures/qwen2-nvfp4-modelopt`, `scripts/fixtures/modelopt_nvfp4.py`), each loads into
//! the packed base with codes and scales identical to the file and computes the logits
//! transformers computes on the model the producer's own code decodes; a plan that contradicts
//! the checkpoint, and what aqn cannot read, are refused by name.
//! `export` writes it back: unmerged byte for byte with the adapter beside it, merged with the
//! sum re-quantized exactly as aqn quantizes, and in HF f32 with the logits of the model.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aqn_core::checkpoint::NamedParamMapper;
use aqn_core::checkpoint::export::{ExportFormat, ExportOptions, export};
use aqn_core::checkpoint::hf_names::weight_name;
use aqn_core::checkpoint::loader::{LoadPlan, load_qwen2_with};
use aqn_core::checkpoint::prequantized::Producer;
use aqn_core::checkpoint::quantization_config::detect;
use aqn_core::formats::QuantSpec;
use aqn_core::lora::LoraConfig;
use aqn_core::model::{Padding, Qwen2ForCausalLM, WeightDtype};
use aqn_core::qat::{QuantConfig, QuantMode};
use aqn_core::rng::normal_f64;
use aqn_core::tensor_file::FloatDtype;
use aqn_core::tensor_file::{TensorFile, read_bytes};
use burn::module::Param;
use burn::tensor::{Device, Int, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn ct_dir() -> PathBuf {
    fixture("qwen2-nvfp4-ct")
}

fn modelopt_dir() -> PathBuf {
    fixture("qwen2-nvfp4-modelopt")
}

/// Every producer's fixture.
fn producers() -> [(Producer, PathBuf); 3] {
    [
        (Producer::CompressedTensors, ct_dir()),
        (Producer::CompressedTensorsMxfp4, fixture("qwen2-mxfp4-ct")),
        (Producer::ModelOpt, modelopt_dir()),
    ]
}

fn load(quant: QuantConfig) -> Result<Qwen2ForCausalLM, String> {
    load_from(&ct_dir(), quant)
}

fn load_from(dir: &Path, quant: QuantConfig) -> Result<Qwen2ForCausalLM, String> {
    load_qwen2_with(
        dir,
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
    for (producer, dir) in producers() {
        let pre = detect(&dir).unwrap().expect("a pre-quantized checkpoint");
        assert_eq!(pre.producer, producer);
        let format = if producer == Producer::CompressedTensorsMxfp4 {
            "mxfp4"
        } else {
            "nvfp4"
        };
        assert_eq!(pre.spec, format.parse().unwrap());
        assert!(
            pre.ignore.contains(&"lm_head".to_string()),
            "{:?}",
            pre.ignore
        );
        let bytes = read_bytes(&dir.join("model.safetensors")).unwrap();
        let file = TensorFile::parse(&bytes, "model.safetensors").unwrap();
        let quant = QuantConfig::new(QuantMode::W4A16).with_weights(pre.spec);
        let model = load_from(&dir, quant).unwrap();
        let mut checked = 0;
        model.visit_linears(|site, linear| {
            let name = weight_name(site, false);
            let Some(names) = pre
                .tensor_names(&name)
                .filter(|_| file.names().contains(&pre.marker(&name).unwrap()))
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
            assert_eq!(
                packed.codes,
                file.view(&names[0]).unwrap().data(),
                "{}",
                names[0]
            );
            assert_eq!(
                packed.scales,
                file.view(&names[1]).unwrap().data(),
                "{}",
                names[1]
            );
            let g = match (producer, names.get(2)) {
                (Producer::CompressedTensorsMxfp4, None) => 1.0,
                (p, Some(global)) => {
                    let stored =
                        f32::from_le_bytes(file.view(global).unwrap().data().try_into().unwrap());
                    if p == Producer::CompressedTensors {
                        1.0 / stored
                    } else {
                        stored
                    }
                }
                other => panic!("{other:?}"),
            };
            assert_eq!(packed.tensor_scale, g, "{name}");
            checked += 1;
        });
        assert_eq!(checked, 7 * model.num_layers(), "{producer:?}");
    }
}

#[test]
fn logits_equal_the_producers_decode_in_transformers() {
    for (producer, dir) in producers() {
        logits_equal_the_decode(producer, &dir);
    }
}

/// The decoded weights and logits of `dir`'s model against its producer's decode (`q (s / G)`
/// for compressed-tensors, `q (s g)` for ModelOpt, in f32) and transformers' forward.
fn logits_equal_the_decode(producer: Producer, dir: &Path) {
    let expected_bytes = read_bytes(&dir.join("expected.safetensors")).unwrap();
    let expected = TensorFile::parse(&expected_bytes, "expected.safetensors").unwrap();
    let spec = detect(dir).unwrap().unwrap().spec;
    let quant = QuantConfig::new(QuantMode::W4A16).with_weights(spec);
    let model = load_from(dir, quant).unwrap();
    // The decoded weights: aqn's `(q s) g` against the producer's, in f32.
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
                // NVFP4: the two orders of the products differ by at most an ulp. MXFP4: both
                // sides are exact products with a power of two, so the bits are equal.
                let exact = producer == Producer::CompressedTensorsMxfp4;
                assert!(
                    if exact {
                        a.to_bits() == b.to_bits()
                    } else {
                        (a - b).abs() <= b.abs() * f32::EPSILON
                    },
                    "{producer:?} {module}: {a} vs {b}"
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
        assert_close(
            &logits,
            &want,
            1e-5,
            &format!("{producer:?} prompt {p} logits"),
        );
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

/// A copy of the fixture folder `src` at `dst` without the file `skip`, its `config.json`
/// changed by `edit`.
fn edited_copy(
    src: &Path,
    dst: &Path,
    skip: Option<&str>,
    edit: &dyn Fn(&mut serde_json::Value),
) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap();
        if skip != name.to_str() {
            std::fs::copy(&f, dst.join(name)).unwrap();
        }
    }
    let path = dst.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dst.to_path_buf()
}

#[test]
fn checkpoints_aqn_cannot_read_are_refused_naming_what() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compressed_tensors");
    let _ = std::fs::remove_dir_all(&root);
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        edited_copy(&ct_dir(), &root.join(name), None, edit)
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
    let modelopt_w4a4 = edited_copy(&modelopt_dir(), &root.join("modelopt_w4a4"), None, &|_| {});
    let hf_quant = modelopt_w4a4.join("hf_quant_config.json");
    let text = std::fs::read_to_string(&hf_quant).unwrap();
    std::fs::write(&hf_quant, text.replace("W4A16_NVFP4", "NVFP4")).unwrap();
    let modelopt_unannounced = edited_copy(
        &modelopt_dir(),
        &root.join("modelopt_unannounced"),
        Some("hf_quant_config.json"),
        &|c| {
            c.as_object_mut().unwrap().remove("quantization_config");
        },
    );
    for (dir, needle) in [
        (w4a4, "input_activations"),
        (gptq, "\"gptq\""),
        (unannounced, "no quantization_config"),
        (modelopt_w4a4, "quant_algo = \"NVFP4\""),
        (
            modelopt_unannounced,
            "weight_scale_2` belongs to packed codes (ModelOpt",
        ),
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

/// Gives every LoRA `B` random values (a fresh adapter's `B` is zero: nothing to merge).
struct RandomB(u64);

impl NamedParamMapper for RandomB {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !name.contains("lora_B") {
            return param;
        }
        self.0 += 1;
        let shape = param.lazy_shape();
        let n = shape.num_elements();
        let values: Vec<f32> = (0..n as u64)
            .map(|i| (normal_f64(self.0, i) * 0.05) as f32)
            .collect();
        let id = param.id;
        param.transform_for_load(
            Tensor::from_data(TensorData::new(values, shape), &Device::ndarray()),
            id,
        )
    }
}

/// The CT base with a LoRA adapter whose B is not zero.
fn trained() -> Qwen2ForCausalLM {
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    load(QuantConfig::new(QuantMode::W4A16))
        .unwrap()
        .with_lora(&lora)
        .unwrap()
        .map_named(&mut RandomB(7))
}

fn logits(model: &Qwen2ForCausalLM) -> Vec<f32> {
    let device = Device::ndarray();
    let ids: Vec<i64> = (0..20).map(|i| (i * 37 % 350) as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 10]), &device);
    model
        .forward(input, &Padding::none(2), None)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

fn export_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ct_export")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn export_writes_the_codes_back_and_merges_exactly() {
    let model = trained();
    let reference = logits(&model);
    let fixture_bytes = read_bytes(&ct_dir().join("model.safetensors")).unwrap();
    let fixture = TensorFile::parse(&fixture_bytes, "fixture").unwrap();

    // Unmerged: the file's codes and scales byte for byte, the adapter beside them.
    let out = export_dir("unmerged");
    let s = export(
        &model,
        &ct_dir(),
        &out,
        ExportOptions {
            format: ExportFormat::CompressedTensorsNvfp4,
            merge: false,
            dense_dtype: Some(FloatDtype::F32),
        },
    )
    .unwrap();
    assert_eq!((s.packed, s.merged, s.adapter), (21, 0, true));
    let bytes = read_bytes(&out.join("model.safetensors")).unwrap();
    let written = TensorFile::parse(&bytes, "export").unwrap();
    for name in fixture.names() {
        if name.ends_with("weight_packed") || name.ends_with("weight_scale") {
            assert_eq!(
                written.view(name).unwrap().data(),
                fixture.view(name).unwrap().data(),
                "{name}"
            );
        }
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["quantization_config"]["ignore"],
        serde_json::json!(["lm_head"])
    );
    assert!(out.join("tokenizer.json").is_file() && out.join("tokenizer_config.json").is_file());
    let back = load_qwen2_with(
        &out,
        &Device::ndarray(),
        &LoadPlan::packed(QuantConfig::new(QuantMode::W4A16), WeightDtype::F32),
    )
    .unwrap()
    .with_lora_adapter(&out.join("adapter"))
    .unwrap();
    assert_close(
        &logits(&back),
        &reference,
        1e-6,
        "unmerged export + adapter",
    );

    // Merged: each projection's codes are aqn's NVFP4 of (decoded base + scaling B A).
    let out = export_dir("merged");
    let s = export(
        &model,
        &ct_dir(),
        &out,
        ExportOptions {
            format: ExportFormat::CompressedTensorsNvfp4,
            merge: true,
            dense_dtype: Some(FloatDtype::F32),
        },
    )
    .unwrap();
    assert_eq!((s.packed, s.adapter), (21, false));
    // aqn's logits of the merged export as read back, beside it, for the by-hand comparison with
    // compressed-tensors' decode (scripts/fixtures/check_ct_export.py).
    let merged_back = load_from(&out, QuantConfig::new(QuantMode::W4A16)).unwrap();
    let ids: Vec<i64> = (0..20).map(|i| (i * 37 % 350) as i64).collect();
    let record =
        serde_json::json!({ "ids": [&ids[..10], &ids[10..]], "logits": logits(&merged_back) });
    std::fs::write(out.join("aqn_logits.json"), record.to_string()).unwrap();
    assert!(s.merged > 0);
    let bytes = read_bytes(&out.join("model.safetensors")).unwrap();
    let written = TensorFile::parse(&bytes, "export").unwrap();
    let spec: QuantSpec = "nvfp4".parse().unwrap();
    let ct = detect(&ct_dir()).unwrap().unwrap();
    assert_eq!(ct.producer, Producer::CompressedTensors);
    let mut merged = 0;
    model.visit_linears(|site, linear| {
        let (Some(lora), Some(packed)) = (&linear.lora, &linear.packed) else {
            return;
        };
        let [_, inp] = linear.dims();
        let ba = lora.lora_b.val().matmul(lora.lora_a.val()) * lora.scaling();
        let ba = ba.into_data().try_into_vec::<f32>().unwrap();
        let sum: Vec<f32> = packed
            .dequantize()
            .iter()
            .zip(&ba)
            .map(|(w, d)| w + d)
            .collect();
        let want = spec.quantize(&sum, inp).unwrap();
        let names = ct.tensor_names(&weight_name(site, false)).unwrap();
        let [codes, scales, global] = [&names[0], &names[1], &names[2]];
        assert_eq!(written.view(codes).unwrap().data(), want.codes, "{codes}");
        assert_eq!(
            written.view(scales).unwrap().data(),
            want.scales,
            "{scales}"
        );
        let g = f32::from_le_bytes(written.view(global).unwrap().data().try_into().unwrap());
        assert_eq!(g, 1.0 / want.tensor_scale, "{global}");
        merged += 1;
    });
    assert_eq!(merged, s.merged);

    // HF f32, merged: the dense model computes the trained model's logits.
    let out = export_dir("hf_f32");
    let s = export(
        &model,
        &ct_dir(),
        &out,
        ExportOptions {
            format: ExportFormat::HfF32,
            merge: true,
            dense_dtype: None,
        },
    )
    .unwrap();
    assert_eq!(s.packed, 0);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert!(config.get("quantization_config").is_none());
    let dense = aqn_core::checkpoint::load_qwen2(&out, &Device::ndarray()).unwrap();
    assert_close(&logits(&dense), &reference, 1e-5, "merged hf-f32 export");
}

/// The refusal of exporting `model` (its base `base`) as `format` to a fresh folder `name`.
fn export_error(
    model: &Qwen2ForCausalLM,
    base: &Path,
    name: &str,
    format: ExportFormat,
    merge: bool,
) -> String {
    let options = ExportOptions {
        format,
        merge,
        dense_dtype: None,
    };
    export(model, base, &export_dir(name), options)
        .unwrap_err()
        .to_string()
}

#[test]
fn export_refuses_what_its_format_cannot_hold() {
    let model = trained();
    let out = export_dir("busy");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = export(
        &model,
        &ct_dir(),
        &out,
        ExportOptions {
            format: ExportFormat::HfBf16,
            merge: true,
            dense_dtype: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );

    let untied = fixture("qwen2-untied");
    let mxfp4 = load_qwen2_with(
        &untied,
        &Device::ndarray(),
        &LoadPlan::packed(
            QuantConfig::new(QuantMode::W4A16).with_weights("mxfp4".parse().unwrap()),
            WeightDtype::F32,
        ),
    )
    .unwrap();
    let err = export_error(
        &mxfp4,
        &untied,
        "mx",
        ExportFormat::CompressedTensorsNvfp4,
        false,
    );
    assert!(
        err.contains("quantized as mxfp4:floor") && err.contains("hf-bf16, or gguf-mxfp4"),
        "{err}"
    );
    let err = export_error(&mxfp4, &untied, "nomerge", ExportFormat::HfBf16, true);
    assert!(err.contains("no LoRA adapter"), "{err}");
    let w4a4 = load_qwen2_with(
        &untied,
        &Device::ndarray(),
        &LoadPlan::packed(QuantConfig::new(QuantMode::W4A4), WeightDtype::F32),
    )
    .unwrap();
    let err = export_error(&w4a4, &untied, "w4a4", ExportFormat::HfBf16, false);
    assert!(err.contains("W4A4"), "{err}");
}

/// A GGUF tensor as read back: name, dims (innermost first), GGML type, data.
type GgufRead = (String, Vec<u64>, u32, Vec<u8>);

/// The metadata keys and tensors of a GGUF file, read by a minimal reader of the format
/// (version 3, 32-byte alignment) that skips the metadata values by type.
fn read_gguf(bytes: &[u8]) -> (Vec<String>, Vec<GgufRead>) {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = &bytes[at..at + n];
        at += n;
        s
    };
    let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    assert_eq!(take(4), b"GGUF");
    assert_eq!(u32_(take(4)), 3);
    let (n_tensors, n_meta) = (u64_(take(8)), u64_(take(8)));
    let mut keys = Vec::new();
    fn skip_value(ty: u32, take: &mut dyn FnMut(usize) -> Vec<u8>) {
        let size = |t: u32| match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => 0,
        };
        match ty {
            8 => {
                let n = u64::from_le_bytes(take(8).try_into().unwrap()) as usize;
                take(n);
            }
            9 => {
                let elem = u32::from_le_bytes(take(4).try_into().unwrap());
                let n = u64::from_le_bytes(take(8).try_into().unwrap());
                for _ in 0..n {
                    skip_value(elem, take);
                }
            }
            t => {
                take(size(t));
            }
        }
    }
    let mut take_vec = |n: usize| take(n).to_vec();
    for _ in 0..n_meta {
        let len = u64_(&take_vec(8)) as usize;
        keys.push(String::from_utf8(take_vec(len)).unwrap());
        let ty = u32_(&take_vec(4));
        skip_value(ty, &mut take_vec);
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let len = u64_(&take_vec(8)) as usize;
        let name = String::from_utf8(take_vec(len)).unwrap();
        let n_dims = u32_(&take_vec(4));
        let dims: Vec<u64> = (0..n_dims).map(|_| u64_(&take_vec(8))).collect();
        let ty = u32_(&take_vec(4));
        let offset = u64_(&take_vec(8)) as usize;
        infos.push((name, dims, ty, offset));
    }
    let data = at.next_multiple_of(32);
    let mut tensors = Vec::new();
    for (i, (name, dims, ty, offset)) in infos.iter().enumerate() {
        let end = infos.get(i + 1).map_or(bytes.len(), |next| data + next.3);
        tensors.push((
            name.clone(),
            dims.clone(),
            *ty,
            bytes[data + offset..end].to_vec(),
        ));
    }
    (keys, tensors)
}

#[test]
fn gguf_exports_hold_mxfp4_blocks_and_the_tokenizer() {
    let untied = fixture("qwen2-untied");
    let quant = QuantConfig::new(QuantMode::W4A16).with_weights("mxfp4".parse().unwrap());
    let model = load_qwen2_with(
        &untied,
        &Device::ndarray(),
        &LoadPlan::packed(quant, WeightDtype::F32),
    )
    .unwrap();
    let out = export_dir("gguf_mxfp4");
    let options = ExportOptions {
        format: ExportFormat::GgufMxfp4,
        merge: false,
        dense_dtype: None,
    };
    let s = export(&model, &untied, &out, options).unwrap();
    assert_eq!((s.packed, s.dense), (21, 1));
    let bytes = read_bytes(&out.join("model.gguf")).unwrap();
    let (keys, tensors) = read_gguf(&bytes);
    for key in [
        "general.architecture",
        "qwen2.block_count",
        "qwen2.attention.head_count_kv",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.chat_template",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing: {keys:?}");
    }
    // Every projection is MXFP4 (type 39) holding aqn's codes: its blocks decode, by GGML's
    // rule, to aqn's decoded weight.
    const KVALUES: [f32; 16] = [
        0., 1., 2., 3., 4., 6., 8., 12., 0., -1., -2., -3., -4., -6., -8., -12.,
    ];
    let mut checked = 0;
    model.visit_linears(|site, linear| {
        let hf = weight_name(site, false);
        let gguf = aqn_core::checkpoint::gguf::gguf_name(&hf).unwrap();
        let (_, dims, ty, data) = tensors.iter().find(|t| t.0 == gguf).unwrap();
        let [o, i] = linear.dims();
        assert_eq!(
            dims,
            &vec![i as u64, o as u64],
            "{gguf}: GGML dims are innermost first"
        );
        let want = linear.packed.as_ref().unwrap().dequantize();
        if linear.quantization().is_none() {
            assert_eq!(*ty, 30, "{gguf}: a dense matrix is BF16");
            return;
        }
        assert_eq!(*ty, 39, "{gguf}");
        for (b, block) in data.chunks(17).take(o * i / 32).enumerate() {
            for j in 0..32 {
                let q = if j < 16 {
                    block[1 + j] & 0xF
                } else {
                    block[1 + j - 16] >> 4
                };
                let v = KVALUES[q as usize] * 2f32.powi(block[0] as i32 - 128);
                // Equal values (GGML's code 8 is +0 where aqn keeps the sign of a -0).
                assert_eq!(v, want[b * 32 + j], "{gguf} element {}", b * 32 + j);
            }
        }
        checked += 1;
    });
    assert_eq!(checked, 21);
    assert!(
        tensors
            .iter()
            .any(|t| t.0 == "blk.0.attn_norm.weight" && t.2 == 0)
    );
    // The same model's decoded weights in f32 beside it, for scripts/fixtures/check_gguf_export.py
    // (the gguf package's reading of model.gguf against them, by hand).
    let hf_f32 = ExportOptions {
        format: ExportFormat::HfF32,
        ..options
    };
    export(&model, &untied, &export_dir("gguf_mxfp4_f32"), hf_f32).unwrap();

    // An NVFP4 model has no MXFP4 blocks to write; gguf-bf16 takes every model.
    let nvfp4 = load(QuantConfig::new(QuantMode::W4A16)).unwrap();
    let err = export_error(&nvfp4, &ct_dir(), "gguf_nv", ExportFormat::GgufMxfp4, false);
    assert!(
        err.contains("MXFP4 blocks of 32") && err.contains("gguf-bf16"),
        "{err}"
    );
    let s = export(
        &nvfp4,
        &ct_dir(),
        &export_dir("gguf_bf16"),
        ExportOptions {
            format: ExportFormat::GgufBf16,
            ..options
        },
    )
    .unwrap();
    assert_eq!((s.packed, s.dense), (0, 22));
}
