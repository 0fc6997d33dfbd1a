//! Grouped-query softmax attention (Ainslie et al., "GQA", 2023) and its mask: the composed
//! version (HF's eager attention, with the key/value heads read in place instead of repeated) and
//! the one entry point that runs the fused CPU kernel where it applies.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use super::fused;
pub use crate::cpu::attention::MASKED_SCORE;

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
    grouped_query_attention_with(q, k_t, v, mask, scale, |s| s, |c| c)
}

/// [`grouped_query_attention`] with a hook on each of its two matmuls' outputs (hardware error,
/// docs/spec.md section 6): `on_scores` sees the stacked `[batch, kv_heads, n_rep * seq, keys]` scores
/// before the scaling and the mask, `on_context` the `[batch, kv_heads, n_rep * seq, head_dim]`
/// context.
pub fn grouped_query_attention_with(
    q: Tensor<4>,
    k_t: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<4, Bool>,
    scale: f64,
    on_scores: impl FnOnce(Tensor<4>) -> Tensor<4>,
    on_context: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let [_, kv, _, t] = k_t.dims();
    let n_rep = h / kv;
    // Query head kv * n_rep + r is row block r of kv head `kv`'s stacked query matrix.
    let q = q.reshape([b, kv, n_rep * s, d]);
    let scores = on_scores(q.matmul(k_t))
        .mul_scalar(scale)
        .reshape([b, kv, n_rep, s, t]);
    let mask: Tensor<5, Bool> = mask.unsqueeze_dim(2);
    let weights = softmax(scores.mask_fill(mask, MASKED_SCORE), 4).reshape([b, kv, n_rep * s, t]);
    on_context(weights.matmul(v)).reshape([b, h, s, d])
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

/// `softmax(q k^T * scale, hiding mask) v` in the output projection's layout: one multi-threaded
/// kernel each way on the CPU backend ([`crate::cpu::attention()`], tested against
/// [`grouped_query_attention`]), the composed version elsewhere.
///
/// # Shapes
/// - `q`: `[batch, heads, seq, head_dim]`
/// - `k_t`: `[batch, kv_heads, head_dim, keys]`, `v`: `[batch, kv_heads, keys, head_dim]`
/// - output: `[batch, seq, heads * head_dim]`
pub fn attention(
    q: Tensor<4>,
    k_t: Tensor<4>,
    v: Tensor<4>,
    mask: &AttentionMask,
    scale: f64,
) -> Tensor<3> {
    if fused(&q) {
        return crate::cpu::attention(q, k_t, v, mask.host.clone(), scale);
    }
    let [b, h, s, d] = q.dims();
    grouped_query_attention(q, k_t, v, mask.tensor.clone(), scale)
        .swap_dims(1, 2)
        .reshape([b, s, h * d])
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
