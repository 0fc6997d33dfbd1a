//! AdamW settings with PyTorch's (and verl's) defaults, and the Burn optimizer built from them.
//!
//! Burn 0.22's `AdamW` (burn-optim `optim/adamw.rs`) computes the same update as
//! `torch.optim.AdamW` (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", 2019):
//!
//! ```text
//! p <- p (1 - lr wd)                                   decoupled weight decay
//! m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
//! p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! ```
//!
//! (eps added after the square root of the bias-corrected second moment; PyTorch writes the same
//! as `lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`). `tests/rl_optim.rs` checks five
//! steps against numbers from PyTorch 2 (`tests/rl_optim_reference.py`): the parameters agree to
//! 1.6e-6 after five steps of lr 0.1. The residue is Burn keeping the betas in f32: `1 - b2` is
//! `1 - 0.999f32 = 0.00099998713`, 1.3e-5 off, which changes the first steps' size by ~6e-6
//! relative (PyTorch computes the bias corrections in double). What differs materially is the
//! defaults: Burn's `AdamWConfig::new()` has `epsilon = 1e-5` and `weight_decay = 1e-4`, PyTorch
//! and verl use `eps = 1e-8` and `weight_decay = 0.01`. [`AdamWSettings`] carries PyTorch's
//! defaults and is the one way the trainer builds its optimizer. It never sets Burn's own
//! gradient clipping, which is per parameter (see [`super::grad_clip`]).

use serde::{Deserialize, Serialize};

use super::error::RlError;

/// PyTorch's default `betas`.
pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
/// PyTorch's default `eps`.
pub const DEFAULT_EPS: f64 = 1e-8;
/// verl's (and PyTorch AdamW's) default `weight_decay`.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;

/// AdamW's settings, verl's `actor.optim` names (TOML: `[optim]`); the learning rate comes from
/// the schedule at every step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWSettings {
    /// `(b1, b2)`, each in [0, 1) (default 0.9, 0.999).
    pub betas: [f64; 2],
    /// The denominator's epsilon (> 0; default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (>= 0; default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            betas: DEFAULT_BETAS,
            eps: DEFAULT_EPS,
            weight_decay: DEFAULT_WEIGHT_DECAY,
        }
    }
}

impl AdamWSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RlError> {
        for (name, b) in [("betas[0]", self.betas[0]), ("betas[1]", self.betas[1])] {
            if !(0.0..1.0).contains(&b) {
                return Err(RlError::InvalidSetting {
                    name,
                    value: b.to_string(),
                    requirement: "it must be in [0, 1)".into(),
                });
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(RlError::InvalidSetting {
                name: "eps",
                value: self.eps.to_string(),
                requirement: "it must be a finite number > 0".into(),
            });
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(RlError::InvalidSetting {
                name: "weight_decay",
                value: self.weight_decay.to_string(),
                requirement: "it must be a finite number >= 0".into(),
            });
        }
        Ok(())
    }

    /// Burn's optimizer for a whole module, with these settings and no Burn-side clipping.
    #[cfg(feature = "burn")]
    pub fn init(&self) -> Result<burn::optim::ModuleOptimizer, RlError> {
        self.validate()?;
        Ok(burn::optim::AdamWConfig::new()
            .with_beta_1(self.betas[0] as f32)
            .with_beta_2(self.betas[1] as f32)
            .with_epsilon(self.eps as f32)
            .with_weight_decay(self.weight_decay as f32)
            .init())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        AdamWSettings::default().validate().unwrap();
        let bad = AdamWSettings {
            betas: [0.9, 1.0],
            ..AdamWSettings::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("betas[1] = 1")
        );
        let bad = AdamWSettings {
            eps: 0.0,
            ..AdamWSettings::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("eps = 0"));
        let s: AdamWSettings = serde_json::from_str(r#"{"betas": [0.9, 0.95]}"#).unwrap();
        assert_eq!(s.betas, [0.9, 0.95]);
        assert_eq!(s.weight_decay, 0.01);
        assert!(serde_json::from_str::<AdamWSettings>(r#"{"beta1": 0.9}"#).is_err());
    }
}
