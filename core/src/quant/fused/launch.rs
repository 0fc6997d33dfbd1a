//! Host side of the fused kernels: checks a CubeCL tensor, allocates the output, and launches the
//! passes of [`super::kernels`] in order on the tensor's stream (no host round trip, no sync).

use burn::tensor::DType;
use burn_cubecl::CubeDevice;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{calculate_cube_count_elemwise, server::Handle};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{
    CUBE_UNITS, FORMAT_BF16, FORMAT_FP8, FORMAT_MXFP4, FORMAT_NVFP4, NV_SINGLE_LEVEL, NV_TWO_LEVEL,
    UNIT_ELEMENTS, block_rows, block_width, blocks_per_cube, fake_quantize_blocks,
    fake_quantize_elementwise, tensor_amax, tensor_scale,
};
use super::softfloat::ONE_BITS;
use crate::formats::{
    BlockLayout, FormatError, MxScaleMode, NvScaling, QuantFormat, QuantSpec, Rounding,
};

/// The largest tensor the kernels take: element indices (and the stochastic-rounding counter)
/// are `u32`, and `index + 1` must not wrap.
pub const MAX_FUSED_ELEMENTS: usize = u32::MAX as usize - 1;

/// The kernel configuration of a spec: `(format, mode, tile, stochastic, seed)` as the kernels'
/// comptime codes.
struct KernelConfig {
    format: u32,
    mode: u32,
    tile: bool,
    seed: Option<u64>,
}

impl KernelConfig {
    fn new(spec: &QuantSpec) -> Self {
        let (format, mode) = match spec.format {
            QuantFormat::Mxfp4 => (
                FORMAT_MXFP4,
                match spec.scale_mode {
                    MxScaleMode::Floor => super::codecs::MX_FLOOR,
                    MxScaleMode::Ceil => super::codecs::MX_CEIL,
                    MxScaleMode::Even => super::codecs::MX_EVEN,
                    MxScaleMode::Rceil => super::codecs::MX_RCEIL,
                },
            ),
            QuantFormat::Nvfp4 => (
                FORMAT_NVFP4,
                match spec.nv_scaling {
                    NvScaling::TwoLevel => NV_TWO_LEVEL,
                    NvScaling::SingleLevel => NV_SINGLE_LEVEL,
                },
            ),
            QuantFormat::Fp8 => (FORMAT_FP8, 0),
            QuantFormat::Bf16 => (FORMAT_BF16, 0),
        };
        Self {
            format,
            mode,
            tile: spec.blocks == BlockLayout::Tile16x16,
            seed: match spec.rounding {
                Rounding::Nearest => None,
                Rounding::Stochastic { seed } => Some(seed),
            },
        }
    }

    /// Whether the pass computing the per-tensor amax and scale runs first.
    fn needs_tensor_scale(&self) -> bool {
        self.format == FORMAT_FP8 || (self.format == FORMAT_NVFP4 && self.mode == NV_TWO_LEVEL)
    }
}

/// Why the fused path refused a tensor.
fn refuse(reason: impl Into<String>) -> FormatError {
    FormatError::Device(reason.into())
}

