//! Bad inputs of issue 20 ("Trust") outside the trainer, end to end through `aqn-native`: each is
//! refused with an error naming the culprit (tensor, file, key, line, flag, limit) or flagged in
//! the report, never accepted silently, and never a panic.
//!
//! Classes: non-finite numbers in the tools; sizes checked before allocating; user files never
//! lost; errors that say what is wrong; `serve`'s limits; the new-user trial. Every `check`,
//! `refused` and `accepted` call below is one case (67 in all).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aqn_core::srdd::{LayerMetrics, SrddLayer, SrddReport, SrddThresholds};
use aqn_core::tensor_file::{FloatDtype, OutTensor, TensorFile, serialize};
use aqn_core::train::{RunSummary, TrainConfig};

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A case that must fail: the error names every needle, and nothing panicked.
fn refused(case: &str, args: &[&str], needles: &[&str]) -> String {
    let o = aqn(args);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{case}: {args:?} was accepted\n{err}");
    assert!(!err.contains("panicked"), "{case}: panic\n{err}");
    for n in needles {
        assert!(err.contains(n), "{case}: the error lacks `{n}`:\n{err}");
    }
    err
}

/// A case that must succeed; returns (stdout, stderr).
fn accepted(case: &str, args: &[&str]) -> (String, String) {
    let o = aqn(args);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{case}: {args:?} failed\n{err}");
    (out, err)
}

