//! Tiered RIN (the seed's E9b, its best HW-inject run): 1.5 for the highest-error band, 1.2 for
//! its neighbours, 1.0 elsewhere.
//!
//! The band is defined precisely as the contiguous window of `band_width` layers with the largest
//! error sum (ties: the lowest first layer); the neighbours are the `neighbour_width` layers on
//! each side of it (fewer at the ends of the model). The defaults reproduce the fork's E9b
//! configuration for Qwen2.5-1.5B (28 layers): SRDD found the band 14-17 (errors 40.8-42.7%), and
//! the run used 1.5 on 14-17, 1.2 on 10-13 and 18-21, 1.0 on 0-9 and 22-27.

use serde::{Deserialize, Serialize};

use super::RinError;

/// Layers in the high band (E9b: 14-17).
pub const DEFAULT_BAND_WIDTH: usize = 4;
/// Neighbour layers on each side of the band (E9b: 10-13 and 18-21).
pub const DEFAULT_NEIGHBOUR_WIDTH: usize = 4;
/// Multiplier of the band.
pub const DEFAULT_HIGH: f64 = 1.5;
/// Multiplier of the neighbours.
pub const DEFAULT_NEIGHBOUR: f64 = 1.2;
/// Multiplier of the other layers.
pub const DEFAULT_BASE: f64 = 1.0;

/// The tiers and their widths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieredPolicy {
    /// Layers in the highest-error band, >= 1.
    pub band_width: usize,
    /// Neighbour layers on each side of the band.
    pub neighbour_width: usize,
    /// Multiplier of the band.
    pub high: f64,
    /// Multiplier of the neighbours.
    pub neighbour: f64,
    /// Multiplier elsewhere.
    pub base: f64,
}

impl Default for TieredPolicy {
    fn default() -> Self {
        Self {
            band_width: DEFAULT_BAND_WIDTH,
            neighbour_width: DEFAULT_NEIGHBOUR_WIDTH,
            high: DEFAULT_HIGH,
            neighbour: DEFAULT_NEIGHBOUR,
            base: DEFAULT_BASE,
        }
    }
}

impl TieredPolicy {
    /// Refuses a band of width 0 and multipliers that are negative or not finite.
    pub fn validate(&self) -> Result<(), RinError> {
        if self.band_width == 0 {
            return Err(RinError::BadParameter {
                name: "band_width",
                value: "0".into(),
                expected: "the band needs at least one layer".into(),
            });
        }
        for (name, v) in [
            ("high", self.high),
            ("neighbour", self.neighbour),
            ("base", self.base),
        ] {
            super::check_multiplier(name, v)?;
        }
        Ok(())
    }

    /// The first layer of the band: the window of `band_width` layers with the largest error sum.
    pub fn band_start(&self, errors: &[f64]) -> Result<usize, RinError> {
        let n = errors.len();
        if self.band_width > n {
            return Err(RinError::BadParameter {
                name: "band_width",
                value: self.band_width.to_string(),
                expected: format!("it must be at most the number of layers, {n}"),
            });
        }
        let mut best = (0, f64::NEG_INFINITY);
        for start in 0..=n - self.band_width {
            let sum: f64 = errors[start..start + self.band_width].iter().sum();
            if sum > best.1 {
                best = (start, sum);
            }
        }
        Ok(best.0)
    }

    /// The tier multipliers for `errors` (already checked: non-empty, finite, >= 0).
    pub(super) fn multipliers(&self, errors: &[f64]) -> Result<Vec<f64>, RinError> {
        self.validate()?;
        let start = self.band_start(errors)?;
        let end = start + self.band_width; // exclusive
        let lo = start.saturating_sub(self.neighbour_width);
        let hi = (end + self.neighbour_width).min(errors.len());
        Ok((0..errors.len())
            .map(|l| {
                if (start..end).contains(&l) {
                    self.high
                } else if (lo..hi).contains(&l) {
                    self.neighbour
                } else {
                    self.base
                }
            })
            .collect())
    }
}
