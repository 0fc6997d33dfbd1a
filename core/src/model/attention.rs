//! Grouped-query self-attention of Qwen2 (Ainslie et al., "GQA: Training Generalized Multi-Query
//! Transformer Models from Multi-Head Checkpoints", 2023): `num_attention_heads` query heads share
//! `num_key_value_heads` key/value heads; q/k/v projections have a bias, the output projection none.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use super::cache::LayerCache;
use super::linear::{QLinear, QLinearConfig};
use super::rotary::RotaryTables;
use crate::hw_noise::site::SiteNoise;

/// The score given to a hidden (masked) query/key pair before the softmax: the most negative finite
/// f32, so its weight underflows to exactly 0 next to any visible key, and a row with every key
/// hidden (a padding query) becomes uniform instead of NaN (its output is never used).
pub const MASKED_SCORE: f32 = f32::MIN;

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

/// Hardware error wired to the two matmuls inside attention (SPEC.md section 6, optional sites).
#[derive(Clone, Debug, Default)]
pub struct AttentionHooks {
    /// On `q k^T`, before the scaling and the mask.
    pub scores: Option<SiteNoise>,
    /// On `softmax(scores) v`.
    pub context: Option<SiteNoise>,
}

impl AttentionHooks {
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

/// Repeats each key/value head `n_rep` times so head `h` of the result is kv head `h / n_rep`
/// (HF's `repeat_kv`).
///
/// # Shapes
/// - `x`: `[batch, kv_heads, seq, head_dim]`
/// - output: `[batch, kv_heads * n_rep, seq, head_dim]`
pub fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kv, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, n_rep, s, d])
        .reshape([b, kv * n_rep, s, d])
}

/// The plain reference of [`grouped_query_attention`]: HF's eager attention, with the key/value
/// heads repeated by [`repeat_kv`] to one per query head.
///
/// # Shapes
/// - `q`: `[batch, heads, seq, head_dim]`; `k`, `v`: `[batch, kv_heads, keys, head_dim]`
/// - `mask`: `[batch, 1, seq, keys]`, true where a key is hidden
/// - output: `[batch, heads, seq, head_dim]`
pub fn repeat_kv_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<4, Bool>,
    scale: f64,
) -> Tensor<4> {
    let n_rep = q.dims()[1] / k.dims()[1];
    let (k, v) = (repeat_kv(k, n_rep), repeat_kv(v, n_rep));
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    softmax(scores.mask_fill(mask, MASKED_SCORE), 3).matmul(v)
}

/// `softmax(q k^T * scale, hiding mask) v` where each key/value head serves `heads / kv_heads`
/// consecutive query heads. The query heads of one kv head are stacked into one matrix, so the keys
/// and values are read in place rather than repeated (a copy of the whole cache per layer and step
/// on CPU backends); [`repeat_kv_attention`] is the reference it is tested against.
///
/// # Shapes
/// - `q`: `[batch, heads, seq, head_dim]`
/// - `k_t`: `[batch, kv_heads, head_dim, keys]` (transposed, as [`LayerCache`] keeps them)
/// - `v`: `[batch, kv_heads, keys, head_dim]`
/// - `mask`: `[batch, 1, seq, keys]`, true where a key is hidden
/// - output: `[batch, heads, seq, head_dim]`
pub fn grouped_query_attention(
    q: Tensor<4>,
    k_t: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<4, Bool>,
    scale: f64,
) -> Tensor<4> {
    grouped_query_attention_with(q, k_t, v, mask, scale, &AttentionHooks::default())
}

/// [`grouped_query_attention`] with hardware error on its two matmuls as `hooks` say (the
/// perturbed tensors are the stacked `[batch, kv_heads, n_rep * seq, keys]` scores and
/// `[batch, kv_heads, n_rep * seq, head_dim]` context).
pub fn grouped_query_attention_with(
    q: Tensor<4>,
    k_t: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<4, Bool>,
    scale: f64,
    hooks: &AttentionHooks,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let [_, kv, _, t] = k_t.dims();
    let n_rep = h / kv;
    // Query head kv * n_rep + r is row block r of kv head `kv`'s stacked query matrix.
    let q = q.reshape([b, kv, n_rep * s, d]);
    let scores = hooks
        .scores(q.matmul(k_t))
        .mul_scalar(scale)
        .reshape([b, kv, n_rep, s, t]);
    let mask: Tensor<5, Bool> = mask.unsqueeze_dim(2);
    let weights = softmax(scores.mask_fill(mask, MASKED_SCORE), 4).reshape([b, kv, n_rep * s, t]);
    hooks.context(weights.matmul(v)).reshape([b, h, s, d])
}

