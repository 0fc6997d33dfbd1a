//! The device-side decoder of packed frozen weights ([`PackedWeight`], codes + scales): the
//! projections of a packed base on a CubeCL device (wgpu, CUDA) keep the codes in device memory
//! and decode the tile they multiply there, so no f32 `Q(W)` is ever materialized whole and no
//! weight crosses the host bus after the first use.
//!
//! The decoded value of an element is a table lookup: the host builds the table once per weight
//! with the operations of [`crate::formats::PackedTensor::dequantize`] (FP4: the 16 values of each
//! scale byte; FP8: the 256 values of the codes), so the device returns the host decoder's bits
//! ([`PackedWeight::decode_rows`], the plain reference; tests/packed_linear.rs checks the two
//! agree for every format, scale mode and block layout on Mesa lavapipe).
//!
//! A weight's device copy (codes, scales and table as `u32` words) is made once per device and
//! kept with the weight ([`PackedWeight::with_copy`]), so it is dropped with its last clone.

use burn::tensor::DType;
use burn_cubecl::CubeDevice;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::calculate_cube_count_elemwise;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::server::Handle;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

use crate::formats::FormatError;
use crate::quant::packed::weight::{PackedWeight, RawLayout};

/// Storage kinds, as the kernel's comptime codes.
const KIND_FP4: u32 = 0;
const KIND_FP8: u32 = 1;
const KIND_BF16: u32 = 2;
const KIND_F32: u32 = 3;
/// Units per cube of the decoder.
const DECODE_UNITS: u32 = 256;
/// The largest weight the decoder takes: element indices are `u32` (FP4 nibble indices too).
pub const MAX_DECODE_ELEMENTS: usize = u32::MAX as usize;

/// Writes the f32 bits of elements `(r0 + i / width, c0 + i % width)`, `i < len`, of a
/// `[rows, cols]` packed weight into `out` (row-major `[len / width, width]`).
///
/// - FP4: `lut[16 * scale + code]`, the code the nibble `e % 2` of byte `e / 2` (`e` the element's
///   row-major index), the scale byte `(r / tile_rows) * block_cols + c / block`.
/// - FP8: `lut[code]`, one code per byte.
/// - BF16: the 16 bits of element `e`, shifted to the top of the f32.
/// - F32: the value.
#[cube(launch)]
fn decode_packed(
    codes: &[u32],
    scales: &[u32],
    lut: &[u32],
    out: &mut [u32],
    r0: u32,
    c0: u32,
    width: u32,
    len: u32,
    cols: u32,
    block_cols: u32,
    #[comptime] kind: u32,
    #[comptime] block: u32,
    #[comptime] tile_rows: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos < len as usize {
        let i = pos as u32;
        let r = r0 + i / width;
        let c = c0 + i % width;
        let e = r * cols + c;
        if comptime![kind == KIND_FP4] {
            let code = (codes[(e / 8u32) as usize] >> ((e % 8u32) * 4u32)) & 0xFu32;
            let s = (r / tile_rows) * block_cols + c / block;
            let scale = (scales[(s / 4u32) as usize] >> ((s % 4u32) * 8u32)) & 0xFFu32;
            out[pos] = lut[(scale * 16u32 + code) as usize];
        } else if comptime![kind == KIND_FP8] {
            let code = (codes[(e / 4u32) as usize] >> ((e % 4u32) * 8u32)) & 0xFFu32;
            out[pos] = lut[code as usize];
        } else if comptime![kind == KIND_BF16] {
            let half = (codes[(e / 2u32) as usize] >> ((e % 2u32) * 16u32)) & 0xFFFFu32;
            out[pos] = half << 16u32;
        } else {
            out[pos] = codes[e as usize];
        }
    }
}

/// A weight's storage in device memory.
struct DeviceCodes {
    device: CubeDevice,
    codes: Handle,
    codes_words: usize,
    scales: Handle,
    scales_words: usize,
    lut: Handle,
    lut_words: usize,
    kind: u32,
    block: u32,
    block_cols: u32,
    tile_rows: u32,
}

