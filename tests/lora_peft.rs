//! LoRA on a frozen base (docs/spec.md section 2, section 8's LoRA runs): only the adapters require
//! gradients and get updated; the adapter path reads the unquantized input and is never
//! quantized; dropout acts only while training; adapters round-trip through PEFT's files; every
//! malformed adapter is refused naming the problem.
//!
//! `peft_files_for_the_python_check` also writes, for each fixture model, an adapter with random
//! factors and the logits aqn computes with it, for `tests/fixtures/peft_check.py` (which loads
//! the adapter in PEFT and compares): set `AQN_PEFT_CHECK_DIR` to choose where.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, peft_key, save_lora_adapter};
use aqn_core::checkpoint::{NamedParamVisitor, load_qwen2};
use aqn_core::formats::QuantSpec;
use aqn_core::lora::LoraConfig;
use aqn_core::model::{Padding, Qwen2ForCausalLM};
use aqn_core::phase::Phase;
use aqn_core::qat::{QuantConfig, QuantMode};
use aqn_core::rng::normal_f64;
use aqn_core::site::{LinearKind, LinearSite};
use aqn_core::tensor_file::{FloatDtype, OutTensor, TensorFile, read_bytes, serialize};
use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("lora_peft")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn prompts(name: &str) -> Vec<Vec<u32>> {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    json["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::from_value(p["ids"].clone()).unwrap())
        .collect()
}

fn logits_of(model: &Qwen2ForCausalLM, ids: &[u32], device: &Device) -> Tensor<3> {
    let input = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]),
        device,
    );
    model.forward(input, &Padding::none(1), None)
}

fn all_logits(model: &Qwen2ForCausalLM, name: &str, device: &Device) -> Vec<Vec<f32>> {
    prompts(name)
        .iter()
        .map(|p| values(logits_of(model, p, device)))
        .collect()
}

/// Every parameter's name and whether it requires a gradient.
fn trainability(model: &Qwen2ForCausalLM) -> Vec<(String, bool)> {
    struct V(Vec<(String, bool)>);
    impl NamedParamVisitor for V {
        fn visit<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) {
            self.0.push((name.to_string(), p.val().is_require_grad()));
        }
    }
    let mut v = V(Vec::new());
    model.visit_named(&mut v);
    v.0
}

/// Gives every adapter random factors (B is zero after init), deterministically.
fn randomize_adapters(model: Qwen2ForCausalLM, seed: u64) -> Qwen2ForCausalLM {
    let mut k = seed;
    model.map_linears(|_, mut lin| {
        if let Some(mut a) = lin.lora.take() {
            for p in [&mut a.lora_a, &mut a.lora_b] {
                k += 1;
                let key = k;
                *p = p.clone().map(|t| {
                    let dims = t.dims();
                    let n = dims[0] * dims[1];
                    let rg = t.is_require_grad();
                    let v: Vec<f32> = (0..n as u64)
                        .map(|i| (normal_f64(key, i) * 0.2) as f32)
                        .collect();
                    Tensor::<2>::from_data(TensorData::new(v, dims), &t.device())
                        .set_require_grad(rg)
                });
            }
            lin.lora = Some(a);
        }
        lin
    })
}

