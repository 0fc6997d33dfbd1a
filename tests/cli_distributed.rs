//! Data-parallel training end to end (`aqn-native train --workers 2`: two MPI workers on
//! 127.0.0.1, the CPU backend): the same metrics (1e-5) and the same trained weights (1e-5) as
//! one process with the same global batch and seed, for GRPO (full fine-tuning, KL loss) and for
//! DAPO with dynamic sampling (LoRA, the kept groups gathered from both workers); `--resume` of a
//! two-worker run reproduces the uninterrupted run; a worker killed mid-run stops the other with
//! an error naming its rank, without hanging.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// 4 prompts x 4 responses per step, two mini-batches of 2 prompts, 16 held-out problems.
const SMALL: &[&str] = &[
    "--set",
    "batch.gen_batch_size=4",
    "--set",
    "batch.train_batch_size=4",
    "--set",
    "batch.ppo_mini_batch_size=2",
    "--set",
    "rollout.n=4",
    "--set",
    "eval.problems=16",
    "--set",
    "eval.test_freq=2",
    "--set",
    "trainer.save_freq=1",
];

/// The agreement asked of a data-parallel run with one process (float rounding of the sums).
const TOLERANCE: f64 = 1e-5;

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_distributed")
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

/// metrics.jsonl without the wall-clock entries.
fn metrics(run_dir: &Path) -> Vec<serde_json::Map<String, Value>> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.retain(|k, _| !k.starts_with("timing/"));
            m.clone()
        })
        .collect()
}

/// Every line has the same keys and every value agrees within [`TOLERANCE`].
fn same_metrics(a: &Path, b: &Path) {
    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), mb.len(), "metrics lines of {a:?} and {b:?}");
    for (x, y) in ma.iter().zip(&mb) {
        let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(x), keys(y), "step {}", x["step"]);
        for (k, v) in x {
            match (v.as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => assert!(
                    (p - q).abs() <= TOLERANCE,
                    "step {} {k}: {p} (one process) vs {q} (two workers)",
                    x["step"]
                ),
                _ => assert_eq!(v, &y[k], "step {} {k}", x["step"]),
            }
        }
    }
}

/// The f32 tensors of a safetensors file by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The trained tensors of the final checkpoints agree within [`TOLERANCE`].
fn same_weights(a: &Path, b: &Path, file: &str) {
    let (ta, tb) = (tensors(&a.join(file)), tensors(&b.join(file)));
    assert_eq!(ta.len(), tb.len());
    assert!(!ta.is_empty());
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let worst = va
            .iter()
            .zip(vb)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(
            f64::from(worst) <= TOLERANCE,
            "{file} {na}: largest difference {worst}"
        );
    }
}

#[test]
fn two_workers_equal_one_process_for_grpo_and_dapo_with_dynamic_sampling() {
    for (name, extra, weights) in [
        // GRPO with the KL loss against the reference, full fine-tuning (the seed's HW runs).
        (
            "grpo",
            vec!["--preset", "baseline", "--steps", "3"],
            "checkpoints/step_3/model/model.safetensors",
        ),
        // DAPO with dynamic sampling on a LoRA + NVFP4 base with AQN (the main job).
        (
            "dapo",
            vec![
                "--set",
                "algorithm.filter_groups.enable=true",
                "--steps",
                "3",
            ],
            "checkpoints/step_3/adapter/adapter_model.safetensors",
        ),
    ] {
        let one = tmp(&format!("{name}_one"));
        let two = tmp(&format!("{name}_two"));
        ok(&train(&one, &extra));
        let mut dp = extra.clone();
        dp.extend(["--workers", "2"]);
        let o = train(&two, &dp);
        ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("workers  2"), "{name}: {err}");
        same_metrics(&one, &two);
        same_weights(&one, &two, weights);
        if name == "dapo" {
            // Dynamic sampling had to generate more than one batch at some step: the kept
            // groups of several batches were gathered from both workers.
            let gen_batches: Vec<f64> = metrics(&two)
                .iter()
                .filter_map(|m| m.get("dapo/num_gen_batches").and_then(Value::as_f64))
                .collect();
            assert!(
                gen_batches.iter().any(|&b| b > 1.0),
                "no step needed a second generation batch: {gen_batches:?}"
            );
        }
    }
}

#[test]
fn resuming_a_two_worker_run_reproduces_the_uninterrupted_run() {
    let whole = tmp("resume_whole");
    ok(&train(&whole, &["--steps", "4"]));
    let parts = tmp("resume_parts");
    ok(&train(&parts, &["--steps", "2", "--workers", "2"]));
    let o = aqn(&[
        "train",
        "--resume",
        parts.to_str().unwrap(),
        "--steps",
        "4",
        "--workers",
        "2",
    ]);
    ok(&o);
    same_metrics(&whole, &parts);
}

/// The other worker's processes: those whose command line names `run_dir` and whose
/// environment gives `rank`.
fn worker_pids(run_dir: &Path, rank: usize) -> Vec<u32> {
    let needle = run_dir.to_str().unwrap().as_bytes().to_vec();
    let rank_var = format!("OMPI_COMM_WORLD_RANK={rank}").into_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read(entry.path().join("environ")),
        ) else {
            continue;
        };
        let has = |hay: &[u8], n: &[u8]| hay.windows(n.len()).any(|w| w == n);
        if has(&cmdline, &needle) && environ.split(|&b| b == 0).any(|v| v == rank_var) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_dead_worker_stops_the_other_with_an_error_naming_its_rank() {
    let run = tmp("dead_worker");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(["train", "--run-dir", run.to_str().unwrap()])
        .args(SMALL)
        .args(["--steps", "100000", "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rank 1 runs and training has started (step 1's metrics written).
    let start = Instant::now();
    let pids = loop {
        let pids = worker_pids(&run, 1);
        let started = std::fs::read_to_string(run.join("metrics.jsonl"))
            .is_ok_and(|t| t.contains("\"step\":1"));
        if !pids.is_empty() && started {
            break pids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the workers did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    // The job must end on its own, soon: not hang in a collective waiting for the dead worker.
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the surviving worker hung for 60 s after rank 1 died");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("rank 1"), "the error names the rank: {err}");
    assert!(err.contains("a worker failed or died"), "{err}");
    // No worker of the job is left behind.
    assert!(worker_pids(&run, 0).is_empty() && worker_pids(&run, 1).is_empty());
}

#[test]
fn bad_worker_counts_are_refused() {
    let o = aqn(&["train", "--workers", "0", "--print-config"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--workers 0"), "{err}");
}
