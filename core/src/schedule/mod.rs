//! Noise schedules of docs/spec.md section 3: sigma as a function of the optimizer step.
//!
//! One type, [`SigmaSchedule`], serves the trainer, the CLI (`aqn-native schedule`) and the
//! browser: [`SigmaSchedule::sigma`] for one step, [`SigmaSchedule::curve`] for all steps 1..=T.
//! Steps count from 1 to T. Every schedule is validated when it is built or deserialized, and
//! again by every query, so an invalid one can never silently produce zero or NaN noise: K < 3,
//! sigmas that are not positive finite numbers, zero steps or epochs, and steps outside 1..=T are
//! refused with a [`ScheduleError`] that names the value.
//!
//! | kind | formula | module |
//! |---|---|---|
//! | `constant` | `s0` | [`constant`] |
//! | `linear` | `s0 + (s1 - s0) (step-1) / max(T-1, 1)` | [`linear`] |
//! | `geometric` | QeRL's K-stage decay with warm-up (its code's semantics) | [`geometric`] |
//! | `geometric-paper` | the QeRL paper's integer-interval variant | [`geometric`] |
//! | `epoch-aware` | a geometric range and warm-up per epoch | [`epoch_aware`] |
//!
//! Serialized form (TOML / JSON), tagged by `kind`, unknown fields refused:
//! `{ kind = "geometric", sigma_start = 0.01, sigma_end = 1e-4, stages = 10, total_steps = 29 }`.
//! Without the run length, as configuration files state it: [`ScheduleParams`]; the run length
//! itself: [`RunLength`]. The seed's experiments, each with its schedule, make up the experiment
//! catalogue (`crate::catalogue`), which builds on this module.

pub mod constant;
pub mod epoch_aware;
pub mod error;
pub mod geometric;
pub mod linear;
pub mod params;
pub mod run_length;

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

pub use constant::ConstantSchedule;
pub use epoch_aware::EpochAwareSchedule;
pub use error::ScheduleError;
pub use geometric::{GeometricSchedule, python_floor_div};
pub use linear::LinearSchedule;
pub use params::{QERL_SIGMA_END, QERL_SIGMA_START, QERL_STAGES, ScheduleParams};
pub use run_length::RunLength;

/// K must be at least this for the staged kinds: QeRL's trend `s0 (s1/s0)^(i/(K-2))` divides by
/// K-2 (the original silently had no noise for K = 1 and NaN for K = 2); the paper variant and
/// the epoch-aware kind divide by K-1 and take the same floor so the kinds stay interchangeable.
pub const MIN_STAGES: u32 = 3;

named_enum! {
    /// The kind of a sigma schedule.
    ScheduleKind, "schedule kind", ScheduleError {
        /// `sigma = s0` at every step.
        Constant => "constant",
        /// Linear from s0 at step 1 to s1 at step T.
        Linear => "linear",
        /// QeRL's K-stage geometric decay with warm-up, with its code's float intervals (default).
        Geometric => "geometric" | "qerl",
        /// The QeRL paper's variant with integer intervals `floor(T/K)`.
        GeometricPaper => "geometric-paper" | "paper",
        /// One geometric range and warm-up per epoch.
        EpochAware => "epoch-aware" | "epoch_aware" | "epochaware",
    }
}

/// A validated sigma schedule. Build it with the constructors, [`SigmaSchedule::build`],
/// [`ScheduleParams::build`], or by deserializing (which validates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    try_from = "UncheckedSchedule"
)]
pub enum SigmaSchedule {
    /// See [`ConstantSchedule`].
    Constant(ConstantSchedule),
    /// See [`LinearSchedule`].
    Linear(LinearSchedule),
    /// QeRL code semantics, see [`GeometricSchedule`].
    Geometric(GeometricSchedule),
    /// The paper's variant, see [`GeometricSchedule`].
    GeometricPaper(GeometricSchedule),
    /// See [`EpochAwareSchedule`].
    EpochAware(EpochAwareSchedule),
}

