//! E2M1, the 4-bit float of MXFP4 and NVFP4 (OCP Microscaling v1.0, section 5.3.3).
//!
//! Bit layout of a code: `s ee m` — bit 3 sign, bits 2-1 exponent (bias 1), bit 0 mantissa.
//! No Inf, no NaN. Magnitudes `{0, 0.5, 1, 1.5, 2, 3, 4, 6}`; 0.5 is the only subnormal.

/// Largest E2M1 magnitude.
pub const E2M1_MAX: f32 = 6.0;
/// Exponent bias of E2M1.
pub const E2M1_EXPONENT_BIAS: i32 = 1;
/// The sign bit of a code.
pub const E2M1_SIGN_BIT: u8 = 0x8;
/// Smallest positive magnitude (the subnormal).
pub const E2M1_MIN_POSITIVE: f32 = 0.5;

/// The value of each of the 16 codes (`-0.0` for code 0x8).
pub const E2M1_VALUES: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// 2^23: adding and subtracting it rounds a non-negative f32 below 2^22 to an integer, ties to
/// even (the default IEEE rounding), without a libm call, so loops using it vectorize.
const ROUND_MAGIC: f32 = 8_388_608.0;

/// Grid step of E2M1 around magnitude `a` (`a >= 0`): 0.5 below 2, 1 below 4, 2 above.
#[inline(always)]
fn step_and_inverse(a: f32) -> (f32, f32) {
    if a < 2.0 {
        (0.5, 2.0)
    } else if a < 4.0 {
        (1.0, 1.0)
    } else {
        (2.0, 0.5)
    }
}

/// Rounds a scaled magnitude to the E2M1 grid: nearest, ties to even mantissa, saturating at 6.
///
/// `a` must be non-negative and not NaN (+Inf saturates to 6). Branch-free: the step is a select.
#[inline(always)]
pub fn round_magnitude_nearest(a: f32) -> f32 {
    let a = a.min(E2M1_MAX);
    let (step, inv) = step_and_inverse(a);
    ((a * inv + ROUND_MAGIC) - ROUND_MAGIC) * step
}

/// Rounds a scaled magnitude to the E2M1 grid stochastically: up to the next grid value with
/// probability equal to the distance from the lower one (in grid steps), given a uniform `u` in
/// `[0, 1)`. Saturates at 6. `a` must be non-negative and not NaN.
#[inline(always)]
pub fn round_magnitude_stochastic(a: f32, u: f32) -> f32 {
    let a = a.min(E2M1_MAX);
    let (step, inv) = step_and_inverse(a);
    let scaled = a * inv; // exact: inv is a power of two
    let lo = scaled.floor();
    let p = scaled - lo; // exact, in [0, 1)
    (if u < p { lo + 1.0 } else { lo }) * step
}

/// The code (0..=7) of an E2M1 magnitude already on the grid.
#[inline(always)]
pub fn magnitude_to_code(m: f32) -> u8 {
    if m < 2.0 {
        (m * 2.0) as u8
    } else if m < 4.0 {
        m as u8 + 2
    } else {
        (m * 0.5) as u8 + 4
    }
}

/// Encodes an f32 (not NaN) to an E2M1 code: nearest, ties to even, saturating; the sign bit is
/// copied, so negative values that round to zero give code 0x8.
#[inline]
pub fn f32_to_e2m1(x: f32) -> u8 {
    let sign = if x.is_sign_negative() {
        E2M1_SIGN_BIT
    } else {
        0
    };
    sign | magnitude_to_code(round_magnitude_nearest(x.abs()))
}

/// Decodes an E2M1 code (only the low 4 bits are read).
#[inline(always)]
pub fn e2m1_to_f32(code: u8) -> f32 {
    E2M1_VALUES[(code & 0xF) as usize]
}

/// Packs codes two per byte, low nibble first; an odd count leaves the last high nibble 0.
pub fn pack_nibbles(codes: &[u8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|pair| (pair[0] & 0xF) | (pair.get(1).copied().unwrap_or(0) << 4))
        .collect()
}

/// The code of element `i` in a nibble-packed buffer.
#[inline(always)]
pub fn unpack_nibble(packed: &[u8], i: usize) -> u8 {
    (packed[i / 2] >> ((i % 2) * 4)) & 0xF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_bit_layout() {
        for code in 0u8..16 {
            let sign = if code & 0x8 != 0 { -1.0 } else { 1.0 };
            let exp = ((code >> 1) & 0x3) as i32;
            let man = (code & 1) as f32;
            let mag = if exp == 0 {
                man * 0.5
            } else {
                (1.0 + man * 0.5) * 2f32.powi(exp - E2M1_EXPONENT_BIAS)
            };
            assert_eq!(e2m1_to_f32(code), sign * mag, "code {code:#x}");
            assert_eq!(f32_to_e2m1(e2m1_to_f32(code)), code);
        }
    }

    #[test]
    fn ties_go_to_even() {
        // docs/spec.md section 1.
        for (x, want) in [
            (0.25, 0.0),
            (0.75, 1.0),
            (1.25, 1.0),
            (1.75, 2.0),
            (2.5, 2.0),
            (3.5, 4.0),
            (5.0, 4.0),
            (7.0, 6.0),
            (1e30, 6.0),
            (f32::INFINITY, 6.0),
        ] {
            assert_eq!(e2m1_to_f32(f32_to_e2m1(x)), want, "{x}");
            assert_eq!(e2m1_to_f32(f32_to_e2m1(-x)), -want, "-{x}");
        }
        assert_eq!(f32_to_e2m1(-0.1), 0x8);
        assert_eq!(f32_to_e2m1(-0.0), 0x8);
    }

    #[test]
    fn just_off_ties() {
        let up = |x: f32| f32::from_bits(x.to_bits() + 1);
        let down = |x: f32| f32::from_bits(x.to_bits() - 1);
        assert_eq!(round_magnitude_nearest(up(0.25)), 0.5);
        assert_eq!(round_magnitude_nearest(down(0.75)), 0.5);
        assert_eq!(round_magnitude_nearest(up(2.5)), 3.0);
        assert_eq!(round_magnitude_nearest(down(5.0)), 4.0);
        assert_eq!(round_magnitude_nearest(up(5.0)), 6.0);
    }

    #[test]
    fn stochastic_is_unbiased_and_on_grid() {
        let a = 2.3f32;
        let n = 200_000;
        let mut sum = 0.0f64;
        for i in 0..n {
            let m = round_magnitude_stochastic(a, crate::rng::uniform_f32(11, i));
            assert!(m == 2.0 || m == 3.0);
            sum += m as f64;
        }
        assert!((sum / n as f64 - 2.3).abs() < 0.005);
        assert_eq!(round_magnitude_stochastic(6.0, 0.999), 6.0);
        assert_eq!(round_magnitude_stochastic(9.0, 0.0), 6.0);
        assert_eq!(round_magnitude_stochastic(1.5, 0.0), 1.5);
    }

    #[test]
    fn nibbles_low_first() {
        let packed = pack_nibbles(&[0x1, 0xF, 0x7]);
        assert_eq!(packed, vec![0xF1, 0x07]);
        assert_eq!(unpack_nibble(&packed, 0), 0x1);
        assert_eq!(unpack_nibble(&packed, 1), 0xF);
        assert_eq!(unpack_nibble(&packed, 2), 0x7);
    }
}
