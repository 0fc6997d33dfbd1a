//! The geometric K-stage schedule with a warm-up interval (QeRL's AQN, docs/spec.md section 3), in
//! two variants.
//!
//! **QeRL code semantics** (`geometric`, the default). `trend_i = s0 (s1/s0)^(i/(K-2))` for
//! `i = 0..=K-2` (K-1 values from s0 to s1). The run of T steps is cut into K intervals of the
//! *real* width `T/K`; the interval of a step is `j = min(step, T) // (T/K)` with Python's float
//! floor division (QeRL computes `int(step // steps_per_interval)` on a float). Interval 0 is
//! the warm-up (sigma = 0); interval `j >= 1` uses `trend[min(j-1, K-2)]`, so the last step
//! (`j = K`) stays at s1.
//!
//! When T is not a multiple of K the intervals have a fractional width: their first steps are
//! `ceil(j T/K)`, so they hold `floor(T/K)` or `ceil(T/K)` steps each. Example (the seed's E13j:
//! T = 29, K = 10, width 2.9): steps 1-2 warm-up, 3-5 -> s0, 6-8, 9-11, ... 24-26, and 27-29 -> s1.
//!
//! Python's `a // b` on floats is the floor of the exact quotient of the two doubles, which is
//! not always `floor(a / b)` after rounding: `1 // 0.1 == 9` but `floor(1 / 0.1) == 10`. For
//! T = 20, K = 6 (width 3.333...35), step 10 falls in interval 2 in QeRL, not 3.
//! [`python_floor_div`] reproduces this bit for bit.
//!
//! **Paper variant** (`geometric-paper`): integer intervals of `w = floor(T/K)` steps,
//! `k = floor((step-1) / w)`; `k = 0` is the warm-up, `k >= 1` gives `s0 (s1/s0)^((k-1)/(K-1))`.
//! The paper defines `k = 1..K` only; when T is not a multiple of K the last `T - K w` steps would
//! reach `k > K`, and they stay at `k = K` (sigma = s1) instead of extrapolating below s1.

use serde::{Deserialize, Serialize};

use super::{ScheduleError, SigmaPoint, check_count, check_positive, check_stages, check_step};

/// Parameters of both geometric variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeometricSchedule {
    /// s0, the first non-zero sigma, > 0.
    pub sigma_start: f64,
    /// s1, the last sigma, > 0.
    pub sigma_end: f64,
    /// K, the number of intervals including the warm-up, >= 3.
    pub stages: u32,
    /// T, >= 1.
    pub total_steps: u64,
}

