//! End-to-end tests of `aqn-native train`, `eval` and `report` on the built-in tiny model with a
//! few-second configuration: the run folder, the final evaluation at a step that is not a multiple
//! of `test_freq`, `--resume` after an interruption reproducing the uninterrupted run's metrics,
//! and refused configurations that name the bad key or value.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A run of a few seconds: 4 prompts x 4 responses per step, 16 held-out problems.
const SMALL: &[&str] = &[
    "--set",
    "batch.gen_batch_size=4",
    "--set",
    "batch.train_batch_size=4",
    "--set",
    "batch.ppo_mini_batch_size=4",
    "--set",
    "rollout.n=4",
    "--set",
    "eval.problems=16",
    "--set",
    "eval.test_freq=2",
    "--set",
    "trainer.save_freq=1",
    "--set",
    "algorithm.filter_groups.enable=false",
];

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed: {}", stderr(o));
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_train")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

fn train(run_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--run-dir", run_dir.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    aqn(&args)
}

/// The lines of metrics.jsonl, without the timing entries (wall-clock, never reproducible).
fn metrics(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with("timing/"));
            v
        })
        .collect()
}

fn val_steps(metrics: &[Value]) -> Vec<u64> {
    metrics
        .iter()
        .filter(|m| m.get("val/accuracy").is_some())
        .map(|m| m["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn run_folder_final_eval_resume_eval_and_report() {
    let root = tmp("runs");
    let full = root.join("full");
    // Three steps with test_freq 2: evaluations at 0, 2 and the final step 3.
    let out = train(&full, &["--steps", "3"]);
    ok(&out);
    let log = stderr(&out);
    assert!(log.contains("steps per epoch"), "{log}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "noise_audit.jsonl",
        "summary.json",
    ] {
        assert!(full.join(file).is_file(), "{file} missing");
    }
    let tb: Vec<_> = std::fs::read_dir(full.join("tb")).unwrap().collect();
    assert_eq!(tb.len(), 1, "one TensorBoard event file");
    for step in 1..=3 {
        let ckpt = full.join(format!("checkpoints/step_{step}"));
        for file in [
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
            "optimizer.bin",
            "trainer_state.json",
        ] {
            assert!(ckpt.join(file).is_file(), "step {step}: {file} missing");
        }
    }
    // The adapter names its base by its public identity (not the temporary folder the built-in
    // model was unpacked to) and carries the base's tokenizer, so AutoTokenizer loads from it.
    let adapter = full.join("checkpoints/step_3/adapter");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "builtin:tiny");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        assert!(adapter.join(file).is_file(), "adapter: {file} missing");
    }
    let m = metrics(&full);
    assert_eq!(val_steps(&m), vec![0, 2, 3]);
    let train_steps: Vec<u64> = m
        .iter()
        .filter(|v| v.get("reward/mean").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(train_steps, vec![1, 2, 3]);
    // The noise audit: one line per step, realized std of every AQN target.
    let audit = std::fs::read_to_string(full.join("noise_audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 3);
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert!(!first["targets"].as_array().unwrap().is_empty());
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["score_step"], 3);
    assert_eq!(summary["exp_id"], "default");
    let final_val = m
        .iter()
        .rev()
        .find(|v| v.get("val/accuracy").is_some())
        .unwrap();
    assert_eq!(summary["score"], final_val["val/accuracy"]);

    // A folder that holds a run is never overwritten by accident.
    let out = train(&full, &["--steps", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a run"),
        "{}",
        stderr(&out)
    );
    assert!(full.join("checkpoints/step_3").is_dir());

    // Interrupted after step 2 (plus a half-written step 3 line, as a crash leaves it), resumed.
    let part = root.join("part");
    ok(&train(&part, &["--steps", "2"]));
    let mut text = std::fs::read_to_string(part.join("metrics.jsonl")).unwrap();
    text.push_str("{\"step\":3,\"reward/mean\":12345.0}\n");
    std::fs::write(part.join("metrics.jsonl"), text).unwrap();
    let resumed = aqn(&["train", "--resume", part.to_str().unwrap(), "--steps", "3"]);
    ok(&resumed);
    assert!(
        stderr(&resumed).contains("resuming after step 2"),
        "{}",
        stderr(&resumed)
    );
    let mp = metrics(&part);
    assert_eq!(
        mp, m,
        "the resumed run's metrics differ from the uninterrupted run's"
    );

    // `eval` of the run folder reproduces the final evaluation.
    let out = aqn(&["eval", full.to_str().unwrap(), "--json"]);
    ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["step"], 3);
    assert_eq!(report["result"]["accuracy"], final_val["val/accuracy"]);
    let out = aqn(&["eval", full.to_str().unwrap(), "--step", "9"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("saved steps: 1, 2, 3"),
        "{}",
        stderr(&out)
    );

    // `report` over both runs: one experiment with two runs, curves written.
    let out = aqn(&["report", root.to_str().unwrap()]);
    ok(&out);
    let md = std::fs::read_to_string(root.join("REPORT.md")).unwrap();
    assert!(
        md.contains("| Exp ID | Type | TensorBoard Name | Score |"),
        "{md}"
    );
    assert!(md.contains("## AQN Configuration Reference"), "{md}");
    assert!(md.contains("(2 seeds)") || md.contains("2 runs"), "{md}");
    // The rollout-training mismatch the trainer logged every step, per sigma stage.
    assert!(md.contains("## Rollout-Training Mismatch"), "{md}");
    assert!(md.contains("| sigma | steps | kl | k3_kl |"), "{md}");
    let svg = std::fs::read_to_string(root.join("curves/all.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("held-out accuracy"));
}

#[test]
fn refusals_name_the_bad_setting() {
    let dir = tmp("refused");
    let run_dir = dir.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--set", "optim.lrr=1e-3"], &["optim.lrr"]),
        (&["--set", "quant.weights=fp5"], &["fp5", "mxfp4", "nvfp4"]),
        (&["--preset", "e99"], &["e99", "e5b", "baseline"]),
        (&["--profile", "huge"], &["huge", "tiny"]),
        (&["--set", "rollout.n=0"], &["rollout.n"]),
        (&["--backend", "tpu"], &["tpu", "cpu"]),
    ];
    for (args, needles) in cases {
        let mut all = vec!["train", "--run-dir", run_dir];
        all.extend_from_slice(args);
        let out = aqn(&all);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        for n in *needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
    }
    // Dynamic sampling that cannot fill a batch is an error naming the setting, not a hang.
    let out = train(
        &dir,
        &[
            "--steps",
            "1",
            "--set",
            "algorithm.filter_groups.enable=true",
            "--set",
            "algorithm.filter_groups.max_num_gen_batches=1",
            "--set",
            "rollout.n=2",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("dynamic sampling") && err.contains("max_num_gen_batches = 1"),
        "{err}"
    );
    // A group of one can never be kept: refused before any work.
    let out = train(
        &dir,
        &[
            "--set",
            "algorithm.filter_groups.enable=true",
            "--set",
            "rollout.n=1",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rollout.n = 1"), "{}", stderr(&out));
}

/// Each rollout row draws from its own stream, so generating the rows in micro-batches
/// (`rollout.micro_batch_size`, which bounds the KV cache) gives the same responses, rewards
/// and updates as one generation call (and, the same way, data-parallel workers' shards do).
#[test]
fn rollout_micro_batches_do_not_change_the_run() {
    let whole = tmp("rollout_whole");
    ok(&train(&whole, &["--steps", "2"]));
    let split = tmp("rollout_split");
    ok(&train(
        &split,
        &["--steps", "2", "--set", "rollout.micro_batch_size=3"],
    ));
    let (a, b) = (metrics(&whole), metrics(&split));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for key in ["reward/mean", "response_length/mean", "val/accuracy"] {
            assert_eq!(x.get(key), y.get(key), "{key}: {x} vs {y}");
        }
    }
}

/// Rollout correction (docs/spec.md section 9) takes effect visibly: the same rollouts, a
/// different loss, its metrics logged; the mismatch metrics are logged with it off too.
#[test]
fn rollout_correction_changes_the_loss_and_logs_its_metrics() {
    // A constant sigma, so step 1 has noise (the default schedule starts with a warm-up at 0).
    let noise = [
        "--steps",
        "1",
        "--set",
        "aqn.schedule.kind=\"constant\"",
        "--set",
        "aqn.schedule.sigma_start=0.05",
    ];
    let plain = tmp("corr_off");
    ok(&train(&plain, &noise));
    let corrected = tmp("corr_on");
    ok(&train(
        &corrected,
        &[
            &noise[..],
            &[
                "--set",
                "algorithm.rollout_correction.rollout_is=\"sequence\"",
                "--set",
                "algorithm.rollout_correction.rollout_is_threshold=1.01",
                "--set",
                "algorithm.rollout_correction.rollout_rs=\"token\"",
                "--set",
                "algorithm.rollout_correction.rollout_rs_threshold=1.05",
            ],
        ]
        .concat(),
    ));
    let step = |m: Vec<Value>| {
        m.into_iter()
            .find(|v| v["step"] == 1 && v.get("reward/mean").is_some())
            .unwrap()
    };
    let (a, b) = (step(metrics(&plain)), step(metrics(&corrected)));
    assert_eq!(
        a["reward/mean"], b["reward/mean"],
        "the rollouts are the same"
    );
    assert!(
        a["rollout_corr/kl"].is_number() && a["rollout_corr/k3_kl"].as_f64().unwrap() > 0.0,
        "{a}"
    );
    assert!(
        a.get("rollout_corr/rollout_rs_masked_fraction").is_none(),
        "{a}"
    );
    assert_eq!(
        a["rollout_corr/kl"], b["rollout_corr/kl"],
        "the same mismatch"
    );
    let rejected = b["rollout_corr/rollout_rs_masked_fraction"]
        .as_f64()
        .unwrap();
    assert!(rejected > 0.0 && rejected < 1.0, "{b}");
    assert_ne!(
        a["actor/pg_loss"], b["actor/pg_loss"],
        "the correction changes the loss"
    );
}

/// Lays `assets/tiny` out in `cache` as huggingface_hub does: `models--aqn--tiny/blobs/<hash>`,
/// `refs/main` holding the commit, `snapshots/<commit>/<file>` linking to the blob.
fn hub_cache_with_tiny(cache: &Path, commit: &str) {
    let repo = cache.join("models--aqn--tiny");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/tiny");
    for (i, file) in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .enumerate()
    {
        let blob = format!("{i:040x}");
        std::fs::copy(assets.join(file), repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(file)).unwrap();
    }
}

/// `model.path` / `eval` take a Hub id from the local Hugging Face cache (offline), at `main` or
/// at a commit; a missing id or revision is an error that says where it looked.
#[test]
fn hub_ids_resolve_through_the_local_hf_cache() {
    let root = tmp("hf_cache");
    let cache = root.join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    hub_cache_with_tiny(&cache, commit);
    let eval = |model: &str| {
        Command::new(env!("CARGO_BIN_EXE_aqn-native"))
            .args(["eval", model, "--problems", "8", "--json"])
            .env("HF_HUB_CACHE", &cache)
            .output()
            .unwrap()
    };
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/tiny");
    let local = eval(assets.to_str().unwrap());
    ok(&local);
    let want: Value = serde_json::from_slice(&local.stdout).unwrap();
    for id in ["aqn/tiny", &format!("aqn/tiny@{commit}")] {
        let out = eval(id);
        ok(&out);
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["result"], want["result"], "{id}");
    }
    for (id, looked) in [
        ("aqn/other", "models--aqn--other"),
        ("aqn/tiny@v2", "refs/v2"),
    ] {
        let out = eval(id);
        assert!(!out.status.success(), "{id}");
        let e = stderr(&out);
        assert!(
            e.contains(looked)
                && e.contains("HF_HUB_CACHE")
                && e.contains("not in the local Hugging Face cache"),
            "{id}: {e}"
        );
    }
    // Training reads the same id (the plan names the snapshot folder).
    let run = root.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args([
            "train",
            "--run-dir",
            run.to_str().unwrap(),
            "--steps",
            "1",
            "--set",
            "model.path=\"aqn/tiny\"",
        ])
        .args(SMALL)
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    ok(&out);
    assert!(stderr(&out).contains(commit), "{}", stderr(&out));
    // The adapter names its base by the Hub id, as PEFT expects.
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/step_1/adapter/adapter_config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "aqn/tiny");
}

/// Issue 23: the main job's command shape on a model that llm-compressor quantized to NVFP4
/// (compressed-tensors) and on one ModelOpt quantized: the base is read as stored and the plan
/// says so; the run exports back (compressed-tensors, unmerged and merged, the merged folder
/// evaluated); a preset whose [quant] contradicts the checkpoint is refused naming the setting.
#[test]
fn trains_from_a_compressed_tensors_nvfp4_checkpoint() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen2-nvfp4-ct");
    let model_set = format!("model.path={:?}", model.to_str().unwrap());
    let run = tmp("nvfp4_ct");
    let out = train(&run, &["--steps", "1", "--set", &model_set]);
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains("packed (nvfp4:two-level codes and scales read from the checkpoint (compressed-tensors nvfp4-pack-quantized"),
        "{log}"
    );
    assert!(
        run.join("checkpoints/step_1/adapter/adapter_model.safetensors")
            .is_file()
    );
    // Exported back: the base as stored with the adapter beside it, or merged and re-quantized;
    // the merged folder is a model `eval` reads like the original.
    let unmerged = tmp("nvfp4_ct_export");
    let export = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "export",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        aqn(&args)
    };
    let out = export(&unmerged, &["--to", "compressed-tensors-nvfp4"]);
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains("21 projections as codes") && log.contains("adapter in adapter/"),
        "{log}"
    );
    assert!(unmerged.join("adapter/adapter_config.json").is_file());
    let merged = tmp("nvfp4_ct_merged");
    ok(&export(
        &merged,
        &["--to", "compressed-tensors-nvfp4", "--merge"],
    ));
    let eval = aqn(&[
        "eval",
        merged.to_str().unwrap(),
        "--problems",
        "4",
        "--json",
    ]);
    ok(&eval);
    let report: Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(report["result"]["problems"], 4, "{report}");
    for (extra, needle) in [
        (
            &["--to", "gguf"][..],
            "valid choices: hf-bf16, hf-f32, compressed-tensors-nvfp4, gguf-bf16, gguf-mxfp4",
        ),
        (&["--to", "gguf-mxfp4"][..], "holds MXFP4 blocks of 32"),
        (
            &["--to", "hf-f32", "--dense-dtype", "bf16"][..],
            "hf-f32 writes every weight in f32",
        ),
    ] {
        let o = export(&tmp("nvfp4_ct_refused"), extra);
        assert!(
            !o.status.success() && stderr(&o).contains(needle),
            "{}",
            stderr(&o)
        );
    }
    // A ModelOpt W4A16_NVFP4 checkpoint trains the same way.
    let modelopt =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen2-nvfp4-modelopt");
    let modelopt_set = format!("model.path={:?}", modelopt.to_str().unwrap());
    let out = train(
        &tmp("nvfp4_modelopt"),
        &["--steps", "1", "--set", &modelopt_set],
    );
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains("read from the checkpoint (ModelOpt W4A16_NVFP4 0.47.0)"),
        "{log}"
    );
    // An llm-compressor MXFP4 checkpoint trains with quant.weights = "mxfp4" and goes to
    // llama.cpp as GGUF MXFP4 blocks.
    let mxfp4 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen2-mxfp4-ct");
    let mxfp4_set = format!("model.path={:?}", mxfp4.to_str().unwrap());
    let mx_run = tmp("mxfp4_ct");
    let out = train(
        &mx_run,
        &[
            "--steps",
            "1",
            "--set",
            &mxfp4_set,
            "--set",
            "quant.weights=\"mxfp4\"",
        ],
    );
    ok(&out);
    assert!(
        stderr(&out).contains("read from the checkpoint (compressed-tensors mxfp4-pack-quantized"),
        "{}",
        stderr(&out)
    );
    let gguf_mx = tmp("mxfp4_ct_gguf");
    let out = aqn(&[
        "export",
        mx_run.to_str().unwrap(),
        "--to",
        "gguf-mxfp4",
        "--out",
        gguf_mx.to_str().unwrap(),
    ]);
    ok(&out);
    assert!(
        stderr(&out).contains("21 projections as codes"),
        "{}",
        stderr(&out)
    );
    let refused = train(
        &tmp("nvfp4_ct_bf16"),
        &[
            "--steps",
            "1",
            "--set",
            &model_set,
            "--set",
            "quant.mode=\"bf16\"",
        ],
    );
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("is stored as NVFP4 codes") && err.contains("quant.mode = \"w4a16\""),
        "{err}"
    );
}