#[test]
fn the_base_is_frozen_and_only_adapters_train() {
    let device = Device::ndarray().autodiff();
    let base = load_qwen2(&fixture("qwen2-untied"), &device).unwrap();
    let plain = all_logits(&base, "qwen2-untied", &device);
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let model = base.with_lora(&config).unwrap();
    let params = trainability(&model);
    let trainable: Vec<&String> = params.iter().filter(|p| p.1).map(|p| &p.0).collect();
    assert_eq!(trainable.len(), 3 * 7 * 2, "{trainable:?}");
    assert!(
        trainable
            .iter()
            .all(|n| n.contains(".lora_A.") || n.contains(".lora_B."))
    );
    assert!(trainable.contains(&&"model.layers.2.mlp.down_proj.lora_B.weight".to_string()));
    // B = 0: a fresh adapter changes nothing.
    assert_eq!(all_logits(&model, "qwen2-untied", &device), plain);
    assert_eq!(model.lora_config().unwrap().unwrap(), config);

    // Gradients reach the adapters only; the optimizer changes nothing else.
    let p = &prompts("qwen2-untied")[1];
    let loss = burn::tensor::activation::log_softmax(logits_of(&model, p, &device), 2)
        .mean()
        .neg();
    let grads = loss.backward();
    let mut base_grads = 0;
    struct Count<'a>(&'a burn::tensor::Gradients, &'a mut usize, usize);
    impl NamedParamVisitor for Count<'_> {
        fn visit<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) {
            if p.val().grad(self.0).is_some() {
                if name.contains(".lora_") {
                    self.2 += 1;
                } else {
                    *self.1 += 1;
                }
            }
        }
    }
    let mut count = Count(&grads, &mut base_grads, 0);
    model.visit_named(&mut count);
    let lora_grads = count.2;
    assert_eq!((base_grads, lora_grads), (0, 42));
    let grads = GradientsParams::from_grads(grads, &model);
    assert_eq!(grads.len(), 42);
    let before: Vec<(String, Vec<f32>)> = snapshot(&model);
    let mut optim = AdamWConfig::new().init();
    let model = optim.step(1e-2, model, grads);
    let after = snapshot(&model);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        if name.contains(".lora_B.") {
            assert_ne!(a, b, "{name} was not updated");
        } else if !name.contains(".lora_") {
            assert_eq!(a, b, "{name} changed");
        }
    }
    assert_ne!(all_logits(&model, "qwen2-untied", &device), plain);
}

fn snapshot(model: &Qwen2ForCausalLM) -> Vec<(String, Vec<f32>)> {
    struct S(Vec<(String, Vec<f32>)>);
    impl NamedParamVisitor for S {
        fn visit<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) {
            self.0.push((name.to_string(), values(p.val().detach())));
        }
    }
    let mut s = S(Vec::new());
    model.visit_named(&mut s);
    s.0
}

