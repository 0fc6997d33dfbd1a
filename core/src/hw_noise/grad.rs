//! Hardware error on the backward pass: a function whose forward is the identity and whose
//! backward adds the model's error to the incoming gradient, `g -> g + delta(g)`.
//!
//! The detach trick cannot express this: it only yields gradients linear in the incoming
//! gradient with factors fixed in the forward pass, while the bias `sign(g) s` and the deadzone
//! (relative to `max|g|`) depend on `g` itself, and additive noise does not scale with `g` at
//! all. So this registers a custom step with Burn's autodiff graph (`burn::backend::autodiff`,
//! Burn's `extension` feature). Its backward turns the inner backend's gradient into a plain
//! tensor and calls the very [`HwErrorModel::perturbation`] that the forward pass uses.
//!
//! The step is registered for NdArray (with and without gradient checkpointing). On another
//! backend [`grad_noise`] returns [`HwNoiseError::GradNoiseBackend`] rather than dropping the
//! noise; supporting one means adding its `try_record::<Autodiff<X, C>>` arm below when aqn-core
//! gains that backend's feature.

// NdArray is deprecated in Burn 0.22 in favour of Flex; it is the CPU backend aqn-core builds.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::{Autodiff, Backend, DispatchKindConversion, DispatchTensor, NdArray};
use burn::tensor::Tensor;

use super::{HwErrorModel, HwNoiseError, NoiseKey, NoisePass, NoiseSource};

/// What the backward step needs.
#[derive(Clone, Copy, Debug)]
struct GradNoiseState {
    model: HwErrorModel,
    key: NoiseKey,
    source: NoiseSource,
}

/// The custom step for a rank-`D` tensor.
#[derive(Debug)]
struct GradNoise<const D: usize>;

impl<B: Backend, const D: usize> Backward<B, 1> for GradNoise<D>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = GradNoiseState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let g = Tensor::<D>::from_primitive::<B>(grad);
            let noisy = g.clone() + state.model.perturbation(g, &state.key, state.source);
            noisy
                .try_into_primitive::<B>()
                .expect("the noisy gradient stays on the gradient's backend")
        });
    }
}

/// Records the identity step with its backward noise on an autodiff tensor of `Autodiff<B, C>`.
fn try_record<B, C, const D: usize>(y: &Tensor<D>, state: GradNoiseState) -> Option<Tensor<D>>
where
    B: Backend,
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B, C>>,
{
    let ad = y.clone().try_into_primitive::<Autodiff<B, C>>().ok()?;
    let (primitive, node) = ad.into_parts();
    let out = match GradNoise::<D>
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, primitive),
        OpsKind::UnTracked(prep) => prep.finish(primitive),
    };
    Some(Tensor::from_primitive::<Autodiff<B, C>>(out))
}

