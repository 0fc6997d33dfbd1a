//! The learning-rate schedule of the actor, as verl's FSDP worker builds it (its
//! `get_constant_schedule_with_warmup` / `get_cosine_schedule_with_warmup`, which follow HF
//! transformers): a linear warm-up, then constant or cosine decay.
//!
//! With `W` warm-up steps, `T` total training steps and `s` the number of scheduler steps taken
//! so far (0 for the first update; verl steps the scheduler once per training step, after all of
//! that step's PPO mini-batches and epochs), `lr(s) = base_lr * f(s)`:
//!
//! ```text
//! warm-up (s < W):  f = s / max(1, W)
//! constant:         f = 1
//! cosine:           p = (s - W) / max(1, T - W)
//!                   f = max(m, (1 - m)/2 cos(2 pi k p) + (1 + m)/2)      m = min_lr_ratio, k = num_cycles
//! ```
//!
//! As in HF and verl, the first update of a run with warm-up has `lr = 0`. `W` is
//! `lr_warmup_steps` when given, else `int(lr_warmup_steps_ratio * T)` (truncated, as Python's
//! `int`). Past `T` the cosine formula is evaluated as is (verl does not stop it either).

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

use super::error::RlError;

/// HF's and verl's default `num_cycles`: half a cosine wave, from the peak down to the floor.
pub const DEFAULT_NUM_CYCLES: f64 = 0.5;

named_enum! {
    /// verl's `lr_scheduler_type`.
    #[derive(Default)]
    LrScheduleKind, "LR scheduler type (lr_scheduler_type)", RlError {
        /// Warm-up, then the base rate (default).
        #[default]
        Constant => "constant",
        /// Warm-up, then cosine decay to `min_lr_ratio`.
        Cosine => "cosine",
    }
}

/// The schedule settings, verl's `actor.optim` names (TOML: `[optim]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrScheduleConfig {
    /// Constant or cosine (default constant).
    pub lr_scheduler_type: LrScheduleKind,
    /// Warm-up steps; `None` uses the ratio. Giving both is refused.
    pub lr_warmup_steps: Option<u64>,
    /// Warm-up as a fraction of the total steps, in [0, 1] (default 0).
    pub lr_warmup_steps_ratio: f64,
    /// The cosine floor as a fraction of the base rate, in [0, 1] (cosine only; default 0).
    pub min_lr_ratio: f64,
    /// Cosine waves over the decay (cosine only, > 0; default 0.5).
    pub num_cycles: f64,
}

impl Default for LrScheduleConfig {
    fn default() -> Self {
        Self {
            lr_scheduler_type: LrScheduleKind::Constant,
            lr_warmup_steps: None,
            lr_warmup_steps_ratio: 0.0,
            min_lr_ratio: 0.0,
            num_cycles: DEFAULT_NUM_CYCLES,
        }
    }
}

/// A validated schedule for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    kind: LrScheduleKind,
    base_lr: f64,
    warmup_steps: u64,
    total_steps: u64,
    min_lr_ratio: f64,
    num_cycles: f64,
}

fn refuse(name: &'static str, value: impl ToString, requirement: impl Into<String>) -> RlError {
    RlError::InvalidSetting {
        name,
        value: value.to_string(),
        requirement: requirement.into(),
    }
}

