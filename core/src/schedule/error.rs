//! Why a noise schedule was refused. Every message names the offending value.

use thiserror::Error;

/// A refused schedule, step or name.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ScheduleError {
    /// A name that is not one of the enum's variants (schedule kind).
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A sigma that must be a positive finite number.
    #[error("{name} = {value} is refused: it must be a finite number > 0{hint}")]
    NonPositiveSigma {
        /// The parameter (`sigma_start`, `sigma_end`, `sigma`).
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// Extra explanation (may be empty).
        hint: &'static str,
    },
    /// A sigma that may be zero but must be finite and not negative.
    #[error("{name} = {value} is refused: it must be a finite number >= 0")]
    NegativeSigma {
        /// The parameter.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Fewer stages than the staged schedules need.
    #[error(
        "stages K = {stages} is refused: the {kind} schedule needs K >= {min} ({why}); \
         the original system silently disabled noise for K = 1 and produced NaN for K = 2"
    )]
    TooFewStages {
        /// The schedule kind.
        kind: &'static str,
        /// The rejected K.
        stages: u32,
        /// The minimum.
        min: u32,
        /// Why.
        why: &'static str,
    },
    /// A count (steps, epochs, steps per epoch) that must be at least 1.
    #[error("{name} = 0 is refused: it must be at least 1")]
    ZeroCount {
        /// The parameter (`total_steps`, `epochs`, `steps_per_epoch`).
        name: &'static str,
    },
    /// A run too short for the paper variant's integer interval `floor(T/K)`.
    #[error(
        "total_steps T = {total_steps} is refused for the geometric-paper schedule with K = {stages}: \
         its interval floor(T/K) would be 0 steps; use T >= K or the geometric (QeRL) kind"
    )]
    RunShorterThanStages {
        /// T.
        total_steps: u64,
        /// K.
        stages: u32,
    },
    /// A step outside the run.
    #[error("step {step} is outside the run: steps count from 1 to T = {total_steps}")]
    StepOutOfRange {
        /// The rejected step.
        step: u64,
        /// T.
        total_steps: u64,
    },
    /// `epochs * steps_per_epoch` does not fit in a u64.
    #[error("epochs = {epochs} x steps_per_epoch = {steps_per_epoch} overflows the step counter")]
    TooManySteps {
        /// E.
        epochs: u64,
        /// S.
        steps_per_epoch: u64,
    },
    /// Total steps that disagree with epochs x steps per epoch.
    #[error(
        "total_steps T = {total_steps} disagrees with the run of {epochs} epochs{}",
        match steps_per_epoch {
            Some(s) => format!(" x {s} steps = {}", epochs.saturating_mul(*s)),
            None => format!(": {total_steps} is not a multiple of {epochs}"),
        }
    )]
    RunMismatch {
        /// T.
        total_steps: u64,
        /// E.
        epochs: u64,
        /// S, when given.
        steps_per_epoch: Option<u64>,
    },
}
