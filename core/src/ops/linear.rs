//! `x W^T` for a weight in HF layout `[out, in]`: the GEMMs of [`crate::cpu::linear()`] read both
//! operands in place on the CPU backend (the same bits as the matmul); elsewhere the matmul in
//! the orientation that copies less.

use burn::tensor::Tensor;

use super::fused;

/// `x W^T`.
///
/// # Shapes
/// - `x`: `[rows, in]`, `w`: `[out, in]`
/// - output: `[rows, out]`
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if fused(&x) && fused(&w) {
        return crate::cpu::linear(x, w);
    }
    let ([rows, d_input], [d_output, _]) = (x.dims(), w.dims());
    // CPU backends copy a transposed (non-contiguous) matmul operand into a contiguous one, so
    // each orientation copies something: `x W^T` copies the weight (d_out x d_in), `(W x^T)^T`
    // copies the activations in and out (rows x (d_in + d_out)). Decoding steps have few rows,
    // prefill and training many: take the cheaper one. Both are `x W^T` (tested to agree).
    if rows * (d_input + d_output) < d_input * d_output {
        w.matmul(x.transpose()).transpose()
    } else {
        x.matmul(w.transpose())
    }
}
