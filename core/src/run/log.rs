//! The trainer's run logs, as the run viewer reads them (schema: docs/run_format.md).
//!
//! - `metrics.jsonl`: one JSON object per line with an integer `step` (>= 0; step 0 is the evaluation before training) and any number of
//!   metrics named `namespace/name` (`reward/mean`, `val/accuracy`, `aqn/sigma`); numbers are
//!   series, `null` is a missing value, other values (strings, booleans, objects) are ignored.
//! - `noise_audit.jsonl`: one JSON object per line per optimizer step with noise on:
//!   `{"step": 12, "sigma": 0.004, "targets": [{"name": "...", "sigma": 0.004,
//!   "realized_std": 0.00398, "multiplier": 1.0, "elements": 896, "layer": 0}],
//!   "multipliers": [1.0, 1.2]}` (`multiplier`, `elements`, `layer` and `multipliers` optional).
//!
//! Parsing checks every line and names the first bad one; blank lines are skipped. Lines with the
//! same `step` are one row: the trainer writes a step's training metrics and its evaluation as
//! two lines, and a resumed run may write a step again (the later value of a metric wins), so a
//! curve never breaks at an evaluation step.
//!
//! Validation accuracy and training accuracy are told apart by namespace
//! ([`is_validation_accuracy`]): `val/accuracy` is the held-out evaluation, `reward/acc` the
//! fraction of correct rollouts of a training step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::run::metric_keys::STEP;

/// Why a run log was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RunLogError {
    /// A line that is not a JSON object of the schema.
    #[error("{source_name} line {line}: {reason}")]
    BadLine {
        /// The file.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file without a single record.
    #[error("{source_name} holds no records (expected one JSON object per line)")]
    Empty {
        /// The file.
        source_name: String,
    },
}

/// `metrics.jsonl` as columns: the steps, and per metric one value per step (None where no line
/// of that step has it).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MetricsLog {
    /// Each step once, in the order of its first line.
    pub steps: Vec<u64>,
    /// Each numeric metric, aligned with `steps`.
    pub series: BTreeMap<String, Vec<Option<f64>>>,
}

impl MetricsLog {
    /// The metrics that are held-out (validation) accuracies, in name order.
    pub fn validation_accuracy_keys(&self) -> Vec<&str> {
        self.series
            .keys()
            .map(String::as_str)
            .filter(|k| is_validation_accuracy(k))
            .collect()
    }
}

/// Whether a metric is a held-out accuracy: its namespace starts with `val` (`val/`,
/// `val-core/`) and its last part with `acc` (`val/accuracy`, `val/accuracy_w4a4`). The
/// rollouts' `reward/acc` is a training accuracy and is not one.
pub fn is_validation_accuracy(key: &str) -> bool {
    match key.split_once('/') {
        Some((namespace, _)) => {
            let last = key.rsplit('/').next().unwrap_or("");
            namespace.starts_with("val") && last.starts_with("acc")
        }
        None => false,
    }
}

/// One target of one audit line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTarget {
    /// The parameter name.
    pub name: String,
    /// The sigma applied to it (schedule sigma times multiplier).
    pub sigma: f64,
    /// The realized standard deviation of `w - w_clean`.
    pub realized_std: f64,
    /// The RIN multiplier in force.
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// Elements of the tensor.
    #[serde(default)]
    pub elements: Option<u64>,
    /// The decoder layer of the tensor (absent for tensors outside the decoder layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
}

/// One audit line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The optimizer step.
    pub step: u64,
    /// The schedule's sigma at this step.
    pub sigma: f64,
    /// Every targeted tensor.
    pub targets: Vec<AuditTarget>,
    /// The RIN multipliers in force, one per decoder layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipliers: Option<Vec<f64>>,
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Parses `metrics.jsonl` text (named `source_name` in errors).
pub fn parse_metrics(text: &str, source_name: &str) -> Result<MetricsLog, RunLogError> {
    let bad = |line: usize, reason: String| RunLogError::BadLine {
        source_name: source_name.to_string(),
        line,
        reason,
    };
    let mut log = MetricsLog::default();
    let mut row_of: BTreeMap<u64, usize> = BTreeMap::new();
    for (line, l) in lines(text) {
        let value: serde_json::Value =
            serde_json::from_str(l).map_err(|e| bad(line, format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad(line, "not a JSON object".into()))?;
        let step = obj
            .get(STEP)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(line, "no integer `step` >= 0".into()))?;
        let rows = log.steps.len();
        let row = *row_of.entry(step).or_insert_with(|| {
            log.steps.push(step);
            rows
        });
        for (key, v) in obj {
            if key == STEP {
                continue;
            }
            let Some(x) = v.as_f64() else { continue };
            let column = log
                .series
                .entry(key.clone())
                .or_insert_with(|| vec![None; log.steps.len()]);
            column.resize(log.steps.len(), None);
            column[row] = Some(x);
        }
        let n = log.steps.len();
        for column in log.series.values_mut() {
            column.resize(n, None);
        }
    }
    if log.steps.is_empty() {
        return Err(RunLogError::Empty {
            source_name: source_name.to_string(),
        });
    }
    Ok(log)
}

