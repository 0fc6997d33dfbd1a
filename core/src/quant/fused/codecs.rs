//! The element and scale rules of `crate::formats` on f32 bit patterns, for the fused kernels:
//! E2M1 rounding (nearest even and stochastic), the MXFP4 shared exponent, E4M3 rounding.
//! Each function names the reference it mirrors; docs/formats.md has the rules.

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

use super::softfloat::{MANT_MASK, rshift_rne, sf_exp, sf_pack, sf_sig};

/// f32 bits of 2, 4 and 6 (E2M1's binade edges and its maximum).
pub const F32_TWO: u32 = 0x4000_0000;
pub const F32_FOUR: u32 = 0x4080_0000;
pub const F32_SIX: u32 = 0x40c0_0000;
/// f32 bits of 448 (E4M3's maximum) and 2688 = 448 * 6 (the NVFP4 tensor-scale divisor).
pub const F32_448: u32 = 0x43e0_0000;
pub const F32_2688: u32 = 0x4528_0000;
/// f32 bits of 2^-6, E4M3's smallest normal (the NVFP4 block-scale floor).
pub const F32_E4M3_MIN_NORMAL: u32 = 0x3c80_0000;
/// f32 bits of 2^-120, `crate::formats::nvfp4::NVFP4_MIN_TENSOR_SCALE`.
pub const F32_NV_MIN_TENSOR_SCALE: u32 = 0x0380_0000;
/// The largest amax with `fl(amax / 6) <= 2^-127` (RCEIL's floor, see [`mx_scale_exponent`]).
const RCEIL_TO_MIN_EXPONENT: u32 = 0x0140_0001;
/// `crate::formats::mxfp4` EVEN rule: half of the second mantissa bit, and the mask keeping the first.
const EVEN_ROUND_BIT: u32 = 0x0020_0000;
const EVEN_KEEP_MASK: u32 = 0xff80_0000;
/// E8M0's exponent range.
pub const MX_MIN_EXPONENT: i32 = -127;
pub const MX_MAX_EXPONENT: i32 = 127;
/// Scale modes, as the kernels' comptime codes (`crate::formats::MxScaleMode` order).
pub const MX_FLOOR: u32 = 0;
pub const MX_CEIL: u32 = 1;
pub const MX_EVEN: u32 = 2;
pub const MX_RCEIL: u32 = 3;

/// E2M1 rounding, nearest even and saturating at 6, of a non-negative, non-NaN magnitude `a`
/// (`crate::formats::e2m1::round_magnitude_nearest`). Returns the result in halves:
/// 0, 1, 2, 3, 4, 6, 8 or 12.
#[cube]
pub fn e2m1_halves_nearest(a: u32) -> u32 {
    let sig = sf_sig(a);
    let mut halves = 12u32;
    if a < F32_TWO {
        // Step 0.5: RNE(2a) = RNE(sig * 2^(exp + 1)), exp <= -23.
        halves = rshift_rne(sig, u32::cast_from(-(sf_exp(a) + 1i32)), false);
    } else if a < F32_SIX {
        // [2, 4): step 1, RNE(sig * 2^-22); [4, 6): step 2, RNE(a / 2) = RNE(sig * 2^-22).
        let k = rshift_rne(sig, 22u32, false);
        halves = select(a < F32_FOUR, 2u32 * k, 4u32 * k);
    }
    halves
}