impl LrScheduleConfig {
    /// The schedule of a run of `total_steps` training steps at base rate `base_lr`.
    pub fn build(&self, base_lr: f64, total_steps: u64) -> Result<LrSchedule, RlError> {
        if !(base_lr.is_finite() && base_lr > 0.0) {
            return Err(refuse("lr", base_lr, "it must be a finite number > 0"));
        }
        if total_steps == 0 {
            return Err(refuse("total_training_steps", 0, "it must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.lr_warmup_steps_ratio) {
            return Err(refuse(
                "lr_warmup_steps_ratio",
                self.lr_warmup_steps_ratio,
                "it must be in [0, 1]",
            ));
        }
        let warmup_steps = match self.lr_warmup_steps {
            Some(w) if self.lr_warmup_steps_ratio != 0.0 => {
                return Err(refuse(
                    "lr_warmup_steps",
                    w,
                    format!(
                        "give either lr_warmup_steps or lr_warmup_steps_ratio (= {}), not both",
                        self.lr_warmup_steps_ratio
                    ),
                ));
            }
            Some(w) => w,
            // Python's int() truncates toward zero; the product is the same double here.
            None => (self.lr_warmup_steps_ratio * total_steps as f64) as u64,
        };
        if warmup_steps > total_steps {
            return Err(refuse(
                "lr_warmup_steps",
                warmup_steps,
                format!("it must not exceed the total training steps ({total_steps})"),
            ));
        }
        match self.lr_scheduler_type {
            LrScheduleKind::Constant => {
                if self.min_lr_ratio != 0.0 {
                    return Err(refuse(
                        "min_lr_ratio",
                        self.min_lr_ratio,
                        "it only applies to lr_scheduler_type = cosine",
                    ));
                }
                if self.num_cycles != DEFAULT_NUM_CYCLES {
                    return Err(refuse(
                        "num_cycles",
                        self.num_cycles,
                        "it only applies to lr_scheduler_type = cosine",
                    ));
                }
            }
            LrScheduleKind::Cosine => {
                if !(0.0..=1.0).contains(&self.min_lr_ratio) {
                    return Err(refuse(
                        "min_lr_ratio",
                        self.min_lr_ratio,
                        "it must be in [0, 1]",
                    ));
                }
                if !(self.num_cycles.is_finite() && self.num_cycles > 0.0) {
                    return Err(refuse(
                        "num_cycles",
                        self.num_cycles,
                        "it must be a finite number > 0",
                    ));
                }
            }
        }
        Ok(LrSchedule {
            kind: self.lr_scheduler_type,
            base_lr,
            warmup_steps,
            total_steps,
            min_lr_ratio: self.min_lr_ratio,
            num_cycles: self.num_cycles,
        })
    }
}

impl LrSchedule {
    /// The warm-up steps `W`.
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps
    }

    /// The total steps `T`.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The multiplier `f(s)` after `step` scheduler steps.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        match self.kind {
            LrScheduleKind::Constant => 1.0,
            LrScheduleKind::Cosine => {
                let m = self.min_lr_ratio;
                let progress = (step - self.warmup_steps) as f64
                    / (self.total_steps - self.warmup_steps).max(1) as f64;
                let x = (core::f64::consts::PI * self.num_cycles * 2.0 * progress).cos();
                m.max(x * (1.0 - m) * 0.5 + (1.0 + m) * 0.5)
            }
        }
    }

    /// The learning rate after `step` scheduler steps (`step = 0` for the first update).
    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(warmup: Option<u64>, ratio: f64, min: f64) -> LrScheduleConfig {
        LrScheduleConfig {
            lr_scheduler_type: LrScheduleKind::Cosine,
            lr_warmup_steps: warmup,
            lr_warmup_steps_ratio: ratio,
            min_lr_ratio: min,
            ..LrScheduleConfig::default()
        }
    }

    #[test]
    fn constant_with_warmup_by_hand() {
        let s = LrScheduleConfig {
            lr_warmup_steps: Some(4),
            ..LrScheduleConfig::default()
        }
        .build(1e-5, 10)
        .unwrap();
        let lrs: Vec<f64> = (0..6).map(|i| s.lr(i) / 1e-5).collect();
        assert_eq!(lrs, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
        // No warm-up: the base rate from the first step.
        let flat = LrScheduleConfig::default().build(2e-6, 3).unwrap();
        assert_eq!(flat.lr(0), 2e-6);
    }

    #[test]
    fn cosine_by_hand() {
        // W = 2, T = 10, floor 0.1: p = (s - 2) / 8.
        let s = cosine(Some(2), 0.0, 0.1).build(1.0, 10).unwrap();
        assert_eq!(s.factor(0), 0.0);
        assert_eq!(s.factor(1), 0.5);
        assert!((s.factor(2) - 1.0).abs() < 1e-15);
        // p = 0.5: cos(pi/2) = 0 -> (1 + 0.1) / 2.
        assert!((s.factor(6) - 0.55).abs() < 1e-15);
        // p = 0.25: 0.45 cos(pi/4) + 0.55.
        assert!((s.factor(4) - (0.45 * std::f64::consts::FRAC_1_SQRT_2 + 0.55)).abs() < 1e-15);
        // p = 1: the floor.
        assert!((s.factor(10) - 0.1).abs() < 1e-15);
        // Without a floor the cosine reaches 0 at T.
        let z = cosine(None, 0.0, 0.0).build(1.0, 4).unwrap();
        assert!(z.factor(4).abs() < 1e-15);
        assert!((z.factor(1) - (0.5 * (std::f64::consts::FRAC_PI_4).cos() + 0.5)).abs() < 1e-15);
    }

    #[test]
    fn warmup_ratio_truncates_like_python_int() {
        // 0.29 * 100 = 28.999999999999996 in doubles: int() gives 28.
        let s = LrScheduleConfig {
            lr_warmup_steps_ratio: 0.29,
            ..LrScheduleConfig::default()
        }
        .build(1.0, 100)
        .unwrap();
        assert_eq!(s.warmup_steps(), 28);
        let s = cosine(None, 0.1, 0.0).build(1.0, 30).unwrap();
        assert_eq!(s.warmup_steps(), 3);
    }

    #[test]
    fn refusals() {
        let e = |c: LrScheduleConfig, lr: f64, t: u64| c.build(lr, t).unwrap_err().to_string();
        assert!(e(LrScheduleConfig::default(), 0.0, 10).contains("lr = 0"));
        assert!(e(LrScheduleConfig::default(), 1e-5, 0).contains("total_training_steps = 0"));
        assert!(e(cosine(Some(3), 0.1, 0.0), 1e-5, 10).contains("not both"));
        assert!(
            e(cosine(Some(11), 0.0, 0.0), 1e-5, 10)
                .contains("must not exceed the total training steps (10)")
        );
        assert!(e(cosine(None, 1.5, 0.0), 1e-5, 10).contains("lr_warmup_steps_ratio = 1.5"));
        assert!(e(cosine(None, 0.0, 1.5), 1e-5, 10).contains("min_lr_ratio = 1.5"));
        let constant_floor = LrScheduleConfig {
            min_lr_ratio: 0.1,
            ..LrScheduleConfig::default()
        };
        assert!(e(constant_floor, 1e-5, 10).contains("only applies to lr_scheduler_type = cosine"));
        let c: LrScheduleConfig =
            serde_json::from_str(r#"{"lr_scheduler_type": "cosine", "min_lr_ratio": 0.1}"#)
                .unwrap();
        assert_eq!(c.lr_scheduler_type, LrScheduleKind::Cosine);
        let e = serde_json::from_str::<LrScheduleConfig>(r#"{"lr_scheduler_type": "linear"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("constant, cosine"), "{e}");
        assert!(serde_json::from_str::<LrScheduleConfig>(r#"{"warmup_style": "cosine"}"#).is_err());
    }
}
