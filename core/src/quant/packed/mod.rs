//! Packed frozen weights: a weight that receives no gradient (a LoRA base, a reference policy)
//! held as codes + scales instead of f32 (docs/spec.md section 1's storage forms), and the projection
//! `x Q(W)^T` computed from them without materializing `Q(W)`.
//!
//! | file | concept |
//! |---|---|
//! | [`weight`] | [`PackedWeight`]: the storage and its exact decoding, by row segment |
//! | [`row_decode`] | row segments decoded with AVX2 (FP4 table lookups, bf16 shifts), and their plain references |
//! | [`lanes`] | eight rows decoded at once into output lanes, for the few-row kernel, and its plain reference |
//! | [`gemm`] | the CPU kernel of few-row products on the codes, and its plain reference |
//! | [`matmul`] | [`packed_linear`]: the tensor operation with its straight-through backward |
//!
//! The plain reference of the whole is the fake-quant projection (`Q(W)` cached in f32 and a
//! matmul): tests/packed_linear.rs checks that both give the same bits, forward and backward.

pub mod gemm;
pub mod lanes;
pub mod matmul;
mod row_decode;
mod view;
pub mod weight;

pub use matmul::{FEW_ROWS, TILE_ELEMENTS, packed_linear, packed_linear_input_grad};
pub use weight::PackedWeight;
