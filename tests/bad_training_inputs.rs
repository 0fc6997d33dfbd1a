//! Bad inputs of issue 20 ("Trust") in the trainer, end to end through `aqn-native train`: a
//! setting that cannot take effect, a run whose weights stop being finite, a problem whose input
//! would be lost. Each is refused with an error naming the culprit (key and the setting that
//! prevents it, step and tensor, file and problem), never accepted silently, never a panic.
//! Every `refused` and `accepted` call below is one case.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// A case that must succeed.
fn accepted(case: &str, args: &[&str]) {
    let o = aqn(args);
    assert!(
        o.status.success(),
        "{case}: {args:?} failed\n{}",
        text(&o.stderr)
    );
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_training_inputs");
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

/// `train --print-config` (resolution only: nothing loads) with `--set`s.
fn print_config(preset: &str, sets: &[&str]) -> Vec<String> {
    let mut args = vec!["train", "--preset", preset, "--print-config"];
    for set in sets {
        args.extend(["--set", set]);
    }
    args.into_iter().map(str::to_string).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Class 3: a key chosen where it cannot take effect is refused, naming the key and the setting
/// that prevents it; the same key is accepted once that setting allows it.
#[test]
fn settings_that_cannot_take_effect_are_refused() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "default",
            "algorithm.kl.coef=0.1",
            "algorithm.kl.placement",
            "algorithm.kl.placement=\"loss\"",
        ),
        (
            "default",
            "algorithm.kl.estimator=\"k1\"",
            "algorithm.kl.placement",
            "algorithm.kl.placement=\"reward\"",
        ),
        (
            "e3a",
            "finetune.lora.rank=8",
            "finetune.mode",
            "finetune.mode=\"lora\"",
        ),
        (
            "e3a",
            "finetune.lora.targets=[\"q_proj\"]",
            "finetune.mode",
            "finetune.mode=\"lora\"",
        ),
        (
            "e9b",
            "algorithm.filter_groups.max_num_gen_batches=3",
            "filter_groups.enable",
            "algorithm.filter_groups.enable=true",
        ),
        (
            "default",
            "algorithm.reward.overlong_buffer.len=8",
            "overlong_buffer.enable",
            "algorithm.reward.overlong_buffer.enable=true",
        ),
        (
            "default",
            "algorithm.reward.format_score=0",
            "dapo",
            "algorithm.reward.kind=\"gsm8k\"",
        ),
        (
            "e9b",
            "quant.weights=\"mxfp4\"",
            "quant.mode",
            "quant.mode=\"w4a16\"",
        ),
        (
            "default",
            "quant.gradient=\"none\"",
            "W4A16 base",
            "finetune.mode=\"full\"",
        ),
        (
            "default",
            "optim.schedule.min_lr_ratio=0.1",
            "lr_scheduler_type",
            "optim.schedule.lr_scheduler_type=\"cosine\"",
        ),
        (
            "default",
            "optim.schedule.num_cycles=1.0",
            "lr_scheduler_type",
            "optim.schedule.lr_scheduler_type=\"cosine\"",
        ),
        (
            "e9b",
            "eval.bf16=true",
            "quant.mode",
            "quant.mode=\"w4a16\"",
        ),
        (
            "default",
            "algorithm.rollout_correction.rollout_is_threshold=5.0",
            "rollout_is",
            "algorithm.rollout_correction.rollout_is=\"token\"",
        ),
        (
            "e5a-lora",
            "algorithm.rollout_correction.rollout_is=\"token\"",
            "training policy's own distribution",
            "rollout.temperature=0.8",
        ),
        (
            "default",
            "algorithm.rollout_correction.rollout_rs_threshold=2.0",
            "rollout_rs",
            "algorithm.rollout_correction.rollout_rs=\"geometric\"",
        ),
    ];
    for (preset, set, why, fix) in cases {
        let key = set.split('=').next().unwrap();
        refused(
            &format!("{preset} --set {set}"),
            &strs(&print_config(preset, &[set])),
            &[key, "no effect", why],
        );
        accepted(
            &format!("{preset} --set {set} --set {fix}"),
            &strs(&print_config(preset, &[set, fix])),
        );
    }
    // Class 6: a NaN setting is refused at once, before anything loads.
    refused(
        "algorithm.entropy_coeff = nan",
        &strs(&print_config("default", &["algorithm.entropy_coeff=nan"])),
        &["algorithm.entropy_coeff", "NaN", "a finite number"],
    );
    refused(
        "optim.adamw.betas with an infinity",
        &strs(&print_config("default", &["optim.adamw.betas=[0.9, inf]"])),
        &["optim.adamw.betas", "inf", "a finite number"],
    );
    refused(
        "data.synthetic.prompt_template",
        &strs(&print_config(
            "default",
            &["data.synthetic.prompt_template=\"gsm8k\""],
        )),
        &["data.synthetic.prompt_template", "data.prompt_template"],
    );
}

