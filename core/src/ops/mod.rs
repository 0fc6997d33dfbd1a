//! The model's composite tensor operations, each with one entry point that picks how it runs: the
//! fused multi-threaded kernel of [`crate::cpu`] where it applies ([`fused`]: f32 tensors on the
//! NdArray CPU backend), and the plain composition of Burn ops everywhere else (wgpu, CUDA, other
//! dtypes). The model's layers call these and never branch on the backend themselves.
//!
//! The composed versions are the references: each CPU kernel is tested against its row here
//! (values and gradients, `crate::cpu`'s tests).
//!
//! | file | entry point | composed reference | CPU kernel |
//! |---|---|---|---|
//! | [`linear`] | [`linear()`]: `x W^T` | `x.matmul(w^T)` in the cheaper orientation | [`crate::cpu::linear()`] |
//! | [`add`] | [`add()`], [`add_bias`] | `a + b`, `y + b` | [`crate::cpu::add()`] (dispatches itself) |
//! | [`rms_norm`] | [`rms_norm()`] | [`rms_norm_reference`] | [`crate::cpu::rms_norm()`] |
//! | [`swiglu`] | [`swiglu()`] | [`swiglu_reference`] | [`crate::cpu::swiglu()`] |
//! | [`rope`] | [`rope_heads`] | [`RotaryTables::apply`] after the split into heads | [`crate::cpu::rope_heads`] |
//! | [`attention`] | [`attention()`] | [`grouped_query_attention`] | [`crate::cpu::attention()`] |
//! | [`token_logprobs`] | [`token_logprobs()`] | [`token_logprobs_reference`] | [`crate::cpu::token_logprobs()`] |
//! | [`kv_write`] | [`write_kv`] | `slice_assign` | [`crate::cpu::host::write_positions`] |

pub mod add;
pub mod attention;
pub mod kv_write;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;
pub mod token_logprobs;

use burn::tensor::Tensor;

pub use add::{add, add_bias};
pub use attention::{
    AttentionMask, MASKED_SCORE, attention, grouped_query_attention, grouped_query_attention_with,
    repeat_kv, repeat_kv_attention,
};
pub use kv_write::write_kv;
pub use linear::linear;
pub use rms_norm::{rms_norm, rms_norm_reference};
pub use rope::{RotaryTables, rope_heads};
pub use swiglu::{swiglu, swiglu_reference};
pub use token_logprobs::{token_logprobs, token_logprobs_reference};

/// Whether `t` takes the fused CPU kernels: an f32 tensor on the NdArray device (with or without
/// autodiff).
pub fn fused<const D: usize>(t: &Tensor<D>) -> bool {
    crate::cpu::fused_cpu_available(&t.device(), t.dtype())
}
