//! BF16: the top 16 bits of an f32, rounded to nearest even.

/// Rounding bias for the low 16 bits (ties are settled by the kept LSB).
const BF16_ROUND_BIAS: u32 = 0x7FFF;
/// The quiet-NaN bit of a bf16.
const BF16_QUIET_NAN: u16 = 0x0040;

/// The bf16 bit pattern of `x`, nearest even; NaN stays NaN (quiet, sign kept); values that round
/// past the largest bf16 become +-Inf.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | BF16_QUIET_NAN;
    }
    let lsb = (bits >> 16) & 1;
    (bits.wrapping_add(BF16_ROUND_BIAS + lsb) >> 16) as u16
}

/// The f32 value of a bf16 bit pattern (exact).
#[inline(always)]
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `x` rounded to bf16 precision, as an f32.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
        assert_eq!(
            round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(round_to_bf16(f32::MAX), f32::INFINITY);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
        // f32 subnormals keep their bf16 subnormal value.
        let tiny = f32::from_bits(0x0001_8000);
        assert_eq!(round_to_bf16(tiny).to_bits(), 0x0002_0000);
    }

    #[test]
    fn agrees_with_half_crate_rules() {
        // Every bf16 value survives a round trip.
        for b in (0u16..=0xFFFF).step_by(7) {
            let v = bf16_bits_to_f32(b);
            if v.is_nan() {
                continue;
            }
            assert_eq!(f32_to_bf16_bits(v), b);
        }
    }
}
