//! What one projection does to its operands in a quantized mode (docs/spec.md section 2), and the
//! cache of its quantized weight.
//!
//! `y = Q(x) Q(W)^T` (W4A4) or `x Q(W)^T` (W4A16), with `Q` along the reduction axis (the last
//! axis of both the weight `[out, in]` and the input `[rows, in]`). Backward with the STE of
//! [`crate::quant::quantize_with_gradient`]: `dL/dx = dL/dy Q(W)` (the quantized weight, which is
//! what the forward used, unlike the seed's buggy hooks), `dL/dW = dL/dy^T Q(x)` passed straight
//! to the latent `W`, and `dL/dQ(x)` passed unchanged to `x`. With [`QuantGradient::None`] the
//! quantizers are constants to autodiff: no gradient reaches `W` or, in W4A4, `x` (the seed's
//! E13a-f collapse, kept as an explicit ablation).

use burn::tensor::Tensor;

use crate::formats::QuantSpec;
use crate::quant::{QuantGradient, quantize_with_gradient};

/// The quantization axis of weights `[out, in]` and of inputs reshaped to `[rows, in]`: the
/// reduction axis, so blocks never straddle two dot products.
pub const REDUCTION_AXIS: usize = 1;

/// What a projection quantizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearQuant {
    /// The weight quantizer (W4A16 and W4A4).
    pub weights: QuantSpec,
    /// The input quantizer (W4A4 only).
    pub activations: Option<QuantSpec>,
    /// STE or no gradient, for both quantizers.
    pub gradient: QuantGradient,
}

impl LinearQuant {
    /// `Q(W)` with the configured gradient.
    ///
    /// # Panics
    /// If the spec is invalid; specs are validated when the mode is applied
    /// ([`super::QuantConfig::validate`]).
    pub fn quantize_weight(&self, w: Tensor<2>) -> Tensor<2> {
        quantize_with_gradient(w, &self.weights, REDUCTION_AXIS, self.gradient)
            .expect("weight spec validated when the quantization mode was applied")
    }

    /// `Q(x)` with the configured gradient, or `x` when inputs are not quantized (W4A16).
    ///
    /// # Shapes
    /// - `x`: `[rows, in]`
    pub fn quantize_input(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.activations {
            Some(spec) => quantize_with_gradient(x, spec, REDUCTION_AXIS, self.gradient)
                .expect("activation spec validated when the quantization mode was applied"),
            None => x,
        }
    }
}

/// A weight's quantizer and the cached `Q(W)`.
///
/// The cache holds `Q(W)` for a weight that receives no gradient (a frozen LoRA base, or any
/// weight of an inference copy made by `Module::valid`), so it is quantized once rather than at
/// every forward (every decoding step of a rollout). It is only read while the weight does not
/// require a gradient; a trainable weight is quantized at every forward with the STE, so an
/// optimizer update can never be hidden by a stale cache. Everything in this crate that replaces
/// weights (`with_quantization`, `with_lora`, `for_phase`, AQN's `apply`) refreshes it.
#[derive(Clone, Debug, Default)]
pub struct WeightQuantState {
    quant: Option<LinearQuant>,
    cached: Option<Tensor<2>>,
}

impl WeightQuantState {
    /// A state that quantizes with `quant` (`None`: plain f32), with no cache yet.
    pub fn new(quant: Option<LinearQuant>) -> Self {
        Self {
            quant,
            cached: None,
        }
    }

    /// The quantizer, if any.
    pub fn quant(&self) -> Option<&LinearQuant> {
        self.quant.as_ref()
    }

    /// Whether `Q(W)` is cached.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    /// Recomputes the cache for the weight `w`: `Q(W)` (no graph) when `w` requires no gradient,
    /// nothing otherwise.
    pub fn refresh(&mut self, w: &Tensor<2>) {
        self.cached = match &self.quant {
            Some(q) if !w.is_require_grad() => Some(
                crate::quant::fake_quantize_on_device(
                    w.clone().detach(),
                    &q.weights,
                    REDUCTION_AXIS,
                )
                .expect("weight spec validated when the quantization mode was applied"),
            ),
            _ => None,
        };
    }

    /// The weight the forward pass uses: `w` itself without a quantizer; the cached `Q(W)` when
    /// `w` requires no gradient and the cache is filled; else `Q(W)` with the STE.
    pub fn effective(&self, w: Tensor<2>) -> Tensor<2> {
        match &self.quant {
            None => w,
            Some(q) => match &self.cached {
                Some(c) if !w.is_require_grad() => c.clone(),
                _ => q.quantize_weight(w),
            },
        }
    }
}
