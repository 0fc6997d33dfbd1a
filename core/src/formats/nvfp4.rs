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
    fake_uniform_nearest_impl(x, out, g)
}

/// [`fake_uniform_nearest_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fake_uniform_nearest_avx2(x: &[f32], out: &mut [f32], g: f32) {
    fake_uniform_nearest_impl(x, out, g)
}

#[inline(always)]
fn fake_uniform_nearest_impl(x: &[f32], out: &mut [f32], g: f32) {
    let inv_g = 1.0 / g;
    let batch = FAST_BATCH_BLOCKS * NVFP4_BLOCK_SIZE;
    let mut amax = [0u32; FAST_BATCH_BLOCKS];
    let mut s = [0f32; FAST_BATCH_BLOCKS];
    let mut m = [0f32; FAST_BATCH_BLOCKS];
    for (xs, os) in x.chunks(batch).zip(out.chunks_mut(batch)) {
        let nb = xs.len() / NVFP4_BLOCK_SIZE;
        for (a, xb) in amax.iter_mut().zip(xs.chunks_exact(NVFP4_BLOCK_SIZE)) {
            let xb: &[f32; NVFP4_BLOCK_SIZE] = xb.try_into().expect("chunk of 16");
            *a = amax_bits(xb);
        }
        for b in 0..nb {
            // block_scale's value without the byte: the clamp keeps it in E4M3's normal range.
            let r = ((f32::from_bits(amax[b].min(INF_BITS)) / E2M1_MAX) / g)
                .clamp(E4M3_MIN_NORMAL, E4M3_MAX);
            s[b] = round_normal_to_e4m3(r);
            m[b] = inv_g / s[b];
        }
        for (b, (xb, ob)) in xs
            .chunks_exact(NVFP4_BLOCK_SIZE)
            .zip(os.chunks_exact_mut(NVFP4_BLOCK_SIZE))
            .enumerate()
        {
            let xb: &[f32; NVFP4_BLOCK_SIZE] = xb.try_into().expect("chunk of 16");
            let ob: &mut [f32; NVFP4_BLOCK_SIZE] = ob.try_into().expect("chunk of 16");
            if amax[b] >= INF_BITS {
                ob.fill(f32::NAN);
                continue;
            }
            let (sb, mb) = (s[b], m[b]);
            for (o, &v) in ob.iter_mut().zip(xb) {
                *o = ((round_magnitude_nearest((v * mb).abs()) * sb) * g).copysign(v);
            }
        }
    }
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
    fn vector_builds_agree_with_the_plain_loop() {
        let x: Vec<f32> = (0..4096)
            .map(|i| (crate::rng::normal_f64(2, i) * 3.0) as f32)
            .collect();
        let (mut plain, mut dispatched) = (vec![0.0; 4096], vec![0.0; 4096]);
        fake_uniform_nearest_impl(&x, &mut plain, 0.01);
        fake_uniform_nearest(&x, &mut dispatched, 0.01);
        assert_eq!(
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            dispatched.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