/// A case checked by hand (a flag in a report, a file left intact).
fn check(case: &str, ok: bool, detail: &str) {
    assert!(ok, "{case}: {detail}");
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if path.is_dir() {
        std::fs::remove_dir_all(&path).unwrap();
    } else {
        let _ = std::fs::remove_file(&path);
    }
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A safetensors file with one [48, 64] f32 tensor `w` (and a small `b`) whose values are `f(i)`.
fn tensor_file(name: &str, f: impl Fn(usize) -> f32) -> PathBuf {
    let path = tmp(name);
    let w: Vec<f32> = (0..48 * 64).map(f).collect();
    let bytes = serialize(
        &[
            OutTensor::float("w", vec![48, 64], FloatDtype::F32, &w),
            OutTensor::float("b", vec![64], FloatDtype::F32, &[0.5; 64]),
        ],
        None,
    )
    .unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn normal(i: usize) -> f32 {
    (aqn_core::rng::normal_f64(7, i as u64) * 0.02) as f32
}

/// A copy of an HF model folder (`from`, relative to the repository) with `tensor` poisoned by
/// `poison` (its values are replaced where `poison` returns `Some`).
fn poisoned_model(
    name: &str,
    from: &str,
    tensor: &str,
    poison: fn(usize) -> Option<f32>,
) -> PathBuf {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(root().join(from)).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("expected") && e.path().is_file() {
            std::fs::copy(e.path(), dir.join(&n)).unwrap();
        }
    }
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = TensorFile::parse(&bytes, "m").unwrap();
    let out: Vec<OutTensor> = file
        .names()
        .iter()
        .map(|n| {
            let mut t = file.read(n).unwrap();
            if n == tensor {
                for (i, v) in t.data.iter_mut().enumerate() {
                    if let Some(p) = poison(i) {
                        *v = p;
                    }
                }
            }
            OutTensor::float(n.clone(), t.shape, t.dtype, &t.data)
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        serialize(&out, None).unwrap(),
    )
    .unwrap();
    dir
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Non-finite numbers in the tools.

#[test]
fn quant_error_reports_non_finite_tensors() {
    let all_nan = tensor_file("all_nan.safetensors", |_| f32::NAN);
    let err = refused(
        "quant-error all-NaN",
        &["quant-error", "--input", s(&all_nan), "--format", "mxfp4"],
        &[
            "`w` holds 3072 NaN of 3072 values (no finite pair of x and q(x): no metrics)",
            "--allow-non-finite",
        ],
    );
    check(
        "quant-error all-NaN names only w",
        !err.contains("`b`"),
        &err,
    );
    let o = aqn(&["quant-error", "--input", s(&all_nan), "--format", "mxfp4"]);
    let table = text(&o.stdout);
    let row = table.lines().find(|l| l.starts_with("w ")).unwrap_or("");
    check(
        "quant-error all-NaN shows no number",
        row.contains("n/a")
            && !row.contains("inf")
            && !row.contains("0.0000")
            && row.contains("3072 NaN"),
        &table,
    );

    let all_inf = tensor_file("all_inf.safetensors", |i| {
        if i % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        }
    });
    refused(
        "quant-error all-inf",
        &["quant-error", "--input", s(&all_inf), "--format", "nvfp4"],
        &["`w` holds 1536 +inf, 1536 -inf of 3072 values"],
    );

    let partly = tensor_file("partly.safetensors", |i| match i {
        5 | 77 | 900 => f32::NAN,
        1000 => f32::NEG_INFINITY,
        _ => normal(i),
    });
    refused(
        "quant-error partly non-finite",
        &["quant-error", "--input", s(&partly), "--format", "mxfp4"],
        &["`w` holds 3 NaN, 1 -inf of 3072 values (left out of its metrics)"],
    );

    let (out, _) = accepted(
        "quant-error --allow-non-finite --json",
        &[
            "quant-error",
            "--input",
            s(&all_nan),
            "--format",
            "mxfp4",
            "--json",
            "--allow-non-finite",
        ],
    );
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let w = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tensor"] == "w")
        .unwrap();
    check(
        "quant-error JSON counts and omits the metrics",
        w["input_non_finite"]["nan"] == 3072
            && w.get("sqnr_db").is_none()
            && w.get("mean_relative_error").is_none(),
        &w.to_string(),
    );
}

#[test]
fn quantize_refuses_non_finite_input() {
    let partly = tensor_file("q_partly.safetensors", |i| {
        if i == 9 { f32::NAN } else { normal(i) }
    });
    let out = tmp("q_partly_out.safetensors");
    refused(
        "quantize NaN input",
        &[
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            s(&partly),
            "--output",
            s(&out),
        ],
        &["tensor `w`", "1 NaN", "--allow-non-finite"],
    );
    check(
        "quantize NaN input wrote nothing",
        !out.exists(),
        "an output exists",
    );
    accepted(
        "quantize --allow-non-finite",
        &[
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            s(&partly),
            "--output",
            s(&out),
            "--allow-non-finite",
        ],
    );
}

#[test]
fn srdd_and_eval_refuse_non_finite_models() {
    let nan = poisoned_model(
        "nan_model",
        "tests/fixtures/qwen2-tied",
        "model.layers.1.mlp.down_proj.weight",
        |i| (i == 3).then_some(f32::NAN),
    );
    let err = refused(
        "srdd on a model with one NaN weight",
        &["srdd", "--model", s(&nan), "--format", "mxfp4"],
        &["model.layers.1.mlp.down_proj.weight", "1 NaN"],
    );
    check(
        "srdd NaN model is not 'appears safe'",
        !err.contains("appears safe"),
        &err,
    );
    refused(
        "srdd --what weights on a NaN model",
        &[
            "srdd",
            "--model",
            s(&nan),
            "--format",
            "nvfp4",
            "--what",
            "weights",
        ],
        &["model.layers.1.mlp.down_proj.weight", "NaN"],
    );
    let inf = poisoned_model(
        "inf_model",
        "tests/fixtures/qwen2-tied",
        "model.norm.weight",
        |i| (i < 2).then_some(f32::INFINITY),
    );
    refused(
        "srdd on a model with +inf weights",
        &["srdd", "--model", s(&inf), "--format", "fp8"],
        &["model.norm.weight", "2 +inf"],
    );
    let all_nan = poisoned_model(
        "all_nan_tiny",
        "assets/tiny",
        "model.embed_tokens.weight",
        |_| Some(f32::NAN),
    );
    let err = refused(
        "eval of an all-NaN model",
        &["eval", s(&all_nan), "--problems", "4"],
        &["model.embed_tokens.weight", "NaN"],
    );
    check(
        "eval of a NaN model reports no accuracy",
        !err.contains("accuracy"),
        &err,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Sizes checked before allocating.

#[test]
fn sizes_are_checked_before_allocating() {
    refused(
        "schedule of 1e10 steps",
        &[
            "schedule",
            "--kind",
            "linear",
            "--steps",
            "10000000000",
            "--json",
        ],
        &["10000000000", "limit of 1000000 steps"],
    );
    refused(
        "schedule of 1000 x 10000 steps",
        &[
            "schedule",
            "--epochs",
            "1000",
            "--steps-per-epoch",
            "10000",
            "--csv",
        ],
        &["10000000", "limit of 1000000 steps"],
    );
    accepted(
        "schedule at the limit",
        &["schedule", "--kind", "constant", "--steps", "1000", "--csv"],
    );
    // 64 layers x 1e6 steps of per-layer sigmas.
    let layers: Vec<SrddLayer> = (0..64)
        .map(|l| {
            let m = LayerMetrics {
                sqnr_db: 18.0,
                deadzone_ratio: 0.05,
                saturation_ratio: 0.001,
                relative_error: 0.2 + 0.001 * l as f64,
                mean_abs_error: 0.01,
                max_abs_error: 0.1,
                output_norm: 10.0,
            };
            SrddLayer::new(l, m, &SrddThresholds::FP4)
        })
        .collect();
    let report = SrddReport::from_layers("m", "mxfp4", SrddThresholds::FP4, layers, "t").unwrap();
    let path = tmp("srdd64.json");
    std::fs::write(&path, report.to_json()).unwrap();
    refused(
        "schedule --srdd of 64 layers x 1e6 steps",
        &[
            "schedule",
            "--steps",
            "1000000",
            "--srdd",
            s(&path),
            "--rin",
            "variable",
            "--csv",
        ],
        &["1000000 x 64", "limit of 50000000 per-layer values"],
    );
    refused(
        "quant-error --elements 2^34",
        &["quant-error", "--elements", "17179869184"],
        &["--elements = 17179869184", "limit of 268435456 elements"],
    );
    refused(
        "quant-error --elements 0",
        &["quant-error", "--elements", "0"],
        &["--elements 0"],
    );

    let config = tmp("huge_config.json");
    std::fs::copy(root().join("assets/tiny/config.json"), &config).unwrap();
    edit_json(&config, |v| v["vocab_size"] = 1_000_000_000_000u64.into());
    let out = tmp("huge_model");
    refused(
        "random-model with a 1e12-token vocabulary",
        &["random-model", "--config", s(&config), "--out", s(&out)],
        &[
            "tensor `model.embed_tokens.weight` [1000000000000, 128]",
            "more than this machine has",
        ],
    );
    check(
        "random-model wrote nothing",
        !out.exists(),
        "the output folder exists",
    );
    edit_json(&config, |v| {
        v["vocab_size"] = (1u64 << 40).into();
        v["hidden_size"] = (1u64 << 40).into();
        v["num_attention_heads"] = 1.into();
        v["num_key_value_heads"] = 1.into();
    });
    refused(
        "random-model with a 2^80-element embedding",
        &["random-model", "--config", s(&config), "--out", s(&out)],
        &["tensor `", "(from", "huge_config.json"],
    );

    let prompts = tmp("many_prompts.txt");
    std::fs::write(&prompts, "What is 1 + 1?\n".repeat(10_001)).unwrap();
    let model = root().join("tests/fixtures/qwen2-tied");
    refused(
        "srdd with 10001 prompts",
        &[
            "srdd",
            "--model",
            s(&model),
            "--format",
            "mxfp4",
            "--prompts",
            s(&prompts),
        ],
        &["many_prompts.txt", "10001 prompts", "limit of 10000"],
    );
    let big = tmp("big_prompts.txt");
    std::fs::write(&big, vec![b'a'; (16 << 20) + 1]).unwrap();
    refused(
        "srdd with a 16 MiB prompt file",
        &[
            "srdd",
            "--model",
            s(&model),
            "--format",
            "mxfp4",
            "--prompts",
            s(&big),
        ],
        &[
            "big_prompts.txt",
            "16777217 bytes",
            "limit of 16777216 bytes",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. User files are never lost.

#[test]
fn quantize_never_overwrites_its_input_or_foreign_files() {
    let input = tensor_file("keep_in.safetensors", normal);
    let before = std::fs::read(&input).unwrap();
    refused(
        "quantize --output = --input",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&input),
        ],
        &["is the same file as --input", "keep_in.safetensors"],
    );
    let hard = tmp("keep_in_hardlink.safetensors");
    std::fs::hard_link(&input, &hard).unwrap();
    refused(
        "quantize --output is a hard link to --input",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&hard),
        ],
        &["is the same file as --input"],
    );
    let sym = tmp("keep_in_symlink.safetensors");
    std::os::unix::fs::symlink(&input, &sym).unwrap();
    refused(
        "quantize --output is a symlink to --input",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&sym),
        ],
        &["is the same file as --input"],
    );
    check(
        "the input survived",
        std::fs::read(&input).unwrap() == before,
        "input changed",
    );

    let foreign = tmp("user_file.safetensors");
    std::fs::write(&foreign, b"the user's own notes").unwrap();
    refused(
        "quantize over a file aqn did not write",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&foreign),
        ],
        &[
            "user_file.safetensors already exists and was not written by aqn-native",
            "--overwrite",
        ],
    );
    check(
        "the foreign file survived",
        std::fs::read(&foreign).unwrap() == b"the user's own notes",
        "changed",
    );
    accepted(
        "quantize --overwrite replaces it",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&foreign),
            "--overwrite",
        ],
    );
    accepted(
        "quantize over its own earlier output",
        &[
            "quantize",
            "--format",
            "nvfp4",
            "--input",
            s(&input),
            "--output",
            s(&foreign),
        ],
    );
    let missing = tmp("no_such_dir").join("out.safetensors");
    refused(
        "quantize into a missing folder",
        &[
            "quantize",
            "--format",
            "fp8",
            "--input",
            s(&input),
            "--output",
            s(&missing),
        ],
        &["no_such_dir/out.safetensors"],
    );
    let leftovers: Vec<String> = std::fs::read_dir(input.parent().unwrap())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("aqn-tmp") && (n.contains("keep_in") || n.contains("user_file")))
        .collect();
    check(
        "no temporary file is left",
        leftovers.is_empty(),
        &format!("{leftovers:?}"),
    );
}

