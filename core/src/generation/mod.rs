//! Batched generation with a KV cache (rollouts and evaluation): samplers and the decoding loop.
//!
//! | file | concept |
//! |---|---|
//! | [`sampling`] | [`SamplingConfig`], [`Sampler`] (temperature, top-k, top-p; seeded) |
//! | [`generate`] | [`generate`], [`generate_with`]: prompts in, responses out |

pub mod generate;
pub mod sampling;

pub use generate::{
    GenerateError, GenerationConfig, Rollout, RowSampling, generate, generate_with,
};
pub use sampling::{Draw, Sample, Sampler, SamplingConfig, SamplingError};
