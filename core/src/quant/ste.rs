//! The straight-through estimator (SPEC.md section 2).

use burn::tensor::Tensor;

use crate::formats::{FormatError, QuantSpec};

/// What gradient a quantizer passes back to its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantGradient {
    /// Straight-through: dL/dx = dL/dQ(x), unchanged (default).
    Ste,
    /// No gradient: the quantizer is a constant to autodiff (the seed's E13a-f collapse).
    None,
}

/// `Q(x)` in the forward pass, exactly (bit for bit the fake-quantized value), with the gradient
/// chosen by `gradient`.
///
/// The STE is written `Q(x).detach() - (x.detach() - x)`: the second term is exactly +0 for
/// finite x, so the value is `Q(x)` bit for bit (the sign of a zero included), and its
/// derivative with respect to `x` is 1. (The textbook `x + (Q(x) - x).detach()` can differ from
/// `Q(x)` by a rounding of `Q(x) - x`.) `Q` is computed on a detached copy, so it records no
/// autodiff graph.
pub fn quantize_with_gradient<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
    gradient: QuantGradient,
) -> Result<Tensor<D>, FormatError> {
    let q = super::fake_quantize(x.clone().detach(), spec, axis)?;
    Ok(match gradient {
        QuantGradient::None => q,
        QuantGradient::Ste => q - (x.clone().detach() - x),
    })
}
