//! Qwen2 (the architecture of Qwen2.5) on Burn: the decoder, its HF checkpoint loader, tokenizer and
//! chat template, and batched generation with a KV cache for rollouts.
//!
//! Files by concern, bottom-up: [`config`] (HF `config.json`), [`linear`] (`QLinear`, the one
//! projection every matmul goes through), [`rms_norm`], [`rotary`], [`attention`], [`mlp`],
//! [`decoder_layer`], [`qwen2`] (the model and its LM head), [`cache`] (KV cache), [`named_params`]
//! (parameters by HF name), [`loader`] (safetensors by HF names), [`tokenizer`], [`sampling`],
//! [`generate`].

pub mod attention;
pub mod cache;
pub mod char_tokenizer;
pub mod config;
pub mod decoder_layer;
pub mod generate;
pub mod linear;
pub mod linear_site;
pub mod loader;
pub mod mlp;
pub mod named_params;
pub mod pack;
pub mod phase_model;
pub mod qwen2;
pub mod rms_norm;
pub mod rotary;
pub mod sampling;
pub mod save;
pub mod tokenizer;

pub use cache::{KvCache, LayerCache};
pub use config::{ConfigError, Qwen2Config};
pub use generate::{
    GenerateError, GenerationConfig, Rollout, RowSampling, generate, generate_with,
};
pub use linear::{LinearHooks, QLinear, QLinearConfig};
pub use linear_site::{LinearKind, LinearSite};
pub use loader::{LoadError, load_qwen2, load_weights};
pub use named_params::{NamedParamMapper, NamedParamVisitor};
pub use qwen2::{Padding, Qwen2ForCausalLM, Qwen2Model};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use sampling::{Sample, Sampler, SamplingConfig, SamplingError};
pub use tokenizer::{ChatMessage, Qwen2Tokenizer, TokenizerError};