/// E2M1 stochastic rounding of a non-negative, non-NaN magnitude `a` with the uniform
/// `u24 * 2^-24` (`crate::formats::e2m1::round_magnitude_stochastic`): with `lo` the grid value
/// at or below `min(a, 6)` and `p` the fraction of a step above it, the result is the next grid
/// value when `u < p`. The comparison is exact in integers. Returns halves, as above.
#[cube]
pub fn e2m1_halves_stochastic(a: u32, u24: u32) -> u32 {
    let mut halves = 12u32;
    if a < F32_SIX {
        // scaled = a / step = sig * 2^t with t = exp + 1 (step 0.5), exp (step 1), exp - 1 (step 2).
        let mut step_halves = 1u32;
        let mut t = sf_exp(a) + 1i32;
        if a >= F32_FOUR {
            step_halves = 4u32;
            t = sf_exp(a) - 1i32;
        } else if a >= F32_TWO {
            step_halves = 2u32;
            t = sf_exp(a);
        }
        let sig = sf_sig(a);
        // a < 6 gives t <= -20: s fraction bits, s >= 20.
        let s = u32::cast_from(-t);
        let mut lo = 0u32;
        let mut frac = sig;
        if s < 32u32 {
            lo = sig >> s;
            frac = sig & ((1u32 << s) - 1u32);
        }
        // u < p  <=>  u24 * 2^-24 < frac * 2^-s (both exact).
        let mut up = false;
        if frac != 0u32 {
            if s <= 24u32 {
                up = u24 < (frac << (24u32 - s));
            } else {
                let d = s - 24u32;
                if u24 == 0u32 {
                    up = true;
                } else if d < 24u32 {
                    // u24 * 2^d < frac  <=>  u24 < ceil(frac / 2^d).
                    up = u24 < ((frac + (1u32 << d) - 1u32) >> d);
                }
            }
        }
        halves = (lo + select(up, 1u32, 0u32)) * step_halves;
    }
    halves
}

/// The MXFP4 shared exponent `e` (scale `2^e`) of a block with finite amax bits
/// (`crate::formats::mxfp4::mx_scale_exponent`); `mode` is one of the `MX_*` codes.
#[cube]
pub fn mx_scale_exponent(amax: u32, #[comptime] mode: u32) -> i32 {
    let field = i32::cast_from(amax >> 23u32);
    let mant = amax & MANT_MASK;
    let mut e = MX_MIN_EXPONENT.runtime();
    if comptime![mode == MX_FLOOR] {
        // floor(log2 amax) - 2.
        if field != 0i32 {
            e = field - 129i32;
        }
    } else if comptime![mode == MX_CEIL] {
        // ceil(log2 amax) - 2.
        if field != 0i32 {
            e = field - 129i32 + select(mant != 0u32, 1i32, 0i32);
        }
    } else if comptime![mode == MX_EVEN] {
        // amax rounded to one mantissa bit, then FLOOR.
        let rounded = (amax + EVEN_ROUND_BIT) & EVEN_KEEP_MASK;
        let rf = i32::cast_from(rounded >> 23u32);
        if rf != 0i32 {
            e = rf - 129i32;
        }
    } else {
        // RCEIL: ceil(log2(fl(amax / 6))). fl(amax / 6) <= 2^k exactly when amax <= 1.5 * 2^(k + 2)
        // (no f32 lies strictly between 6 * 2^k and the rounding boundary above it), except at
        // k = -127 whose boundary is one ulp higher.
        if amax > RCEIL_TO_MIN_EXPONENT {
            e = field - 129i32 + select(mant > 0x0040_0000u32, 1i32, 0i32);
        }
    }
    clamp(e, MX_MIN_EXPONENT, MX_MAX_EXPONENT)
}

/// E4M3 rounding of a value in its normal range `[2^-6, 448]`
/// (`crate::formats::e4m3::round_normal_to_e4m3`).
#[cube]
pub fn round_normal_to_e4m3(a: u32) -> u32 {
    (a + 0x0007_ffffu32 + ((a >> 20u32) & 1u32)) & 0xfff0_0000u32
}

/// The E4M3 value (f32 bits) of a magnitude in `[0, 448]`: nearest even, subnormal step 2^-9
/// (`crate::formats::e4m3::f32_to_e4m3` then `e4m3_to_f32`).
#[cube]
pub fn e4m3_round_magnitude(a: u32) -> u32 {
    if a < F32_E4M3_MIN_NORMAL {
        // RNE(a * 2^9) = RNE(sig * 2^(exp + 9)), exp <= -30.
        let k = rshift_rne(sf_sig(a), u32::cast_from(-(sf_exp(a) + 9i32)), false);
        sf_pack(0u32, k, -9i32, false)
    } else {
        round_normal_to_e4m3(a)
    }
}
