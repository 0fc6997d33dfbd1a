//! The epoch-aware schedule of docs/spec.md section 3: each epoch has its own geometric sigma range
//! and its own warm-up, so every epoch trains with meaningful noise (the seed's E5b, E9x, E12).
//!
//! E epochs of S steps; global step `g = 1..=E*S` lies in epoch `e = (g-1) / S` (0-based) at local
//! step `t = (g-1) % S + 1`. Epoch boundaries `b_e = s0 (s1/s0)^(e/E)`, `e = 0..=E`. Inside epoch
//! e the local run is cut into K+1 intervals of the real width `S/(K+1)`; `i = t // (S/(K+1))`
//! (Python float floor division, as in the geometric kind); `i = 0` is the warm-up (sigma = 0),
//! otherwise `sigma = b_e (b_{e+1}/b_e)^(k/(K-1))` with `k = min(i-1, K-1)`. The first step after
//! the warm-up therefore has exactly `b_e`, and the last step of the epoch (`i = K+1`) has
//! `b_{e+1}`. When `S < K+1` the warm-up interval holds no step.
//!
//! The seed's runs used K = `stages_per_epoch` = 5 (HW-inject runs E5b, E5c, E9x) and 10 (E12);
//! the fork's default was 5.

use serde::{Deserialize, Serialize};

use super::geometric::python_floor_div;
use super::{ScheduleError, SigmaPoint, check_count, check_positive, check_stages, check_step};

/// K stages per epoch over E epochs of S steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochAwareSchedule {
    /// s0 = b_0, > 0.
    pub sigma_start: f64,
    /// s1 = b_E, > 0.
    pub sigma_end: f64,
    /// K, the stages per epoch after the warm-up, >= 3.
    pub stages: u32,
    /// E, >= 1.
    pub epochs: u64,
    /// S, >= 1.
    pub steps_per_epoch: u64,
}

