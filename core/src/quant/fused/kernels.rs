//! The fused fake-quantize kernels, in CubeCL (compiled to WGSL for wgpu, to CUDA C++ for CUDA).
//! Every value is an f32 bit pattern in a `u32`, and every step that rounds goes through
//! [`super::softfloat`], so the results are those of `crate::formats` bit for bit on any GPU.
//!
//! Launch sequence (see [`super::launch`]):
//! - MXFP4: [`fake_quantize_blocks`].
//! - NVFP4 two-level: [`tensor_amax`], [`tensor_scale`], [`fake_quantize_blocks`].
//! - FP8: [`tensor_amax`], [`tensor_scale`], [`fake_quantize_elementwise`]; BF16: the latter only.
//!
//! Work layout of [`fake_quantize_blocks`]: a cube of [`CUBE_UNITS`] units; each unit loads
//! [`UNIT_ELEMENTS`] consecutive elements of one block row (coalesced loads and stores), a block
//! being `1 x B` elements (`B` = 32 MXFP4, 16 NVFP4) or a 16 x 16 tile. The block amax is reduced
//! in shared memory, one unit per block derives the block's scale once (for NVFP4 with the soft
//! divisions and a table of the eight dequantized magnitudes), and every unit then writes its
//! elements from that.

#![allow(clippy::too_many_arguments)]

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

use super::codecs::{
    F32_448, F32_2688, F32_E4M3_MIN_NORMAL, F32_NV_MIN_TENSOR_SCALE, F32_SIX, e2m1_halves_nearest,
    e2m1_halves_stochastic, e4m3_round_magnitude, mx_scale_exponent, round_normal_to_e4m3,
};
use super::counter_hash::counter_hash_u24;
use super::softfloat::{
    ABS_MASK, INF_BITS, ONE_BITS, QNAN_BITS, SIGN_BIT, sf_div, sf_exp, sf_mul, sf_pack,
    sf_scale_pow2, sf_sig,
};

/// Units per cube (a power of two; every runtime offers at least 256).
pub const CUBE_UNITS: u32 = 256;
const CUBE_UNITS_USIZE: usize = CUBE_UNITS as usize;
/// Consecutive elements of one block row per unit.
pub const UNIT_ELEMENTS: u32 = 4;
const UNIT_ELEMENTS_USIZE: usize = UNIT_ELEMENTS as usize;
/// Formats, as the kernels' comptime codes.
pub const FORMAT_MXFP4: u32 = 0;
pub const FORMAT_NVFP4: u32 = 1;
pub const FORMAT_FP8: u32 = 2;
pub const FORMAT_BF16: u32 = 3;
/// NVFP4 scaling levels, as comptime codes (`crate::formats::NvScaling` order).
pub const NV_TWO_LEVEL: u32 = 0;
pub const NV_SINGLE_LEVEL: u32 = 1;
/// Block widths and the tile height.
pub const MXFP4_BLOCK: u32 = 32;
pub const NVFP4_BLOCK: u32 = 16;
pub const TILE_ROWS: u32 = 16;
/// Words of per-block parameters in shared memory: amax, then the MX exponent (+127) or the NVFP4
/// element multiplier `m`, then the NVFP4 dequantized magnitude of each E2M1 value, indexed by
/// its value in halves (0..=12).
pub const PARAM_WORDS: u32 = 16;
const PARAM_AMAX: u32 = 0;
const PARAM_SCALE: u32 = 1;
const PARAM_TABLE: u32 = 3;

/// Elements per block row.
pub fn block_width(format: u32) -> u32 {
    if format == FORMAT_MXFP4 {
        MXFP4_BLOCK
    } else {
        NVFP4_BLOCK
    }
}

/// Rows per block.
pub fn block_rows(tile: bool) -> u32 {
    if tile { TILE_ROWS } else { 1 }
}

/// Blocks handled by one cube.
pub fn blocks_per_cube(format: u32, tile: bool) -> u32 {
    CUBE_UNITS / (block_rows(tile) * block_width(format) / UNIT_ELEMENTS)
}

/// Pass 0 of NVFP4 two-level and FP8: the largest finite magnitude of the tensor (f32 bits, whose
/// order is the numeric order) into `amax[0]`, which must start at 0.
#[cube(launch)]
pub fn tensor_amax(x: &[u32], amax: &[Atomic<u32>], len: u32) {
    let first = (u32::cast_from(CUBE_POS) * CUBE_UNITS + UNIT_POS) * UNIT_ELEMENTS;
    let mut local = 0u32;
    #[unroll]
    for j in 0..UNIT_ELEMENTS {
        let i = first + j;
        if i < len {
            let m = x[i as usize] & ABS_MASK;
            local = select(m < INF_BITS, max(local, m), local);
        }
    }
    let mut partial = Shared::<[u32]>::new_slice(CUBE_UNITS_USIZE);
    partial[UNIT_POS as usize] = local;
    sync_cube();
    let mut active = (CUBE_UNITS / 2u32).runtime();
    while active > 0u32 {
        if UNIT_POS < active {
            let other = partial[(UNIT_POS + active) as usize];
            partial[UNIT_POS as usize] = max(partial[UNIT_POS as usize], other);
        }
        active /= 2u32;
        sync_cube();
    }
    if UNIT_POS == 0u32 {
        amax[0].fetch_max(partial[0]);
    }
}

