//! E8M0, the shared block scale of the MX formats (OCP Microscaling v1.0, section 5.4.1):
//! an unsigned exponent byte, bias 127, value `2^(b - 127)`; `0xFF` is NaN; no zero, no sign.

/// Exponent bias of E8M0.
pub const E8M0_EXPONENT_BIAS: i32 = 127;
/// The NaN byte.
pub const E8M0_NAN: u8 = 0xFF;
/// Smallest representable exponent (byte 0x00).
pub const E8M0_MIN_EXPONENT: i32 = -127;
/// Largest representable exponent (byte 0xFE).
pub const E8M0_MAX_EXPONENT: i32 = 127;

/// Exactly `2^e` as an f32, for `e` in `[-149, 127]` (subnormal results below `2^-126`).
#[inline(always)]
pub fn exp2i(e: i32) -> f32 {
    debug_assert!((-149..=127).contains(&e));
    if e >= -126 {
        f32::from_bits(((e + 127) as u32) << 23)
    } else {
        f32::from_bits(1u32 << (e + 149))
    }
}

/// The byte of the scale `2^e`; `e` must lie in `[-127, 127]`.
#[inline(always)]
pub fn exponent_to_e8m0(e: i32) -> u8 {
    debug_assert!((E8M0_MIN_EXPONENT..=E8M0_MAX_EXPONENT).contains(&e));
    (e + E8M0_EXPONENT_BIAS) as u8
}

/// The value of an E8M0 byte: `2^(b - 127)`, or NaN for `0xFF`.
#[inline]
pub fn e8m0_to_f32(b: u8) -> f32 {
    if b == E8M0_NAN {
        f32::NAN
    } else {
        exp2i(b as i32 - E8M0_EXPONENT_BIAS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte() {
        for b in 0u8..=254 {
            assert_eq!(e8m0_to_f32(b), 2f64.powi(b as i32 - 127) as f32, "byte {b}");
            assert_eq!(exponent_to_e8m0(b as i32 - 127), b);
        }
        assert!(e8m0_to_f32(0xFF).is_nan());
        assert_eq!(e8m0_to_f32(0).to_bits(), 0x0040_0000); // 2^-127 is subnormal
    }

    #[test]
    fn exp2i_range() {
        for e in -149..=127 {
            assert_eq!(exp2i(e) as f64, 2f64.powi(e), "2^{e}");
        }
    }
}
