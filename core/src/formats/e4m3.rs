//! E4M3 ("fn" variant, OCP 8-bit floating point v1.0): the FP8 element format and the NVFP4
//! block scale. Bias 7, 3 mantissa bits, max 448, subnormals `m * 2^-9`, no Inf, NaN `0x7F`/`0xFF`.

use super::e8m0::exp2i;

/// Largest finite E4M3 value.
pub const E4M3_MAX: f32 = 448.0;
/// Exponent bias.
pub const E4M3_EXPONENT_BIAS: i32 = 7;
/// Mantissa bits.
pub const E4M3_MANTISSA_BITS: u32 = 3;
/// Smallest normal value, 2^-6 (also the NVFP4 block-scale floor).
pub const E4M3_MIN_NORMAL: f32 = 0.015_625;
/// Smallest subnormal, 2^-9 (the subnormal grid step).
pub const E4M3_MIN_SUBNORMAL: f32 = 0.001_953_125;
/// The positive NaN code.
pub const E4M3_NAN: u8 = 0x7F;
/// The sign bit of a code.
pub const E4M3_SIGN_BIT: u8 = 0x80;
/// 2^9, the inverse of the subnormal step.
const SUBNORMAL_INV_STEP: f32 = 512.0;

/// Encodes an f32: round to nearest, ties to even; finite values beyond 448 saturate to 448 (the
/// clamp docs/spec.md requires before converting); NaN and +-Inf become NaN (sign kept).
#[inline]
pub fn f32_to_e4m3(x: f32) -> u8 {
    let sign = if x.is_sign_negative() {
        E4M3_SIGN_BIT
    } else {
        0
    };
    if !x.is_finite() {
        return sign | E4M3_NAN;
    }
    sign | e4m3_magnitude_code(x.abs().min(E4M3_MAX))
}

/// The 7-bit code of a magnitude in `[0, 448]`.
#[inline]
fn e4m3_magnitude_code(a: f32) -> u8 {
    if a < E4M3_MIN_NORMAL {
        // Subnormal grid m * 2^-9, m in 0..=8 (8 is the smallest normal, code 0x08).
        return (a * SUBNORMAL_INV_STEP).round_ties_even() as u8;
    }
    // Normal: a = 1.f * 2^e with e in [-6, 8]; exact exponent from the bits.
    let e = ((a.to_bits() >> 23) as i32) - 127;
    let m = (a * exp2i(E4M3_MANTISSA_BITS as i32 - e)).round_ties_even() as i32; // 8..=16
    // m == 16 carries into the exponent field, which the addition does by itself.
    (((e + E4M3_EXPONENT_BIAS) << E4M3_MANTISSA_BITS) + (m - 8)) as u8
}

/// Decodes an E4M3 code.
#[inline]
pub fn e4m3_to_f32(code: u8) -> f32 {
    let sign = if code & E4M3_SIGN_BIT != 0 { -1.0 } else { 1.0 };
    let mag = code & 0x7F;
    if mag == E4M3_NAN {
        return f32::NAN;
    }
    let exp = (mag >> E4M3_MANTISSA_BITS) as i32;
    let man = (mag & 0x7) as f32;
    sign * if exp == 0 {
        man * E4M3_MIN_SUBNORMAL
    } else {
        (8.0 + man) * exp2i(exp - E4M3_EXPONENT_BIAS - E4M3_MANTISSA_BITS as i32)
    }
}

/// Half of the last kept mantissa bit, minus one: with the kept LSB added, RNE to 3 mantissa bits.
const NORMAL_ROUND_BIAS: u32 = 0x0007_FFFF;
/// Keeps sign, exponent and 3 mantissa bits of an f32.
const NORMAL_KEEP_MASK: u32 = 0xFFF0_0000;

/// Rounds a value in E4M3's normal range `[2^-6, 448]` to E4M3, as an f32, with bit operations
/// only (the hot path of NVFP4 block scales). Equal to [`round_to_e4m3`] on that range.
#[inline(always)]
pub fn round_normal_to_e4m3(a: f32) -> f32 {
    let bits = a.to_bits();
    let lsb = (bits >> 20) & 1;
    f32::from_bits((bits + NORMAL_ROUND_BIAS + lsb) & NORMAL_KEEP_MASK)
}

/// Rounds an f32 to the nearest E4M3 value (same rules as [`f32_to_e4m3`]).
#[inline]
pub fn round_to_e4m3(x: f32) -> f32 {
    e4m3_to_f32(f32_to_e4m3(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_landmarks() {
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x08), E4M3_MIN_NORMAL);
        assert_eq!(e4m3_to_f32(0x01), E4M3_MIN_SUBNORMAL);
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert!(e4m3_to_f32(0x7F).is_nan());
        assert!(e4m3_to_f32(0xFF).is_nan());
        assert_eq!(e4m3_to_f32(0xBE), -1.75);
    }

    #[test]
    fn roundtrip_every_code() {
        for code in 0u8..=255 {
            if code & 0x7F == E4M3_NAN {
                continue;
            }
            let v = e4m3_to_f32(code);
            let back = f32_to_e4m3(v);
            // +-0 keep their sign.
            assert_eq!(back, code, "code {code:#x} value {v}");
        }
    }

    #[test]
    fn bit_rounding_matches_codec_on_normal_range() {
        let (lo, hi) = (E4M3_MIN_NORMAL.to_bits(), E4M3_MAX.to_bits());
        for bits in (lo..=hi).step_by(97) {
            let a = f32::from_bits(bits);
            assert_eq!(round_normal_to_e4m3(a), round_to_e4m3(a), "{a}");
        }
        for a in [
            E4M3_MIN_NORMAL,
            E4M3_MAX,
            1.0625,
            1.1875,
            447.9,
            15.5,
            0.0156,
        ] {
            assert_eq!(
                round_normal_to_e4m3(a.max(E4M3_MIN_NORMAL)),
                round_to_e4m3(a.max(E4M3_MIN_NORMAL))
            );
        }
    }

    #[test]
    fn rounding_and_saturation() {
        assert_eq!(round_to_e4m3(447.0), 448.0);
        assert_eq!(round_to_e4m3(464.0), 448.0); // would be NaN without the clamp
        assert_eq!(round_to_e4m3(1e9), 448.0);
        assert_eq!(round_to_e4m3(1.0625), 1.0); // tie between 1 and 1.125 -> even
        assert_eq!(round_to_e4m3(1.1875), 1.25); // tie between 1.125 and 1.25 -> even
        assert_eq!(round_to_e4m3(E4M3_MIN_SUBNORMAL * 0.5), 0.0); // tie to even (0)
        assert_eq!(
            round_to_e4m3(E4M3_MIN_SUBNORMAL * 1.5),
            2.0 * E4M3_MIN_SUBNORMAL
        );
        assert_eq!(round_to_e4m3(0.0155), E4M3_MIN_NORMAL); // subnormal rounding up into normal
        assert!(round_to_e4m3(f32::INFINITY).is_nan());
        assert_eq!(f32_to_e4m3(f32::NEG_INFINITY), 0xFF);
    }
}