/// Python's float floor division `a // b` for `a >= 0`, `b > 0` (CPython `float_floor_div`):
/// the floor of the exact quotient of the two doubles. `a % b` is the exact `fmod`, so
/// `(a - a % b) / b` is within half an ulp of an integer, which the final rounding recovers.
pub fn python_floor_div(a: f64, b: f64) -> f64 {
    debug_assert!(a >= 0.0 && b > 0.0);
    let rem = a % b;
    let div = (a - rem) / b;
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

impl GeometricSchedule {
    /// Refuses K < 3, s0 or s1 that are not positive finite numbers, and T = 0.
    pub fn validate(&self, kind: &'static str) -> Result<(), ScheduleError> {
        check_positive("sigma_start", self.sigma_start, "")?;
        check_positive(
            "sigma_end",
            self.sigma_end,
            " (the geometric trend s0 (s1/s0)^x needs s1 > 0)",
        )?;
        check_stages(kind, self.stages)?;
        check_count("total_steps", self.total_steps)
    }

    /// QeRL's `sigma_trend`: the K-1 values `s0 (s1/s0)^(i/(K-2))`, `i = 0..=K-2`.
    pub fn trend(&self) -> Vec<f64> {
        let denom = f64::from(self.stages - 2);
        (0..=self.stages - 2)
            .map(|i| {
                self.sigma_start * (self.sigma_end / self.sigma_start).powf(f64::from(i) / denom)
            })
            .collect()
    }

    /// QeRL code semantics at `step` (1-based), without re-validating the parameters.
    pub(super) fn point_qerl(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        check_step(step, self.total_steps)?;
        let width = self.total_steps as f64 / f64::from(self.stages);
        let j = python_floor_div(step.min(self.total_steps) as f64, width) as u64;
        let (sigma, stage) = if j == 0 {
            (0.0, 0)
        } else {
            let idx = (j - 1).min(u64::from(self.stages - 2));
            let x = idx as f64 / f64::from(self.stages - 2);
            (
                self.sigma_start * (self.sigma_end / self.sigma_start).powf(x),
                idx + 1,
            )
        };
        Ok(SigmaPoint {
            step,
            sigma,
            stage: Some(stage),
            epoch: None,
        })
    }

    /// The paper's variant at `step` (1-based), without re-validating the parameters.
    pub(super) fn point_paper(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        check_step(step, self.total_steps)?;
        let k_max = u64::from(self.stages);
        let width = self.total_steps / k_max;
        if width == 0 {
            return Err(ScheduleError::RunShorterThanStages {
                total_steps: self.total_steps,
                stages: self.stages,
            });
        }
        let k = ((step - 1) / width).min(k_max);
        let sigma = if k == 0 {
            0.0
        } else {
            let x = (k - 1) as f64 / (k_max - 1) as f64;
            self.sigma_start * (self.sigma_end / self.sigma_start).powf(x)
        };
        Ok(SigmaPoint {
            step,
            sigma,
            stage: Some(k),
            epoch: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn python_floor_division_matches_cpython() {
        // Values printed by CPython 3.11.
        assert_eq!(python_floor_div(1.0, 0.1), 9.0);
        assert_eq!((1.0f64 / 0.1).floor(), 10.0);
        assert_eq!(python_floor_div(29.0, 29.0 / 10.0), 10.0);
        assert_eq!(python_floor_div(10.0, 20.0 / 6.0), 2.0);
        assert_eq!((10.0f64 / (20.0 / 6.0)).floor(), 3.0);
        assert_eq!(python_floor_div(6.0, 0.6), 10.0);
        assert_eq!(python_floor_div(0.0, 2.5), 0.0);
        assert_eq!(python_floor_div(7.0, 2.0), 3.0);
    }

    #[test]
    fn e13j_case_t29_k10() {
        // The seed's E13j: 0.05 -> 5e-4, K = 10, T = 29.
        let s = GeometricSchedule {
            sigma_start: 0.05,
            sigma_end: 5e-4,
            stages: 10,
            total_steps: 29,
        };
        s.validate("geometric").unwrap();
        let sig = |step| s.point_qerl(step).unwrap().sigma;
        assert_eq!(sig(1), 0.0);
        assert_eq!(sig(2), 0.0);
        for step in 3..=5 {
            assert_eq!(sig(step), 0.05, "step {step}");
        }
        for step in 27..=29 {
            assert!(close(sig(step), 5e-4, 1e-12), "step {step}: {}", sig(step));
        }
        // Hand-computed from the trend 0.05 * 0.01^(i/8): steps 6-8 -> i = 1, 18-20 -> i = 5.
        let t1 = 0.05 * 0.01f64.powf(1.0 / 8.0);
        for step in 6..=8 {
            assert!(close(sig(step), t1, 1e-15));
        }
        assert!(
            close(sig(20), 0.002_811_706_625_951_746, 1e-12),
            "{}",
            sig(20)
        );
        assert!(close(sig(26), 0.000_889_139_705_019_461_5, 1e-12));
    }

    #[test]
    fn k10_trend_1e2_to_1e4() {
        let s = GeometricSchedule {
            sigma_start: 1e-2,
            sigma_end: 1e-4,
            stages: 10,
            total_steps: 100,
        };
        let want = [
            1e-2, 5.62e-3, 3.16e-3, 1.78e-3, 1e-3, 5.62e-4, 3.16e-4, 1.78e-4, 1e-4,
        ];
        let trend = s.trend();
        assert_eq!(trend.len(), 9);
        for (i, (&got, &w)) in trend.iter().zip(&want).enumerate() {
            assert!(close(got, w, 5e-3), "trend[{i}] = {got}, want {w}");
            // With T = 100 the interval width is exactly 10: steps 10(i+1)..10(i+2)-1.
            let step = 10 * (i as u64 + 1) + 5;
            assert_eq!(s.point_qerl(step).unwrap().sigma, got, "step {step}");
        }
        // Exact values: 1e-2 * 1e-2^(i/8).
        assert!(close(trend[2], 10f64.powf(-2.5), 1e-14));
        assert_eq!(s.point_qerl(9).unwrap().sigma, 0.0);
        assert_eq!(s.point_qerl(100).unwrap().sigma, trend[8]);
    }

    #[test]
    fn float_interval_boundary_follows_python() {
        // T = 20, K = 6: step 10 is in interval 2 (Python), not 3 (naive floor(a / b)).
        let s = GeometricSchedule {
            sigma_start: 0.04,
            sigma_end: 0.0025,
            stages: 6,
            total_steps: 20,
        };
        let p = s.point_qerl(10).unwrap();
        assert_eq!(p.stage, Some(2));
        assert_eq!(p.sigma, s.trend()[1]);
        assert_eq!(s.point_qerl(11).unwrap().stage, Some(3));
    }

    #[test]
    fn paper_variant_hand_computed() {
        // T = 29, K = 10: w = 2; k = (step-1)/2; sigma = 0.05 * 0.01^((k-1)/9), k capped at 10.
        let s = GeometricSchedule {
            sigma_start: 0.05,
            sigma_end: 5e-4,
            stages: 10,
            total_steps: 29,
        };
        let sig = |step| s.point_paper(step).unwrap().sigma;
        assert_eq!(sig(1), 0.0);
        assert_eq!(sig(2), 0.0);
        assert_eq!(sig(3), 0.05);
        assert_eq!(sig(4), 0.05);
        assert!(close(sig(5), 0.05 * 0.01f64.powf(1.0 / 9.0), 1e-15));
        assert!(close(sig(21), 5e-4, 1e-12)); // k = 10
        assert_eq!(s.point_paper(29).unwrap().stage, Some(10)); // k = 14 capped at K
        assert!(close(sig(29), 5e-4, 1e-12));
        let short = GeometricSchedule {
            total_steps: 7,
            ..s
        };
        let err = short.point_paper(1).unwrap_err().to_string();
        assert!(err.contains("T = 7") && err.contains("K = 10"), "{err}");
    }
}
