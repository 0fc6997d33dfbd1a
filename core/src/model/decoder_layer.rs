//! One pre-norm decoder layer of Qwen2: `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, AttentionConfig};
use super::cache::LayerCache;
use super::mlp::{Mlp, MlpConfig};
use super::rms_norm::{RmsNorm, RmsNormConfig};
use crate::ops::{AttentionMask, RotaryTables};

/// Configuration of a [`DecoderLayer`].
#[derive(Config, Debug)]
pub struct DecoderLayerConfig {
    /// The attention block.
    pub attention: AttentionConfig,
    /// The MLP block.
    pub mlp: MlpConfig,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
}

/// Attention and MLP blocks, each behind an RMSNorm and inside a residual connection. Field names
/// are HF's (`self_attn`, `mlp`, `input_layernorm`, `post_attention_layernorm`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Grouped-query self-attention.
    pub self_attn: Attention,
    /// SwiGLU MLP.
    pub mlp: Mlp,
    /// Norm before the attention block.
    pub input_layernorm: RmsNorm,
    /// Norm before the MLP block.
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayerConfig {
    /// A layer with HF's initialization (normal weights, zero biases, unit norms).
    pub fn init(&self, device: &Device) -> DecoderLayer {
        let norm = RmsNormConfig::new(self.attention.hidden_size).with_epsilon(self.rms_norm_eps);
        DecoderLayer {
            self_attn: self.attention.init(device),
            mlp: self.mlp.init(device),
            input_layernorm: norm.init(device),
            post_attention_layernorm: norm.init(device),
        }
    }
}

impl DecoderLayer {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`; output: the same (the residual stream after this layer)
    /// - `mask`: `[batch, 1, seq, cached + seq]`, true where a key is hidden
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RotaryTables,
        mask: &AttentionMask,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        // The residual adds: one multi-threaded pass each on the CPU backend.
        let attn =
            self.self_attn
                .forward(self.input_layernorm.forward(x.clone()), rope, mask, cache);
        let h = crate::ops::add(x, attn);
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(h.clone()));
        crate::ops::add(h, mlp)
    }
}