#[test]
fn charts_and_reports_never_replace_foreign_files() {
    let svg = tmp("user_drawing.svg");
    std::fs::write(&svg, "<svg>mine</svg>").unwrap();
    refused(
        "schedule --plot over a foreign SVG",
        &["schedule", "--preset", "e5b", "--plot", s(&svg)],
        &[
            "--plot",
            "user_drawing.svg already exists and was not written by aqn-native",
        ],
    );
    check(
        "the SVG survived",
        std::fs::read_to_string(&svg).unwrap() == "<svg>mine</svg>",
        "changed",
    );
    let (_, err) = accepted(
        "schedule --plot --overwrite",
        &[
            "schedule",
            "--preset",
            "e5b",
            "--plot",
            s(&svg),
            "--overwrite",
        ],
    );
    check(
        "schedule --plot says where the chart went",
        err.contains(&format!("wrote the chart to {}", svg.display())),
        &err,
    );
    let model = root().join("tests/fixtures/qwen2-tied");
    let report = tmp("user_report.json");
    std::fs::write(&report, "{\"mine\": true}").unwrap();
    refused(
        "srdd --output over a foreign JSON file",
        &[
            "srdd",
            "--model",
            s(&model),
            "--format",
            "mxfp4",
            "--output",
            s(&report),
        ],
        &["--output", "user_report.json already exists"],
    );
    refused(
        "srdd --plot over a foreign SVG",
        &[
            "srdd",
            "--model",
            s(&model),
            "--format",
            "mxfp4",
            "--plot",
            s(&tmp_with("user.svg", "<svg/>")),
        ],
        &["--plot", "user.svg already exists"],
    );

    // report: a foreign REPORT.md is kept.
    let runs = tmp("runs_foreign");
    write_summary(&runs.join("a"), "e5", 10, 0.4, 1);
    std::fs::write(runs.join("REPORT.md"), "my notes").unwrap();
    refused(
        "report over a foreign REPORT.md",
        &["report", s(&runs)],
        &["REPORT.md already exists and was not written by aqn-native"],
    );
    check(
        "REPORT.md survived",
        std::fs::read_to_string(runs.join("REPORT.md")).unwrap() == "my notes",
        "changed",
    );
}

