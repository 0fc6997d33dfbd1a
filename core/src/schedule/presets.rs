//! The schedules of the seed's experiments (`../shared/seed/000_08cdde852ebad6cd.txt`, its
//! experiment tables and "AQN Configuration Reference"), with the run lengths they used.
//!
//! Where the summary is silent the fork's run scripts fill in (`stages_per_epoch`, `num_stages`,
//! steps per epoch); each preset's [`SchedulePreset::source`] says where its numbers come from.
//! Sigma ranges follow the seed's tables, which SPEC.md makes the catalogue; where a fork script
//! disagrees, the source says so.
//!
//! A preset needs the run length to produce values; [`SchedulePreset::default_run`] is the run
//! the experiment had, and [`RunLength::resolve`] merges a caller's overrides into it.

use serde::{Deserialize, Serialize};

use super::{ScheduleError, ScheduleKind, SigmaSchedule};
use crate::named::named_enum;
use crate::rin::RinPreset;

/// Steps per epoch of the HW-inject runs: GRPO, train batch 128 over GSM8K's 7473 prompts
/// (7473 / 128 = 58; the fork's log: "58 steps/epoch, 116 total steps").
pub const HW_STEPS_PER_EPOCH: u64 = 58;
/// Epochs of the HW-inject runs.
pub const HW_EPOCHS: u64 = 2;
/// Steps per epoch of the LoRA / full-FT DAPO runs: generation batch 256 (7473 / 256 = 29).
pub const DAPO_STEPS_PER_EPOCH: u64 = 29;
/// QeRL's GSM8K run: batch 2, about 3700 steps in one epoch (the seed's QeRL comparison table).
pub const QERL_STEPS: u64 = 3700;
/// The fork's epoch-aware default and its HW-inject runs: `stages_per_epoch = 5`.
pub const HW_STAGES_PER_EPOCH: u32 = 5;
/// QeRL's `num_stages` default, also used by E12's `stages_per_epoch` and the step-based runs.
pub const QERL_STAGES: u32 = 10;
/// QeRL's default range.
pub const QERL_SIGMA_START: f64 = 1e-2;
/// QeRL's default range.
pub const QERL_SIGMA_END: f64 = 1e-4;
/// The seed's "high" range (E5b, E9a-high, E12, QeRL's 5e-2 option).
pub const HIGH_SIGMA_START: f64 = 5e-2;
/// The seed's "high" range.
pub const HIGH_SIGMA_END: f64 = 5e-4;

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
        super::check_count("epochs", self.epochs)?;
        super::check_count("steps_per_epoch", self.steps_per_epoch)?;
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
        super::check_count("epochs", e)?;
        let s = match (steps_per_epoch, total_steps) {
            (Some(s), _) => s,
            (None, Some(t)) => {
                super::check_count("total_steps", t)?;
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

named_enum! {
    /// A schedule used by one of the seed's experiments.
    SchedulePreset, "schedule preset", ScheduleError {
        /// E5b, epoch-aware AQN under 5% matmul noise.
        E5b => "e5b",
        /// E5c, lower-sigma epoch-aware AQN under 5% matmul noise.
        E5c => "e5c",
        /// E9a, RIN-targeted (layers 14-17).
        E9a => "e9a",
        /// E9a-high-sigma, RIN-targeted with the high range.
        E9aHigh => "e9a-high" | "e9a-high-sigma",
        /// E9b, RIN tiered 1.5 / 1.2 / 1.0, the best HW-inject run.
        E9b => "e9b",
        /// The standard step-based AQN of E6b (= E3b, E4b, E5b-LoRA).
        E6b => "e6b" | "e3b" | "e4b" | "e5b-lora",
        /// E12, high-sigma epoch-aware AQN with RIN, the best LoRA + MXFP4 run.
        E12 => "e12",
        /// QeRL's default: 1e-2 -> 1e-4, K = 10.
        Qerl => "qerl" | "qerl-default",
        /// QeRL's high option: 5e-2 -> 5e-4, K = 10.
        QerlHigh => "qerl-high",
    }
}

/// Everything a preset fixes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PresetSpec {
    /// The schedule kind.
    pub kind: ScheduleKind,
    /// s0.
    pub sigma_start: f64,
    /// s1.
    pub sigma_end: f64,
    /// K.
    pub stages: u32,
    /// The run the experiment had.
    pub run: RunLength,
    /// The experiment's RIN configuration, if it used one.
    pub rin: Option<RinPreset>,
    /// Where the numbers come from.
    pub source: &'static str,
}

impl SchedulePreset {
    /// The preset's parameters.
    pub fn spec(self) -> PresetSpec {
        use ScheduleKind::{EpochAware, Geometric};
        let hw = RunLength::epochs(HW_EPOCHS, HW_STEPS_PER_EPOCH);
        let dapo = RunLength::steps(DAPO_STEPS_PER_EPOCH);
        let (kind, s0, s1, stages, run, rin, source) = match self {
            SchedulePreset::E5b => (
                EpochAware,
                HIGH_SIGMA_START,
                HIGH_SIGMA_END,
                HW_STAGES_PER_EPOCH,
                hw,
                None,
                "seed: E5b row (epoch-aware, 0.05 -> 0.0005), HW-inject column of the AQN \
                 Configuration Reference; fork script test_noisy_ops_aqn_epoch_aware.sh: \
                 stages_per_epoch 5; 2 epochs x 58 steps (GRPO batch 128)",
            ),
            SchedulePreset::E5c => (
                EpochAware,
                1e-2,
                1e-5,
                HW_STAGES_PER_EPOCH,
                hw,
                None,
                "seed: E5c row (epoch-aware, 0.01 -> 0.00001); fork: stages_per_epoch 5; \
                 2 epochs x 58 steps",
            ),
            SchedulePreset::E9a => (
                EpochAware,
                QERL_SIGMA_START,
                QERL_SIGMA_END,
                HW_STAGES_PER_EPOCH,
                hw,
                Some(RinPreset::E9a),
                "seed: E9a row (epoch-aware, 0.01 -> 0.0001, layers 14-17; the fork's script \
                 used 0.01 -> 0.00001); fork: stages_per_epoch 5; 2 epochs x 58 steps",
            ),
            SchedulePreset::E9aHigh => (
                EpochAware,
                HIGH_SIGMA_START,
                HIGH_SIGMA_END,
                HW_STAGES_PER_EPOCH,
                hw,
                Some(RinPreset::E9a),
                "seed: E9a-high-sigma row (epoch-aware, 0.05 -> 0.0005, layers 14-17); fork: \
                 stages_per_epoch 5; 2 epochs x 58 steps",
            ),
            SchedulePreset::E9b => (
                EpochAware,
                QERL_SIGMA_START,
                QERL_SIGMA_END,
                HW_STAGES_PER_EPOCH,
                hw,
                Some(RinPreset::E9b),
                "seed: E9b row (epoch-aware, 0.01 -> 0.0001, per-layer multipliers; the fork's \
                 script used 0.01 -> 0.00001); fork: stages_per_epoch 5, multipliers 1.5 on \
                 14-17, 1.2 on 10-13 and 18-21; 2 epochs x 58 steps",
            ),
            SchedulePreset::E6b => (
                Geometric,
                QERL_SIGMA_START,
                QERL_SIGMA_END,
                QERL_STAGES,
                dapo,
                None,
                "seed: Standard (E3b, E6b) column, epoch_aware off, 0.01 -> 0.0001; the seed \
                 calls the non-epoch-aware decay \"linear\", but the fork's step-based path is \
                 QeRL's K-stage geometric get_sigma_by_step with num_stages 10; 1 epoch x 29 \
                 steps (DAPO gen batch 256)",
            ),
            SchedulePreset::E12 => (
                EpochAware,
                HIGH_SIGMA_START,
                HIGH_SIGMA_END,
                QERL_STAGES,
                dapo,
                Some(RinPreset::E12),
                "seed: High (E12) column, epoch-aware, 0.05 -> 0.0005, RIN variable; fork \
                 script: stages_per_epoch 10; 1 epoch x 29 steps",
            ),
            SchedulePreset::Qerl => (
                Geometric,
                QERL_SIGMA_START,
                QERL_SIGMA_END,
                QERL_STAGES,
                RunLength::steps(QERL_STEPS),
                None,
                "QeRL trl_trainer/noise_scheduler.py defaults (sigma_start 1e-2, sigma_end 1e-4, \
                 num_stages 10), SPEC.md section 8; ~3700 steps (seed: QeRL GSM8K, batch 2)",
            ),
            SchedulePreset::QerlHigh => (
                Geometric,
                HIGH_SIGMA_START,
                HIGH_SIGMA_END,
                QERL_STAGES,
                RunLength::steps(QERL_STEPS),
                None,
                "QeRL's 5e-2 -> 5e-4 option (SPEC.md section 8), K = 10; ~3700 steps",
            ),
        };
        PresetSpec {
            kind,
            sigma_start: s0,
            sigma_end: s1,
            stages,
            run,
            rin,
            source,
        }
    }

    /// The run the experiment had.
    pub fn default_run(self) -> RunLength {
        self.spec().run
    }

    /// The experiment's RIN configuration, if any.
    pub fn rin(self) -> Option<RinPreset> {
        self.spec().rin
    }

    /// Where the numbers come from.
    pub fn source(self) -> &'static str {
        self.spec().source
    }

    /// The schedule over `run`.
    pub fn schedule(self, run: RunLength) -> Result<SigmaSchedule, ScheduleError> {
        let p = self.spec();
        SigmaSchedule::build(p.kind, p.sigma_start, p.sigma_end, p.stages, run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_over_its_run() {
        for &p in SchedulePreset::ALL {
            let s = p.schedule(p.default_run()).unwrap();
            assert_eq!(s.total_steps(), p.default_run().total_steps());
            let curve = s.curve().unwrap();
            assert!(curve.iter().any(|pt| pt.sigma > 0.0), "{p}");
            assert!(!p.source().is_empty());
        }
    }

    #[test]
    fn preset_values() {
        let e5b = SchedulePreset::E5b
            .schedule(SchedulePreset::E5b.default_run())
            .unwrap();
        assert_eq!(
            e5b,
            SigmaSchedule::epoch_aware(0.05, 5e-4, 5, 2, 58).unwrap()
        );
        let e6b = SchedulePreset::E6b
            .schedule(SchedulePreset::E6b.default_run())
            .unwrap();
        assert_eq!(e6b, SigmaSchedule::geometric(0.01, 1e-4, 10, 29).unwrap());
        let e12 = SchedulePreset::E12
            .schedule(SchedulePreset::E12.default_run())
            .unwrap();
        assert_eq!(
            e12,
            SigmaSchedule::epoch_aware(0.05, 5e-4, 10, 1, 29).unwrap()
        );
        assert_eq!(SchedulePreset::E9b.rin(), Some(RinPreset::E9b));
        assert_eq!(
            "E5B-LoRA".parse::<SchedulePreset>().unwrap(),
            SchedulePreset::E6b
        );
        let err = "e99".parse::<SchedulePreset>().unwrap_err().to_string();
        assert!(err.contains("`e99`") && err.contains("e5b, e5c"), "{err}");
    }

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