/// Fake-quantizes `x`, an f32 tensor on a CubeCL device viewed as `[len / row_len, row_len]`,
/// with the fused kernels; the result is a new contiguous tensor of the same shape.
pub fn fake_quantize_cube(
    x: CubeTensor,
    spec: &QuantSpec,
    row_len: usize,
) -> Result<CubeTensor, FormatError> {
    spec.validate()?;
    if x.dtype != DType::F32 {
        return Err(refuse(format!(
            "the fused kernels take f32 tensors, not {:?}",
            x.dtype
        )));
    }
    let x = into_contiguous(x);
    let shape = x.meta.shape().clone();
    let len = shape.num_elements();
    if len > MAX_FUSED_ELEMENTS {
        return Err(refuse(format!(
            "a tensor of {len} elements is above the fused kernels' limit of {MAX_FUSED_ELEMENTS}"
        )));
    }
    if row_len == 0 || !len.is_multiple_of(row_len) {
        return Err(FormatError::BadShape { len, row_len });
    }
    let client = x.client.clone();
    let device: CubeDevice = x.device.clone();
    let max_units = client.properties().hardware.max_units_per_cube;
    if max_units < CUBE_UNITS {
        return Err(refuse(format!(
            "the device allows {max_units} units per workgroup; the fused kernels need {CUBE_UNITS}"
        )));
    }
    let out = empty_device_contiguous_dtype(client.clone(), device, shape, DType::F32);
    if len == 0 {
        return Ok(out);
    }
    let config = KernelConfig::new(spec);
    let rows = len / row_len;
    let cube_dim = CubeDim::new_1d(CUBE_UNITS);
    let x_handle = x.handle.clone();
    let scale = if config.needs_tensor_scale() {
        tensor_scale_pass(&client, &x_handle, len, config.format)
    } else {
        client.create_from_slice(&words_to_bytes(&[ONE_BITS, ONE_BITS]))
    };
    let per_unit = UNIT_ELEMENTS as usize;
    let units = CUBE_UNITS as usize;
    match config.format {
        FORMAT_MXFP4 | FORMAT_NVFP4 => {
            let width = block_width(config.format) as usize;
            let height = block_rows(config.tile) as usize;
            let block_cols = row_len.div_ceil(width);
            let num_blocks = rows.div_ceil(height) * block_cols;
            let per_cube = blocks_per_cube(config.format, config.tile) as usize;
            let cubes = num_blocks.div_ceil(per_cube);
            let seed = config.seed.unwrap_or(0);
            fake_quantize_blocks::launch(
                &client,
                calculate_cube_count_elemwise(&client, cubes * units, cube_dim),
                cube_dim,
                unsafe { BufferArg::from_raw_parts(x_handle, len) },
                unsafe { BufferArg::from_raw_parts(scale, 2) },
                unsafe { BufferArg::from_raw_parts(out.handle.clone(), len) },
                rows as u32,
                row_len as u32,
                block_cols as u32,
                num_blocks as u32,
                seed as u32,
                (seed >> 32) as u32,
                config.format,
                config.mode,
                config.tile,
                config.seed.is_some(),
            );
        }
        _ => {
            let cubes = len.div_ceil(units * per_unit);
            fake_quantize_elementwise::launch(
                &client,
                calculate_cube_count_elemwise(&client, cubes * units, cube_dim),
                cube_dim,
                unsafe { BufferArg::from_raw_parts(x_handle, len) },
                unsafe { BufferArg::from_raw_parts(scale, 2) },
                unsafe { BufferArg::from_raw_parts(out.handle.clone(), len) },
                len as u32,
                config.format,
            );
        }
    }
    Ok(out)
}

/// Passes 0 and 1: the finite tensor amax, then the two-word per-tensor scale buffer.
fn tensor_scale_pass(client: &Client, x: &Handle, len: usize, format: u32) -> Handle {
    let amax = client.create_from_slice(&words_to_bytes(&[0]));
    let cube_dim = CubeDim::new_1d(CUBE_UNITS);
    let cubes = len.div_ceil((CUBE_UNITS * UNIT_ELEMENTS) as usize);
    tensor_amax::launch(
        client,
        calculate_cube_count_elemwise(client, cubes * CUBE_UNITS as usize, cube_dim),
        cube_dim,
        unsafe { BufferArg::from_raw_parts(x.clone(), len) },
        unsafe { BufferArg::from_raw_parts(amax.clone(), 1) },
        len as u32,
    );
    let scale = client.create_from_slice(&words_to_bytes(&[ONE_BITS, ONE_BITS]));
    tensor_scale::launch(
        client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(1),
        unsafe { BufferArg::from_raw_parts(amax, 1) },
        unsafe { BufferArg::from_raw_parts(scale.clone(), 2) },
        format,
    );
    scale
}

/// Little-endian bytes of `u32` words (a device buffer's contents).
fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
