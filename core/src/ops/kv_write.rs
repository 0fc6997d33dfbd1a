//! Writing the keys and values of new positions into a layer's preallocated cache buffers.

use burn::tensor::Tensor;

use super::fused;

/// The buffers with `k` and `v` (each `[batch, kv_heads, new, head_dim]`) written at positions
/// `at..at + new`: keys into `k_buf` `[batch, kv_heads, head_dim, capacity]` (transposed), values
/// into `v_buf` `[batch, kv_heads, capacity, head_dim]`.
///
/// Generation on the CPU writes the new columns in place by a plain loop
/// ([`crate::cpu::host::write_positions`]; Burn's strided slice assignment costs ~17 ns per value
/// there); tracked tensors and other backends take `slice_assign`.
pub fn write_kv(
    k_buf: Tensor<4>,
    v_buf: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    at: usize,
) -> (Tensor<4>, Tensor<4>) {
    let [b, kv, s, d] = k.dims();
    let end = at + s;
    if !k_buf.is_autodiff() && !k.is_autodiff() && fused(&k_buf) {
        (
            crate::cpu::host::write_positions(k_buf, k, at, true),
            crate::cpu::host::write_positions(v_buf, v, at, false),
        )
    } else {
        (
            k_buf.slice_assign([0..b, 0..kv, 0..d, at..end], k.swap_dims(2, 3)),
            v_buf.slice_assign([0..b, 0..kv, at..end, 0..d], v),
        )
    }
}