/// Bytes as little-endian `u32` words (zero-padded), at least one word (no empty buffers).
fn words(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
    v
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut v: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
    if v.is_empty() {
        v.resize(4, 0);
    }
    v
}

/// Uploads the storage of `w` to the device of `client`.
fn upload(w: &PackedWeight, client: &Client, device: &CubeDevice) -> DeviceCodes {
    let (codes, scales, lut, kind, block, block_cols, tile_rows) = match w.raw_layout() {
        RawLayout::Fp4 {
            codes,
            scales,
            lut,
            block,
            block_cols,
            tile_rows,
        } => (
            words(codes),
            words(scales),
            f32_bytes(lut),
            KIND_FP4,
            block,
            block_cols,
            tile_rows,
        ),
        RawLayout::Fp8 { codes, lut } => {
            (words(codes), words(&[]), f32_bytes(lut), KIND_FP8, 1, 1, 1)
        }
        RawLayout::Bf16 { codes } => (words(codes), words(&[]), words(&[]), KIND_BF16, 1, 1, 1),
        RawLayout::F32 { values } => (f32_bytes(values), words(&[]), words(&[]), KIND_F32, 1, 1, 1),
    };
    DeviceCodes {
        device: device.clone(),
        codes_words: codes.len() / 4,
        codes: client.create_from_slice(&codes),
        scales_words: scales.len() / 4,
        scales: client.create_from_slice(&scales),
        lut_words: lut.len() / 4,
        lut: client.create_from_slice(&lut),
        kind,
        block: block as u32,
        block_cols: block_cols as u32,
        tile_rows: tile_rows as u32,
    }
}

/// Rows `r0..r1`, columns `c0..c1` of `w`, decoded on the device of `like` (a CubeCL tensor:
/// its client and device are used) into a new f32 tensor `[r1 - r0, c1 - c0]`.
pub fn decode_tile_cube(
    w: &PackedWeight,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    like: &CubeTensor,
) -> Result<CubeTensor, FormatError> {
    let [out_dim, in_dim] = w.dims();
    if out_dim * in_dim > MAX_DECODE_ELEMENTS {
        return Err(FormatError::Device(format!(
            "a packed weight of {} elements is above the device decoder's limit of {MAX_DECODE_ELEMENTS}",
            out_dim * in_dim
        )));
    }
    assert!(
        rows.start <= rows.end
            && rows.end <= out_dim
            && cols.start <= cols.end
            && cols.end <= in_dim,
        "tile {rows:?} x {cols:?} of [{out_dim}, {in_dim}]"
    );
    let (height, width) = (rows.len(), cols.len());
    let len = height * width;
    let client = like.client.clone();
    let device = like.device.clone();
    let out = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        [height, width].into(),
        DType::F32,
    );
    if len == 0 {
        return Ok(out);
    }
    w.with_copy(
        |c: &DeviceCodes| c.device == device,
        || upload(w, &client, &device),
        |d| launch_decode(d, &client, &out, rows.start, cols.start, width, len, in_dim),
    );
    Ok(out)
}

/// Launches [`decode_packed`] over the `len` elements of the tile starting at `(r0, c0)`.
#[allow(clippy::too_many_arguments)]
fn launch_decode(
    d: &DeviceCodes,
    client: &Client,
    out: &CubeTensor,
    r0: usize,
    c0: usize,
    width: usize,
    len: usize,
    in_dim: usize,
) {
    let cube_dim = CubeDim::new_1d(DECODE_UNITS);
    decode_packed::launch(
        client,
        calculate_cube_count_elemwise(client, len, cube_dim),
        cube_dim,
        // SAFETY: each buffer holds the number of words given (`upload`), the output `len`.
        unsafe { BufferArg::from_raw_parts(d.codes.clone(), d.codes_words) },
        unsafe { BufferArg::from_raw_parts(d.scales.clone(), d.scales_words) },
        unsafe { BufferArg::from_raw_parts(d.lut.clone(), d.lut_words) },
        unsafe { BufferArg::from_raw_parts(out.handle.clone(), len) },
        r0 as u32,
        c0 as u32,
        width as u32,
        len as u32,
        in_dim as u32,
        d.block_cols,
        d.kind,
        d.block,
        d.tile_rows,
    );
}
