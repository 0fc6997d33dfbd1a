//! Zoned RIN (docs/spec.md section 5): a multiplier per layer range, switching at fractions of
//! training. The E13 plan's E13i-high / E13i-low are one phase with layers 10-19 at 1.6x / 0.6x
//! (sigma 0.08 / 0.03 against the base 0.05).
//!
//! Phase selection: with progress `p = (step - 1) / T` (0 at the first step), the phase in force
//! is the last one whose `from_fraction <= p`. With T = 58 and phases at 0 and 0.5, steps 1-29
//! use the first phase and steps 30-58 the second. Inside a phase every layer starts at
//! `default`; the zones are applied in order, a later zone overriding an earlier one.

use serde::{Deserialize, Serialize};

use super::{LayerSet, RinError};

/// The multiplier of layers outside every zone, unless a phase sets its own.
pub const DEFAULT_OUTSIDE: f64 = 1.0;

/// A layer range and its multiplier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The layers.
    pub layers: LayerSet,
    /// Their multiplier, finite and >= 0.
    pub multiplier: f64,
}

/// The zones in force from a fraction of training on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePhase {
    /// Where the phase starts, in [0, 1); the first phase starts at 0.
    #[serde(default)]
    pub from_fraction: f64,
    /// The multiplier of layers outside the zones.
    #[serde(default = "default_outside")]
    pub default: f64,
    /// The zones, applied in order.
    pub zones: Vec<Zone>,
}

fn default_outside() -> f64 {
    DEFAULT_OUTSIDE
}

/// The phases, in order of `from_fraction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesPolicy {
    /// At least one phase; the first starts at 0, the others at strictly increasing fractions.
    pub phases: Vec<ZonePhase>,
}

impl ZonesPolicy {
    /// One phase for the whole run: `zones` over a `default` of 1.
    pub fn single(zones: Vec<Zone>) -> Self {
        Self {
            phases: vec![ZonePhase {
                from_fraction: 0.0,
                default: DEFAULT_OUTSIDE,
                zones,
            }],
        }
    }

    /// Refuses no phases, a first phase that does not start at 0, fractions outside [0, 1) or not
    /// increasing, and multipliers that are negative or not finite.
    pub fn validate(&self) -> Result<(), RinError> {
        let Some(first) = self.phases.first() else {
            return Err(RinError::BadParameter {
                name: "phases",
                value: "[]".into(),
                expected: "the zones policy needs at least one phase".into(),
            });
        };
        if first.from_fraction != 0.0 {
            return Err(RinError::BadParameter {
                name: "from_fraction",
                value: first.from_fraction.to_string(),
                expected: "the first phase must start at 0".into(),
            });
        }
        let mut previous = f64::NEG_INFINITY;
        for phase in &self.phases {
            let f = phase.from_fraction;
            if !(0.0..1.0).contains(&f) || f <= previous {
                return Err(RinError::BadParameter {
                    name: "from_fraction",
                    value: f.to_string(),
                    expected: format!(
                        "phase fractions must lie in [0, 1) and increase strictly (previous {previous})"
                    ),
                });
            }
            previous = f;
            super::check_multiplier("default", phase.default)?;
            for zone in &phase.zones {
                super::check_multiplier("multiplier", zone.multiplier)?;
            }
        }
        Ok(())
    }

    /// The phase in force at `step` of `total_steps` (both already checked).
    pub fn phase_at(&self, step: u64, total_steps: u64) -> &ZonePhase {
        let p = (step - 1) as f64 / total_steps as f64;
        self.phases
            .iter()
            .rev()
            .find(|ph| ph.from_fraction <= p)
            .unwrap_or(&self.phases[0])
    }

    /// The zone multipliers for `n` layers at `step`.
    pub(super) fn multipliers(
        &self,
        n: usize,
        step: u64,
        total_steps: u64,
    ) -> Result<Vec<f64>, RinError> {
        self.validate()?;
        for phase in &self.phases {
            for zone in &phase.zones {
                zone.layers.check(n)?;
            }
        }
        let phase = self.phase_at(step, total_steps);
        let mut m = vec![phase.default; n];
        for zone in &phase.zones {
            for (l, v) in m.iter_mut().enumerate() {
                if zone.layers.contains(l) {
                    *v = zone.multiplier;
                }
            }
        }
        Ok(m)
    }
}
