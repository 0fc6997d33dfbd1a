//! LoRA (Hu et al., arXiv:2106.09685) as PEFT implements it: adapters trained in f32 on a frozen
//! (and possibly quantized) base, and PEFT's adapter files.
//!
//! | file | concept |
//! |---|---|
//! | [`config`] | [`LoraConfig`], [`LoraTarget`] |
//! | [`adapter`] | [`LoraAdapter`]: A, B, scaling, dropout; the forward term |
//! | [`apply`] | `with_lora` (frozen base), `for_full_finetuning`, `lora_config` |
//! | [`peft`] | `adapter_model.safetensors` + `adapter_config.json` |
//! | [`error`] | [`LoraError`] |
//!
//! Usage: `let model = load_qwen2(dir, &device)?.with_lora(&LoraConfig::default())?;` then train
//! (only the adapters require gradients) and `save_lora_adapter(&model, out_dir, "Qwen/...")`.

pub mod adapter;
pub mod apply;
pub mod config;
pub mod error;
pub mod peft;

pub use adapter::LoraAdapter;
pub use config::{DEFAULT_ALPHA, DEFAULT_RANK, LoraConfig, LoraTarget};
pub use error::LoraError;
pub use peft::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_config_json, peft_key, read_adapter_config,
    save_lora_adapter,
};
