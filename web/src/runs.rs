//! The run viewer: `metrics.jsonl` and `noise_audit.jsonl` parsed by `aqn_core::run::log` and laid
//! out as columns for plotting.

use std::collections::BTreeMap;

use aqn_core::run::log::{MetricsLog, parse_audit, parse_metrics};
use serde::Serialize;

/// The audit as columns: one entry per audit line, per target one value per line.
#[derive(Serialize, Default, Debug)]
pub struct AuditColumns {
    /// Steps of the audit lines.
    pub steps: Vec<u64>,
    /// The schedule sigma of each line.
    pub sigma: Vec<f64>,
    /// Per target (in first-seen order): applied sigma and realized std, None where a line lacks
    /// the target.
    pub targets: Vec<TargetColumns>,
}

/// One target's columns.
#[derive(Serialize, Debug)]
pub struct TargetColumns {
    /// Parameter name.
    pub name: String,
    /// Applied sigma per line.
    pub sigma: Vec<Option<f64>>,
    /// Realized std per line.
    pub realized_std: Vec<Option<f64>>,
    /// `realized_std / sigma` per line (None where sigma is 0 or the target is absent).
    pub ratio: Vec<Option<f64>>,
}

/// `metrics.jsonl` for the viewer: the columns (one row per step) and which metrics are
/// held-out accuracies (plotted as validation accuracy; `reward/acc` goes with the rewards).
#[derive(Serialize, Debug)]
pub struct MetricsView {
    /// The columns.
    #[serde(flatten)]
    pub log: MetricsLog,
    /// The metrics that are validation accuracies (`aqn_core::run::log::is_validation_accuracy`).
    pub validation_accuracy: Vec<String>,
}

/// Parses `metrics.jsonl`.
pub fn metrics(text: &str, source_name: &str) -> Result<MetricsView, String> {
    let log = parse_metrics(text, source_name).map_err(|e| e.to_string())?;
    let validation_accuracy = log
        .validation_accuracy_keys()
        .into_iter()
        .map(str::to_string)
        .collect();
    Ok(MetricsView {
        log,
        validation_accuracy,
    })
}

/// Parses `noise_audit.jsonl` into columns.
pub fn audit(text: &str, source_name: &str) -> Result<AuditColumns, String> {
    let records = parse_audit(text, source_name).map_err(|e| e.to_string())?;
    let mut out = AuditColumns::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (row, r) in records.iter().enumerate() {
        out.steps.push(r.step);
        out.sigma.push(r.sigma);
        for t in &r.targets {
            let k = *index.entry(t.name.clone()).or_insert_with(|| {
                out.targets.push(TargetColumns {
                    name: t.name.clone(),
                    sigma: vec![None; row],
                    realized_std: vec![None; row],
                    ratio: vec![None; row],
                });
                out.targets.len() - 1
            });
            let col = &mut out.targets[k];
            col.sigma.resize(row, None);
            col.realized_std.resize(row, None);
            col.ratio.resize(row, None);
            col.sigma.push(Some(t.sigma));
            col.realized_std.push(Some(t.realized_std));
            col.ratio
                .push((t.sigma != 0.0).then(|| t.realized_std / t.sigma));
        }
        for col in &mut out.targets {
            col.sigma.resize(row + 1, None);
            col.realized_std.resize(row + 1, None);
            col.ratio.resize(row + 1, None);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_the_validation_accuracies() {
        let text = "{\"step\": 1, \"reward/acc\": 0.5}\n{\"step\": 1, \"val/accuracy\": 0.25}";
        let v = metrics(text, "m.jsonl").unwrap();
        assert_eq!(v.log.steps, vec![1]);
        assert_eq!(v.validation_accuracy, vec!["val/accuracy"]);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["validation_accuracy"][0], "val/accuracy");
        assert_eq!(json["series"]["reward/acc"][0], 0.5);
    }

    #[test]
    fn targets_align_with_lines() {
        let text = "{\"step\": 2, \"sigma\": 0.1, \"targets\": [{\"name\": \"a\", \"sigma\": 0.1, \"realized_std\": 0.09}]}\n\
                    {\"step\": 3, \"sigma\": 0.1, \"targets\": [{\"name\": \"b\", \"sigma\": 0.2, \"realized_std\": 0.21}]}";
        let a = audit(text, "a.jsonl").unwrap();
        assert_eq!(a.steps, vec![2, 3]);
        assert_eq!(a.targets[0].realized_std, vec![Some(0.09), None]);
        assert_eq!(a.targets[1].realized_std, vec![None, Some(0.21)]);
        assert_eq!(a.targets[0].ratio[0], Some(0.09 / 0.1));
    }
}
