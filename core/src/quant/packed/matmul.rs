//! `y = x Q(W)^T` for a [`PackedWeight`] as a tensor operation on any backend, with its
//! straight-through backward `dL/dx = dL/dy Q(W)` (docs/spec.md section 2; a packed weight is frozen,
//! so it receives no gradient) as one autodiff node that keeps only the packed weight.
//!
//! The whole f32 `Q(W)` never exists: the forward decodes blocks of output rows, the backward
//! blocks of input columns, each of at most [`TILE_ELEMENTS`] values, and multiplies them with
//! the backend's own matmul (on a GPU the tiles are decoded on the device from codes kept
//! there: `crate::quant::fused::packed_decode`). Every output element of a matmul gets the same arithmetic whatever
//! tile of the other operand it is computed with (the reduction axis is never split), so the
//! result is bit for bit the fake-quant path's `x Q(W)^T` (and its gradient `dy Q(W)`) on the
//! CPU; tests/packed_linear.rs checks it for every format and scale mode on the CPU and on
//! lavapipe. On the CPU, products of at most [`FEW_ROWS`] rows (rollout decoding steps) skip
//! the tiles: the kernel of [`super::gemm`] reads the codes directly with the same arithmetic.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Device, GradientCheckpointingStrategy, Tensor, TensorData};

use super::gemm::{packed_gemm, sgemm_order_available};
use super::weight::PackedWeight;
use crate::quant::is_host_device;

/// Rows at or below which the CPU reads the codes directly (decoding steps of up to 64 rollout
/// rows): `cargo bench --bench packed_gemm` has the few-row kernel ahead of the tiles up to 64
/// rows (1.3-3x less CPU time for Qwen2.5-1.5B's shapes), the tiles' GEMM blocking ahead for
/// long reductions beyond.
pub const FEW_ROWS: usize = 64;
/// Weight values decoded per tile on the host (1 MiB of f32: one core's L2 here).
pub const TILE_ELEMENTS: usize = 1 << 18;
/// Weight values decoded per tile on a GPU (64 MiB of f32: few launches, bounded memory).
pub const DEVICE_TILE_ELEMENTS: usize = 1 << 24;
/// Column tiles start on multiples of this (both FP4 block sizes and the 16x16 tile divide it).
const COLUMN_ALIGN: usize = 32;

/// `x Q(W)^T` (see the module docs). Gradients flow to `x` when it is tracked; `W` is frozen.
///
/// # Shapes
/// - `x`: `[rows, in]`
/// - output: `[rows, out]`
pub fn packed_linear(x: Tensor<2>, w: &PackedWeight) -> Tensor<2> {
    let [_, k] = x.dims();
    let [_, inp] = w.dims();
    assert_eq!(
        k, inp,
        "packed_linear: x has {k} features, the weight {inp}"
    );
    if !x.is_tracked() {
        return forward(x, w);
    }
    let strategy = x.gradient_checkpointing_strategy();
    macro_rules! node {
        ($m:ident) => {
            match strategy {
                Some(GradientCheckpointingStrategy::Balanced) => $m::tracked_balanced(x, w),
                _ => $m::tracked_plain(x, w),
            }
        };
    }
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if crate::quant::fused::is_fused_device(&x.device()) {
        return node!(cube_node);
    }
    node!(ndarray_node)
}

/// `dy Q(W)`: the gradient of [`packed_linear`] with respect to its input.
///
/// # Shapes
/// - `dy`: `[rows, out]`
/// - output: `[rows, in]`
pub fn packed_linear_input_grad(dy: Tensor<2>, w: &PackedWeight) -> Tensor<2> {
    let [rows, o] = dy.dims();
    let [out, inp] = w.dims();
    assert_eq!(
        o, out,
        "packed_linear_input_grad: dy has {o} columns, the weight {out} rows"
    );
    let device = dy.device();
    let width = (tile_elements(&device) / out).max(COLUMN_ALIGN) / COLUMN_ALIGN * COLUMN_ALIGN;
    let mut parts = Vec::with_capacity(inp.div_ceil(width));
    let mut c0 = 0;
    while c0 < inp {
        let c1 = (c0 + width).min(inp);
        let tile = decode_tile(w, 0..out, c0..c1, &device);
        parts.push(if crate::cpu::fused_cpu_available(&device, dy.dtype()) {
            crate::cpu::matmul(dy.clone(), tile)
        } else {
            dy.clone().matmul(tile)
        });
        c0 = c1;
    }
    let _ = rows;
    cat_columns(parts)
}

/// Weight values decoded per tile on `device`: [`TILE_ELEMENTS`] on the host, where a tile
/// should stay in cache; [`DEVICE_TILE_ELEMENTS`] on a GPU, where each tile costs a launch.
fn tile_elements(device: &Device) -> usize {
    if is_host_device(device) {
        TILE_ELEMENTS
    } else {
        DEVICE_TILE_ELEMENTS
    }
}

