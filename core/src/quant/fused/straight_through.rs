//! The fused straight-through estimator: one autodiff node whose forward is the fused kernel
//! (`Q(x)` exactly, subnormals included) and whose backward hands the output gradient to `x`
//! unchanged (docs/spec.md section 2), with no kernel of its own.
//!
//! The composed STE `Q(x).detach() - (x.detach() - x)` needs two more elementwise kernels in each
//! direction, and its forward subtraction goes through the GPU's float unit, which is allowed to
//! flush a subnormal `Q(x)` to zero; this node has neither cost.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Cube};

use super::launch::fake_quantize_cube;
use crate::formats::{FormatError, QuantSpec};

/// The autodiff node: gradient in, the same gradient out.
#[derive(Debug)]
struct StraightThrough;

impl<B: burn::backend::Backend> Backward<B, 1> for StraightThrough {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| grad);
    }
}

/// `Q(x)` of an autodiff CubeCL tensor viewed as `[len / row_len, row_len]`, as a new node of the
/// graph whose gradient with respect to `x` is the identity.
pub fn straight_through<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Cube, C>>,
    spec: &QuantSpec,
    row_len: usize,
) -> Result<FloatTensor<Autodiff<Cube, C>>, FormatError> {
    let node = x.node();
    let q = fake_quantize_cube(x.primitive().clone(), spec, row_len)?;
    Ok(StraightThrough
        .prepare::<C>([node])
        .compute_bound()
        .stateless(q))
}