#[test]
fn the_adapter_path_reads_the_unquantized_input_and_is_not_quantized() {
    let device = Device::ndarray();
    let spec: QuantSpec = "nvfp4".parse().unwrap();
    let base = load_qwen2(&fixture("qwen2-untied"), &device)
        .unwrap()
        .with_quantization(&QuantConfig::new(QuantMode::W4A4).with_weights(spec))
        .unwrap();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![LinearKind::UpProj],
        ..LoraConfig::default()
    };
    let model = randomize_adapters(base.clone().with_lora(&config).unwrap(), 40);
    let lin = model.model.layers[1].mlp.up_proj.clone();
    let plain = base.model.layers[1].mlp.up_proj.clone();
    assert!(lin.quantization().unwrap().activations.is_some());
    let (rows, d_in) = (6, lin.d_input());
    let x0: Vec<f32> = (0..(rows * d_in) as u64)
        .map(|i| normal_f64(3, i) as f32)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(x0.clone(), [rows, d_in]), &device);
    let delta: Vec<f32> = values(lin.forward(x.clone()) - plain.forward(x));
    let adapter = lin.lora.as_ref().unwrap();
    let a = values(adapter.lora_a.val());
    let b = values(adapter.lora_b.val());
    let (r, d_out) = (4, lin.d_output());
    for row in 0..rows {
        // scale * x A^T B^T with the unquantized x, in f64.
        let xa: Vec<f64> = (0..r)
            .map(|k| {
                (0..d_in)
                    .map(|i| f64::from(x0[row * d_in + i]) * f64::from(a[k * d_in + i]))
                    .sum()
            })
            .collect();
        for o in 0..d_out {
            let want: f64 = 2.0 * (0..r).map(|k| xa[k] * f64::from(b[o * r + k])).sum::<f64>();
            let got = f64::from(delta[row * d_out + o]);
            assert!(
                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                "row {row} out {o}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn dropout_acts_in_training_only() {
    let device = Device::ndarray().autodiff();
    let config = LoraConfig {
        rank: 4,
        dropout: 0.5,
        ..LoraConfig::default()
    };
    let model = randomize_adapters(
        load_qwen2(&fixture("qwen2-tied"), &device)
            .unwrap()
            .with_lora(&config)
            .unwrap(),
        7,
    );
    let p = &prompts("qwen2-tied")[0];
    let train = model.for_phase(Phase::Training, 3);
    let a = values(logits_of(&train, p, &device));
    let b = values(logits_of(&train, p, &device));
    assert_ne!(a, b, "two training forwards drew the same dropout masks");
    // The same step replayed draws the same masks.
    let again = model.for_phase(Phase::Training, 3);
    assert_eq!(values(logits_of(&again, p, &device)), a);
    let rollout = model.for_phase(Phase::Rollout, 3);
    let inner = device.clone().without_autodiff();
    let r1 = values(logits_of(&rollout, p, &inner));
    assert_eq!(r1, values(logits_of(&rollout, p, &inner)));
    assert_eq!(r1, values(logits_of(&model.valid(), p, &inner)));
}

#[test]
fn adapters_round_trip_through_peft_files() {
    let device = Device::ndarray();
    for name in ["qwen2-untied", "qwen2-tied"] {
        let config = LoraConfig {
            rank: 3,
            alpha: 12.0,
            dropout: 0.05,
            targets: vec![LinearKind::QProj, LinearKind::VProj, LinearKind::DownProj],
            ..LoraConfig::default()
        };
        let model = randomize_adapters(
            load_qwen2(&fixture(name), &device)
                .unwrap()
                .with_lora(&config)
                .unwrap(),
            100,
        );
        let dir = scratch(&format!("round_trip_{name}"));
        save_lora_adapter(&model, &dir, "Qwen/Qwen2.5-1.5B-Instruct").unwrap();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).unwrap())
                .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["r"], 3);
        assert_eq!(cfg["lora_alpha"], 12);
        assert_eq!(cfg["lora_dropout"], 0.05);
        assert_eq!(cfg["bias"], "none");
        assert_eq!(cfg["fan_in_fan_out"], false);
        assert_eq!(cfg["base_model_name_or_path"], "Qwen/Qwen2.5-1.5B-Instruct");
        assert_eq!(
            cfg["target_modules"],
            serde_json::json!(["q_proj", "v_proj", "down_proj"])
        );
        let bytes = read_bytes(&dir.join(ADAPTER_WEIGHTS)).unwrap();
        let file = TensorFile::parse(&bytes, ADAPTER_WEIGHTS).unwrap();
        let layers = model.num_layers();
        assert_eq!(file.names().len(), layers * 3 * 2);
        let key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
        let a = file.read(key).unwrap();
        assert_eq!(a.shape, vec![3, 64]);
        assert_eq!(
            file.read("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
                .unwrap()
                .shape,
            vec![64, 3]
        );

        let loaded = load_qwen2(&fixture(name), &device)
            .unwrap()
            .with_lora_adapter(&dir)
            .unwrap();
        assert_eq!(
            loaded.lora_config().unwrap().unwrap(),
            LoraConfig {
                seed: 0,
                ..config.clone()
            }
        );
        assert_eq!(
            all_logits(&loaded, name, &device),
            all_logits(&model, name, &device),
            "{name}"
        );
    }
}

/// Writes an adapter directory with `config` edited by `edit_config` and tensors edited by
/// `edit_tensors`, and returns the error of loading it.
fn load_error(
    edit_config: impl FnOnce(&mut serde_json::Value),
    edit_tensors: impl FnOnce(&mut Vec<OutTensor>),
    tag: &str,
) -> String {
    let device = Device::ndarray();
    let base = load_qwen2(&fixture("qwen2-tied"), &device).unwrap();
    let config = LoraConfig {
        rank: 2,
        targets: vec![LinearKind::QProj, LinearKind::UpProj],
        ..LoraConfig::default()
    };
    let model = base.clone().with_lora(&config).unwrap();
    let dir = scratch(&format!("bad_{tag}"));
    save_lora_adapter(&model, &dir, "base").unwrap();
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    edit_config(&mut cfg);
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let bytes = read_bytes(&dir.join(ADAPTER_WEIGHTS)).unwrap();
    let file = TensorFile::parse(&bytes, ADAPTER_WEIGHTS).unwrap();
    let mut tensors: Vec<OutTensor> = file
        .names()
        .iter()
        .map(|n| {
            let t = file.read(n).unwrap();
            OutTensor::float(n.clone(), t.shape, FloatDtype::F32, &t.data)
        })
        .collect();
    edit_tensors(&mut tensors);
    std::fs::write(
        dir.join(ADAPTER_WEIGHTS),
        serialize(&tensors, None).unwrap(),
    )
    .unwrap();
    base.with_lora_adapter(&dir).unwrap_err().to_string()
}

