//! Targeted RIN (docs/spec.md section 5): multiplier 1 for the chosen layers, 0 for the others. The
//! layers are chosen one way: an explicit list, the top k by error, or the errors above a
//! threshold. The seed's E9a targeted layers 14-17; the E13 plan's E13i-targeted layers 10-19.

use serde::{Deserialize, Serialize};

use super::{LayerSet, RinError};

/// Multiplier of a chosen layer.
pub const TARGETED_ON: f64 = 1.0;
/// Multiplier of every other layer.
pub const TARGETED_OFF: f64 = 0.0;

/// Exactly one of the three fields is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetedPolicy {
    /// An explicit layer list such as `14-17`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<LayerSet>,
    /// The k layers with the largest error (ties: the lower layer index first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// The layers whose error is strictly above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl TargetedPolicy {
    /// Targets an explicit layer list.
    pub fn layers(layers: LayerSet) -> Self {
        Self {
            layers: Some(layers),
            ..Self::default()
        }
    }

    /// Targets the k layers with the largest error.
    pub fn top_k(k: usize) -> Self {
        Self {
            top_k: Some(k),
            ..Self::default()
        }
    }

    /// Targets the layers whose error is above `threshold`.
    pub fn threshold(threshold: f64) -> Self {
        Self {
            threshold: Some(threshold),
            ..Self::default()
        }
    }

    /// Refuses zero or several selections, `top_k = 0` and a non-finite threshold.
    pub fn validate(&self) -> Result<(), RinError> {
        let given = usize::from(self.layers.is_some())
            + usize::from(self.top_k.is_some())
            + usize::from(self.threshold.is_some());
        if given != 1 {
            return Err(RinError::TargetedSelection { given });
        }
        if self.top_k == Some(0) {
            return Err(RinError::BadParameter {
                name: "top_k",
                value: "0".into(),
                expected: "it must pick at least one layer".into(),
            });
        }
        if let Some(t) = self.threshold.filter(|t| !t.is_finite()) {
            return Err(RinError::BadParameter {
                name: "threshold",
                value: t.to_string(),
                expected: "it must be a finite number".into(),
            });
        }
        Ok(())
    }

    /// The on/off multipliers for `errors` (already checked: non-empty, finite, >= 0).
    pub(super) fn multipliers(&self, errors: &[f64]) -> Result<Vec<f64>, RinError> {
        self.validate()?;
        let n = errors.len();
        let chosen: Vec<bool> = if let Some(layers) = &self.layers {
            layers.check(n)?;
            (0..n).map(|l| layers.contains(l)).collect()
        } else if let Some(k) = self.top_k {
            if k > n {
                return Err(RinError::BadParameter {
                    name: "top_k",
                    value: k.to_string(),
                    expected: format!("it must be at most the number of layers, {n}"),
                });
            }
            let mut order: Vec<usize> = (0..n).collect();
            // Stable sort: equal errors keep the lower layer index first.
            order.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]));
            let mut chosen = vec![false; n];
            for &l in &order[..k] {
                chosen[l] = true;
            }
            chosen
        } else {
            let t = self.threshold.expect("validate() checked one selection");
            let chosen: Vec<bool> = errors.iter().map(|&e| e > t).collect();
            if !chosen.contains(&true) {
                return Err(RinError::NothingSelected {
                    threshold: t,
                    max: errors.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                });
            }
            chosen
        };
        Ok(chosen
            .into_iter()
            .map(|c| if c { TARGETED_ON } else { TARGETED_OFF })
            .collect())
    }
}
