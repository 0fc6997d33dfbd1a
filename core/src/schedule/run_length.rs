//! How long a run is: E epochs of S optimizer steps, T = E * S, and how a caller's overrides of
//! T, E and S merge into a default run (docs/spec.md section 3: steps count from 1 to T).

use serde::{Deserialize, Serialize};

use super::{ScheduleError, check_count};

/// How long a run is: E epochs of S optimizer steps, T = E * S.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLength {
    /// E, >= 1.
    pub epochs: u64,
    /// S, >= 1.
    pub steps_per_epoch: u64,
}

impl RunLength {
    /// E epochs of S steps.
    pub fn epochs(epochs: u64, steps_per_epoch: u64) -> Self {
        Self {
            epochs,
            steps_per_epoch,
        }
    }

    /// One epoch of T steps.
    pub fn steps(total_steps: u64) -> Self {
        Self::epochs(1, total_steps)
    }

    /// T = E * S (saturating; [`Self::validate`] refuses overflow).
    pub fn total_steps(&self) -> u64 {
        self.epochs.saturating_mul(self.steps_per_epoch)
    }

    /// Refuses E = 0, S = 0 and E * S that overflows.
    pub fn validate(&self) -> Result<(), ScheduleError> {
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

    /// Merges optional overrides into `default`: epochs default to the default's; steps per
    /// epoch to `total_steps / epochs` when T is given (it must divide exactly) or else to the
    /// default's; T given with both E and S must equal E * S.
    pub fn resolve(
        default: RunLength,
        total_steps: Option<u64>,
        epochs: Option<u64>,
        steps_per_epoch: Option<u64>,
    ) -> Result<RunLength, ScheduleError> {
        let e = match (epochs, total_steps, steps_per_epoch) {
            (Some(e), _, _) => e,
            // T alone overrides the whole run: one epoch unless epochs are given.
            (None, Some(_), None) => 1,
            (None, _, _) => default.epochs,
        };
        check_count("epochs", e)?;
        let s = match (steps_per_epoch, total_steps) {
            (Some(s), _) => s,
            (None, Some(t)) => {
                check_count("total_steps", t)?;
                if t % e != 0 {
                    return Err(ScheduleError::RunMismatch {
                        total_steps: t,
                        epochs: e,
                        steps_per_epoch: None,
                    });
                }
                t / e
            }
            (None, None) => default.steps_per_epoch,
        };
        let run = RunLength::epochs(e, s);
        run.validate()?;
        if let Some(t) = total_steps
            && t != run.total_steps()
        {
            return Err(ScheduleError::RunMismatch {
                total_steps: t,
                epochs: e,
                steps_per_epoch: Some(s),
            });
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_length_resolution() {
        let d = RunLength::epochs(2, 58);
        assert_eq!(RunLength::resolve(d, None, None, None).unwrap(), d);
        assert_eq!(
            RunLength::resolve(d, Some(100), None, None).unwrap(),
            RunLength::epochs(1, 100)
        );
        assert_eq!(
            RunLength::resolve(d, Some(58), Some(2), None).unwrap(),
            RunLength::epochs(2, 29)
        );
        assert_eq!(
            RunLength::resolve(d, None, None, Some(29)).unwrap(),
            RunLength::epochs(2, 29)
        );
        assert_eq!(
            RunLength::resolve(d, None, Some(3), None).unwrap(),
            RunLength::epochs(3, 58)
        );
        let err = RunLength::resolve(d, Some(57), Some(2), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("57") && err.contains("2 epochs"), "{err}");
        let err = RunLength::resolve(d, Some(50), Some(2), Some(29))
            .unwrap_err()
            .to_string();
        assert!(err.contains("50") && err.contains("58"), "{err}");
        let err = RunLength::resolve(d, Some(0), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("total_steps = 0"), "{err}");
        let err = RunLength::resolve(d, None, Some(0), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("epochs = 0"), "{err}");
    }
}
