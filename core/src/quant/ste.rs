//! The straight-through estimator (docs/spec.md section 2).

use burn::tensor::Tensor;

use crate::formats::{FormatError, QuantSpec};
use crate::named::named_enum;

named_enum! {
    /// What gradient a quantizer passes back to its input (serialized `ste` / `none`).
    #[derive(Default)]
    QuantGradient, "quantizer gradient", FormatError {
        /// Straight-through: dL/dx = dL/dQ(x), unchanged (default).
        #[default]
        Ste => "ste" | "straight-through",
        /// No gradient: the quantizer is a constant to autodiff (the seed's E13a-f collapse).
        None => "none" | "no-ste",
    }
}

/// `Q(x)` in the forward pass, exactly (bit for bit the fake-quantized value), with the gradient
/// chosen by `gradient`.
///
/// The STE is written `Q(x).detach() - (x.detach() - x)`: the second term is exactly +0 for
/// finite x, so the value is `Q(x)` bit for bit (the sign of a zero included), and its
/// derivative with respect to `x` is 1. (The textbook `x + (Q(x) - x).detach()` can differ from
/// `Q(x)` by a rounding of `Q(x) - x`.) `Q` is computed on a detached copy, so it records no
/// autodiff graph, by [`super::fake_quantize_on_device`] (the slice API on the CPU backend, the
/// composed ops on other non-CubeCL backends; bit-identical). On a CubeCL device (wgpu, CUDA) the
/// STE is instead one autodiff node around the fused kernel (`fused::quantize_ste_fused`),
/// with the same value and gradient.
pub fn quantize_with_gradient<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
    gradient: QuantGradient,
) -> Result<Tensor<D>, FormatError> {
    // On a CubeCL device the fused kernel is one autodiff node with the identity backward.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if gradient == QuantGradient::Ste && super::fused::is_fused_device(&x.device()) {
        return super::fused::quantize_ste_fused(x, spec, axis);
    }
    let q = super::fake_quantize_on_device(x.clone().detach(), spec, axis)?;
    Ok(match gradient {
        // A constant to autodiff. Kept inside the graph when `x` is (the composed ops on a
        // detached tensor are; a tensor made from host data is not): `q - (d - d)` is `q` bit for
        // bit for finite `x`, like the STE's second term.
        QuantGradient::None if x.is_tracked() => {
            let d = x.detach();
            q - (d.clone() - d)
        }
        QuantGradient::None => q,
        QuantGradient::Ste => q - (x.clone().detach() - x),
    })
}
