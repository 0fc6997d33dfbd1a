//! SwiGLU's gate (Shazeer, "GLU Variants Improve Transformer", 2020): `silu(gate) * up`.

use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::fused;

/// `silu(gate) * up`: one multi-threaded pass each way on the CPU backend
/// ([`crate::cpu::swiglu()`], tested against [`swiglu_reference`]), the composed ops elsewhere.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if fused(&gate) && fused(&up) {
        return crate::cpu::swiglu(gate, up);
    }
    swiglu_reference(gate, up)
}

/// `silu(gate) * up` as composed tensor operations: the plain reference of the fused CPU
/// kernel, and the path of every other backend.
pub fn swiglu_reference<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}
