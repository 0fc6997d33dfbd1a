//! Grouped-query self-attention of Qwen2 (Ainslie et al., "GQA: Training Generalized Multi-Query
//! Transformer Models from Multi-Head Checkpoints", 2023): `num_attention_heads` query heads share
//! `num_key_value_heads` key/value heads; q/k/v projections have a bias, the output projection none.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::cache::LayerCache;
use super::linear::{QLinear, QLinearConfig};
use crate::hw_noise::site::SiteNoise;
use crate::ops::{AttentionMask, RotaryTables};

/// Configuration of an [`Attention`] layer.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads; divides `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Std of the weight initialization.
    #[config(default = 0.02)]
    pub init_std: f64,
}

/// `softmax(q k^T / sqrt(head_dim) + mask) v` over `num_attention_heads` heads, with RoPE on q and k
/// and each key/value head shared by `num_attention_heads / num_key_value_heads` query heads.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[heads * head_dim, hidden]`, with bias.
    pub q_proj: QLinear,
    /// `[kv_heads * head_dim, hidden]`, with bias.
    pub k_proj: QLinear,
    /// `[kv_heads * head_dim, hidden]`, with bias.
    pub v_proj: QLinear,
    /// `[hidden, heads * head_dim]`, no bias.
    pub o_proj: QLinear,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Hardware error on the score and context matmuls.
    #[module(skip)]
    pub hooks: AttentionHooks,
}

/// Hardware error wired to the two matmuls inside attention (docs/spec.md section 6, optional sites).
#[derive(Clone, Debug, Default)]
pub struct AttentionHooks {
    /// On `q k^T`, before the scaling and the mask.
    pub scores: Option<SiteNoise>,
    /// On `softmax(scores) v`.
    pub context: Option<SiteNoise>,
}

impl AttentionHooks {
    /// Whether no matmul of the attention is hooked.
    pub fn is_empty(&self) -> bool {
        self.scores.is_none() && self.context.is_none()
    }

    fn scores<const D: usize>(&self, y: Tensor<D>) -> Tensor<D> {
        match &self.scores {
            Some(n) => n.apply(y),
            None => y,
        }
    }

    fn context<const D: usize>(&self, y: Tensor<D>) -> Tensor<D> {
        match &self.context {
            Some(n) => n.apply(y),
            None => y,
        }
    }
}

impl AttentionConfig {
    /// The four projections.
    ///
    /// # Panics
    /// If `num_key_value_heads` does not divide `num_attention_heads` (validated in the model config).
    pub fn init(&self, device: &Device) -> Attention {
        assert!(
            self.num_key_value_heads > 0
                && self
                    .num_attention_heads
                    .is_multiple_of(self.num_key_value_heads),
            "num_key_value_heads ({}) must divide num_attention_heads ({})",
            self.num_key_value_heads,
            self.num_attention_heads
        );
        let q_width = self.num_attention_heads * self.head_dim;
        let kv_width = self.num_key_value_heads * self.head_dim;
        let proj = |d_in: usize, d_out: usize, bias: bool| {
            QLinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .with_init_std(self.init_std)
                .init(device)
        };
        Attention {
            q_proj: proj(self.hidden_size, q_width, true),
            k_proj: proj(self.hidden_size, kv_width, true),
            v_proj: proj(self.hidden_size, kv_width, true),
            o_proj: proj(q_width, self.hidden_size, false),
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            hooks: AttentionHooks::default(),
        }
    }
}

impl Attention {
    /// Self-attention over the cached positions and the new ones.
    ///
    /// `mask` is true where a query may **not** see a key (built by `Padding`: keys in a query's
    /// future, which includes the cache's unwritten slots, and keys that are left padding); `cache`,
    /// when given, receives the new keys and values and supplies the earlier ones.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `rope`: tables of `[batch, 1, seq, head_dim]`
    /// - `mask`: `[batch, 1, seq, keys]`: `keys` is `seq` without a cache, the cache's capacity with one
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RotaryTables,
        mask: &AttentionMask,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let q = crate::ops::rope_heads(self.q_proj.forward(x.clone()), self.num_heads, rope);
        let k = crate::ops::rope_heads(self.k_proj.forward(x.clone()), self.num_kv_heads, rope);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, self.num_kv_heads, self.head_dim])
            .swap_dims(1, 2);
        let (k_t, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k.swap_dims(2, 3), v),
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = if self.hooks.is_empty() {
            crate::ops::attention(q, k_t, v, mask, scale)
        } else {
            // Hardware error on the score and context matmuls: the composed version, with the
            // hooks between its operations.
            crate::ops::grouped_query_attention_with(
                q,
                k_t,
                v,
                mask.tensor.clone(),
                scale,
                |y| self.hooks.scores(y),
                |y| self.hooks.context(y),
            )
            .swap_dims(1, 2)
            .reshape([b, s, self.num_heads * self.head_dim])
        };
        self.o_proj.forward(out)
    }
}
