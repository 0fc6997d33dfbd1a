//! The RIN policies of docs/spec.md section 5: per-layer noise multipliers `m_l` from a per-layer
//! error vector (an SRDD metric), for a given step.
//!
//! | policy | `m_l` | seed experiment |
//! |---|---|---|
//! | `uniform` | 1 | E13i-global (all layers) |
//! | `targeted` | 1 for chosen layers, else 0 | E9a (14-17), E13i-targeted (10-19) |
//! | `variable` | `err_l / mean(err)` | E12, E13l ("high error -> more noise") |
//! | `inverse` | `2 - err_l / mean(err)` | E13m ("high error -> less noise") |
//! | `inverse-normalized` | `(2 - m_l) / max(2 - m)` | E13n (ceiling at the base sigma) |
//! | `tiered` | 1.5 band / 1.2 neighbours / 1.0 | E9b |
//! | `zones` | per range, switching at training fractions | E13i-high, E13i-low |

use serde::{Deserialize, Serialize};

use super::{RinError, TargetedPolicy, TieredPolicy, ZonesPolicy};
use crate::named::named_enum;

/// `inverse`: `m_l = INVERSE_PIVOT - err_l / mean(err)`.
pub const INVERSE_PIVOT: f64 = 2.0;

named_enum! {
    /// The name of a RIN policy.
    RinPolicyKind, "RIN policy", RinError {
        /// Multiplier 1 everywhere.
        Uniform => "uniform" | "global",
        /// 1 for chosen layers, 0 elsewhere.
        Targeted => "targeted",
        /// `err / mean(err)`.
        Variable => "variable",
        /// `2 - err / mean(err)`.
        Inverse => "inverse",
        /// `(2 - m) / max(2 - m)`.
        InverseNormalized => "inverse-normalized" | "inverse_normalized",
        /// Band / neighbours / base.
        Tiered => "tiered",
        /// Multipliers per layer range, by phase of training.
        Zones => "zones",
    }
}

/// A RIN policy. Serialized tagged by `kind` (kebab-case), unknown fields refused:
/// `{ kind = "tiered", band_width = 4 }`, `{ kind = "targeted", layers = "14-17" }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RinPolicy {
    /// Multiplier 1 for every layer.
    Uniform {},
    /// See [`TargetedPolicy`].
    Targeted(TargetedPolicy),
    /// `m_l = err_l / mean(err)`.
    Variable {},
    /// `m_l = 2 - err_l / mean(err)`.
    Inverse {},
    /// `m_l = (2 - err_l / mean(err)) / max_j (2 - err_j / mean(err))`.
    InverseNormalized {},
    /// See [`TieredPolicy`].
    Tiered(TieredPolicy),
    /// See [`ZonesPolicy`].
    Zones(ZonesPolicy),
}

impl Default for RinPolicy {
    fn default() -> Self {
        RinPolicy::Uniform {}
    }
}

impl RinPolicy {
    /// The policy's name.
    pub fn kind(&self) -> RinPolicyKind {
        match self {
            RinPolicy::Uniform {} => RinPolicyKind::Uniform,
            RinPolicy::Targeted(_) => RinPolicyKind::Targeted,
            RinPolicy::Variable {} => RinPolicyKind::Variable,
            RinPolicy::Inverse {} => RinPolicyKind::Inverse,
            RinPolicy::InverseNormalized {} => RinPolicyKind::InverseNormalized,
            RinPolicy::Tiered(_) => RinPolicyKind::Tiered,
            RinPolicy::Zones(_) => RinPolicyKind::Zones,
        }
    }

    /// Checks the parameters that do not depend on the error vector.
    pub fn validate(&self) -> Result<(), RinError> {
        match self {
            RinPolicy::Targeted(p) => p.validate(),
            RinPolicy::Tiered(p) => p.validate(),
            RinPolicy::Zones(p) => p.validate(),
            _ => Ok(()),
        }
    }

    /// One multiplier per layer at `step` of a run of `total_steps` (only `zones` depends on the
    /// step; every policy checks it). `errors` must be non-empty, finite and >= 0; the result is
    /// refused if any multiplier is negative or not finite (see [`super::RinConfig`] for clipping).
    pub fn multipliers(
        &self,
        errors: &[f64],
        step: u64,
        total_steps: u64,
    ) -> Result<Vec<f64>, RinError> {
        let m = self.raw_multipliers(errors, step, total_steps)?;
        super::check_multipliers(self.kind().name(), &m)?;
        Ok(m)
    }

    /// The multipliers before clipping and the final check.
    pub(super) fn raw_multipliers(
        &self,
        errors: &[f64],
        step: u64,
        total_steps: u64,
    ) -> Result<Vec<f64>, RinError> {
        super::check_errors(errors)?;
        super::check_step(step, total_steps)?;
        let n = errors.len();
        let relative = || -> Result<Vec<f64>, RinError> {
            let mean = errors.iter().sum::<f64>() / n as f64;
            if mean <= 0.0 {
                return Err(RinError::ZeroMeanError {
                    policy: self.kind().name(),
                    layers: n,
                });
            }
            Ok(errors.iter().map(|e| e / mean).collect())
        };
        match self {
            RinPolicy::Uniform {} => Ok(vec![1.0; n]),
            RinPolicy::Targeted(p) => p.multipliers(errors),
            RinPolicy::Variable {} => relative(),
            RinPolicy::Inverse {} => Ok(relative()?.iter().map(|m| INVERSE_PIVOT - m).collect()),
            RinPolicy::InverseNormalized {} => {
                let inv: Vec<f64> = relative()?.iter().map(|m| INVERSE_PIVOT - m).collect();
                let max = inv.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if max <= 0.0 {
                    return Err(RinError::NoPositiveInverse { max });
                }
                Ok(inv.iter().map(|v| v / max).collect())
            }
            RinPolicy::Tiered(p) => p.multipliers(errors),
            RinPolicy::Zones(p) => p.multipliers(n, step, total_steps),
        }
    }
}