impl EpochAwareSchedule {
    /// Refuses K < 3, s0 or s1 that are not positive finite numbers, E = 0, S = 0, and E*S that
    /// overflows.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        check_positive("sigma_start", self.sigma_start, "")?;
        check_positive(
            "sigma_end",
            self.sigma_end,
            " (the epoch boundaries s0 (s1/s0)^(e/E) need s1 > 0)",
        )?;
        check_stages("epoch-aware", self.stages)?;
        check_count("epochs", self.epochs)?;
        check_count("steps_per_epoch", self.steps_per_epoch)?;
        self.epochs
            .checked_mul(self.steps_per_epoch)
            .map(|_| ())
            .ok_or(ScheduleError::TooManySteps {
                epochs: self.epochs,
                steps_per_epoch: self.steps_per_epoch,
            })
    }

    /// T = E * S (saturating; [`Self::validate`] refuses overflow).
    pub fn total_steps(&self) -> u64 {
        self.epochs.saturating_mul(self.steps_per_epoch)
    }

    /// The epoch boundary `b_e = s0 (s1/s0)^(e/E)`, `e = 0..=E`.
    pub fn boundary(&self, e: u64) -> f64 {
        self.sigma_start * (self.sigma_end / self.sigma_start).powf(e as f64 / self.epochs as f64)
    }

    /// The value at global `step` (1-based), without re-validating the parameters.
    pub(super) fn point(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        check_step(step, self.total_steps())?;
        let e = (step - 1) / self.steps_per_epoch;
        let t = (step - 1) % self.steps_per_epoch + 1;
        let width = self.steps_per_epoch as f64 / f64::from(self.stages + 1);
        let i = python_floor_div(t as f64, width) as u64;
        let (sigma, stage) = if i == 0 {
            (0.0, 0)
        } else {
            let k = (i - 1).min(u64::from(self.stages - 1));
            let (b0, b1) = (self.boundary(e), self.boundary(e + 1));
            let x = k as f64 / f64::from(self.stages - 1);
            (b0 * (b1 / b0).powf(x), k + 1)
        };
        Ok(SigmaPoint {
            step,
            sigma,
            stage: Some(stage),
            epoch: Some(e + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn e5b_hand_computed() {
        // E5b: 0.05 -> 5e-4, K = 5, 2 epochs of 58 steps. b = 0.05, 0.005, 0.0005.
        let s = EpochAwareSchedule {
            sigma_start: 0.05,
            sigma_end: 5e-4,
            stages: 5,
            epochs: 2,
            steps_per_epoch: 58,
        };
        s.validate().unwrap();
        assert!(close(s.boundary(1), 0.005, 1e-14));
        let p = |g| s.point(g).unwrap();
        // Width 58/6 = 9.667: t = 1..9 warm-up, t = 10 is the first noisy step with b_0.
        assert_eq!(p(9).sigma, 0.0);
        assert_eq!(p(10).sigma, 0.05);
        assert_eq!(p(10).stage, Some(1));
        // t = 20 -> i = 2 -> k = 1: 0.05 * 0.1^(1/4).
        assert!(close(p(20).sigma, 0.05 * 0.1f64.powf(0.25), 1e-14));
        // Last step of epoch 1 (t = 58, i = 6, k = 4) is b_1; epoch 2 restarts with a warm-up.
        assert!(close(p(58).sigma, 0.005, 1e-12));
        assert_eq!(p(59).sigma, 0.0);
        assert_eq!(p(59).epoch, Some(2));
        assert_eq!(p(68).sigma, s.boundary(1));
        assert!(close(p(116).sigma, 5e-4, 1e-12));
    }

    #[test]
    fn e12_one_epoch_k10() {
        // E12: 0.05 -> 5e-4, K = 10, 1 epoch of 29 steps: width 29/11 = 2.636.
        let s = EpochAwareSchedule {
            sigma_start: 0.05,
            sigma_end: 5e-4,
            stages: 10,
            epochs: 1,
            steps_per_epoch: 29,
        };
        let sig = |g| s.point(g).unwrap().sigma;
        assert_eq!(sig(1), 0.0);
        assert_eq!(sig(2), 0.0);
        assert_eq!(sig(3), 0.05); // 3 / 2.636 = 1.14
        assert_eq!(sig(5), 0.05); // 1.90
        assert!(close(sig(6), 0.05 * 0.01f64.powf(1.0 / 9.0), 1e-14)); // 2.28
        assert!(close(sig(27), 5e-4, 1e-12)); // 10.24 -> k = 9
        assert!(close(sig(29), 5e-4, 1e-12));
        assert!(sig(26) > sig(27)); // 9.86 -> k = 8
    }

    proptest! {
        #[test]
        fn non_increasing_inside_each_epoch_and_boundaries_hold(
            s0 in 1e-4f64..1.0,
            ratio in 1e-4f64..1.0,
            stages in 3u32..16,
            epochs in 1u64..5,
            steps_per_epoch in 1u64..120,
        ) {
            let s = EpochAwareSchedule {
                sigma_start: s0,
                sigma_end: s0 * ratio,
                stages,
                epochs,
                steps_per_epoch,
            };
            s.validate().unwrap();
            for e in 0..epochs {
                let mut previous: Option<f64> = None;
                for t in 1..=steps_per_epoch {
                    let p = s.point(e * steps_per_epoch + t).unwrap();
                    let sigma = p.sigma;
                    match previous {
                        None if sigma == 0.0 => continue, // still in the warm-up
                        None => {
                            // With intervals at least one step wide (S >= K+1) the first noisy
                            // step is in interval 1 and has exactly b_e.
                            if steps_per_epoch > u64::from(stages) {
                                prop_assert_eq!(p.stage, Some(1));
                            }
                            if p.stage == Some(1) {
                                prop_assert_eq!(sigma, s.boundary(e));
                            }
                        }
                        Some(prev) => {
                            prop_assert!(sigma > 0.0, "zero after warm-up, epoch {}, t {}", e, t);
                            prop_assert!(sigma <= prev, "increase at epoch {}, t {}", e, t);
                        }
                    }
                    previous = Some(sigma);
                }
                // Every epoch has noise after its warm-up, ending at b_{e+1}.
                let last = previous.expect("the last step of an epoch is never in the warm-up");
                prop_assert!((last - s.boundary(e + 1)).abs() <= 1e-12 * s.boundary(e + 1));
            }
        }
    }
}
