//! Why an RL setting or input was refused. Every message names the setting (by verl's name where
//! verl has one) and the value.

use thiserror::Error;

/// A refused RL setting, input or sampler state.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RlError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A setting outside its valid range.
    #[error("{name} = {value} is refused: {requirement}")]
    InvalidSetting {
        /// The setting, by its configuration name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// What it must satisfy.
        requirement: String,
    },
    /// Inputs whose sizes or shapes do not agree.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// An input value that cannot be used (NaN reward, for instance).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// DAPO's dynamic sampling used up its generation batches without filling the train batch.
    #[error(
        "dynamic sampling: after {gen_batches} generation batches (max_num_gen_batches = \
         {max_num_gen_batches}) only {kept_groups} of the {target_groups} groups needed for the train \
         batch had a non-constant {metric}; raise algorithm.filter_groups.max_num_gen_batches, lower \
         the train batch size, or check the reward (every group all right or all wrong)"
    )]
    DynamicSamplingExhausted {
        /// Generation batches used.
        gen_batches: usize,
        /// The bound.
        max_num_gen_batches: usize,
        /// Groups kept so far.
        kept_groups: usize,
        /// Groups needed.
        target_groups: usize,
        /// The filter metric's name.
        metric: &'static str,
    },
    /// A dynamic sampler offered a batch after it finished.
    #[error(
        "dynamic sampling: the sampler already {state}; call reset() before the next training step"
    )]
    SamplerFinished {
        /// `filled the train batch` or `failed`.
        state: &'static str,
    },
}
