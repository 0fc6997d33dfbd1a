//! RMSNorm's normalization (Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019):
//! `x / sqrt(mean(x^2) + eps) * w` over the last axis.

use burn::tensor::{DType, Tensor};

use super::fused;

/// `x / sqrt(mean(x^2) + epsilon) * w` over the last axis: one multi-threaded pass each way on
/// the CPU backend ([`crate::cpu::rms_norm()`], tested against [`rms_norm_reference`]), the
/// composed ops elsewhere.
///
/// # Shapes
/// - `x`: `[..., d_model]`, `w`: `[d_model]`
/// - output: `[..., d_model]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, epsilon: f64) -> Tensor<D> {
    if fused(&x) && fused(&w) {
        return crate::cpu::rms_norm(x, w, epsilon);
    }
    rms_norm_reference(x, w, epsilon)
}

/// [`rms_norm()`] as composed tensor operations: the plain reference of the fused CPU kernel, and
/// the path of every other backend.
pub fn rms_norm_reference<const D: usize>(x: Tensor<D>, w: Tensor<1>, epsilon: f64) -> Tensor<D> {
    // The mean square is taken in f32 whatever the activation dtype, as HF does: in bf16 the
    // sum of squares of a wide row loses the low bits that decide the scale.
    let dtype = x.dtype();
    let x32 = x.cast(DType::F32);
    let inv_rms = (x32.clone().square().mean_dim(D - 1) + epsilon)
        .sqrt()
        .recip();
    (x32 * inv_rms).cast(dtype) * w.unsqueeze()
}
