//! MXFP4 (OCP Microscaling Formats v1.0): E2M1 elements sharing one E8M0 scale per 32.
//! Rules in docs/spec.md section 1 and docs/formats.md; agrees with torchao `to_mx` (FLOOR).

use super::blocks::{BlockGrid, INF_BITS, amax_bits};
use super::e2m1::{
    E2M1_SIGN_BIT, magnitude_to_code, round_magnitude_nearest, round_magnitude_stochastic,
};
use super::e8m0::{E8M0_MAX_EXPONENT, E8M0_MIN_EXPONENT, E8M0_NAN, exp2i, exponent_to_e8m0};
use super::spec::{MXFP4_BLOCK_SIZE, MxScaleMode, Rounding};
use crate::rng::uniform_f32;

/// The exponent of the largest E2M1 value (6 = 1.5 * 2^2): FLOOR/CEIL subtract it.
pub const F4_E2M1_MAX_POW2: i32 = 2;
/// Added to the f32 bits by the EVEN rule: half of the second mantissa bit.
const EVEN_ROUND_BIT: u32 = 0x0020_0000;
/// Keeps sign, exponent and the first mantissa bit (EVEN rule).
const EVEN_KEEP_MASK: u32 = 0xFF80_0000;
const MANTISSA_MASK: u32 = 0x007F_FFFF;
/// 2^-127: the RCEIL floor, the E8M0 minimum.
const RCEIL_MIN: f32 = f32::from_bits(0x0040_0000);

/// The unclamped `floor(log2 a)` of a positive normal f32 from its exponent field, or `None` for
/// zero and subnormals (whose rule always clamps to -127 here).
#[inline(always)]
fn floor_log2_normal(bits: u32) -> Option<i32> {
    let field = (bits >> 23) as i32;
    (field != 0).then_some(field - 127)
}

/// The shared exponent `e` (scale `2^e`) of a block with finite amax bit pattern `amax`.
#[inline(always)]
pub fn mx_scale_exponent(amax: u32, mode: MxScaleMode) -> i32 {
    let e = match mode {
        MxScaleMode::Floor => floor_log2_normal(amax).map(|l| l - F4_E2M1_MAX_POW2),
        MxScaleMode::Ceil => floor_log2_normal(amax)
            .map(|l| l + i32::from(amax & MANTISSA_MASK != 0) - F4_E2M1_MAX_POW2),
        MxScaleMode::Even => {
            // Exponent field 255 (amax rounding past f32::MAX) reads as 2^128 by the same rule.
            let rounded = amax.wrapping_add(EVEN_ROUND_BIT) & EVEN_KEEP_MASK;
            floor_log2_normal(rounded).map(|l| l - F4_E2M1_MAX_POW2)
        }
        MxScaleMode::Rceil => {
            let r = f32::from_bits(amax) / 6.0;
            if r <= RCEIL_MIN {
                None
            } else if let Some(l) = floor_log2_normal(r.to_bits()) {
                Some(l + i32::from(r.to_bits() & MANTISSA_MASK != 0))
            } else {
                Some(-126) // 2^-127 < r < 2^-126
            }
        }
    };
    e.unwrap_or(E8M0_MIN_EXPONENT)
        .clamp(E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT)
}

/// Fake-quantizes one block in place of `out` (same length as `x`): NaN block if any element is
/// non-finite, else `E2M1(v / 2^e) * 2^e`. `first` is the flat index of `x[0]` (for stochastic
/// rounding). Returns the block's scale byte.
#[inline(always)]
pub(crate) fn fake_block(
    x: &[f32],
    out: &mut [f32],
    mode: MxScaleMode,
    rounding: Rounding,
    first: usize,
) -> u8 {
    let amax = amax_bits(x);
    if amax >= INF_BITS {
        out.fill(f32::NAN);
        return E8M0_NAN;
    }
    let e = mx_scale_exponent(amax, mode);
    let (inv, scale) = (exp2i(-e), exp2i(e));
    match rounding {
        Rounding::Nearest => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (round_magnitude_nearest((v * inv).abs()) * scale).copysign(v);
            }
        }
        Rounding::Stochastic { seed } => {
            for (k, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                let u = uniform_f32(seed, (first + k) as u64);
                *o = (round_magnitude_stochastic((v * inv).abs(), u) * scale).copysign(v);
            }
        }
    }
    exponent_to_e8m0(e)
}

/// Encodes one block: writes its codes (one per element, unpacked) and returns the scale byte.
#[inline]
pub(crate) fn encode_block(
    x: &[f32],
    codes: &mut [u8],
    mode: MxScaleMode,
    rounding: Rounding,
    first: usize,
) -> u8 {
    let amax = amax_bits(x);
    if amax >= INF_BITS {
        codes.fill(0);
        return E8M0_NAN;
    }
    let e = mx_scale_exponent(amax, mode);
    let inv = exp2i(-e);
    for (k, (c, &v)) in codes.iter_mut().zip(x).enumerate() {
        let a = (v * inv).abs();
        let m = match rounding {
            Rounding::Nearest => round_magnitude_nearest(a),
            Rounding::Stochastic { seed } => {
                round_magnitude_stochastic(a, uniform_f32(seed, (first + k) as u64))
            }
        };
        let sign = if v.is_sign_negative() {
            E2M1_SIGN_BIT
        } else {
            0
        };
        *c = sign | magnitude_to_code(m);
    }
    exponent_to_e8m0(e)
}

