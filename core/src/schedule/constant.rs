//! The constant schedule: `sigma(step) = s0` for every step of the run (docs/spec.md section 3).

use serde::{Deserialize, Serialize};

use super::{ScheduleError, SigmaPoint, check_count, check_positive, check_step};

/// `sigma(step) = sigma` for steps `1..=total_steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantSchedule {
    /// The noise standard deviation, > 0.
    pub sigma: f64,
    /// T, the optimizer steps of the run, >= 1.
    pub total_steps: u64,
}

impl ConstantSchedule {
    /// Refuses a sigma that is not a positive finite number and a run of 0 steps.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        check_positive("sigma", self.sigma, "")?;
        check_count("total_steps", self.total_steps)
    }

    /// The value at `step` (1-based), without re-validating the parameters.
    pub(super) fn point(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        check_step(step, self.total_steps)?;
        Ok(SigmaPoint {
            step,
            sigma: self.sigma,
            stage: None,
            epoch: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_everywhere_in_the_run() {
        let s = ConstantSchedule {
            sigma: 0.03,
            total_steps: 5,
        };
        s.validate().unwrap();
        for step in 1..=5 {
            assert_eq!(s.point(step).unwrap().sigma, 0.03);
        }
        let err = s.point(6).unwrap_err().to_string();
        assert!(err.contains("step 6") && err.contains("T = 5"), "{err}");
    }
}