/// Identity in the forward pass; in the backward pass the gradient `g` reaching `y` becomes
/// `g + delta(g)` of `model` (e.g. `g + N(0,1) |g| s`), drawn with `key` in the backward pass
/// ([`NoisePass::Backward`], so the same key gives forward and backward distinct noise).
/// A tensor without autodiff is returned as is (no gradient will flow through it).
///
/// # Shapes
/// Any rank; the result has the shape of `y`.
pub fn grad_noise<const D: usize>(
    y: Tensor<D>,
    model: &HwErrorModel,
    key: &NoiseKey,
    source: NoiseSource,
) -> Result<Tensor<D>, HwNoiseError> {
    model.validate()?;
    if !y.is_autodiff() {
        return Ok(y);
    }
    let state = GradNoiseState {
        model: *model,
        key: key.with_pass(NoisePass::Backward),
        source,
    };
    try_record::<NdArray, NoCheckpointing, D>(&y, state)
        .or_else(|| try_record::<NdArray, BalancedCheckpointing, D>(&y, state))
        .ok_or_else(|| HwNoiseError::GradNoiseBackend {
            backend: format!("{:?}", y.device()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn key() -> NoiseKey {
        NoiseKey::new(11, 3, NoiseKey::site_id("layers.2.self_attn.o_proj"), 0)
    }

    /// The gradient reaching `x` through `y = 2x`, `grad_noise(y)`, `loss = sum(y' * c)`.
    fn grad_through(model: &HwErrorModel, c: &[f32], device: &Device) -> (Vec<f32>, Vec<f32>) {
        let n = c.len();
        let x0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::<1>::from_data(TensorData::new(x0.clone(), [n]), device).require_grad();
        let y = x.clone().mul_scalar(2.0);
        let out = grad_noise(y.clone(), model, &key(), NoiseSource::Counter).unwrap();
        // The forward pass is the identity, bit for bit.
        assert_eq!(values(out.clone()), values(y));
        let cst = Tensor::<1>::from_data(TensorData::new(c.to_vec(), [n]), device);
        let grads = (out * cst).sum().backward();
        (values(x.grad(&grads).unwrap()), x0)
    }

    /// The reference: `g + delta(g)` on a plain tensor, with the backward key.
    fn reference(model: &HwErrorModel, g: &[f32]) -> Vec<f32> {
        let device = Device::ndarray();
        let t = Tensor::<1>::from_data(TensorData::new(g.to_vec(), [g.len()]), &device);
        let k = key().with_pass(NoisePass::Backward);
        values(t.clone() + model.perturbation(t, &k, NoiseSource::Counter))
    }

    #[test]
    fn relative_gaussian_gradient_noise() {
        let device = Device::ndarray().autodiff();
        let n = 200_000;
        let c: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let model = HwErrorModel::RelativeGaussian { scale: 0.05 };
        let (gx, _) = grad_through(&model, &c, &device);
        // dL/dy = c, noised, then times 2 for dL/dx.
        let want: Vec<f32> = reference(&model, &c).iter().map(|g| g * 2.0).collect();
        assert_eq!(gx, want);
        // The injected relative noise has std 5%.
        let rel: Vec<f64> = gx
            .iter()
            .zip(&c)
            .map(|(&g, &ci)| f64::from(g / (2.0 * ci) - 1.0))
            .collect();
        let mean = rel.iter().sum::<f64>() / n as f64;
        let std = (rel.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((std / 0.05 - 1.0).abs() < 0.02, "std {std}");
        assert!(mean.abs() < 1e-3, "mean {mean}");
    }

    #[test]
    fn deadzone_and_bias_gradient_noise() {
        let device = Device::ndarray().autodiff();
        let c: Vec<f32> = vec![0.5, -4.0, 0.01, 0.0, -0.03, 2.0, 0.04, -0.0399];
        let dz = HwErrorModel::Deadzone { threshold: 0.01 };
        let (gx, _) = grad_through(&dz, &c, &device);
        // Cutoff 0.01 * 4 = 0.04: 0.01, 0, -0.03, -0.0399 are lost; 0.04 is kept.
        assert_eq!(gx, vec![1.0, -8.0, 0.0, 0.0, 0.0, 4.0, 0.08, 0.0]);
        let bias = HwErrorModel::SystematicBias { scale: 0.5 };
        let (gx, _) = grad_through(&bias, &c, &device);
        assert_eq!(gx, vec![2.0, -9.0, 1.02, 0.0, -1.06, 5.0, 1.08, -1.0798]);
    }

    #[test]
    fn works_with_gradient_checkpointing() {
        let device = Device::ndarray().autodiff().gradient_checkpointing();
        let c = vec![1.0f32; 64];
        let model = HwErrorModel::AbsoluteGaussian { scale: 0.1 };
        let (gx, _) = grad_through(&model, &c, &device);
        let want: Vec<f32> = reference(&model, &c).iter().map(|g| g * 2.0).collect();
        assert_eq!(gx, want);
    }

    #[test]
    fn plain_tensors_pass_through_and_bad_models_are_refused() {
        let device = Device::ndarray();
        let y = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5], [2, 2]),
            &device,
        );
        let model = HwErrorModel::RelativeGaussian { scale: 0.05 };
        let out = grad_noise(y.clone(), &model, &key(), NoiseSource::Counter).unwrap();
        assert_eq!(values(out), values(y.clone()));
        let bad = HwErrorModel::RelativeGaussian { scale: -0.05 };
        let err = grad_noise(y, &bad, &key(), NoiseSource::Counter)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scale = -0.05"), "{err}");
    }
}