fn tmp_with(name: &str, content: &str) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn random_model_keeps_foreign_files() {
    let config = tmp("rm_config.json");
    std::fs::copy(root().join("assets/tiny/config.json"), &config).unwrap();
    let out = tmp("rm_out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.json"), "{\"mine\": 1}").unwrap();
    refused(
        "random-model over a foreign config.json",
        &["random-model", "--config", s(&config), "--out", s(&out)],
        &["config.json already exists", "--overwrite"],
    );
    check(
        "the foreign config.json survived",
        std::fs::read_to_string(out.join("config.json")).unwrap() == "{\"mine\": 1}",
        "changed",
    );
    std::fs::remove_file(out.join("config.json")).unwrap();
    accepted(
        "random-model into an empty folder",
        &["random-model", "--config", s(&config), "--out", s(&out)],
    );
    accepted(
        "random-model over its own earlier output",
        &[
            "random-model",
            "--config",
            s(&config),
            "--out",
            s(&out),
            "--seed",
            "3",
        ],
    );
    refused(
        "random-model --config is the file it would write",
        &[
            "random-model",
            "--config",
            s(&out.join("config.json")),
            "--out",
            s(&out),
        ],
        &["would be copied onto itself"],
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Errors that say what is wrong.

#[test]
fn config_file_errors_name_file_key_and_line() {
    let cfg = tmp_with(
        "run.toml",
        "[trainer]\nseed = 3\n\n[rollout]\nn = \"eight\"\n",
    );
    refused(
        "--config with rollout.n = \"eight\"",
        &["train", "--config", s(&cfg), "--print-config"],
        &[
            "run.toml line 5, column 5: rollout.n = \"eight\"",
            "expected usize",
        ],
    );
    let cfg = tmp_with("typo.toml", "[rollout]\nnn = 8\n");
    refused(
        "--config with an unknown key",
        &["train", "--config", s(&cfg), "--print-config"],
        &[
            "typo.toml line 2, column 6: rollout.nn = 8",
            "unknown field `nn`",
        ],
    );
    let cfg = tmp_with("syntax.toml", "[rollout]\nn = = 8\n");
    refused(
        "--config that is not TOML",
        &["train", "--config", s(&cfg), "--print-config"],
        &["syntax.toml", "line 2"],
    );
    let cfg = tmp_with("zero.toml", "[rollout]\nn = 0\n");
    refused(
        "--config with an out-of-range value",
        &["train", "--config", s(&cfg), "--print-config"],
        &["rollout.n", "zero.toml line 2, column 5"],
    );
}

#[test]
fn model_and_data_errors_name_field_and_file() {
    let model = tmp("no_layers");
    std::fs::create_dir_all(&model).unwrap();
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(root().join("assets/tiny").join(f), model.join(f)).unwrap();
    }
    edit_json(&model.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let named = ["no_layers/config.json has no `num_hidden_layers`"];
    refused(
        "eval: config.json without num_hidden_layers",
        &["eval", s(&model)],
        &named,
    );
    refused(
        "srdd: config.json without num_hidden_layers",
        &["srdd", "--model", s(&model), "--format", "mxfp4"],
        &named,
    );
    refused(
        "random-model: config.json without num_hidden_layers",
        &[
            "random-model",
            "--config",
            s(&model.join("config.json")),
            "--out",
            s(&tmp("rm_x")),
        ],
        &named,
    );
    edit_json(&model.join("config.json"), |v| {
        v["num_hidden_layers"] = 4.into();
        v["hidden_size"] = "big".into();
    });
    refused(
        "eval: config.json with a string size",
        &["eval", s(&model)],
        &["`hidden_size` = \"big\"", "usize"],
    );
    std::fs::write(model.join("config.json"), "4").unwrap();
    refused(
        "eval: config.json that is a number",
        &["eval", s(&model)],
        &["config.json", "not a JSON object"],
    );
    std::fs::copy(
        root().join("assets/tiny/config.json"),
        model.join("config.json"),
    )
    .unwrap();
    edit_json(&model.join("generation_config.json"), |v| {
        v["eos_token_id"] = "end".into()
    });
    refused(
        "eval: generation_config.json with a string eos_token_id",
        &["eval", s(&model)],
        &["generation_config.json", "`eos_token_id` = \"end\""],
    );
    std::fs::copy(
        root().join("assets/tiny/generation_config.json"),
        model.join("generation_config.json"),
    )
    .unwrap();

    refused(
        "eval --problems above the test set",
        &["eval", s(&model), "--problems", "100000"],
        &[
            "--problems 100000 is above the",
            "problems of the test set (synthetic)",
        ],
    );

    let empty = tmp_with("empty_test.jsonl", "");
    let set = format!("data.test={}", s(&empty));
    refused(
        "eval on an empty data file",
        &["eval", s(&model), "--set", &set],
        &["empty_test.jsonl holds no problems (0 bytes)"],
    );
    let blank = tmp_with("blank_test.jsonl", "\n\n\n");
    let set = format!("data.test={}", s(&blank));
    refused(
        "eval on a data file of blank lines",
        &["eval", s(&model), "--set", &set],
        &["blank_test.jsonl holds no problems (3 blank lines)"],
    );
}

// ---------------------------------------------------------------------------------------------
// 5. serve's limits.

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(extra: &[&str]) -> Server {
    let www = tmp("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<html>aqn</html>").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(["serve", "--port", "0", "--dir", s(&www)])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();
    Server(child, addr)
}

fn http(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    text(&out)
}

#[test]
fn serve_refuses_oversized_slow_and_excess_requests() {
    let server = start_server(&["--request-timeout", "1", "--max-connections", "3"]);
    let a = server.1.as_str();
    let r = http(a, b"GET / HTTP/1.1\r\n\r\n");
    check(
        "serve answers a normal request",
        r.starts_with("HTTP/1.1 200 OK") && r.ends_with("<html>aqn</html>"),
        &r,
    );
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(64 << 10));
    let r = http(a, long.as_bytes());
    check(
        "serve: a 64 KiB request line gets 414",
        r.starts_with("HTTP/1.1 414"),
        &r,
    );
    let headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-Pad: 0123456789\r\n".repeat(4000)
    );
    let r = http(a, headers.as_bytes());
    check(
        "serve: 80 KB of headers get 431",
        r.starts_with("HTTP/1.1 431"),
        &r,
    );
    let r = http(a, b"GET / HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n");
    check(
        "serve: a request body gets 413",
        r.starts_with("HTTP/1.1 413"),
        &r,
    );
    let r = http(a, b"GET / HTTP/1.1\r\nHost: x\r\n");
    check(
        "serve: a half-sent request gets 408",
        r.starts_with("HTTP/1.1 408"),
        &r,
    );
    drop(server);
    // A second server whose request timeout cannot expire during the check: three half-sent
    // requests hold every slot, so the fourth connection is refused at once. (With a 1-second
    // timeout a loaded machine could let a held request time out first and free its slot.)
    let server = start_server(&["--request-timeout", "120", "--max-connections", "3"]);
    let a = server.1.as_str();
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = http(a, b"GET / HTTP/1.1\r\n\r\n");
    check(
        "serve: connections beyond --max-connections get 503",
        r.starts_with("HTTP/1.1 503"),
        &r,
    );
    drop(held);
    // The held connections' threads end when their clients hang up; poll rather than guess how
    // long that takes on a loaded machine.
    let mut r = String::new();
    for _ in 0..100 {
        r = http(a, b"GET / HTTP/1.1\r\n\r\n");
        if !r.starts_with("HTTP/1.1 503") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check(
        "serve: the slots come back",
        r.starts_with("HTTP/1.1 200 OK"),
        &r,
    );
    refused(
        "serve --max-connections 0",
        &["serve", "--max-connections", "0"],
        &["--max-connections 0"],
    );
    refused(
        "serve --request-timeout 0",
        &["serve", "--request-timeout", "0"],
        &["--request-timeout 0"],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The new-user trial.

#[test]
fn resume_refuses_what_it_ignores() {
    let run = tmp("resume_run");
    for flag in [
        vec!["--preset", "default"],
        vec!["--profile", "tiny"],
        vec!["--seed", "3"],
        vec!["--set", "rollout.n=4"],
    ] {
        let mut args = vec!["train", "--resume", s(&run)];
        args.extend(&flag);
        refused(
            &format!("--resume with {}", flag[0]),
            &args,
            &["--resume", flag[0], "cannot be used with"],
        );
    }
    let (out, _) = accepted("train --help", &["train", "--help"]);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    check(
        "--resume's help says what it accepts",
        out.contains("only --steps") && out.contains("refused"),
        &out,
    );
}

#[test]
fn srdd_defaults_suit_fp4_and_name_only_aqn_formats() {
    let tiny = root().join("assets/tiny");
    for format in ["mxfp4", "nvfp4"] {
        let (out, _) = accepted(
            "srdd on the tiny model",
            &["srdd", "--model", s(&tiny), "--format", format],
        );
        check(
            &format!("srdd {format}: the tiny model's layers pass the FP4 defaults"),
            out.contains("problematic layers: 0 of 4") && !out.contains("MXFP8"),
            &out,
        );
    }
    let (out, _) = accepted(
        "srdd with the scanner's thresholds",
        &[
            "srdd",
            "--model",
            s(&tiny),
            "--format",
            "mxfp4",
            "--sqnr-threshold",
            "20",
            "--deadzone-threshold",
            "0.05",
            "--rel-error-threshold",
            "0.1",
        ],
    );
    check(
        "srdd recommends only formats aqn offers",
        out.contains("reconsider_quantization")
            && out.contains("fp8 or bf16")
            && !out.contains("MXFP8"),
        &out,
    );
}

#[test]
fn quantize_defaults_match_train() {
    let input = tmp("head_embed.safetensors");
    let w: Vec<f32> = (0..48 * 64).map(normal).collect();
    let bytes = serialize(
        &[
            OutTensor::float(
                "model.embed_tokens.weight",
                vec![48, 64],
                FloatDtype::F32,
                &w,
            ),
            OutTensor::float(
                "model.layers.0.mlp.up_proj.weight",
                vec![48, 64],
                FloatDtype::F32,
                &w,
            ),
            OutTensor::float("lm_head.weight", vec![48, 64], FloatDtype::F32, &w),
        ],
        None,
    )
    .unwrap();
    std::fs::write(&input, bytes).unwrap();
    let out = tmp("head_embed_q.safetensors");
    let (_, err) = accepted(
        "quantize (default)",
        &[
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            s(&input),
            "--output",
            s(&out),
        ],
    );
    let q = std::fs::read(&out).unwrap();
    let f = TensorFile::parse(&q, "q").unwrap();
    check(
        "quantize keeps lm_head and embed_tokens by default",
        f.read("lm_head.weight").unwrap().data == w
            && f.read("model.embed_tokens.weight").unwrap().data == w
            && f.read("model.layers.0.mlp.up_proj.weight").unwrap().data != w
            && err.contains("1 tensors quantized"),
        &err,
    );
    let (_, err) = accepted(
        "quantize --with-head-and-embedding",
        &[
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--with-head-and-embedding",
        ],
    );
    check(
        "--with-head-and-embedding quantizes them",
        err.contains("3 tensors quantized"),
        &err,
    );
}

/// A finished run's summary.json of `exp` with `steps` steps and `score`.
fn write_summary(dir: &Path, exp: &str, steps: u64, score: f64, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut summary = RunSummary::new(
        &TrainConfig::default(),
        &[(0, 0.2), (steps, score)],
        steps,
        1.0,
        "x",
    );
    summary.exp_id = exp.into();
    summary.seed = seed;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string(&summary).unwrap(),
    )
    .unwrap();
}

#[test]
fn report_compares_runs_of_one_length_only() {
    let runs = tmp("runs_lengths");
    write_summary(&runs.join("a"), "e5", 10, 0.40, 1);
    write_summary(&runs.join("b"), "e6", 10, 0.45, 1);
    write_summary(&runs.join("c"), "e7", 40, 0.60, 1);
    write_summary(&runs.join("d1"), "e8", 10, 0.30, 1);
    write_summary(&runs.join("d2"), "e8", 40, 0.50, 2);
    accepted("report", &["report", s(&runs)]);
    let md = std::fs::read_to_string(runs.join("REPORT.md")).unwrap();
    let best = &md[md.find("## Best Results per Category").unwrap()
        ..md.find("## AQN Configuration").unwrap()];
    check(
        "report: one best row per run length",
        best.contains("| **LoRA** | 10 | e6 |") && best.contains("| **LoRA** | 40 | e7 |"),
        best,
    );
    check(
        "report: mixed lengths are flagged, not ranked with the others",
        best.contains("| **LoRA** | mixed (10, 40) | e8 |") && md.contains("mixed (10, 40) steps"),
        &md,
    );
}
