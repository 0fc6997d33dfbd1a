//! HF checkpoints in and out: parameters by HF name, loading safetensors into the model (latent
//! or packed), saving HF folders and PEFT adapters, and the built-in tiny model.
//!
//! | file | concept |
//! |---|---|
//! | [`hf_names`] | module paths to HF tensor names (the one remapping table) |
//! | [`named_params`] | the model's parameters by HF name (visitor and mapper) |
//! | [`load_error`] | [`LoadError`]: why a checkpoint could not be loaded |
//! | [`loader`] | `load_qwen2`, `load_qwen2_with` ([`LoadPlan`]), `load_weights` |
//! | [`save`] | `save_qwen2`: an HF folder |
//! | [`peft`] | PEFT's `adapter_model.safetensors` + `adapter_config.json` |
//! | [`builtin`] | `builtin:tiny`, the committed `assets/tiny` compiled in |
//! | [`hf_cache`] | `org/name` from the local Hugging Face cache (offline) |
//! | [`export`] | deployable folders of a trained model: HF bf16/f32, compressed-tensors NVFP4, GGUF |
//! | [`gguf`] | GGUF files of a Qwen2 model (llama.cpp): metadata, tokenizer, MXFP4 blocks |
//! | [`prequantized`] | pre-quantized NVFP4 checkpoints read as stored: detection, tensors, plan check |
//! | [`quantization_config`] | `detect`: a folder's quantization, or a refusal naming it |
//! | [`compressed_tensors`] | llm-compressor's `nvfp4-pack-quantized` configuration (vLLM) |
//! | [`modelopt`] | NVIDIA ModelOpt's `W4A16_NVFP4` configuration |

pub mod builtin;
pub mod compressed_tensors;
pub mod export;
pub mod gguf;
pub mod hf_cache;
pub mod hf_names;
pub mod load_error;
pub mod loader;
pub mod modelopt;
pub mod named_params;
pub mod peft;
pub mod prequantized;
pub mod quantization_config;
pub mod save;

pub use loader::{LoadError, LoadPlan, load_qwen2, load_qwen2_with, load_weights};
pub use named_params::{NamedParamMapper, NamedParamVisitor};
pub use peft::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_config_json, peft_key, read_adapter_config,
    save_lora_adapter,
};
