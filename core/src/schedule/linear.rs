//! The linear schedule of docs/spec.md section 3:
//! `sigma(step) = s0 + (s1 - s0) * (step - 1) / max(T - 1, 1)`, so step 1 gets `s0` and step T
//! gets `s1` exactly (up to one rounding).

use serde::{Deserialize, Serialize};

use super::{
    ScheduleError, SigmaPoint, check_count, check_non_negative, check_positive, check_step,
};

/// Linear interpolation from `sigma_start` at step 1 to `sigma_end` at step T.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSchedule {
    /// s0, > 0.
    pub sigma_start: f64,
    /// s1, >= 0 (a linear decay may end at zero noise; the geometric kinds need s1 > 0).
    pub sigma_end: f64,
    /// T, >= 1.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// Refuses s0 <= 0, s1 < 0, non-finite values and T = 0.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        check_positive("sigma_start", self.sigma_start, "")?;
        check_non_negative("sigma_end", self.sigma_end)?;
        check_count("total_steps", self.total_steps)
    }

    /// The value at `step` (1-based), without re-validating the parameters.
    pub(super) fn point(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        check_step(step, self.total_steps)?;
        let span = self.total_steps.saturating_sub(1).max(1) as f64;
        let sigma =
            self.sigma_start + (self.sigma_end - self.sigma_start) * (step - 1) as f64 / span;
        Ok(SigmaPoint {
            step,
            sigma,
            stage: None,
            epoch: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // T = 5: (step - 1) / 4 = 0, 1/4, 1/2, 3/4, 1.
        let s = LinearSchedule {
            sigma_start: 0.01,
            sigma_end: 0.002,
            total_steps: 5,
        };
        s.validate().unwrap();
        let expected = [0.01, 0.008, 0.006, 0.004, 0.002];
        for (step, want) in (1..=5).zip(expected) {
            let got = s.point(step).unwrap().sigma;
            assert!((got - want).abs() < 1e-15, "step {step}: {got} vs {want}");
        }
        // T = 1: max(T - 1, 1) = 1, the single step gets s0.
        let one = LinearSchedule {
            total_steps: 1,
            ..s
        };
        assert_eq!(one.point(1).unwrap().sigma, 0.01);
    }

    #[test]
    fn decay_to_zero_is_allowed_negative_is_not() {
        let s = LinearSchedule {
            sigma_start: 0.01,
            sigma_end: 0.0,
            total_steps: 3,
        };
        s.validate().unwrap();
        assert_eq!(s.point(3).unwrap().sigma, 0.0);
        let err = LinearSchedule {
            sigma_end: -1e-3,
            ..s
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("sigma_end = -0.001"), "{err}");
    }
}