/// The attention mask of one forward pass, `[batch, 1, seq, keys]`, true where a query may not
/// see a key: as a tensor (the composed attention) and as host values (the fused CPU kernel),
/// built once for every layer.
#[derive(Clone, Debug)]
pub struct AttentionMask {
    /// The mask as a tensor.
    pub tensor: Tensor<4, Bool>,
    /// The same values on the host, with each row's visible span.
    pub host: crate::cpu::attention::HostMask,
}

impl AttentionMask {
    /// The mask of `hidden` (row-major `[batch, 1, seq, keys]`) on `device`.
    pub fn new(hidden: Vec<bool>, dims: [usize; 4], device: &Device) -> Self {
        let tensor = Tensor::<4, Bool>::from_data(
            burn::tensor::TensorData::new(hidden.clone(), dims),
            device,
        );
        Self {
            tensor,
            host: crate::cpu::attention::HostMask::new(hidden, dims[3]),
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
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, self.head_dim]).swap_dims(1, 2);
        let rotated = |t: Tensor<3>, n: usize| {
            if crate::cpu::fused_cpu_available(&t.device(), t.dtype()) {
                // The split into heads and the rotation in one pass (tested against these).
                crate::cpu::rope_heads(t, n, rope.cos_host.clone(), rope.sin_host.clone())
            } else {
                rope.apply(heads(t, n))
            }
        };
        let q = rotated(self.q_proj.forward(x.clone()), self.num_heads);
        let k = rotated(self.k_proj.forward(x.clone()), self.num_kv_heads);
        let v = heads(self.v_proj.forward(x), self.num_kv_heads);
        let (k_t, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k.swap_dims(2, 3), v),
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let fused = crate::cpu::fused_cpu_available(&q.device(), q.dtype())
            && self.hooks.scores.is_none()
            && self.hooks.context.is_none();
        let out = if fused {
            // One multi-threaded kernel each way on the CPU backend (tested against the
            // composed version), already in the output projection's layout.
            crate::cpu::attention(q, k_t, v, mask.host.clone(), scale)
        } else {
            grouped_query_attention_with(q, k_t, v, mask.tensor.clone(), scale, &self.hooks)
                .swap_dims(1, 2)
                .reshape([b, s, self.num_heads * self.head_dim])
        };
        self.o_proj.forward(out)
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn repeat_kv_shares_each_head_with_its_group() {
        let device = Device::ndarray();
        // kv head 0 holds 0s, kv head 1 holds 1s.
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 1.0, 1.0], [1, 2, 1, 2]),
            &device,
        );
        let y = repeat_kv(x, 3).into_data().to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0., 0., 0., 0., 0., 0., 1., 1., 1., 1., 1., 1.]);
    }

    #[test]
    fn grouped_attention_matches_the_repeat_kv_reference() {
        let device = Device::ndarray();
        let (b, h, kv, s, t, d) = (2, 6, 2, 3, 5, 4);
        let det = |n: usize, seed: u64| -> Vec<f32> {
            (0..n as u64)
                .map(|i| crate::rng::normal_f64(seed, i) as f32)
                .collect()
        };
        let q = Tensor::<4>::from_data(
            TensorData::new(det(b * h * s * d, 1), [b, h, s, d]),
            &device,
        );
        let k = Tensor::<4>::from_data(
            TensorData::new(det(b * kv * t * d, 2), [b, kv, t, d]),
            &device,
        );
        let v = Tensor::<4>::from_data(
            TensorData::new(det(b * kv * t * d, 3), [b, kv, t, d]),
            &device,
        );
        // Row 0: 2 cached keys then causal; row 1: also 2 keys of left padding.
        let mask: Vec<bool> = (0..b)
            .flat_map(|row| {
                (0..s).flat_map(move |i| (0..t).map(move |j| j > 2 + i || (row == 1 && j < 2)))
            })
            .collect();
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, s, t]), &device);
        let want = repeat_kv_attention(q.clone(), k.clone(), v.clone(), mask.clone(), 0.5);
        let got = grouped_query_attention(q, k.swap_dims(2, 3), v, mask, 0.5);
        let (want, got) = (
            want.into_data().to_vec::<f32>().unwrap(),
            got.into_data().to_vec::<f32>().unwrap(),
        );
        for (a, w) in got.iter().zip(&want) {
            assert!((a - w).abs() < 1e-6, "{a} vs {w}");
        }
    }
}
