//! Rotary position embeddings applied to the query and key heads, in HF's "rotate half" layout
//! (the tables come from `crate::model::rotary::RotaryEmbedding::tables`).

use burn::tensor::Tensor;

use super::fused;

/// The cos/sin tables of one forward pass, each `[batch, 1, seq, head_dim]`.
#[derive(Clone, Debug)]
pub struct RotaryTables {
    /// `cos(position * inv_freq)`, the half-width table repeated twice along the last axis.
    pub cos: Tensor<4>,
    /// `sin(position * inv_freq)`, likewise.
    pub sin: Tensor<4>,
    /// `cos` on the host, row-major (the fused CPU kernel reads it).
    pub cos_host: std::sync::Arc<Vec<f32>>,
    /// `sin` on the host, row-major.
    pub sin_host: std::sync::Arc<Vec<f32>>,
}

impl RotaryTables {
    /// Rotates `x`: `x * cos + rotate_half(x) * sin`, `rotate_half([a, b]) = [-b, a]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, seq, head_dim]`
    /// - output: the same
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, d] = x.dims();
        let half = d / 2;
        let first = x.clone().narrow(3, 0, half);
        let second = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

/// Splits `t` `[batch, seq, heads * head_dim]` into heads and rotates them: one pass on the CPU
/// backend ([`crate::cpu::rope_heads`], tested against this), the reshape, swap and
/// [`RotaryTables::apply`] elsewhere.
///
/// # Shapes
/// - `t`: `[batch, seq, heads * head_dim]`
/// - output: `[batch, heads, seq, head_dim]`
pub fn rope_heads(t: Tensor<3>, heads: usize, tables: &RotaryTables) -> Tensor<4> {
    if fused(&t) {
        return crate::cpu::rope_heads(t, heads, tables.cos_host.clone(), tables.sin_host.clone());
    }
    let [b, s, width] = t.dims();
    tables.apply(t.reshape([b, s, heads, width / heads]).swap_dims(1, 2))
}
