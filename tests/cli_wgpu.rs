//! Every computing command of `aqn-native` with `--backend wgpu` (Mesa lavapipe in CI,
//! `mesa-vulkan-drivers`), end to end: a few GRPO/DAPO training steps of the default preset
//! (NVFP4 W4A16 + LoRA + AQN: the fused kernels and their straight-through node inside the
//! trainer), a few pretraining steps, an SRDD scan that agrees with the CPU backend's, and the
//! benchmark at smoke sizes (its JSON as scripts/gpu_bench.sh reads it), and `quant-error` /
//! `quantize` equal to the CPU's output. The device is pinned to Vulkan: a machine without a
//! Vulkan adapter fails these tests; they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aqn_core::srdd::SrddReport;

/// SRDD metrics of the same scan on the two backends: the layer outputs agree to float noise
/// (the logits contract of tests/wgpu_model.rs is 1e-4 absolute), so the averaged error metrics
/// agree far closer than any threshold they are compared with; an element that rounds to the
/// other side of an FP4 boundary moves a metric by about 1/elements.
const SRDD_METRIC_TOLERANCE: f64 = 1e-3;

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn ok(what: &str, o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{what} failed:\n{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `args`, which must fail with an error that contains every one of `texts`.
fn refused(args: &[&str], texts: &[&str]) {
    let o = aqn(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    for text in texts {
        assert!(err.contains(text), "{args:?}: no `{text}` in:\n{err}");
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_wgpu");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if path.is_dir() {
        std::fs::remove_dir_all(&path).unwrap();
    }
    path
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_steps_on_wgpu() {
    let run = tmp("train");
    let o = aqn(&[
        "train",
        "--backend",
        "wgpu",
        "--wgpu-api",
        "vulkan",
        "--steps",
        "2",
        "--run-dir",
        run.to_str().unwrap(),
        // Small batches: lavapipe runs the GPU kernels on the CPU.
        "--set",
        "batch.train_batch_size=2",
        "--set",
        "batch.gen_batch_size=2",
        "--set",
        "batch.ppo_mini_batch_size=2",
        "--set",
        "rollout.n=4",
        "--set",
        "eval.problems=4",
        "--set",
        "eval.batch_size=4",
        // Groups of identical rewards would be filtered and regenerated; keep every batch.
        "--set",
        "algorithm.filter_groups.enable=false",
        // A 4-step epoch: the AQN schedule (K = 10 stages with a warm-up stage of zero noise)
        // is past its warm-up at step 1, so the steps add noise.
        "--set",
        "data.synthetic.train_size=8",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "train --backend wgpu failed:\n{err}");
    // The adapter a run got is named, with its graphics API (pinned: Vulkan, lavapipe in CI).
    assert!(
        err.contains("backend  wgpu: ") && err.contains(" on vulkan"),
        "{err}"
    );
    let lines = read_jsonl(&run.join("metrics.jsonl"));
    let steps: Vec<u64> = lines.iter().filter_map(|l| l["step"].as_u64()).collect();
    assert!(
        steps.contains(&1) && steps.contains(&2),
        "metrics.jsonl steps {steps:?}"
    );
    for line in &lines {
        for (key, v) in line.as_object().unwrap() {
            if let Some(x) = v.as_f64() {
                assert!(x.is_finite(), "{key} = {x} in {line}");
            }
        }
    }
    // The steps learned something (a mixed-reward group gives a policy gradient; the pretrained
    // tiny model solves some problems and fails others) and AQN was applied on the GPU.
    let metric = |key: &str| -> Vec<f64> { lines.iter().filter_map(|l| l[key].as_f64()).collect() };
    let grad_norms = metric("actor/grad_norm");
    assert!(
        grad_norms.iter().any(|&g| g > 0.0),
        "no step had a gradient: {grad_norms:?}"
    );
    let sigmas = metric("aqn/sigma");
    assert!(
        sigmas.len() == 2 && sigmas.iter().all(|&s| s > 0.0),
        "{sigmas:?}"
    );
    let audit = read_jsonl(&run.join("noise_audit.jsonl"));
    assert_eq!(audit.len(), 2);
    for line in &audit {
        for target in line["targets"].as_array().unwrap() {
            let (sigma, realized) = (
                target["sigma"].as_f64().unwrap(),
                target["realized_std"].as_f64().unwrap(),
            );
            // 128-element RMSNorm weights: the sample std is within ~30% of sigma.
            assert!(
                (realized / sigma - 1.0).abs() < 0.3,
                "{}: sigma {sigma}, realized {realized}",
                target["name"]
            );
        }
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 2, "{summary}");
}

#[test]
fn pretrain_steps_on_wgpu() {
    let out = tmp("pretrain");
    let o = aqn(&[
        "pretrain",
        "--backend",
        "wgpu",
        "--wgpu-api",
        "vulkan",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "hidden_size=32",
        "--set",
        "intermediate_size=64",
        "--set",
        "num_layers=1",
        "--set",
        "steps=3",
        "--set",
        "batch_size=4",
        "--set",
        "warmup_steps=1",
        "--set",
        "eval_every=3",
        "--set",
        "eval_problems=2",
        "--set",
        "max_new_tokens=4",
    ]);
    ok("pretrain --backend wgpu", &o);
    let log = read_jsonl(&out.join("pretrain_log.jsonl"));
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r["loss"].as_f64().unwrap().is_finite()));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
}

#[test]
fn srdd_on_wgpu_agrees_with_the_cpu() {
    let model = root().join("tests/fixtures/qwen2-untied");
    let mut reports = Vec::new();
    for backend in ["cpu", "wgpu"] {
        let path = tmp(&format!("srdd_{backend}.json"));
        let mut args = vec![
            "srdd",
            "--backend",
            backend,
            "--model",
            model.to_str().unwrap(),
            "--format",
            "nvfp4",
            "--output",
            path.to_str().unwrap(),
        ];
        if backend == "wgpu" {
            args.extend(["--wgpu-api", "vulkan"]);
        }
        let o = aqn(&args);
        ok(&format!("srdd --backend {backend}"), &o);
        reports.push(SrddReport::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap());
    }
    let (cpu, gpu) = (&reports[0].report.per_layer, &reports[1].report.per_layer);
    assert_eq!(cpu.len(), gpu.len());
    for (c, g) in cpu.iter().zip(gpu) {
        for (name, a, b) in [
            ("relative_error", c.relative_error, g.relative_error),
            ("deadzone_ratio", c.deadzone_ratio, g.deadzone_ratio),
            ("saturation_ratio", c.saturation_ratio, g.saturation_ratio),
        ] {
            assert!(
                (a - b).abs() < SRDD_METRIC_TOLERANCE,
                "layer {} {name}: cpu {a}, wgpu {b}",
                c.layer_id
            );
        }
        assert!(
            (c.sqnr_db - g.sqnr_db).abs() < 0.01,
            "layer {} sqnr_db: cpu {}, wgpu {}",
            c.layer_id,
            c.sqnr_db,
            g.sqnr_db
        );
    }
}

#[test]
fn bench_smoke_on_wgpu() {
    let json = tmp("bench.json");
    let o = aqn(&[
        "bench",
        "--backend",
        "wgpu",
        "--wgpu-api",
        "vulkan",
        "--elements",
        "16384",
        "--format",
        "mxfp4,nvfp4",
        "--model",
        root().join("assets/tiny").to_str().unwrap(),
        "--batch",
        "2",
        "--prompt-len",
        "4",
        "--new-tokens",
        "4",
        "--repeats",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    ok("bench --backend wgpu", &o);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["backend"], "wgpu");
    let quantize = report["quantize"].as_array().unwrap();
    assert_eq!(quantize.len(), 2, "{report}");
    for q in quantize {
        for key in ["gb_per_s", "copy_gb_per_s", "ratio_to_copy"] {
            let v = q[key].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
    }
    let model = &report["model"];
    for key in ["rollout", "grpo_step"] {
        let v = model[key]["tokens_per_s"].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{key} tokens/s = {v}");
    }
    assert_eq!(model["batch"], 2);
    assert_eq!(model["new_tokens"], 4);
}

#[test]
fn cpu_backend_refuses_the_quantize_bench() {
    refused(
        &["bench", "--backend", "cpu", "--elements", "4096"],
        &["--skip-quantize"],
    );
}

#[test]
fn graphics_api_flag_is_refused_where_it_cannot_apply() {
    let tiny = root().join("assets/tiny");
    let tiny = tiny.to_str().unwrap();
    refused(
        &[
            "eval",
            tiny,
            "--backend",
            "cpu",
            "--wgpu-api",
            "gl",
            "--problems",
            "1",
        ],
        &["--wgpu-api gl applies to --backend wgpu only"],
    );
    refused(
        &["eval", tiny, "--backend", "wgpu", "--wgpu-api", "opengl"],
        &["`opengl`", "auto, vulkan, metal, dx12, gl"],
    );
}

/// `quant-error` and `quantize` on the wgpu device give the CPU's numbers and bytes: the fused
/// kernels are bit-identical to the slice API, so the metrics JSON and the written checkpoint are
/// equal, not close.
#[test]
fn quant_error_and_quantize_on_wgpu_equal_the_cpu() {
    let formats = "mxfp4,mxfp4:rceil,nvfp4,nvfp4:single-level,nvfp4:tile16x16,mxfp4:sr=7,fp8,bf16";
    let mut outputs = Vec::new();
    for backend in [
        &["--backend", "cpu"][..],
        &["--backend", "wgpu", "--wgpu-api", "vulkan"],
    ] {
        let mut args = vec![
            "quant-error",
            "--elements",
            "65536",
            "--generate",
            "normal,laplace",
            "--format",
            formats,
            "--json",
        ];
        args.extend(backend);
        outputs.push(ok("quant-error", &aqn(&args)));
    }
    assert!(outputs[0].contains("\"mean_relative_error\""));
    assert_eq!(outputs[0], outputs[1], "quant-error: cpu vs wgpu");

    let model = root().join("tests/fixtures/qwen2-tied/model.safetensors");
    let mut files = Vec::new();
    for (name, backend) in [
        ("cpu", &["--backend", "cpu"][..]),
        ("wgpu", &["--backend", "wgpu", "--wgpu-api", "vulkan"]),
    ] {
        let out = tmp(&format!("quantized_{name}.safetensors"));
        let mut args = vec![
            "quantize",
            "--format",
            "nvfp4:tile16x16",
            "--input",
            model.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            // Blocks down the columns: the [outer, n, inner] path, not just rows.
            "--axis",
            "0",
        ];
        args.extend(backend);
        ok("quantize", &aqn(&args));
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(
        files[0] == files[1],
        "quantize: cpu and wgpu wrote different bytes"
    );

    refused(
        &[
            "quantize",
            "--format",
            "mxfp4",
            "--packed",
            "--input",
            model.to_str().unwrap(),
            "--output",
            tmp("packed.safetensors").to_str().unwrap(),
            "--backend",
            "wgpu",
        ],
        &["--packed encodes codes and scales on the CPU only"],
    );
}
