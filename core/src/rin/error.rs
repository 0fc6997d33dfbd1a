//! Why a RIN policy, an error vector or an SRDD report was refused. Every message names the value.

use thiserror::Error;

/// A refused RIN input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RinError {
    /// A name that is not one of the enum's variants (policy, preset, metric, option).
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// No layers at all.
    #[error("the per-layer error vector is empty: RIN needs one error per decoder layer")]
    EmptyErrors,
    /// A per-layer error that is negative, NaN or infinite.
    #[error("layer {layer} has error {value}: per-layer errors must be finite and >= 0")]
    BadError {
        /// The layer index.
        layer: usize,
        /// The rejected value.
        value: f64,
    },
    /// err / mean(err) is undefined.
    #[error(
        "policy {policy} is undefined for this error vector: the mean error of its {layers} layers is 0"
    )]
    ZeroMeanError {
        /// The policy.
        policy: &'static str,
        /// How many layers.
        layers: usize,
    },
    /// A layer index that the model does not have.
    #[error("layer {layer} is out of range: the error vector has {num_layers} layers (0..={last})", last = .num_layers.saturating_sub(1))]
    LayerOutOfRange {
        /// The rejected index.
        layer: usize,
        /// The number of layers.
        num_layers: usize,
    },
    /// A layer list that does not parse.
    #[error("layer list `{text}` is refused: {why} (write e.g. `14-17` or `10-13,18-21`)")]
    BadLayerList {
        /// The rejected text.
        text: String,
        /// Why.
        why: String,
    },
    /// A training step outside the run.
    #[error("step {step} is outside the run: steps count from 1 to T = {total_steps}")]
    StepOutOfRange {
        /// The rejected step.
        step: u64,
        /// T.
        total_steps: u64,
    },
    /// Clip bounds in the wrong order.
    #[error("clip min {min} > max {max} is refused: the clip range must satisfy min <= max")]
    ClipOrder {
        /// The lower bound.
        min: f64,
        /// The upper bound.
        max: f64,
    },
    /// A parameter outside its valid range.
    #[error("{name} = {value} is refused: {expected}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// The rejected value, as written.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A targeted policy must pick its layers exactly one way.
    #[error(
        "the targeted policy needs exactly one of `layers`, `top_k`, `threshold`; {given} given"
    )]
    TargetedSelection {
        /// How many were given.
        given: usize,
    },
    /// A targeted threshold that selects no layer would silently switch the noise off.
    #[error("threshold {threshold} selects no layer: the largest error is {max}")]
    NothingSelected {
        /// The threshold.
        threshold: f64,
        /// The largest error.
        max: f64,
    },
    /// A policy that produced a negative or non-finite multiplier (a noise std must be >= 0).
    #[error(
        "policy {policy} gives layer {layer} the multiplier {value}; noise multipliers must be \
         finite and >= 0 (add a clip, e.g. `clip=0..2`)"
    )]
    BadMultiplier {
        /// The policy.
        policy: &'static str,
        /// The layer.
        layer: usize,
        /// The multiplier.
        value: f64,
    },
    /// A policy's normalization is undefined.
    #[error("policy inverse-normalized is undefined: max(2 - err/mean) = {max} is not > 0")]
    NoPositiveInverse {
        /// The maximum of 2 - m.
        max: f64,
    },
    /// The sigma schedule refused the step or its parameters.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// An SRDD report that does not match the docs/spec.md section 5 schema or is inconsistent.
    #[error("SRDD report is refused: {0}")]
    Report(String),
}
