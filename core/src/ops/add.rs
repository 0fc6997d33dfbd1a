//! `a + b` (the residual connections, a LoRA update onto its base projection) and `y + b` with a
//! bias added to every row: [`crate::cpu::add()`] and [`crate::cpu::add_bias`] run one parallel
//! pass on the CPU backend and Burn's add elsewhere, bit for bit the same sums.

use burn::tensor::Tensor;

/// `a + b` (same shapes).
///
/// # Panics
/// If the shapes differ.
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    crate::cpu::add(a, b)
}

/// `y + b` for `y` `[rows, n]` and `b` `[n]`, `b` added to every row.
///
/// # Panics
/// If `b` is not as wide as `y`.
pub fn add_bias(y: Tensor<2>, b: Tensor<1>) -> Tensor<2> {
    crate::cpu::add_bias(y, b)
}