/// Class 3 through a --config file: a key the file changes is named with its place in the
/// file; a run's own config.toml restates every key and is accepted.
#[test]
fn a_config_file_is_held_to_the_same_rules() {
    let o = aqn(&["train", "--print-config"]);
    assert!(o.status.success());
    let own = tmp("own_config.toml");
    std::fs::write(&own, &o.stdout).unwrap();
    accepted(
        "a run's own config.toml as --config",
        &["train", "--config", s(&own), "--print-config"],
    );
    let changed = tmp("changed_config.toml");
    let body = text(&o.stdout).replace("coef = 0.001", "coef = 0.5");
    std::fs::write(&changed, body).unwrap();
    refused(
        "a --config file setting algorithm.kl.coef without a placement",
        &["train", "--config", s(&changed), "--print-config"],
        &[
            "algorithm.kl.coef = 0.5",
            "no effect",
            "changed_config.toml",
        ],
    );
}

/// Class 3, bounded by the loaded run, and class 2, the memory a run needs: refused before the
/// model loads.
#[test]
fn settings_beyond_the_run_are_refused() {
    let run = tmp("beyond");
    let base = ["train", "--run-dir", s(&run), "--steps", "2", "--set"];
    for (set, needles) in [
        (
            "trainer.save_freq=5",
            ["trainer.save_freq = 5", "takes 2 steps"],
        ),
        (
            "rollout.top_k=100000",
            ["rollout.top_k = 100000", "vocabulary"],
        ),
        // Two steps with save_freq 0 write one checkpoint: nothing to remove.
        (
            "trainer.max_actor_ckpt_to_keep=1",
            ["trainer.max_actor_ckpt_to_keep = 1", "writes 1 checkpoint"],
        ),
        (
            "eval.problems=100000",
            ["eval.problems = 100000", "test set"],
        ),
        // Class 2: sizes checked before allocating (the rollout's KV cache of 16e9 rows).
        (
            "rollout.n=1000000000",
            ["rollout.n", "this machine has available"],
        ),
    ] {
        let _ = std::fs::remove_dir_all(&run);
        let mut args = base.to_vec();
        args.push(set);
        refused(set, &args, &needles);
    }
}

/// Class 1: a run whose update makes the trained weights non-finite stops at that step, naming
/// the tensor, and writes no checkpoint from them.
#[test]
fn non_finite_weights_stop_the_run_before_a_checkpoint() {
    let run = tmp("nan_run");
    let err = refused(
        "optim.lr=1e30 without gradient clipping",
        &[
            "train",
            "--run-dir",
            s(&run),
            "--steps",
            "4",
            "--set",
            "optim.lr=1e30",
            "--set",
            "optim.grad_clip=0",
            "--set",
            "trainer.save_freq=1",
            "--set",
            "algorithm.filter_groups.enable=false",
        ],
        &["step ", "holds", "lora", "optim.lr", "optim.grad_clip"],
    );
    let step: u64 = err
        .split("caused by: step ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in {err}"));
    // Checkpoints exist only for the steps before the one that failed.
    let saved: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        saved.iter().all(|n| n
            .trim_start_matches("step_")
            .parse::<u64>()
            .is_ok_and(|s| s < step)),
        "checkpoints {saved:?} at or after the failing step {step}"
    );
}

/// A jsonl data file with the given (question, answer) rows.
fn jsonl(name: &str, rows: &[(&str, &str)]) -> PathBuf {
    let path = tmp(name);
    let body: String = rows
        .iter()
        .map(|(q, a)| format!("{}\n", serde_json::json!({"question": q, "answer": a})))
        .collect();
    std::fs::write(&path, body).unwrap();
    path
}

/// Class 4: input that would be lost is refused, naming the file and the problem.
#[test]
fn problems_that_would_lose_input_are_refused() {
    let good = "What is 2 plus 3?";
    let run = tmp("input_loss");
    for (case, rows, needles) in [
        (
            "characters the tokenizer drops",
            vec![("What is 中 2 plus 3?", "#### 5")],
            vec!["problem 1", "cannot encode", "中"],
        ),
        (
            "a ground truth that is no number",
            vec![("What is two plus three?", "#### abc")],
            vec!["row 1", "answer", "#### N"],
        ),
        (
            "an empty question",
            vec![(good, "#### 5"), ("", "#### 5")],
            vec!["row 2", "question", "empty"],
        ),
    ] {
        let file = jsonl(&format!("{}.jsonl", case.replace(' ', "_")), &rows);
        let _ = std::fs::remove_dir_all(&run);
        let mut n = needles.clone();
        n.push(file.file_name().unwrap().to_str().unwrap());
        refused(
            case,
            &[
                "train",
                "--run-dir",
                s(&run),
                "--steps",
                "1",
                "--set",
                &format!("data.train={}", s(&file)),
                "--set",
                &format!("data.test={}", s(&file)),
                "--set",
                "batch.train_batch_size=2",
                "--set",
                "batch.gen_batch_size=2",
                "--set",
                "batch.ppo_mini_batch_size=2",
                "--set",
                "algorithm.filter_groups.enable=false",
                "--set",
                "eval.problems=2",
            ],
            &n,
        );
    }
}
