//! Root-mean-square layer normalization (Zhang and Sennrich, "Root Mean Square Layer
//! Normalization", NeurIPS 2019), as HF's `Qwen2RMSNorm` computes it.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

/// Configuration of an [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Width of the normalized (last) axis.
    pub d_model: usize,
    /// Added to the mean square before the square root (HF `rms_norm_eps`).
    #[config(default = 1e-6)]
    pub epsilon: f64,
}

/// `y = w * x / sqrt(mean(x^2) + eps)` over the last axis.
///
/// The weight is a plain `Param` named `weight` (HF's name) so AQN (docs/spec.md section 4) can add noise
/// to it; additive noise on it equals row-wise multiplicative noise on the following linear layer.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[d_model]`, initialized to ones.
    pub weight: Param<Tensor<1>>,
    /// The epsilon.
    pub epsilon: f64,
}

impl RmsNormConfig {
    /// A norm with unit weight.
    ///
    /// # Panics
    /// If `d_model` is 0 or `epsilon` is not positive (the model config is validated before this).
    pub fn init(&self, device: &Device) -> RmsNorm {
        assert!(self.d_model > 0, "RmsNorm d_model must be positive");
        assert!(self.epsilon > 0.0, "RmsNorm epsilon must be positive");
        RmsNorm {
            weight: Initializer::Ones.init([self.d_model], device),
            epsilon: self.epsilon,
        }
    }
}

impl RmsNorm {
    /// Normalizes the last axis.
    ///
    /// # Shapes
    /// - `x`: `[..., d_model]`
    /// - output: `[..., d_model]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::ops::rms_norm(x, self.weight.val(), self.epsilon)
    }

    /// [`Self::forward`] as composed tensor operations: the plain reference of the fused CPU
    /// kernel, and the path of every other backend.
    pub fn forward_reference<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::ops::rms_norm_reference(x, self.weight.val(), self.epsilon)
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn matches_the_formula() {
        let device = Device::ndarray();
        let norm = RmsNorm {
            weight: Param::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5], [3]), &device),
            epsilon: 1e-6,
        };
        let x = [1.0f32, -2.0, 4.0];
        let out = norm
            .forward(Tensor::<2>::from_data(
                TensorData::new(x.to_vec(), [1, 3]),
                &device,
            ))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let rms = ((1.0f64 + 4.0 + 16.0) / 3.0 + 1e-6).sqrt();
        let want = [1.0 / rms, 2.0 * -2.0 / rms, 0.5 * 4.0 / rms];
        for (o, w) in out.iter().zip(want) {
            assert!((*o as f64 - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
