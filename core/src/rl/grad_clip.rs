//! Global-norm gradient clipping, as PyTorch's `clip_grad_norm_` that verl's actor calls before
//! every optimizer step (`actor.optim.clip_grad`, default 1.0):
//!
//! ```text
//! norm = sqrt(sum over all trainable parameters p of sum(grad_p^2))
//! coef = min(max_norm / (norm + 1e-6), 1)
//! grad_p *= coef   for every p
//! ```
//!
//! and the pre-clip `norm` is reported as `actor/grad_norm`. Burn 0.22's own
//! `GradientClippingConfig::Norm` clips each parameter tensor by its *own* norm inside the
//! optimizer, which is a different rule (and reports nothing), so the trainer clips here and
//! builds its optimizer without Burn's clipping. When the norm is not finite, verl skips the
//! optimizer step (and zeroes the gradients); [`clip_grad_norm`] returns
//! [`ClippedGrads::NonFinite`] so that the trainer must do the same.
//!
//! A parameter shared by several modules (tied embeddings) has one id and is counted once.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::error::RlError;
use super::metrics::{GRAD_NORM, Metrics};

/// PyTorch's `1e-6` in `max_norm / (total_norm + 1e-6)`.
pub const CLIP_COEF_EPSILON: f64 = 1e-6;
/// verl's default `clip_grad`.
pub const DEFAULT_MAX_GRAD_NORM: f64 = 1.0;

/// The result of clipping.
#[derive(Debug)]
pub enum ClippedGrads {
    /// A finite norm: the (possibly scaled) gradients to give the optimizer.
    Finite {
        /// The clipped gradients.
        grads: GradientsParams,
        /// The pre-clip norm and the factor applied.
        report: GradClipReport,
    },
    /// A NaN or infinite norm: skip this optimizer step (the gradients are dropped).
    NonFinite {
        /// The pre-clip norm.
        report: GradClipReport,
    },
}

/// The pre-clip norm and the applied factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradClipReport {
    /// The global L2 norm before clipping.
    pub grad_norm: f64,
    /// The factor the gradients were multiplied by (1 when the norm is within `max_norm`).
    pub clip_coef: f64,
}

impl GradClipReport {
    /// `actor/grad_norm`.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.insert(GRAD_NORM, self.grad_norm);
        m
    }
}

/// Sums the squares of every gradient of the module's parameters, each parameter once.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    seen: HashSet<ParamId>,
    total: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += f64::from(g.square().sum().into_scalar::<f32>());
        }
    }
}

/// Multiplies every gradient by `coef`, each parameter once.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    coef: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.coef));
        }
    }
}

/// The global L2 norm of the gradients of `module`'s parameters.
pub fn grad_global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm {
        grads,
        seen: HashSet::new(),
        total: 0.0,
    };
    module.visit(&mut v);
    v.total.sqrt()
}

/// Clips `grads` (of `module`'s parameters) to global norm `max_norm` (see the module docs).
pub fn clip_grad_norm<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> Result<ClippedGrads, RlError> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(RlError::InvalidSetting {
            name: "clip_grad",
            value: max_norm.to_string(),
            requirement: "it must be a finite number > 0".into(),
        });
    }
    let grad_norm = grad_global_norm(module, &grads);
    if !grad_norm.is_finite() {
        return Ok(ClippedGrads::NonFinite {
            report: GradClipReport {
                grad_norm,
                clip_coef: f64::NAN,
            },
        });
    }
    let clip_coef = (max_norm / (grad_norm + CLIP_COEF_EPSILON)).min(1.0);
    if clip_coef < 1.0 {
        let mut v = Scale {
            grads: &mut grads,
            seen: HashSet::new(),
            coef: clip_coef,
        };
        module.visit(&mut v);
    }
    Ok(ClippedGrads::Finite {
        grads,
        report: GradClipReport {
            grad_norm,
            clip_coef,
        },
    })
}
