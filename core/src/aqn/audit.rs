//! What one AQN draw did (docs/spec.md section 4's audit): per targeted tensor the sigma applied and
//! the realized standard deviation of `w - w_clean`, with the schedule's sigma and the RIN
//! multipliers in force. Written as one line of `noise_audit.jsonl` (docs/run_format.md).

use serde::{Deserialize, Serialize};

use crate::run::log::{AuditRecord, AuditTarget};
use crate::run::metric_keys::{AQN_REALIZED_STD_RATIO, AQN_SIGMA};

/// One targeted tensor at one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AqnTargetAudit {
    /// The HF parameter name.
    pub name: String,
    /// Its decoder layer (`None` outside the decoder layers).
    pub layer: Option<usize>,
    /// The RIN multiplier applied (1 outside the decoder layers and without RIN).
    pub multiplier: f64,
    /// The std drawn: schedule sigma times the multiplier.
    pub sigma: f64,
    /// The standard deviation of `w - w_clean` over the tensor's elements, measured on the
    /// noisy model's tensor.
    pub realized_std: f64,
    /// Elements of the tensor.
    pub elements: usize,
}

impl AqnTargetAudit {
    /// `realized_std / sigma` (1 is exact; `None` where sigma is 0).
    pub fn ratio(&self) -> Option<f64> {
        (self.sigma > 0.0).then(|| self.realized_std / self.sigma)
    }
}

/// One step's draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AqnAudit {
    /// The optimizer step.
    pub step: u64,
    /// The schedule's sigma at the step.
    pub sigma: f64,
    /// The RIN multipliers in force, one per decoder layer.
    pub multipliers: Vec<f64>,
    /// Every targeted tensor.
    pub targets: Vec<AqnTargetAudit>,
}

impl AqnAudit {
    /// The line of `noise_audit.jsonl` (the schema `crate::run::log::parse_audit` reads).
    pub fn to_record(&self) -> AuditRecord {
        AuditRecord {
            step: self.step,
            sigma: self.sigma,
            multipliers: Some(self.multipliers.clone()),
            targets: self
                .targets
                .iter()
                .map(|t| AuditTarget {
                    name: t.name.clone(),
                    sigma: t.sigma,
                    realized_std: t.realized_std,
                    multiplier: Some(t.multiplier),
                    elements: Some(t.elements as u64),
                    layer: t.layer,
                })
                .collect(),
        }
    }

    /// [`Self::to_record`] as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.to_record()).expect("an audit record serializes")
    }

    /// The largest `|realized / applied - 1|` over targets with sigma > 0 (0 without any).
    pub fn max_relative_deviation(&self) -> f64 {
        self.targets
            .iter()
            .filter_map(AqnTargetAudit::ratio)
            .map(|r| (r - 1.0).abs())
            .fold(0.0, f64::max)
    }

    /// The step's `aqn/*` metrics: the schedule's sigma, and the mean of `realized / applied`
    /// over the targets with sigma > 0 (absent without any).
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut metrics = vec![(AQN_SIGMA, self.sigma)];
        let ratios: Vec<f64> = self.targets.iter().filter_map(|t| t.ratio()).collect();
        if !ratios.is_empty() {
            metrics.push((
                AQN_REALIZED_STD_RATIO,
                ratios.iter().sum::<f64>() / ratios.len() as f64,
            ));
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(sigma: f64, realized_std: f64) -> AqnTargetAudit {
        AqnTargetAudit {
            name: "model.norm.weight".into(),
            layer: None,
            multiplier: 1.0,
            sigma,
            realized_std,
            elements: 4,
        }
    }

    #[test]
    fn metrics_are_sigma_and_the_mean_ratio_over_noised_targets() {
        let audit = AqnAudit {
            step: 3,
            sigma: 0.01,
            multipliers: vec![1.0],
            targets: vec![target(0.01, 0.011), target(0.02, 0.018), target(0.0, 0.0)],
        };
        let m = audit.metrics();
        assert_eq!(m[0], (AQN_SIGMA, 0.01));
        assert_eq!(m[1].0, AQN_REALIZED_STD_RATIO);
        assert!((m[1].1 - (1.1 + 0.9) / 2.0).abs() < 1e-12, "{m:?}");
        let silent = AqnAudit {
            targets: vec![target(0.0, 0.0)],
            ..audit
        };
        assert_eq!(silent.metrics(), vec![(AQN_SIGMA, 0.01)]);
    }
}
