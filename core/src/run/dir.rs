//! The run folder (docs/run_format.md):
//!
//! ```text
//! RUN_DIR/
//!   config.toml          the resolved configuration (what `--resume` reads back)
//!   metrics.jsonl        one line per step (and step 0, the evaluation before training)
//!   noise_audit.jsonl    one line per step with AQN on: the realized noise per target
//!   tb/                  TensorBoard event files (the same scalars as metrics.jsonl)
//!   checkpoints/step_N/  adapter or weights, optimizer, trainer state
//!   srdd_report.json     when a RIN policy needed one and the run scanned the base model
//!   summary.json         the final summary (the `report` command reads it)
//!   .aqn-run             the mark: aqn created this folder (`run::claim`)
//!   .aqn-lock            the file a running run holds an OS lock on (`run::claim`)
//! ```
//!
//! Lines are flushed as they are written, so an interrupted run keeps everything up to its last
//! step; `--resume` truncates the logs back to the checkpoint's step.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::run::metric_keys::STEP;
use crate::run::tensorboard::EventWriter;

/// File names inside a run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// Per-step metrics.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Per-step AQN audit.
pub const AUDIT_FILE: &str = "noise_audit.jsonl";
/// The final summary.
pub const SUMMARY_FILE: &str = "summary.json";
/// Checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// TensorBoard event files.
pub const TB_DIR: &str = "tb";
/// The SRDD report a run scanned for its RIN policy.
pub const SRDD_FILE: &str = "srdd_report.json";

/// An I/O failure, with the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RunDirError {
    /// The file or folder.
    pub path: String,
    /// The OS error.
    pub source: std::io::Error,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, RunDirError> {
    r.map_err(|source| RunDirError {
        path: path.display().to_string(),
        source,
    })
}

/// One step's scalars, by namespaced name (`reward/mean`, `val/accuracy`, ...).
pub type StepMetrics = BTreeMap<String, f64>;

/// Writes a run folder (or, for the workers of a data-parallel run other than rank 0, knows
/// its path and writes nothing: [`RunDir::follower`]).
pub struct RunDir {
    root: PathBuf,
    files: Option<LogFiles>,
}

/// The open log files of the writing worker.
struct LogFiles {
    metrics: File,
    audit: File,
    tb: EventWriter,
}

/// Keeps the lines of a JSONL file whose `step` is at most `max_step` (for `--resume`).
fn truncate_jsonl(path: &Path, max_step: u64) -> Result<(), RunDirError> {
    if !path.exists() {
        return Ok(());
    }
    let file = io(path, File::open(path))?;
    let mut kept = String::new();
    for line in BufReader::new(file).lines() {
        let line = io(path, line)?;
        let step = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
        if step.is_some_and(|s| s <= max_step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    io(path, std::fs::write(path, kept))
}

impl RunDir {
    /// Creates (or, when `resume_at` is given, reopens) the folder and its log files.
    pub fn open(root: &Path, resume_at: Option<u64>) -> Result<Self, RunDirError> {
        io(root, std::fs::create_dir_all(root))?;
        let metrics_path = root.join(METRICS_FILE);
        let audit_path = root.join(AUDIT_FILE);
        if let Some(step) = resume_at {
            truncate_jsonl(&metrics_path, step)?;
            truncate_jsonl(&audit_path, step)?;
        }
        let open = |p: &Path| {
            let mut o = OpenOptions::new();
            o.create(true);
            if resume_at.is_some() {
                o.append(true)
            } else {
                o.write(true).truncate(true)
            };
            io(p, o.open(p))
        };
        let tb_dir = root.join(TB_DIR);
        Ok(Self {
            files: Some(LogFiles {
                metrics: open(&metrics_path)?,
                audit: open(&audit_path)?,
                tb: io(&tb_dir, EventWriter::create(&tb_dir))?,
            }),
            root: root.to_path_buf(),
        })
    }

    /// The folder of a run that another worker writes: every write is skipped.
    pub fn follower(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            files: None,
        }
    }

    /// Whether this worker writes the folder.
    pub fn writes(&self) -> bool {
        self.files.is_some()
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of the checkpoint of `step`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.root.join(CHECKPOINT_DIR).join(format!("step_{step}"))
    }

    /// Writes `text` to `name` in the folder.
    pub fn write_file(&self, name: &str, text: &str) -> Result<(), RunDirError> {
        if !self.writes() {
            return Ok(());
        }
        let path = self.root.join(name);
        io(&path, std::fs::write(&path, text))
    }

    /// Appends one step's metrics to metrics.jsonl and TensorBoard.
    pub fn log_step(&mut self, step: u64, metrics: &StepMetrics) -> Result<(), RunDirError> {
        let Some(files) = &mut self.files else {
            return Ok(());
        };
        let mut line = serde_json::Map::new();
        line.insert(STEP.into(), step.into());
        for (k, v) in metrics {
            line.insert(
                k.clone(),
                serde_json::Number::from_f64(*v)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
            );
        }
        let path = self.root.join(METRICS_FILE);
        io(
            &path,
            writeln!(files.metrics, "{}", serde_json::Value::Object(line)),
        )?;
        io(&path, files.metrics.flush())?;
        let scalars: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let tb = self.root.join(TB_DIR);
        io(&tb, files.tb.scalars(step, &scalars))
    }

    /// Appends one line to noise_audit.jsonl.
    pub fn log_audit(&mut self, line: &str) -> Result<(), RunDirError> {
        let Some(files) = &mut self.files else {
            return Ok(());
        };
        let path = self.root.join(AUDIT_FILE);
        io(&path, writeln!(files.audit, "{line}"))?;
        io(&path, files.audit.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_resume_truncation() {
        let root = std::env::temp_dir().join(format!("aqn-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut run = RunDir::open(&root, None).unwrap();
        for step in 0..5 {
            let m: StepMetrics = [
                ("reward/mean".to_string(), step as f64 * 0.1),
                ("bad".to_string(), f64::NAN),
            ]
            .into();
            run.log_step(step, &m).unwrap();
            run.log_audit(&format!(
                "{{\"step\": {step}, \"sigma\": 0.01, \"targets\": []}}"
            ))
            .unwrap();
        }
        drop(run);
        let text = std::fs::read_to_string(root.join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().nth(2).unwrap().contains("\"bad\":null"));
        let log = crate::run::log::parse_metrics(&text, "metrics.jsonl").unwrap();
        assert_eq!(log.steps, vec![0, 1, 2, 3, 4]);
        let mut run = RunDir::open(&root, Some(2)).unwrap();
        run.log_step(3, &StepMetrics::new()).unwrap();
        let text = std::fs::read_to_string(root.join(METRICS_FILE)).unwrap();
        let steps: Vec<u64> = crate::run::log::parse_metrics(&text, "m").unwrap().steps;
        assert_eq!(steps, vec![0, 1, 2, 3]);
        assert_eq!(
            std::fs::read_to_string(root.join(AUDIT_FILE))
                .unwrap()
                .lines()
                .count(),
            3
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_follower_writes_nothing() {
        let root = std::env::temp_dir().join(format!("aqn-rundir-follower-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut run = RunDir::follower(&root);
        assert!(!run.writes());
        run.log_step(1, &StepMetrics::new()).unwrap();
        run.log_audit("{}").unwrap();
        run.write_file(CONFIG_FILE, "x").unwrap();
        assert!(!root.exists());
    }
}
