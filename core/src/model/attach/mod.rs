//! What attaches to the model's projections, each as `Qwen2ForCausalLM` methods that map every
//! [`crate::model::QLinear`] through [`super::traversal`]:
//!
//! | file | methods |
//! |---|---|
//! | [`quant`] | `with_quantization` (docs/spec.md section 2) |
//! | [`lora`] | `with_lora`, `with_lora_adapter`, `for_full_finetuning`, `lora_config` |
//! | [`hw_noise`] | `with_hw_noise` (section 6) |
//! | [`pack`] | `into_packed`: a frozen model held as codes + scales; [`WeightDtype`](pack::WeightDtype) |
//! | [`for_phase`] | `for_phase`: the rollout and training models of one step |

pub mod for_phase;
pub mod hw_noise;
pub mod lora;
pub mod pack;
pub mod quant;