/// Uniform blocks of 32, nearest rounding: the hot loop (fixed-size chunks let LLVM vectorize).
/// Runs the AVX2 build where the CPU has it (same IEEE operations, wider vectors).
fn fake_uniform_nearest(x: &[f32], out: &mut [f32], mode: MxScaleMode) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { fake_uniform_nearest_avx2(x, out, mode) };
    }
    fake_uniform_nearest_impl(x, out, mode)
}

/// [`fake_uniform_nearest_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fake_uniform_nearest_avx2(x: &[f32], out: &mut [f32], mode: MxScaleMode) {
    fake_uniform_nearest_impl(x, out, mode)
}

#[inline(always)]
fn fake_uniform_nearest_impl(x: &[f32], out: &mut [f32], mode: MxScaleMode) {
    for (xb, ob) in x
        .chunks_exact(MXFP4_BLOCK_SIZE)
        .zip(out.chunks_exact_mut(MXFP4_BLOCK_SIZE))
    {
        let xb: &[f32; MXFP4_BLOCK_SIZE] = xb.try_into().expect("chunk of 32");
        let ob: &mut [f32; MXFP4_BLOCK_SIZE] = ob.try_into().expect("chunk of 32");
        fake_block(xb, ob, mode, Rounding::Nearest, 0);
    }
}

/// Fake-quantizes a whole grid into `out`.
pub(crate) fn fake_quantize(
    grid: &BlockGrid,
    x: &[f32],
    out: &mut [f32],
    mode: MxScaleMode,
    rounding: Rounding,
) {
    if grid.is_uniform() && rounding == Rounding::Nearest {
        fake_uniform_nearest(x, out, mode);
        return;
    }
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            let range = grid.block_ranges(br, bc).next().expect("1-D block");
            let first = range.start;
            fake_block(&x[range.clone()], &mut out[range], mode, rounding, first);
        }
    }
}

/// Encodes a whole grid: unpacked codes (one per element) and the scale bytes.
pub(crate) fn encode(
    grid: &BlockGrid,
    x: &[f32],
    mode: MxScaleMode,
    rounding: Rounding,
) -> (Vec<u8>, Vec<u8>) {
    let mut codes = vec![0u8; x.len()];
    let mut scales = Vec::with_capacity(grid.num_blocks());
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            let range = grid.block_ranges(br, bc).next().expect("1-D block");
            let first = range.start;
            scales.push(encode_block(
                &x[range.clone()],
                &mut codes[range],
                mode,
                rounding,
                first,
            ));
        }
    }
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(amax: f32, mode: MxScaleMode) -> i32 {
        mx_scale_exponent(amax.to_bits(), mode)
    }

    #[test]
    fn scale_rules() {
        use MxScaleMode::*;
        assert_eq!(e(1.0, Floor), -2);
        assert_eq!(e(7.9, Floor), 0); // block max lands in [4, 8) -> saturates to 6
        assert_eq!(e(6.0, Floor), 0);
        assert_eq!(e(4.0, Ceil), 0);
        assert_eq!(e(4.1, Ceil), 1);
        assert_eq!(e(7.9, Even), 1); // 7.9 -> 8.0 -> floor 3 - 2
        assert_eq!(e(5.9, Even), 0); // 5.9 -> 6.0 -> floor 2 - 2
        assert_eq!(e(6.0, Rceil), 0); // 6/6 = 1 = 2^0
        assert_eq!(e(6.1, Rceil), 1);
        assert_eq!(e(0.0, Floor), -127);
        assert_eq!(e(0.0, Rceil), -127);
        assert_eq!(e(1e-40, Ceil), -127);
        assert_eq!(e(f32::MAX, Floor), 125);
    }

    #[test]
    fn saturates_amax_mantissa_above_1_75() {
        let mut x = [0.0f32; 32];
        x[0] = 7.9;
        x[1] = -7.0;
        x[2] = 1.25;
        let mut out = [0.0f32; 32];
        let byte = fake_block(&x, &mut out, MxScaleMode::Floor, Rounding::Nearest, 0);
        assert_eq!(byte, 127);
        assert_eq!(&out[..3], &[6.0, -6.0, 1.0]);
    }

    #[test]
    fn special_blocks() {
        let mut out = [1.0f32; 4];
        assert_eq!(
            fake_block(
                &[0.0; 4],
                &mut out,
                MxScaleMode::Floor,
                Rounding::Nearest,
                0
            ),
            0
        );
        assert_eq!(out, [0.0; 4]);
        assert_eq!(
            fake_block(
                &[1.0, f32::INFINITY, 0.0, 2.0],
                &mut out,
                MxScaleMode::Floor,
                Rounding::Nearest,
                0
            ),
            0xFF
        );
        assert!(out.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn vector_builds_agree_with_the_plain_loop() {
        let x: Vec<f32> = (0..4096)
            .map(|i| (crate::rng::normal_f64(2, i) * 3.0) as f32)
            .collect();
        let (mut plain, mut dispatched) = (vec![0.0; 4096], vec![0.0; 4096]);
        fake_uniform_nearest_impl(&x, &mut plain, MxScaleMode::Floor);
        fake_uniform_nearest(&x, &mut dispatched, MxScaleMode::Floor);
        assert_eq!(
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            dispatched.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
