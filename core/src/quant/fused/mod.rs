//! Fused fake-quantization kernels for the GPU backends (Burn's wgpu and CUDA, both CubeCL):
//! one kernel launch per tensor (two more for a per-tensor scale), bit-identical to the CPU
//! reference `crate::formats` for every format, scale mode, block layout and rounding, because
//! every rounding step is integer arithmetic on f32 bit patterns ([`softfloat`]).
//!
//! - [`fake_quantize_fused`]: `Q(x)` along any axis.
//! - [`packed_decode`]: the device-side decoder of packed frozen weights' tiles.
//! - [`quantize_ste_fused`]: `Q(x)` with the straight-through gradient as one autodiff node
//!   ([`straight_through`]).
//!
//! [`super::fake_quantize_on_device`] and [`super::quantize_with_gradient`] pick these on a
//! CubeCL device; tests/fused_quant_parity.rs checks them against the reference on Mesa lavapipe.
//! The kernels read the tensor's buffer directly (the tensor primitive of Burn's CubeCL backend,
//! built without Burn's `fusion` feature).

mod codecs;
mod counter_hash;
mod device_copy;
mod kernels;
mod launch;
pub mod packed_decode;
mod softfloat;
mod straight_through;

use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::{Autodiff, Cube, DispatchDevice};
use burn::tensor::{DType, Device, Tensor};

pub use device_copy::device_copy;
pub use launch::{MAX_FUSED_ELEMENTS, fake_quantize_cube};

use crate::formats::{FormatError, QuantSpec};

/// Whether `device` (with or without autodiff) is a CubeCL device (wgpu, CUDA), where the fused
/// kernels run.
pub fn is_fused_device(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Cube(_)
    )
}

/// Fake-quantizes `x` along `axis` with the fused kernels: bit for bit
/// [`QuantSpec::fake_quantize_along`] on the tensor's data. The result carries `x`'s autodiff
/// association but no graph (a constant to autodiff). Tensors of other float dtypes are quantized
/// as f32 and cast back.
///
/// # Shapes
/// Any rank; the result has the shape of `x`.
pub fn fake_quantize_fused<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
) -> Result<Tensor<D>, FormatError> {
    check(&x, spec, axis)?;
    let autodiff = x.is_autodiff();
    let q = along_axis(x.without_autodiff(), axis, |rows| {
        let prim = rows
            .try_into_primitive::<Cube>()
            .map_err(|e| FormatError::Device(format!("not a CubeCL tensor: {e:?}")))?;
        let row_len = rows_len(&prim);
        Ok(Tensor::from_primitive::<Cube>(fake_quantize_cube(
            prim, spec, row_len,
        )?))
    })?;
    Ok(if autodiff { q.autodiff() } else { q })
}

/// `Q(x)` along `axis` (bit for bit [`fake_quantize_fused`]) whose gradient with respect to `x` is
/// the identity: the straight-through estimator of docs/spec.md section 2 as one autodiff node. On an
/// untracked tensor this is [`fake_quantize_fused`].
///
/// # Shapes
/// Any rank; the result has the shape of `x`.
pub fn quantize_ste_fused<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
) -> Result<Tensor<D>, FormatError> {
    if !x.is_tracked() {
        return fake_quantize_fused(x, spec, axis);
    }
    check(&x, spec, axis)?;
    along_axis(x, axis, |rows| {
        let row_len = rows.dims()[1];
        match rows.gradient_checkpointing_strategy() {
            Some(burn::tensor::GradientCheckpointingStrategy::Balanced) => {
                let prim = rows
                    .try_into_primitive::<Autodiff<Cube, BalancedCheckpointing>>()
                    .map_err(|e| FormatError::Device(format!("not a CubeCL tensor: {e:?}")))?;
                let q = straight_through::straight_through::<BalancedCheckpointing>(
                    prim, spec, row_len,
                )?;
                Ok(Tensor::from_primitive::<
                    Autodiff<Cube, BalancedCheckpointing>,
                >(q))
            }
            _ => {
                let prim = rows
                    .try_into_primitive::<Autodiff<Cube, NoCheckpointing>>()
                    .map_err(|e| FormatError::Device(format!("not a CubeCL tensor: {e:?}")))?;
                let q = straight_through::straight_through::<NoCheckpointing>(prim, spec, row_len)?;
                Ok(Tensor::from_primitive::<Autodiff<Cube, NoCheckpointing>>(q))
            }
        }
    })
}

/// The argument checks shared by both entry points.
fn check<const D: usize>(x: &Tensor<D>, spec: &QuantSpec, axis: usize) -> Result<(), FormatError> {
    spec.validate()?;
    if axis >= D {
        return Err(FormatError::BadAxis { axis, rank: D });
    }
    if !is_fused_device(&x.device()) {
        return Err(FormatError::Device(format!(
            "the fused kernels run on CubeCL devices (wgpu, CUDA), not on {:?}",
            x.device()
        )));
    }
    Ok(())
}

/// Row length of a 2-D primitive.
fn rows_len(prim: &burn_cubecl::tensor::CubeTensor) -> usize {
    use burn::backend::TensorMetadata;
    prim.shape()[1]
}

/// Moves `axis` last, views the tensor as `[rows, row_len]` in f32, applies `op`, and undoes the
/// view, the move and the cast (each exact data movement, tracked by autodiff when `x` is).
fn along_axis<const D: usize>(
    x: Tensor<D>,
    axis: usize,
    op: impl FnOnce(Tensor<2>) -> Result<Tensor<2>, FormatError>,
) -> Result<Tensor<D>, FormatError> {
    if x.dims().iter().product::<usize>() == 0 {
        return Ok(x);
    }
    let dtype = x.dtype();
    let x = if dtype == DType::F32 {
        x
    } else {
        x.cast(DType::F32)
    };
    let moved = if axis + 1 == D {
        x
    } else {
        x.movedim(axis, D - 1)
    };
    let moved_dims = moved.dims();
    let n = moved_dims[D - 1];
    let rows = moved_dims.iter().product::<usize>() / n;
    let q: Tensor<D> = op(moved.reshape([rows, n]))?.reshape(moved_dims);
    let q = if axis + 1 == D {
        q
    } else {
        q.movedim(D - 1, axis)
    };
    Ok(if dtype == DType::F32 {
        q
    } else {
        q.cast(dtype)
    })
}