/// The deserialized form before validation.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum UncheckedSchedule {
    Constant(ConstantSchedule),
    Linear(LinearSchedule),
    Geometric(GeometricSchedule),
    GeometricPaper(GeometricSchedule),
    EpochAware(EpochAwareSchedule),
}

impl TryFrom<UncheckedSchedule> for SigmaSchedule {
    type Error = ScheduleError;
    fn try_from(u: UncheckedSchedule) -> Result<Self, Self::Error> {
        let s = match u {
            UncheckedSchedule::Constant(s) => SigmaSchedule::Constant(s),
            UncheckedSchedule::Linear(s) => SigmaSchedule::Linear(s),
            UncheckedSchedule::Geometric(s) => SigmaSchedule::Geometric(s),
            UncheckedSchedule::GeometricPaper(s) => SigmaSchedule::GeometricPaper(s),
            UncheckedSchedule::EpochAware(s) => SigmaSchedule::EpochAware(s),
        };
        s.validate()?;
        Ok(s)
    }
}

/// The schedule's value at one step, with where the step falls.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigmaPoint {
    /// The optimizer step, 1-based.
    pub step: u64,
    /// The noise standard deviation at that step (0 in a warm-up interval).
    pub sigma: f64,
    /// For the staged kinds: 0 in the warm-up, else the 1-based stage (QeRL: trend index + 1;
    /// paper: k; epoch-aware: k + 1). `None` for constant and linear.
    pub stage: Option<u64>,
    /// For the epoch-aware kind: the 1-based epoch.
    pub epoch: Option<u64>,
}

impl SigmaSchedule {
    /// A constant schedule, validated.
    pub fn constant(sigma: f64, total_steps: u64) -> Result<Self, ScheduleError> {
        Self::checked(SigmaSchedule::Constant(ConstantSchedule {
            sigma,
            total_steps,
        }))
    }

    /// A linear schedule, validated.
    pub fn linear(
        sigma_start: f64,
        sigma_end: f64,
        total_steps: u64,
    ) -> Result<Self, ScheduleError> {
        Self::checked(SigmaSchedule::Linear(LinearSchedule {
            sigma_start,
            sigma_end,
            total_steps,
        }))
    }

    /// QeRL's K-stage geometric schedule (its code's semantics), validated.
    pub fn geometric(
        sigma_start: f64,
        sigma_end: f64,
        stages: u32,
        total_steps: u64,
    ) -> Result<Self, ScheduleError> {
        Self::checked(SigmaSchedule::Geometric(GeometricSchedule {
            sigma_start,
            sigma_end,
            stages,
            total_steps,
        }))
    }

    /// The QeRL paper's geometric variant, validated.
    pub fn geometric_paper(
        sigma_start: f64,
        sigma_end: f64,
        stages: u32,
        total_steps: u64,
    ) -> Result<Self, ScheduleError> {
        Self::checked(SigmaSchedule::GeometricPaper(GeometricSchedule {
            sigma_start,
            sigma_end,
            stages,
            total_steps,
        }))
    }

    /// The epoch-aware schedule, validated.
    pub fn epoch_aware(
        sigma_start: f64,
        sigma_end: f64,
        stages: u32,
        epochs: u64,
        steps_per_epoch: u64,
    ) -> Result<Self, ScheduleError> {
        Self::checked(SigmaSchedule::EpochAware(EpochAwareSchedule {
            sigma_start,
            sigma_end,
            stages,
            epochs,
            steps_per_epoch,
        }))
    }

    /// A schedule of `kind` from the union of all parameters: `sigma_start` (the constant's
    /// sigma), `sigma_end`, `stages` (ignored by constant and linear) and the run length (the
    /// epoch-aware kind uses its epochs and steps per epoch, the others its total steps).
    pub fn build(
        kind: ScheduleKind,
        sigma_start: f64,
        sigma_end: f64,
        stages: u32,
        run: RunLength,
    ) -> Result<Self, ScheduleError> {
        run.validate()?;
        let t = run.total_steps();
        match kind {
            ScheduleKind::Constant => Self::constant(sigma_start, t),
            ScheduleKind::Linear => Self::linear(sigma_start, sigma_end, t),
            ScheduleKind::Geometric => Self::geometric(sigma_start, sigma_end, stages, t),
            ScheduleKind::GeometricPaper => {
                Self::geometric_paper(sigma_start, sigma_end, stages, t)
            }
            ScheduleKind::EpochAware => Self::epoch_aware(
                sigma_start,
                sigma_end,
                stages,
                run.epochs,
                run.steps_per_epoch,
            ),
        }
    }

