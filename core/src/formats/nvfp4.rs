//! NVFP4: E2M1 elements, one E4M3 scale per 16 (or per 16x16 tile), and in the two-level form a
//! per-tensor f32 scale `g`. Rules in docs/spec.md section 1 and docs/formats.md; agrees with torchao
//! `nvfp4_quantize` and TransformerEngine's reference recipe.

use super::blocks::{BlockGrid, INF_BITS, amax_bits, finite_amax};
use super::e2m1::{
    E2M1_MAX, E2M1_SIGN_BIT, magnitude_to_code, round_magnitude_nearest, round_magnitude_stochastic,
};
use super::e4m3::{
    E4M3_MAX, E4M3_MIN_NORMAL, E4M3_NAN, e4m3_to_f32, f32_to_e4m3, round_normal_to_e4m3,
};
use super::spec::{NVFP4_BLOCK_SIZE, NvScaling, Rounding};
use crate::rng::uniform_f32;

/// `E4M3_MAX * E2M1_MAX` = 2688: the per-tensor scale maps the tensor amax onto the largest
/// product of a block scale and an element.
pub const NVFP4_TENSOR_SCALE_DIVISOR: f32 = E4M3_MAX * E2M1_MAX;
/// Below this `g` falls back to 1: the all-zero tensor, and tensors so small (amax < ~3.5e-33)
/// that `1/g` or the element multiplier would overflow f32 (docs/formats.md).
pub const NVFP4_MIN_TENSOR_SCALE: f32 = f32::from_bits(0x0380_0000); // 2^-120

/// The per-tensor decode scale `g`.
pub fn tensor_scale(x: &[f32], scaling: NvScaling) -> f32 {
    match scaling {
        NvScaling::SingleLevel => 1.0,
        NvScaling::TwoLevel => {
            let g = finite_amax(x) / NVFP4_TENSOR_SCALE_DIVISOR;
            if g < NVFP4_MIN_TENSOR_SCALE { 1.0 } else { g }
        }
    }
}

/// The block scale byte and its value: `E4M3(clamp((amax_b / 6) / g, 2^-6, 448))`.
#[inline(always)]
pub fn block_scale(amax_b: f32, g: f32) -> (u8, f32) {
    let byte = f32_to_e4m3(((amax_b / E2M1_MAX) / g).clamp(E4M3_MIN_NORMAL, E4M3_MAX));
    (byte, e4m3_to_f32(byte))
}

/// Fake-quantizes the elements of one block (given as ranges of the flat buffer).
#[inline(always)]
fn fake_block_ranges(
    x: &[f32],
    out: &mut [f32],
    ranges: impl Iterator<Item = core::ops::Range<usize>> + Clone,
    g: f32,
    rounding: Rounding,
) -> u8 {
    let amax = ranges.clone().fold(0u32, |m, r| m.max(amax_bits(&x[r])));
    if amax >= INF_BITS {
        for r in ranges {
            out[r].fill(f32::NAN);
        }
        return E4M3_NAN;
    }
    let (byte, s) = block_scale(f32::from_bits(amax), g);
    let m = (1.0 / g) / s;
    for r in ranges {
        let first = r.start;
        let (xs, os) = (&x[r.clone()], &mut out[r]);
        match rounding {
            Rounding::Nearest => {
                for (o, &v) in os.iter_mut().zip(xs) {
                    *o = ((round_magnitude_nearest((v * m).abs()) * s) * g).copysign(v);
                }
            }
            Rounding::Stochastic { seed } => {
                for (k, (o, &v)) in os.iter_mut().zip(xs).enumerate() {
                    let u = uniform_f32(seed, (first + k) as u64);
                    *o = ((round_magnitude_stochastic((v * m).abs(), u) * s) * g).copysign(v);
                }
            }
        }
    }
    byte
}

