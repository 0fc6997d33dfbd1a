//! A device-to-device copy of a tensor's bytes with the widest vector loads the runtime offers:
//! the memory-bandwidth yardstick the fake-quantize benchmark compares the fused kernels with
//! (same bytes read and written, no arithmetic).

use burn::backend::Cube;
use burn::tensor::{DType, Tensor};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::calculate_cube_count_elemwise;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;

use crate::formats::FormatError;

/// Units per cube of the copy.
const COPY_UNITS: u32 = 256;

#[cube(launch_unchecked)]
fn copy_vectors<N: Size>(x: &[Vector<u32, N>], y: &mut [Vector<u32, N>], len: u32) {
    let i = ABSOLUTE_POS;
    if i < len as usize {
        y[i] = x[i];
    }
}

/// A copy of `x` (an f32 tensor on a CubeCL device) in a new buffer.
pub fn device_copy<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, FormatError> {
    if x.dtype() != DType::F32 {
        return Err(FormatError::Device(format!(
            "device_copy takes f32 tensors, not {:?}",
            x.dtype()
        )));
    }
    let x = into_contiguous(
        x.try_into_primitive::<Cube>()
            .map_err(|e| FormatError::Device(format!("not a CubeCL tensor: {e:?}")))?,
    );
    let client = x.client.clone();
    let shape = x.meta.shape().clone();
    let len = shape.num_elements();
    let out = empty_device_contiguous_dtype(client.clone(), x.device.clone(), shape, DType::F32);
    let vector = client
        .io_optimized_vector_sizes(size_of::<u32>())
        .filter(|v| len.is_multiple_of(*v))
        .max()
        .unwrap_or(1);
    let vectors = len / vector;
    if vectors > 0 {
        let cube_dim = CubeDim::new_1d(COPY_UNITS);
        // SAFETY: both buffers hold `len` u32 words, read and written as `vectors` vectors of
        // `vector` words; units past the end do nothing.
        unsafe {
            copy_vectors::launch_unchecked(
                &client,
                calculate_cube_count_elemwise(&client, vectors, cube_dim),
                cube_dim,
                vector,
                BufferArg::from_raw_parts(x.handle.clone(), vectors),
                BufferArg::from_raw_parts(out.handle.clone(), vectors),
                vectors as u32,
            );
        }
    }
    Ok(Tensor::from_primitive::<Cube>(out))
}
