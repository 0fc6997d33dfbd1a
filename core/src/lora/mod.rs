//! LoRA (Hu et al., arXiv:2106.09685) as PEFT implements it: adapters trained in f32 on a frozen
//! (and possibly quantized) base. Attaching them to a model is `crate::model::attach::lora`, PEFT's
//! adapter files `crate::checkpoint::peft`.
//!
//! | file | concept |
//! |---|---|
//! | [`config`] | [`LoraConfig`]; [`parse_target`]: the projections an adapter may target |
//! | [`adapter`] | [`LoraAdapter`]: A, B, scaling, dropout; the forward term |
//! | [`error`] | [`LoraError`] |
//!
//! Usage: `let model = load_qwen2(dir, &device)?.with_lora(&LoraConfig::default())?;` then train
//! (only the adapters require gradients) and `save_lora_adapter(&model, out_dir, "Qwen/...")`.

pub mod adapter;
pub mod config;
pub mod error;

pub use adapter::LoraAdapter;
pub use config::{DEFAULT_ALPHA, DEFAULT_RANK, LoraConfig, parse_target};
pub use error::LoraError;