/// Rows `rows`, columns `cols` of `w` as an f32 tensor on `device`: decoded on the device by
/// the kernel of `crate::quant::fused::packed_decode` on a CubeCL device (the codes stay
/// there), decoded on the host and copied otherwise.
fn decode_tile(
    w: &PackedWeight,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    device: &Device,
) -> Tensor<2> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if crate::quant::fused::is_fused_device(device) {
        use burn::backend::Cube;
        // An empty tensor of the device gives the kernel its client and device.
        let like = Tensor::<2>::empty([1, 1], &device.clone().without_autodiff())
            .try_into_primitive::<Cube>()
            .expect("a CubeCL tensor on a CubeCL device");
        let tile = crate::quant::fused::packed_decode::decode_tile_cube(w, rows, cols, &like)
            .unwrap_or_else(|e| panic!("decoding a packed weight on the device: {e}"));
        return Tensor::from_primitive::<Cube>(tile);
    }
    let [_, inp] = w.dims();
    let mut tile = vec![0.0f32; rows.len() * cols.len()];
    if cols.start == 0 && cols.end == inp {
        w.decode_rows(rows.start, rows.end, &mut tile);
    } else {
        assert_eq!(rows.len(), w.dims()[0], "a column tile spans every row");
        w.decode_cols(cols.start, cols.end, &mut tile);
    }
    Tensor::<2>::from_data(TensorData::new(tile, [rows.len(), cols.len()]), device)
}

/// The forward on an untracked tensor.
fn forward(x: Tensor<2>, w: &PackedWeight) -> Tensor<2> {
    let device = x.device();
    let [rows, k] = x.dims();
    let [out, _] = w.dims();
    if rows <= FEW_ROWS && is_host_device(&device) && sgemm_order_available() {
        let xs = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 data");
        let y = packed_gemm(&xs, rows, w);
        return Tensor::from_data(TensorData::new(y, [rows, out]), &device);
    }
    let height = (tile_elements(&device) / k).max(COLUMN_ALIGN) / 16 * 16;
    let mut parts = Vec::with_capacity(out.div_ceil(height));
    let mut o0 = 0;
    while o0 < out {
        let o1 = (o0 + height).min(out);
        let tile = decode_tile(w, o0..o1, 0..k, &device);
        // What the dense projection computes (the same arithmetic): on the CPU the GEMM that
        // reads the tile in place, elsewhere the cheaper orientation of the backend's matmul.
        let y = if crate::cpu::fused_cpu_available(&device, x.dtype()) {
            crate::cpu::linear(x.clone(), tile)
        } else if rows * (k + (o1 - o0)) < k * (o1 - o0) {
            tile.matmul(x.clone().transpose()).transpose()
        } else {
            x.clone().matmul(tile.transpose())
        };
        parts.push(y);
        o0 = o1;
    }
    cat_columns(parts)
}

fn cat_columns(mut parts: Vec<Tensor<2>>) -> Tensor<2> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(parts, 1)
    }
}

/// The autodiff node: the weight in, `dy Q(W)` out.
#[derive(Debug)]
struct PackedLinearBackward;

/// [`forward`] on the inner tensor, recorded as one node whose backward is
/// [`packed_linear_input_grad`], for one concrete autodiff backend.
macro_rules! tracked_fn {
    ($b:ty, $c:ty, $name:ident) => {
        pub(super) fn $name(x: Tensor<2>, w: &PackedWeight) -> Tensor<2> {
            let ad = x
                .try_into_primitive::<Autodiff<$b, $c>>()
                .expect("an autodiff tensor of the device's backend");
            let node = ad.node();
            let inner = Tensor::<2>::from_primitive::<$b>(ad.primitive().clone());
            let out: FloatTensor<$b> = forward(inner, w)
                .try_into_primitive::<$b>()
                .expect("the output stays on its backend");
            let result = match PackedLinearBackward
                .prepare::<$c>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(w.clone(), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
            Tensor::from_primitive::<Autodiff<$b, $c>>(result)
        }
    };
}

/// The node's backward and the tracked forward for one concrete backend (the autodiff API works
/// on backend primitives; the dispatch tensor converts to and from them).
macro_rules! packed_node {
    ($b:ty) => {
        impl Backward<$b, 1> for PackedLinearBackward {
            type State = PackedWeight;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let w = ops.state;
                unary::<$b, _>(ops.parents, ops.node, grads, |grad| {
                    let dy = Tensor::<2>::from_primitive::<$b>(grad);
                    packed_linear_input_grad(dy, &w)
                        .try_into_primitive::<$b>()
                        .expect("the gradient stays on its backend")
                });
            }
        }

        tracked_fn!($b, NoCheckpointing, tracked_plain);
        tracked_fn!($b, BalancedCheckpointing, tracked_balanced);
    };
}

#[allow(deprecated)] // NdArray: the CPU backend of aqn-core.
mod ndarray_node {
    use super::*;
    packed_node!(burn::backend::NdArray);
}
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube_node {
    use super::*;
    packed_node!(burn::backend::Cube);
}