/// Blocks handled per batch by the fast path: their scales are computed together, so the
/// divisions and E4M3 roundings vectorize across blocks.
const FAST_BATCH_BLOCKS: usize = 64;

/// Uniform blocks of 16, nearest rounding: the hot loop. `x.len()` is a multiple of 16.
/// Runs the AVX2 build of the loop where the CPU has it (same IEEE operations, wider vectors).
fn fake_uniform_nearest(x: &[f32], out: &mut [f32], g: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { fake_uniform_nearest_avx2(x, out, g) };
    }
    fake_uniform_nearest_impl(x, out, g, |xb| amax_bits(xb), fake_elements)
}

/// [`fake_uniform_nearest_impl`] compiled for AVX2, its elements computed by
/// [`fake_elements_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fake_uniform_nearest_avx2(x: &[f32], out: &mut [f32], g: f32) {
    // SAFETY (both closures): this function runs only where the CPU has AVX2.
    fake_uniform_nearest_impl(
        x,
        out,
        g,
        |xb| unsafe { amax_bits_avx2(xb) },
        |xb, ob, s, m, g| unsafe { fake_elements_avx2(xb, ob, s, m, g) },
    )
}

/// [`amax_bits`] of one block in AVX2 registers (the same maximum).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn amax_bits_avx2(xb: &[f32; NVFP4_BLOCK_SIZE]) -> u32 {
    use super::blocks::ABS_MASK;
    use std::arch::x86_64::*;
    let abs = _mm256_set1_epi32(ABS_MASK as i32);
    // SAFETY: the block's 16 values.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(xb.as_ptr().cast()),
            _mm256_loadu_si256(xb.as_ptr().add(8).cast()),
        )
    };
    let m = _mm256_max_epu32(_mm256_and_si256(lo, abs), _mm256_and_si256(hi, abs));
    let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
    let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    _mm_cvtsi128_si32(m) as u32
}

/// The elements of one finite block: `((E2M1(|v| m) s) g)` with `v`'s sign (the plain form of
/// the hot loop; [`fake_elements_avx2`] computes the same bits).
#[inline(always)]
fn fake_elements(
    xb: &[f32; NVFP4_BLOCK_SIZE],
    ob: &mut [f32; NVFP4_BLOCK_SIZE],
    s: f32,
    m: f32,
    g: f32,
) {
    for (o, &v) in ob.iter_mut().zip(xb) {
        *o = ((round_magnitude_nearest((v * m).abs()) * s) * g).copysign(v);
    }
}

/// [`fake_elements`] in AVX2 registers: `a = min(|v m|, 6)` (the magnitude of the rounded
/// product), rounded to the E2M1 grid as `(a + M) - M` with `M = 2^22, 2^23, 2^24` below 2,
/// below 4 and from 4 (the f32 spacing at `M` is the grid step 0.5, 1, 2, so the sum rounds `a`
/// to the grid, ties to the even multiple: the bits of `round_magnitude_nearest`'s
/// `((a / step + 2^23) - 2^23) * step`, tested), then `* s`, `* g`, and the sign of `v` (the
/// result is not negative, so or-ing the sign bit is `copysign`). Written out because LLVM's
/// vectorization of the plain loop costs twice the instructions.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn fake_elements_avx2(
    xb: &[f32; NVFP4_BLOCK_SIZE],
    ob: &mut [f32; NVFP4_BLOCK_SIZE],
    s: f32,
    m: f32,
    g: f32,
) {
    use std::arch::x86_64::*;
    /// `M` of each binade of the grid: its f32 spacing is the grid step.
    const GRID_MAGIC: [f32; 3] = [4_194_304.0, 8_388_608.0, 16_777_216.0];
    let sign = _mm256_set1_ps(-0.0);
    let (two, four) = (_mm256_set1_ps(2.0), _mm256_set1_ps(4.0));
    let magic = GRID_MAGIC.map(|v| _mm256_set1_ps(v));
    let (vs, vm, vg) = (_mm256_set1_ps(s), _mm256_set1_ps(m), _mm256_set1_ps(g));
    for h in 0..NVFP4_BLOCK_SIZE / 8 {
        // SAFETY: 8 of the block's 16 values, in and out.
        unsafe {
            let v = _mm256_loadu_ps(xb.as_ptr().add(8 * h));
            let a = _mm256_min_ps(
                _mm256_andnot_ps(sign, _mm256_mul_ps(v, vm)),
                _mm256_set1_ps(E2M1_MAX),
            );
            let big = _mm256_blendv_ps(magic[2], magic[1], _mm256_cmp_ps::<_CMP_LT_OQ>(a, four));
            let big = _mm256_blendv_ps(big, magic[0], _mm256_cmp_ps::<_CMP_LT_OQ>(a, two));
            let q = _mm256_sub_ps(_mm256_add_ps(a, big), big);
            let r = _mm256_mul_ps(_mm256_mul_ps(q, vs), vg);
            _mm256_storeu_ps(
                ob.as_mut_ptr().add(8 * h),
                _mm256_or_ps(r, _mm256_and_ps(v, sign)),
            );
        }
    }
}