/// Pass 1 of NVFP4 two-level and FP8, one unit: from the tensor amax, `scale[0]` = the NVFP4
/// decode scale `g` (1 when below 2^-120) and `scale[1]` = `fl(1 / g)`
/// (`crate::formats::nvfp4::tensor_scale`), or the FP8 scale `amax / 448` (1 when 0)
/// (`crate::formats::fp8::tensor_scale`).
#[cube(launch)]
pub fn tensor_scale(amax: &[u32], scale: &mut [u32], #[comptime] format: u32) {
    if UNIT_POS == 0u32 {
        if comptime![format == FORMAT_NVFP4] {
            let mut g = sf_div(amax[0], F32_2688);
            if g < F32_NV_MIN_TENSOR_SCALE {
                g = ONE_BITS;
            }
            scale[0] = g;
            scale[1] = sf_div(ONE_BITS, g);
        } else {
            let s = sf_div(amax[0], F32_448);
            scale[0] = select((s & ABS_MASK) == 0u32, ONE_BITS, s);
            scale[1] = ONE_BITS;
        }
    }
}

/// MXFP4 and NVFP4 (every scale mode, rows or 16x16 tiles, nearest or stochastic rounding) of a
/// row-major `[rows, row_len]` tensor: `q = fake_quantize(x)`.
///
/// `tensor_scale` holds `[g, 1/g]` from [`tensor_scale`] for NVFP4 two-level (ignored otherwise);
/// `seed_lo`/`seed_hi` are the stochastic-rounding seed, whose uniforms are indexed by the flat
/// element index `row * row_len + col`.
#[cube(launch)]
pub fn fake_quantize_blocks(
    x: &[u32],
    tensor_scale: &[u32],
    q: &mut [u32],
    rows: u32,
    row_len: u32,
    block_cols: u32,
    num_blocks: u32,
    seed_lo: u32,
    seed_hi: u32,
    #[comptime] format: u32,
    #[comptime] mode: u32,
    #[comptime] tile: bool,
    #[comptime] stochastic: bool,
) {
    let width = comptime![block_width(format)];
    let height = comptime![block_rows(tile)];
    let units_per_row = comptime![width / UNIT_ELEMENTS];
    let units_per_block = comptime![height * width / UNIT_ELEMENTS];
    let per_cube = comptime![CUBE_UNITS / units_per_block];
    let param_len = comptime![(per_cube * PARAM_WORDS) as usize];

    // This unit's place: block `k`, row `r` of the block, columns `col0..col0 + 4`.
    let local_block = UNIT_POS / units_per_block;
    let in_block = UNIT_POS % units_per_block;
    let k = u32::cast_from(CUBE_POS) * per_cube + local_block;
    let block_ok = k < num_blocks;
    let row = (k / block_cols) * height + in_block / units_per_row;
    let col0 = (k % block_cols) * width + (in_block % units_per_row) * UNIT_ELEMENTS;
    let row_ok = block_ok && row < rows;

    // Load, and the unit's share of the block amax (bit patterns: NaN/Inf above every finite).
    let mut values = Array::<u32>::new(UNIT_ELEMENTS_USIZE);
    let mut local = 0u32;
    #[unroll]
    for j in 0..UNIT_ELEMENTS {
        let mut v = 0u32;
        if row_ok && col0 + j < row_len {
            v = x[(row * row_len + col0 + j) as usize];
        }
        values[j as usize] = v;
        local = max(local, v & ABS_MASK);
    }
    let mut partial = Shared::<[u32]>::new_slice(CUBE_UNITS_USIZE);
    partial[UNIT_POS as usize] = local;
    sync_cube();

    // One unit per block: the block amax and its scale parameters.
    let mut params = Shared::<[u32]>::new_slice(param_len);
    if UNIT_POS < per_cube {
        block_params(
            &partial,
            &mut params,
            tensor_scale,
            format,
            mode,
            units_per_block,
        );
    }
    sync_cube();

    // Every unit: its elements.
    let base = local_block * PARAM_WORDS;
    let amax = params[(base + PARAM_AMAX) as usize];
    let scale = params[(base + PARAM_SCALE) as usize];
    #[unroll]
    for j in 0..UNIT_ELEMENTS {
        let col = col0 + j;
        if row_ok && col < row_len {
            let i = row * row_len + col;
            let v = values[j as usize];
            let mut out = QNAN_BITS.runtime();
            if amax < INF_BITS {
                // The scaled magnitude: |v| / 2^e (MXFP4) or fl(|v| * m) (NVFP4).
                let a = if comptime![format == FORMAT_MXFP4] {
                    sf_scale_pow2(v & ABS_MASK, 127i32 - i32::cast_from(scale))
                } else {
                    sf_mul(v & ABS_MASK, scale)
                };
                let halves = if comptime![stochastic] {
                    e2m1_halves_stochastic(a, counter_hash_u24(seed_lo, seed_hi, i))
                } else {
                    e2m1_halves_nearest(a)
                };
                if comptime![format == FORMAT_MXFP4] {
                    // halves * 2^(e - 1), exact.
                    out = sf_pack(v & SIGN_BIT, halves, i32::cast_from(scale) - 128i32, false);
                } else {
                    out = params[(base + PARAM_TABLE + halves) as usize] | (v & SIGN_BIT);
                }
            }
            q[i as usize] = out;
        }
    }
}