#[test]
fn malformed_adapters_are_refused_naming_the_problem() {
    let q0 = peft_key(
        &LinearSite::decoder(0, aqn_core::site::LinearKind::QProj),
        "A",
    );
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            load_error(|c| c["use_dora"] = true.into(), |_| {}, "dora"),
            vec!["use_dora", "DoRA"],
        ),
        (
            load_error(|c| c["peft_type"] = "IA3".into(), |_| {}, "ia3"),
            vec!["peft_type", "IA3"],
        ),
        (
            load_error(|c| c["r"] = 3.into(), |_| {}, "rank"),
            vec!["layers.0.mlp.up_proj.lora_A.weight", "[2, 64]", "[3, 64]"],
        ),
        (
            load_error(
                |c| c["target_modules"] = serde_json::json!(["q_proj", "lm_head"]),
                |_| {},
                "target",
            ),
            vec!["`lm_head`", "down_proj"],
        ),
        (
            load_error(|c| c["target_modules"] = ".*proj".into(), |_| {}, "regex"),
            vec!["target_modules", "regular expressions"],
        ),
        (
            load_error(
                |c| c["target_modules"] = serde_json::json!(["q_proj"]),
                |_| {},
                "extra",
            ),
            vec!["unexpected tensor", "up_proj.lora_A.weight"],
        ),
        (
            load_error(|_| {}, |t| t.retain(|t| t.name != q0), "missing"),
            vec![
                "missing",
                "layers.0.self_attn.q_proj.lora_A.weight",
                "[2, 64]",
            ],
        ),
        (
            load_error(
                |c| c["rank_pattern"] = serde_json::json!({"q_proj": 8}),
                |_| {},
                "pattern",
            ),
            vec!["rank_pattern"],
        ),
        (
            load_error(|c| c["bias"] = "all".into(), |_| {}, "bias"),
            vec!["bias", "\"all\""],
        ),
        (
            load_error(|c| c["lora_alpha"] = "x".into(), |_| {}, "alpha"),
            vec!["lora_alpha", "not a number"],
        ),
        // An adapter whose values are not finite (a diverged run) is refused, naming the
        // tensor and counting NaN and infinities (issue 20).
        (
            load_error(
                |_| {},
                |t| {
                    let q = t.iter_mut().find(|t| t.name == q0).unwrap();
                    let n = q.data.len() / 4;
                    let bad: Vec<f32> = (0..n)
                        .map(|i| if i % 2 == 0 { f32::NAN } else { f32::INFINITY })
                        .collect();
                    *q = OutTensor::float(q.name.clone(), q.shape.clone(), FloatDtype::F32, &bad);
                },
                "non_finite",
            ),
            vec![
                "layers.0.self_attn.q_proj.lora_A.weight",
                "in adapter_model.safetensors",
                "NaN, ",
                "+inf",
            ],
        ),
    ];
    for (i, (err, needles)) in cases.iter().enumerate() {
        for n in needles {
            assert!(err.contains(n), "case {i}: `{err}` lacks `{n}`");
        }
    }
    let device = Device::ndarray();
    let base = load_qwen2(&fixture("qwen2-tied"), &device).unwrap();
    let err = base
        .clone()
        .with_lora_adapter(Path::new("/nonexistent/adapter"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/adapter/adapter_config.json"),
        "{err}"
    );
    let err = save_lora_adapter(&base, &scratch("none"), "x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no LoRA adapters"), "{err}");
    // Saved from a model folder, an adapter carries the folder's tokenizer; saved from the
    // built-in model's unpacked folder, it names the base `builtin:tiny`.
    let model = base.clone().with_lora(&LoraConfig::default()).unwrap();
    let dir = scratch("with_tokenizer");
    save_lora_adapter(&model, &dir, fixture("qwen2-tied").to_str().unwrap()).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        assert!(dir.join(f).is_file(), "{f} not copied");
    }
    let tiny = aqn_core::checkpoint::builtin::materialize_tiny().unwrap();
    let dir = scratch("builtin_identity");
    save_lora_adapter(&model, &dir, tiny.to_str().unwrap()).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "builtin:tiny");
    let twice = base.with_lora(&LoraConfig::default()).unwrap();
    let err = twice
        .with_lora(&LoraConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already has a LoRA adapter"), "{err}");
}