#[inline(always)]
fn fake_uniform_nearest_impl(
    x: &[f32],
    out: &mut [f32],
    g: f32,
    block_amax: impl Fn(&[f32; NVFP4_BLOCK_SIZE]) -> u32,
    elements: impl Fn(&[f32; NVFP4_BLOCK_SIZE], &mut [f32; NVFP4_BLOCK_SIZE], f32, f32, f32),
) {
    let inv_g = 1.0 / g;
    let batch = FAST_BATCH_BLOCKS * NVFP4_BLOCK_SIZE;
    let mut amax = [0u32; FAST_BATCH_BLOCKS];
    let mut s = [0f32; FAST_BATCH_BLOCKS];
    let mut m = [0f32; FAST_BATCH_BLOCKS];
    // A large output is written with streaming stores (see [`stream_copy`]): each batch is
    // computed into `staged` (in L1) and then streamed out.
    let stream = streaming_pays(out);
    let mut staged = [0f32; FAST_BATCH_BLOCKS * NVFP4_BLOCK_SIZE];
    for (xs, os) in x.chunks(batch).zip(out.chunks_mut(batch)) {
        let nb = xs.len() / NVFP4_BLOCK_SIZE;
        for (a, xb) in amax.iter_mut().zip(xs.chunks_exact(NVFP4_BLOCK_SIZE)) {
            let xb: &[f32; NVFP4_BLOCK_SIZE] = xb.try_into().expect("chunk of 16");
            *a = block_amax(xb);
        }
        for b in 0..nb {
            // block_scale's value without the byte: the clamp keeps it in E4M3's normal range.
            let r = ((f32::from_bits(amax[b].min(INF_BITS)) / E2M1_MAX) / g)
                .clamp(E4M3_MIN_NORMAL, E4M3_MAX);
            s[b] = round_normal_to_e4m3(r);
            m[b] = inv_g / s[b];
        }
        let dst: &mut [f32] = if stream {
            &mut staged[..xs.len()]
        } else {
            &mut *os
        };
        for (b, (xb, ob)) in xs
            .chunks_exact(NVFP4_BLOCK_SIZE)
            .zip(dst.chunks_exact_mut(NVFP4_BLOCK_SIZE))
            .enumerate()
        {
            let xb: &[f32; NVFP4_BLOCK_SIZE] = xb.try_into().expect("chunk of 16");
            let ob: &mut [f32; NVFP4_BLOCK_SIZE] = ob.try_into().expect("chunk of 16");
            if amax[b] >= INF_BITS {
                ob.fill(f32::NAN);
                continue;
            }
            elements(xb, ob, s[b], m[b], g);
        }
        if stream {
            stream_copy(&staged[..xs.len()], os);
        }
    }
    if stream {
        stream_fence();
    }
}

