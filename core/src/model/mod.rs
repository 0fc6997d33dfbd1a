//! Qwen2 (the architecture of Qwen2.5) on Burn: the decoder and how features attach to its
//! projections. Loading and saving HF checkpoints is [`crate::checkpoint`], tokenizers and chat
//! templates [`crate::tokenizer`], batched generation [`crate::generation`].
//!
//! Files by concern, bottom-up: [`config`] (HF `config.json`), [`linear`] (`QLinear`, the one
//! projection every matmul goes through, with its [`recorder`] hook), [`rms_norm`], [`rotary`],
//! [`attention`], [`mlp`], [`decoder_layer`], [`qwen2`] (the model and its LM head), [`cache`]
//! (KV cache), [`traversal`] (every projection with its [`crate::site::LinearSite`]), and
//! [`attach`]: quantization, LoRA, hardware error, packing and the per-phase models, each attached
//! to the projections through the traversal.

pub mod attach;
pub mod attention;
pub mod cache;
pub mod config;
pub mod decoder_layer;
pub mod linear;
pub mod mlp;
pub mod qwen2;
pub mod recorder;
pub mod rms_norm;
pub mod rotary;
pub mod traversal;

pub use attach::pack::WeightDtype;
pub use cache::{KvCache, LayerCache};
pub use config::{ConfigError, Qwen2Config};
pub use linear::{LinearHooks, QLinear, QLinearConfig};
pub use qwen2::{Padding, Qwen2ForCausalLM, Qwen2Model};
pub use recorder::{InputRecorder, RecordedInput};
pub use rms_norm::{RmsNorm, RmsNormConfig};