#[test]
fn peft_files_for_the_python_check() {
    let device = Device::ndarray();
    let root = std::env::var_os("AQN_PEFT_CHECK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("peft_check"));
    for name in ["qwen2-untied", "qwen2-tied"] {
        let config = LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
            ..LoraConfig::default()
        };
        let model = randomize_adapters(
            load_qwen2(&fixture(name), &device)
                .unwrap()
                .with_lora(&config)
                .unwrap(),
            7,
        );
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        save_lora_adapter(&model, &dir, &fixture(name).display().to_string()).unwrap();
        let ps = prompts(name);
        let mut tensors = Vec::new();
        for (p, ids) in ps.iter().enumerate() {
            let l = logits_of(&model, ids, &device);
            let [_, len, vocab] = l.dims();
            tensors.push(OutTensor::float(
                format!("logits.{p}"),
                vec![len, vocab],
                FloatDtype::F32,
                &values(l),
            ));
        }
        std::fs::write(
            dir.join("aqn_logits.safetensors"),
            serialize(&tensors, None).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("aqn_prompts.json"),
            serde_json::to_string(&ps).unwrap(),
        )
        .unwrap();
        // The adapter really changes the logits (a check against zero adapters would pass
        // vacuously).
        let plain = load_qwen2(&fixture(name), &device).unwrap();
        assert_ne!(
            all_logits(&plain, name, &device),
            all_logits(&model, name, &device)
        );
    }
}

/// The parity contract of the model (tests/qwen2_parity.rs): f32 logits within 1e-4 of
/// transformers'.
const PEFT_LOGITS_TOLERANCE: f32 = 1e-4;

#[test]
fn an_adapter_saved_by_peft_loads_and_matches_peft_logits() {
    // tests/fixtures/peft_adapter: made and saved by PEFT itself (peft_check.py make-fixture),
    // with every field of PEFT 0.21's config, random A and B on q_proj and v_proj.
    let device = Device::ndarray();
    let dir = fixture("peft_adapter");
    let model = load_qwen2(&fixture("qwen2-untied"), &device)
        .unwrap()
        .with_lora_adapter(&dir)
        .unwrap();
    let config = model.lora_config().unwrap().unwrap();
    assert_eq!((config.rank, config.alpha), (4, 8.0));
    assert_eq!(config.targets, vec![LinearKind::QProj, LinearKind::VProj]);
    let prompts: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("peft_prompts.json")).unwrap())
            .unwrap();
    let bytes = read_bytes(&dir.join("peft_logits.safetensors")).unwrap();
    let want = TensorFile::parse(&bytes, "peft_logits.safetensors").unwrap();
    let plain = load_qwen2(&fixture("qwen2-untied"), &device).unwrap();
    for (p, ids) in prompts.iter().enumerate() {
        let got = values(logits_of(&model, ids, &device));
        let want = want.read(&format!("logits.{p}")).unwrap().data;
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            d < PEFT_LOGITS_TOLERANCE,
            "prompt {p}: logits differ from PEFT's by {d}"
        );
        // The adapter matters: without it the logits are far from PEFT's.
        let base = values(logits_of(&plain, ids, &device));
        let effect = base
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            effect > 100.0 * PEFT_LOGITS_TOLERANCE,
            "prompt {p}: adapter effect {effect}"
        );
    }
}