/// Outputs of at least this many values are written with streaming stores: far larger than the
/// caches, so the values would leave them before being read anyway (16 MiB of f32).
const STREAM_MIN_VALUES: usize = 1 << 22;
/// The alignment of SSE's streaming store.
const STREAM_ALIGN: usize = 16;

/// Whether [`stream_copy`] applies to `out`: x86-64, a large output, aligned for the stores.
#[inline(always)]
fn streaming_pays(out: &[f32]) -> bool {
    cfg!(target_arch = "x86_64")
        && out.len() >= STREAM_MIN_VALUES
        && (out.as_ptr() as usize).is_multiple_of(STREAM_ALIGN)
}

/// Copies `src` into `dst` (same length, `dst` aligned to 16 bytes) with streaming stores,
/// which write whole cache lines to memory without first reading them (a plain store reads
/// each destination line in: a third of the traffic of a read-quantize-write pass, which the
/// two-level form makes after a full read for the tensor amax). The values are the same bits.
#[inline(always)]
fn stream_copy(src: &[f32], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
        let whole = src.len() / 4 * 4;
        // SAFETY: SSE is part of x86-64; four values are read and written at each i + 4 <=
        // whole; `dst` is 16-byte aligned (`streaming_pays`) and so is every dst + 4k.
        unsafe {
            for i in (0..whole).step_by(4) {
                _mm_stream_ps(dst.as_mut_ptr().add(i), _mm_loadu_ps(src.as_ptr().add(i)));
            }
        }
        dst[whole..].copy_from_slice(&src[whole..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Orders the streaming stores before later stores (and so before anyone reads the output).
#[inline(always)]
fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Fake-quantizes a whole grid into `out`; returns `g`.
pub(crate) fn fake_quantize(
    grid: &BlockGrid,
    x: &[f32],
    out: &mut [f32],
    scaling: NvScaling,
    rounding: Rounding,
) -> f32 {
    let g = tensor_scale(x, scaling);
    if grid.is_uniform() && rounding == Rounding::Nearest {
        fake_uniform_nearest(x, out, g);
        return g;
    }
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            fake_block_ranges(x, out, grid.block_ranges(br, bc), g, rounding);
        }
    }
    g
}

/// Encodes a whole grid: unpacked codes, scale bytes and `g`.
pub(crate) fn encode(
    grid: &BlockGrid,
    x: &[f32],
    scaling: NvScaling,
    rounding: Rounding,
) -> (Vec<u8>, Vec<u8>, f32) {
    let g = tensor_scale(x, scaling);
    let mut codes = vec![0u8; x.len()];
    let mut scales = Vec::with_capacity(grid.num_blocks());
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            let ranges = grid.block_ranges(br, bc);
            let amax = grid
                .block_ranges(br, bc)
                .fold(0u32, |m, r| m.max(amax_bits(&x[r])));
            if amax >= INF_BITS {
                scales.push(E4M3_NAN);
                continue; // codes stay 0
            }
            let (byte, s) = block_scale(f32::from_bits(amax), g);
            let m = (1.0 / g) / s;
            for r in ranges {
                for i in r {
                    let v = x[i];
                    let a = (v * m).abs();
                    let mag = match rounding {
                        Rounding::Nearest => round_magnitude_nearest(a),
                        Rounding::Stochastic { seed } => {
                            round_magnitude_stochastic(a, uniform_f32(seed, i as u64))
                        }
                    };
                    let sign = if v.is_sign_negative() {
                        E2M1_SIGN_BIT
                    } else {
                        0
                    };
                    codes[i] = sign | magnitude_to_code(mag);
                }
            }
            scales.push(byte);
        }
    }
    (codes, scales, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(NVFP4_TENSOR_SCALE_DIVISOR, 2688.0);
        assert_eq!(NVFP4_MIN_TENSOR_SCALE, 2f32.powi(-120));
    }

    #[test]
    fn block_scale_clamps() {
        assert_eq!(block_scale(0.0, 1.0), (0x08, E4M3_MIN_NORMAL));
        assert_eq!(block_scale(6.0 * 448.0, 1.0).1, 448.0);
        assert_eq!(block_scale(1e9, 1.0).1, 448.0);
    }

    #[test]
    fn tensor_amax_block_hits_full_range() {
        // The block holding the tensor amax gets scale 448 and its amax maps to 6.
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.37).collect();
        let grid = BlockGrid::new(32, 32, 16, super::super::spec::BlockLayout::Row).unwrap();
        let mut out = vec![0.0; 32];
        let g = fake_quantize(&grid, &x, &mut out, NvScaling::TwoLevel, Rounding::Nearest);
        assert_eq!(g, 16.0 * 0.37 / 2688.0);
        let (_, s) = block_scale(16.0 * 0.37, g);
        assert_eq!(s, 448.0);
        assert!((out[0] - x[0]).abs() <= 1e-6 * 6.0);
    }

    #[test]
    fn streamed_output_is_the_stored_output() {
        // Past the streaming threshold, at an aligned and a misaligned start, with a NaN block.
        let n = STREAM_MIN_VALUES + 1024;
        let mut x: Vec<f32> = (0..n as u64)
            .map(|i| (crate::rng::normal_f64(4, i) * 0.1) as f32)
            .collect();
        x[100] = f32::NAN;
        let grid = BlockGrid::new(n, 1024, 16, super::super::spec::BlockLayout::Row).unwrap();
        let mut big = vec![0.0f32; n + 4];
        let aligned = (0..4)
            .find(|&o| (big[o..].as_ptr() as usize).is_multiple_of(STREAM_ALIGN))
            .unwrap();
        for (offset, streams) in [(aligned, true), (aligned + 1, false)] {
            let out = &mut big[offset..offset + n];
            assert_eq!(streaming_pays(out), streams && cfg!(target_arch = "x86_64"));
            let g = fake_quantize(&grid, &x, out, NvScaling::TwoLevel, Rounding::Nearest);
            let mut plain = vec![0.0f32; 4096];
            let last = n.div_ceil(4096) - 1;
            for (k, (xs, os)) in x.chunks(4096).zip(out.chunks(4096)).enumerate() {
                if k % 97 != 0 && k != last {
                    continue;
                }
                fake_uniform_nearest_impl(
                    xs,
                    &mut plain[..xs.len()],
                    g,
                    |xb| amax_bits(xb),
                    fake_elements,
                );
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(os),
                    bits(&plain[..xs.len()]),
                    "chunk {k}, offset {offset}"
                );
            }
        }
    }

    #[test]
    fn vector_builds_agree_with_the_plain_loop() {
        // Normal and heavy-tailed values, zeros of both signs, a NaN block, an Inf block, and
        // tensor scales that put the block maxima on and off the E4M3 clamps.
        let mut x: Vec<f32> = (0..8192)
            .map(|i| {
                let v = crate::rng::normal_f64(2, i) * 3.0;
                (if i % 3 == 0 { v * v * v } else { v }) as f32
            })
            .collect();
        x[17] = -0.0;
        x[18] = 0.0;
        x[40] = f32::NAN;
        x[70] = f32::NEG_INFINITY;
        x[100..116].fill(0.0);
        for g in [0.01, 1.0, 1e-6, 300.0] {
            let (mut plain, mut dispatched) = (vec![0.0; 8192], vec![0.0; 8192]);
            fake_uniform_nearest_impl(&x, &mut plain, g, |xb| amax_bits(xb), fake_elements);
            fake_uniform_nearest(&x, &mut dispatched, g);
            assert_eq!(
                plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                dispatched.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "g {g}"
            );
        }
    }
}