/// The block parameters, computed by unit `UNIT_POS` (< the blocks per cube) for its block from
/// the units' partial amaxes: the block amax, the scale (MXFP4: the biased exponent; NVFP4: the
/// element multiplier `m = (1 / g) / s`) and, for NVFP4, the dequantization table.
#[cube]
fn block_params(
    partial: &Shared<[u32]>,
    params: &mut Shared<[u32]>,
    tensor_scale: &[u32],
    #[comptime] format: u32,
    #[comptime] mode: u32,
    #[comptime] units_per_block: u32,
) {
    let base = UNIT_POS * PARAM_WORDS;
    let mut amax = 0u32;
    for w in 0..units_per_block {
        amax = max(amax, partial[(UNIT_POS * units_per_block + w) as usize]);
    }
    params[(base + PARAM_AMAX) as usize] = amax;
    if amax < INF_BITS {
        if comptime![format == FORMAT_MXFP4] {
            let e = mx_scale_exponent(amax, mode);
            params[(base + PARAM_SCALE) as usize] = u32::cast_from(e + 127i32);
        } else {
            let mut g = ONE_BITS.runtime();
            let mut inv_g = ONE_BITS.runtime();
            if comptime![mode == NV_TWO_LEVEL] {
                g = tensor_scale[0];
                inv_g = tensor_scale[1];
            }
            // s = E4M3(clamp((amax / 6) / g, 2^-6, 448)), m = (1 / g) / s.
            let ratio = clamp(
                sf_div(sf_div(amax, F32_SIX), g),
                F32_E4M3_MIN_NORMAL,
                F32_448,
            );
            let s = round_normal_to_e4m3(ratio);
            params[(base + PARAM_SCALE) as usize] = sf_div(inv_g, s);
            // (p * s) * g for the eight E2M1 magnitudes p, indexed by p in halves.
            let table = base + PARAM_TABLE;
            params[table as usize] = 0u32;
            params[(table + 1u32) as usize] = nv_dequant(s, g, 1u32);
            params[(table + 2u32) as usize] = nv_dequant(s, g, 2u32);
            params[(table + 3u32) as usize] = nv_dequant(s, g, 3u32);
            params[(table + 4u32) as usize] = nv_dequant(s, g, 4u32);
            params[(table + 6u32) as usize] = nv_dequant(s, g, 6u32);
            params[(table + 8u32) as usize] = nv_dequant(s, g, 8u32);
            params[(table + 12u32) as usize] = nv_dequant(s, g, 12u32);
        }
    }
}

/// FP8 E4M3 with the per-tensor scale `scale[0]` from [`tensor_scale`]
/// (`crate::formats::fp8`), or BF16 rounding (`crate::formats::bf16`), elementwise.
#[cube(launch)]
pub fn fake_quantize_elementwise(
    x: &[u32],
    scale: &[u32],
    q: &mut [u32],
    len: u32,
    #[comptime] format: u32,
) {
    let first = (u32::cast_from(CUBE_POS) * CUBE_UNITS + UNIT_POS) * UNIT_ELEMENTS;
    #[unroll]
    for j in 0..UNIT_ELEMENTS {
        let i = first + j;
        if i < len {
            let v = x[i as usize];
            let mut out = QNAN_BITS.runtime();
            if comptime![format == FORMAT_FP8] {
                if (v & ABS_MASK) < INF_BITS {
                    let s = scale[0];
                    let y = sf_div(v, s);
                    let a = min(y & ABS_MASK, F32_448);
                    out = sf_mul(e4m3_round_magnitude(a) | (y & SIGN_BIT), s);
                }
            } else {
                if (v & ABS_MASK) > INF_BITS {
                    // NaN stays a quiet NaN, sign kept.
                    out = (v | 0x0040_0000u32) & 0xffff_0000u32;
                } else {
                    out = ((v + 0x7fffu32 + ((v >> 16u32) & 1u32)) >> 16u32) << 16u32;
                }
            }
            q[i as usize] = out;
        }
    }
}

/// The NVFP4 dequantized magnitude `(p * s) * g` of the E2M1 value `p = halves / 2`: `p * s` is
/// exact (at most six significant bits, normal), the product with `g` rounds.
#[cube]
fn nv_dequant(s: u32, g: u32, halves: u32) -> u32 {
    let ps = sf_pack(0u32, halves * sf_sig(s), sf_exp(s) - 1i32, false);
    sf_mul(ps, g)
}
