//! The run folder belongs to the user unless aqn made it (docs/run_format.md, "Ownership"):
//! `train` refuses a non-empty folder without the `.aqn-run` mark (and touches nothing in it),
//! `--overwrite` removes only what aqn wrote in a marked folder, a second run on a folder that a
//! run holds is refused, and `--resume` passes over a corrupt latest checkpoint to the previous
//! complete one. All on the built-in tiny model with runs of a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
/// How long the test waits for a background run to take its folder.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A file of the user's in a run folder.
const USER_FILE: &str = "notes.txt";
const USER_TEXT: &str = "my notes, not aqn's\n";

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

/// Fails unless `o` failed with every one of `needles` in its stderr.
fn refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("run_folder")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

fn train_args<'a>(run_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--run-dir", run_dir.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    args
}

fn train(run_dir: &Path, extra: &[&str]) -> Output {
    aqn(&train_args(run_dir, extra))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The steps of metrics.jsonl's training lines.
fn train_steps(run_dir: &Path) -> Vec<u64> {
    read(&run_dir.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("reward/mean").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_folder_without_the_mark_is_never_written() {
    // A user's folder that happens to hold a config.toml: refused with and without
    // --overwrite, and nothing in it is touched.
    let dir = tmp("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(USER_FILE), USER_TEXT).unwrap();
    std::fs::write(dir.join("config.toml"), "mine = true\n").unwrap();
    std::fs::write(dir.join("metrics.jsonl"), "{\"step\": 7}\n").unwrap();
    let shown = dir.display().to_string();
    for extra in [&["--overwrite"][..], &[]] {
        let mut args = vec!["--steps", "1"];
        args.extend_from_slice(extra);
        refused(
            &train(&dir, &args),
            &[&shown, "not an aqn run folder", USER_FILE, "--run-dir"],
        );
    }
    refused(
        &aqn(&["train", "--resume", &shown]),
        &[&shown, "not an aqn run folder"],
    );
    assert_eq!(read(&dir.join(USER_FILE)), USER_TEXT);
    assert_eq!(read(&dir.join("config.toml")), "mine = true\n");
    assert_eq!(read(&dir.join("metrics.jsonl")), "{\"step\": 7}\n");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "aqn added files: {names:?}");
}

#[test]
fn overwrite_replaces_only_aqns_files_of_a_marked_run() {
    // An empty folder is taken and marked.
    let dir = tmp("marked");
    std::fs::create_dir_all(&dir).unwrap();
    ok(&train(&dir, &["--steps", "1"]));
    let mark: serde_json::Value = serde_json::from_str(&read(&dir.join(".aqn-run"))).unwrap();
    assert_eq!(mark["tool"], "aqn");
    std::fs::write(dir.join(USER_FILE), USER_TEXT).unwrap();
    refused(
        &train(&dir, &["--steps", "1"]),
        &["already holds a run", "--resume", "--overwrite"],
    );
    assert!(dir.join("checkpoints/step_1").is_dir());
    let out = train(&dir, &["--steps", "2", "--overwrite"]);
    ok(&out);
    assert_eq!(read(&dir.join(USER_FILE)), USER_TEXT);
    assert_eq!(train_steps(&dir), vec![1, 2]);
    assert!(dir.join(".aqn-run").is_file());
}

#[test]
fn a_second_run_on_a_held_folder_is_refused() {
    let dir = tmp("held");
    // A whole epoch (160 steps): it holds the folder until it is killed.
    let mut first = Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(train_args(&dir, &["--set", "eval.test_freq=1000"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aqn-native");
    let started = Instant::now();
    while !(dir.join(".aqn-run").is_file() && dir.join("config.toml").is_file()) {
        if let Some(status) = first.try_wait().unwrap() {
            panic!(
                "the first run ended ({status}) before it took {}",
                dir.display()
            );
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "the first run never took its folder"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let config = read(&dir.join("config.toml"));
    let shown = dir.display().to_string();
    let held = &[shown.as_str(), "held by another aqn-native train"][..];
    refused(&train(&dir, &["--steps", "1", "--overwrite"]), held);
    refused(&aqn(&["train", "--resume", &shown, "--steps", "1"]), held);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first run ended while the second was refused"
    );
    // The refused --overwrite deleted nothing.
    assert_eq!(read(&dir.join("config.toml")), config);
    // The OS released the killed run's lock: the folder can be taken again.
    ok(&train(&dir, &["--steps", "1", "--overwrite"]));
}

#[test]
fn resume_skips_a_corrupt_latest_checkpoint() {
    let dir = tmp("corrupt");
    ok(&train(&dir, &["--steps", "2"]));
    std::fs::write(
        dir.join("checkpoints/step_2/trainer_state.json"),
        "{\"step\": 2,",
    )
    .unwrap();
    let shown = dir.display().to_string();
    let out = aqn(&["train", "--resume", &shown, "--steps", "3"]);
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("skipping the checkpoint") && err.contains("step_2"),
        "{err}"
    );
    assert!(err.contains("cannot be parsed"), "{err}");
    assert!(err.contains("resuming after step 1"), "{err}");
    assert_eq!(train_steps(&dir), vec![1, 2, 3]);
    // Step 2 was saved again, complete.
    serde_json::from_str::<serde_json::Value>(&read(
        &dir.join("checkpoints/step_2/trainer_state.json"),
    ))
    .unwrap();

    // A run of an aqn without marks (config.toml and checkpoints/, no .aqn-run) resumes and is
    // marked; one with no complete checkpoint is refused naming each folder.
    std::fs::remove_file(dir.join(".aqn-run")).unwrap();
    let out = aqn(&["train", "--resume", &shown, "--steps", "4"]);
    ok(&out);
    assert!(stderr(&out).contains("marked as aqn's"), "{}", stderr(&out));
    assert!(dir.join(".aqn-run").is_file());
    for step in 1..=4 {
        let optimizer = dir.join(format!("checkpoints/step_{step}/optimizer.bin"));
        std::fs::remove_file(optimizer).unwrap();
    }
    refused(
        &aqn(&["train", "--resume", &shown]),
        &[
            "holds no complete checkpoint",
            "step_1",
            "step_4",
            "optimizer.bin",
        ],
    );
}

/// `trainer.max_actor_ckpt_to_keep` keeps the newest N complete checkpoints and says which it
/// removed.
#[test]
fn only_the_newest_checkpoints_are_kept_when_asked() {
    let run = tmp("keep_two");
    let out = train(
        &run,
        &["--steps", "3", "--set", "trainer.max_actor_ckpt_to_keep=2"],
    );
    ok(&out);
    let mut left: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["step_2", "step_3"]);
    let log = stderr(&out);
    assert!(
        log.contains("step_1 (trainer.max_actor_ckpt_to_keep)"),
        "{log}"
    );
}