    fn checked(self) -> Result<Self, ScheduleError> {
        self.validate()?;
        Ok(self)
    }

    /// The kind.
    pub fn kind(&self) -> ScheduleKind {
        match self {
            SigmaSchedule::Constant(_) => ScheduleKind::Constant,
            SigmaSchedule::Linear(_) => ScheduleKind::Linear,
            SigmaSchedule::Geometric(_) => ScheduleKind::Geometric,
            SigmaSchedule::GeometricPaper(_) => ScheduleKind::GeometricPaper,
            SigmaSchedule::EpochAware(_) => ScheduleKind::EpochAware,
        }
    }

    /// Refuses invalid parameters (see the module documentation).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match self {
            SigmaSchedule::Constant(s) => s.validate(),
            SigmaSchedule::Linear(s) => s.validate(),
            SigmaSchedule::Geometric(s) => s.validate("geometric"),
            SigmaSchedule::GeometricPaper(s) => {
                s.validate("geometric-paper")?;
                if s.total_steps < u64::from(s.stages) {
                    return Err(ScheduleError::RunShorterThanStages {
                        total_steps: s.total_steps,
                        stages: s.stages,
                    });
                }
                Ok(())
            }
            SigmaSchedule::EpochAware(s) => s.validate(),
        }
    }

    /// T, the number of optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        match self {
            SigmaSchedule::Constant(s) => s.total_steps,
            SigmaSchedule::Linear(s) => s.total_steps,
            SigmaSchedule::Geometric(s) | SigmaSchedule::GeometricPaper(s) => s.total_steps,
            SigmaSchedule::EpochAware(s) => s.total_steps(),
        }
    }

    /// The schedule at `step` (1-based) with its stage and epoch.
    pub fn point(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        self.validate()?;
        self.point_unchecked(step)
    }

    fn point_unchecked(&self, step: u64) -> Result<SigmaPoint, ScheduleError> {
        match self {
            SigmaSchedule::Constant(s) => s.point(step),
            SigmaSchedule::Linear(s) => s.point(step),
            SigmaSchedule::Geometric(s) => s.point_qerl(step),
            SigmaSchedule::GeometricPaper(s) => s.point_paper(step),
            SigmaSchedule::EpochAware(s) => s.point(step),
        }
    }

    /// sigma at `step` (1-based).
    pub fn sigma(&self, step: u64) -> Result<f64, ScheduleError> {
        Ok(self.point(step)?.sigma)
    }

    /// Every step 1..=T of the run (for tables, plots and the browser).
    pub fn curve(&self) -> Result<Vec<SigmaPoint>, ScheduleError> {
        self.validate()?;
        (1..=self.total_steps())
            .map(|step| self.point_unchecked(step))
            .collect()
    }

    /// A one-line description: kind, parameters and run length.
    pub fn describe(&self) -> String {
        match self {
            SigmaSchedule::Constant(s) => {
                format!("constant: sigma = {}, T = {}", s.sigma, s.total_steps)
            }
            SigmaSchedule::Linear(s) => format!(
                "linear: {} -> {}, T = {}",
                s.sigma_start, s.sigma_end, s.total_steps
            ),
            SigmaSchedule::Geometric(s) => format!(
                "geometric (QeRL): {} -> {}, K = {}, T = {}",
                s.sigma_start, s.sigma_end, s.stages, s.total_steps
            ),
            SigmaSchedule::GeometricPaper(s) => format!(
                "geometric-paper: {} -> {}, K = {}, T = {}",
                s.sigma_start, s.sigma_end, s.stages, s.total_steps
            ),
            SigmaSchedule::EpochAware(s) => format!(
                "epoch-aware: {} -> {}, K = {} per epoch, {} epochs x {} steps = T = {}",
                s.sigma_start,
                s.sigma_end,
                s.stages,
                s.epochs,
                s.steps_per_epoch,
                s.total_steps()
            ),
        }
    }
}