/// Parses `noise_audit.jsonl` text.
pub fn parse_audit(text: &str, source_name: &str) -> Result<Vec<AuditRecord>, RunLogError> {
    let records = lines(text)
        .map(|(line, l)| {
            let r: AuditRecord = serde_json::from_str(l).map_err(|e| RunLogError::BadLine {
                source_name: source_name.to_string(),
                line,
                reason: e.to_string(),
            })?;
            let finite = r.sigma.is_finite()
                && r.targets
                    .iter()
                    .all(|t| t.sigma.is_finite() && t.realized_std.is_finite())
                && r.multipliers.iter().flatten().all(|m| m.is_finite());
            if !finite {
                return Err(RunLogError::BadLine {
                    source_name: source_name.to_string(),
                    line,
                    reason: "a sigma, realized_std or multiplier is not a finite number".into(),
                });
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if records.is_empty() {
        return Err(RunLogError::Empty {
            source_name: source_name.to_string(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_become_aligned_columns() {
        let text = "{\"step\": 1, \"reward/mean\": 0.5, \"phase\": \"rollout\"}\n\n\
                    {\"step\": 2, \"val/accuracy\": 0.25, \"reward/mean\": null}\n\
                    {\"step\": 3, \"reward/mean\": 0.75}\n";
        let log = parse_metrics(text, "m.jsonl").unwrap();
        assert_eq!(log.steps, vec![1, 2, 3]);
        assert_eq!(log.series["reward/mean"], vec![Some(0.5), None, Some(0.75)]);
        assert_eq!(log.series["val/accuracy"], vec![None, Some(0.25), None]);
        assert!(!log.series.contains_key("phase"));
    }

    #[test]
    fn lines_of_one_step_are_one_row() {
        // The trainer's two lines for step 2 (training metrics, then the evaluation), and a
        // resumed run writing step 3 again.
        let text = "{\"step\": 0, \"val/accuracy\": 0.1}\n\
                    {\"step\": 1, \"reward/mean\": 0.5, \"reward/acc\": 0.4}\n\
                    {\"step\": 2, \"reward/mean\": 0.6, \"reward/acc\": 0.5}\n\
                    {\"step\": 2, \"val/accuracy\": 0.3, \"val/accuracy_flexible\": 0.35}\n\
                    {\"step\": 3, \"reward/mean\": 0.1}\n\
                    {\"step\": 3, \"reward/mean\": 0.7}\n";
        let log = parse_metrics(text, "m.jsonl").unwrap();
        assert_eq!(log.steps, vec![0, 1, 2, 3]);
        assert_eq!(
            log.series["reward/mean"],
            vec![None, Some(0.5), Some(0.6), Some(0.7)]
        );
        assert_eq!(
            log.series["val/accuracy"],
            vec![Some(0.1), None, Some(0.3), None]
        );
        assert_eq!(
            log.validation_accuracy_keys(),
            vec!["val/accuracy", "val/accuracy_flexible"]
        );
        assert!(!is_validation_accuracy("reward/acc"));
        assert!(!is_validation_accuracy("reward/gen_acc"));
        assert!(!is_validation_accuracy("accuracy"));
        assert!(is_validation_accuracy("val/accuracy_w4a4"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_metrics("{\"step\": 1}\n{\"loss\": 2}\n", "m.jsonl").unwrap_err();
        assert_eq!(err.to_string(), "m.jsonl line 2: no integer `step` >= 0");
        let err = parse_metrics("{\"step\": 1}\nnot json\n", "m.jsonl").unwrap_err();
        assert!(
            err.to_string().starts_with("m.jsonl line 2: not JSON"),
            "{err}"
        );
        let err = parse_metrics("\n\n", "m.jsonl").unwrap_err();
        assert!(matches!(err, RunLogError::Empty { .. }));
        let err = parse_audit("{\"step\": 1, \"sigma\": 0.1}\n", "a.jsonl").unwrap_err();
        assert!(err.to_string().contains("missing field `targets`"), "{err}");
    }

    #[test]
    fn audit_lines_parse() {
        let text = "{\"step\": 4, \"sigma\": 0.01, \"targets\": [{\"name\": \"l0.norm\", \
                    \"sigma\": 0.012, \"realized_std\": 0.0119, \"multiplier\": 1.2}]}";
        let r = parse_audit(text, "a.jsonl").unwrap();
        assert_eq!(r[0].targets[0].multiplier, Some(1.2));
        assert_eq!(r[0].targets[0].elements, None);
        assert_eq!(
            (r[0].targets[0].layer, r[0].multipliers.clone()),
            (None, None)
        );
        let text = "{\"step\": 4, \"sigma\": 0.01, \"multipliers\": [1.0, 1.5], \"targets\": \
                    [{\"name\": \"model.layers.1.input_layernorm.weight\", \"sigma\": 0.015, \
                    \"realized_std\": 0.0149, \"layer\": 1}]}";
        let r = parse_audit(text, "a.jsonl").unwrap();
        assert_eq!(r[0].targets[0].layer, Some(1));
        assert_eq!(r[0].multipliers, Some(vec![1.0, 1.5]));
        let bad = text.replace("1.5]", "NaN]");
        assert!(parse_audit(&bad, "a.jsonl").is_err());
    }

    #[test]
    fn the_sample_run_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/run_sample/");
        let m = std::fs::read_to_string(format!("{dir}metrics.jsonl")).unwrap();
        let a = std::fs::read_to_string(format!("{dir}noise_audit.jsonl")).unwrap();
        let log = parse_metrics(&m, "metrics.jsonl").unwrap();
        let audit = parse_audit(&a, "noise_audit.jsonl").unwrap();
        assert!(log.series.contains_key("val/accuracy") && log.series.contains_key("aqn/sigma"));
        assert!(!audit.is_empty() && !audit[0].targets.is_empty());
    }
}