pub(crate) fn check_positive(
    name: &'static str,
    value: f64,
    hint: &'static str,
) -> Result<(), ScheduleError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ScheduleError::NonPositiveSigma { name, value, hint })
    }
}

pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<(), ScheduleError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ScheduleError::NegativeSigma { name, value })
    }
}

pub(crate) fn check_count(name: &'static str, value: u64) -> Result<(), ScheduleError> {
    if value == 0 {
        Err(ScheduleError::ZeroCount { name })
    } else {
        Ok(())
    }
}

pub(crate) fn check_stages(kind: &'static str, stages: u32) -> Result<(), ScheduleError> {
    if stages < MIN_STAGES {
        Err(ScheduleError::TooFewStages {
            kind,
            stages,
            min: MIN_STAGES,
            why: match kind {
                "geometric" => "its trend s0 (s1/s0)^(i/(K-2)) has K-1 values and divides by K-2",
                "geometric-paper" => "its exponent (k-1)/(K-1) divides by K-1",
                _ => "its in-epoch exponent k/(K-1) divides by K-1",
            },
        })
    } else {
        Ok(())
    }
}

pub(crate) fn check_step(step: u64, total_steps: u64) -> Result<(), ScheduleError> {
    if step == 0 || step > total_steps {
        Err(ScheduleError::StepOutOfRange { step, total_steps })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_names_the_value() {
        let cases: Vec<(Result<SigmaSchedule, ScheduleError>, &[&str])> = vec![
            (
                SigmaSchedule::geometric(0.01, 1e-4, 2, 29),
                &["K = 2", ">= 3", "NaN"],
            ),
            (SigmaSchedule::geometric(0.01, 1e-4, 1, 29), &["K = 1"]),
            (
                SigmaSchedule::geometric_paper(0.01, 1e-4, 0, 29),
                &["K = 0"],
            ),
            (
                SigmaSchedule::epoch_aware(0.01, 1e-4, 2, 2, 29),
                &["K = 2", "epoch-aware"],
            ),
            (
                SigmaSchedule::geometric(0.0, 1e-4, 10, 29),
                &["sigma_start = 0"],
            ),
            (
                SigmaSchedule::geometric(-0.01, 1e-4, 10, 29),
                &["sigma_start = -0.01"],
            ),
            (
                SigmaSchedule::geometric(0.01, 0.0, 10, 29),
                &["sigma_end = 0", "s1 > 0"],
            ),
            (
                SigmaSchedule::geometric(f64::NAN, 1e-4, 10, 29),
                &["sigma_start = NaN"],
            ),
            (
                SigmaSchedule::linear(0.01, f64::INFINITY, 29),
                &["sigma_end = inf"],
            ),
            (
                SigmaSchedule::linear(0.01, f64::NAN, 29),
                &["sigma_end = NaN"],
            ),
            (SigmaSchedule::constant(-1.0, 29), &["sigma = -1"]),
            (SigmaSchedule::constant(0.01, 0), &["total_steps = 0"]),
            (
                SigmaSchedule::geometric(0.01, 1e-4, 10, 0),
                &["total_steps = 0"],
            ),
            (
                SigmaSchedule::epoch_aware(0.01, 1e-4, 5, 0, 29),
                &["epochs = 0"],
            ),
            (
                SigmaSchedule::epoch_aware(0.01, 1e-4, 5, 2, 0),
                &["steps_per_epoch = 0"],
            ),
            (
                SigmaSchedule::epoch_aware(0.01, 1e-4, 5, u64::MAX, 2),
                &["overflows", "18446744073709551615"],
            ),
            (
                SigmaSchedule::geometric_paper(0.01, 1e-4, 10, 7),
                &["T = 7", "K = 10"],
            ),
        ];
        for (i, (result, needles)) in cases.into_iter().enumerate() {
            let msg = result.expect_err(&format!("case {i} accepted")).to_string();
            for needle in needles {
                assert!(msg.contains(needle), "case {i}: `{msg}` lacks `{needle}`");
            }
        }
    }

    #[test]
    fn step_outside_the_run_is_refused() {
        let s = SigmaSchedule::geometric(0.05, 5e-4, 10, 29).unwrap();
        for bad in [0, 30, u64::MAX] {
            let msg = s.sigma(bad).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("step {bad} ")) && msg.contains("T = 29"),
                "{msg}"
            );
        }
        let e = SigmaSchedule::epoch_aware(0.05, 5e-4, 5, 2, 58).unwrap();
        assert!(e.sigma(117).unwrap_err().to_string().contains("step 117"));
        assert!(e.sigma(116).is_ok());
    }

    #[test]
    fn curve_agrees_with_sigma() {
        for s in [
            SigmaSchedule::constant(0.02, 7).unwrap(),
            SigmaSchedule::linear(0.02, 0.001, 7).unwrap(),
            SigmaSchedule::geometric(0.05, 5e-4, 10, 29).unwrap(),
            SigmaSchedule::geometric_paper(0.05, 5e-4, 10, 29).unwrap(),
            SigmaSchedule::epoch_aware(0.05, 5e-4, 5, 2, 58).unwrap(),
        ] {
            let curve = s.curve().unwrap();
            assert_eq!(curve.len() as u64, s.total_steps());
            for p in &curve {
                assert_eq!(p.sigma, s.sigma(p.step).unwrap());
                assert!(p.sigma.is_finite() && p.sigma >= 0.0);
            }
        }
    }

    #[test]
    fn serde_round_trip_and_strictness() {
        let s = SigmaSchedule::geometric(0.01, 1e-4, 10, 29).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"geometric","sigma_start":0.01,"sigma_end":0.0001,"stages":10,"total_steps":29}"#
        );
        assert_eq!(serde_json::from_str::<SigmaSchedule>(&json).unwrap(), s);
        let e = SigmaSchedule::epoch_aware(0.05, 5e-4, 5, 2, 58).unwrap();
        let back: SigmaSchedule =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);

        let unknown_field =
            r#"{"kind":"linear","sigma_start":0.01,"sigma_end":0.0,"total_steps":3,"stagez":4}"#;
        let err = serde_json::from_str::<SigmaSchedule>(unknown_field)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stagez"), "{err}");
        let unknown_kind = r#"{"kind":"cosine","sigma_start":0.01}"#;
        let err = serde_json::from_str::<SigmaSchedule>(unknown_kind)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cosine") && err.contains("epoch-aware"),
            "{err}"
        );
        let invalid = r#"{"kind":"geometric","sigma_start":0.01,"sigma_end":0.0001,"stages":2,"total_steps":29}"#;
        let err = serde_json::from_str::<SigmaSchedule>(invalid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("K = 2"), "{err}");
    }

    #[test]
    fn kind_names() {
        assert_eq!(
            "QeRL".parse::<ScheduleKind>().unwrap(),
            ScheduleKind::Geometric
        );
        let err = "cosine".parse::<ScheduleKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown schedule kind `cosine`; valid choices: constant, linear, geometric, \
             geometric-paper, epoch-aware"
        );
    }

    #[test]
    fn build_picks_the_parameters_of_the_kind() {
        let run = RunLength::epochs(2, 29);
        let s = SigmaSchedule::build(ScheduleKind::EpochAware, 0.05, 5e-4, 5, run).unwrap();
        assert_eq!(s.total_steps(), 58);
        let g = SigmaSchedule::build(ScheduleKind::Geometric, 0.05, 5e-4, 10, run).unwrap();
        assert_eq!(g, SigmaSchedule::geometric(0.05, 5e-4, 10, 58).unwrap());
        let c = SigmaSchedule::build(ScheduleKind::Constant, 0.03, 0.0, 0, run).unwrap();
        assert_eq!(c.sigma(58).unwrap(), 0.03);
    }
}
