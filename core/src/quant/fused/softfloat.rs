//! IEEE-754 binary32 arithmetic on bit patterns (`u32`), correctly rounded to nearest, ties to
//! even, with subnormal inputs and results, signed zeros and infinities: the CubeCL twin of
//! `shaders/wgsl/softfloat.wgsl`.
//!
//! Why: GPU drivers may flush f32 subnormals to zero (Vulkan and WGSL allow it), WGSL promises
//! only 2.5 ulp for `/`, and CUDA's fast-math paths approximate. The fused quantizers must equal the
//! Rust reference (`crate::formats`) bit for bit, including subnormal inputs and the subnormal MX
//! scale 2^-127, so every floating-point step that can round is done here with integer operations,
//! which every CubeCL runtime executes exactly.

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

/// The sign bit of an f32.
pub const SIGN_BIT: u32 = 0x8000_0000;
/// Everything but the sign bit.
pub const ABS_MASK: u32 = 0x7fff_ffff;
/// +Inf; magnitudes at or above it are Inf or NaN.
pub const INF_BITS: u32 = 0x7f80_0000;
/// The quiet NaN the reference writes (`f32::NAN`).
pub const QNAN_BITS: u32 = 0x7fc0_0000;
/// The mantissa field.
pub const MANT_MASK: u32 = 0x007f_ffff;
/// The implicit leading bit of a normal significand.
pub const IMPLICIT_BIT: u32 = 0x0080_0000;
/// 1.0.
pub const ONE_BITS: u32 = 0x3f80_0000;
/// Exponent of the subnormal grid step, 2^-149.
pub const SUBNORMAL_EXP: i32 = -149;

/// The integer significand of a finite magnitude `m`: `value = sig * 2^sf_exp(m)`.
#[cube]
pub fn sf_sig(m: u32) -> u32 {
    let field = (m >> 23u32) & 0xffu32;
    let mant = m & MANT_MASK;
    select(field == 0u32, mant, mant | IMPLICIT_BIT)
}

/// The exponent of [`sf_sig`]'s significand.
#[cube]
pub fn sf_exp(m: u32) -> i32 {
    let field = i32::cast_from((m >> 23u32) & 0xffu32);
    select(field == 0i32, SUBNORMAL_EXP, field - 150i32)
}

/// Index of the highest set bit of a nonzero `v` (WGSL's `firstLeadingBit`).
#[cube]
pub fn top_bit(v: u32) -> u32 {
    31u32 - v.leading_zeros()
}

/// `sig / 2^s` rounded to nearest, ties to even; `sticky` says that nonzero bits lie below sig's
/// least significant bit. Shifts of 32 and more are spelled out (GPU shifts are taken mod 32).
#[cube]
pub fn rshift_rne(sig: u32, s: u32, sticky: bool) -> u32 {
    let mut q = 0u32;
    let mut rem = 0u32;
    let mut half = 0u32;
    if s == 0u32 {
        q = sig;
    } else if s < 32u32 {
        q = sig >> s;
        rem = sig & ((1u32 << s) - 1u32);
        half = 1u32 << (s - 1u32);
    } else if s == 32u32 {
        rem = sig;
        half = SIGN_BIT;
    }
    // s > 32: sig < 2^32 <= 2^(s-1) is below one half, q stays 0. half == 0 means no rounding.
    let odd = (q & 1u32) == 1u32;
    let up = half != 0u32 && (rem > half || (rem == half && (sticky || odd)));
    q + select(up, 1u32, 0u32)
}

/// `sign |` the f32 nearest (ties to even) to `(sig + f) * 2^exp`, where `0 <= f < 1` and `f > 0`
/// iff `sticky`. Overflow gives infinity; results below 2^-126 land on the subnormal grid.
#[cube]
pub fn sf_pack(sign: u32, sig: u32, exp: i32, sticky: bool) -> u32 {
    let mut out = sign;
    if sig != 0u32 {
        let p = i32::cast_from(top_bit(sig));
        // Normal result: keep 24 bits (shift by p - 23); subnormal: align to 2^-149.
        let mut s = p - 23i32;
        if exp + s + 150i32 < 1i32 {
            s = SUBNORMAL_EXP - exp;
        }
        let m = if s > 0i32 {
            rshift_rne(sig, u32::cast_from(s), sticky)
        } else {
            sig << u32::cast_from(-s)
        };
        // value = m * 2^base with m in [2^23, 2^24] (normal) or base = -149 (subnormal): in both
        // cases the bits are ((base + 149) << 23) + m, the implicit bit of m adding the exponent's
        // missing 1 and a rounding carry to 2^24 bumping the exponent.
        let base = exp + s;
        if base + 149i32 >= 254i32 {
            out = sign | INF_BITS;
        } else {
            let bits = (u32::cast_from(base + 149i32) << 23u32) + m;
            out = sign | select(bits >= INF_BITS, INF_BITS, bits);
        }
    }
    out
}

/// `a * b`.
#[cube]
pub fn sf_mul(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN_BIT;
    let ma = a & ABS_MASK;
    let mb = b & ABS_MASK;
    let mut out = sign;
    if ma > INF_BITS || mb > INF_BITS {
        out = QNAN_BITS;
    } else if ma == INF_BITS || mb == INF_BITS {
        out = select(ma == 0u32 || mb == 0u32, QNAN_BITS, sign | INF_BITS);
    } else if ma != 0u32 && mb != 0u32 {
        let sa = sf_sig(ma);
        let sb = sf_sig(mb);
        let lo = sa * sb;
        let hi = u32::mul_hi(sa, sb);
        let mut exp = sf_exp(ma) + sf_exp(mb);
        let mut sig = lo;
        let mut sticky = false;
        if hi != 0u32 {
            // Keep the top 32 bits of the 48-bit product; the rest is sticky.
            let k = top_bit(hi) + 1u32; // 1..16
            sig = (hi << (32u32 - k)) | (lo >> k);
            sticky = (lo & ((1u32 << k) - 1u32)) != 0u32;
            exp += i32::cast_from(k);
        }
        out = sf_pack(sign, sig, exp, sticky);
    }
    out
}

/// `a / b`.
#[cube]
pub fn sf_div(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN_BIT;
    let ma = a & ABS_MASK;
    let mb = b & ABS_MASK;
    let mut out = sign;
    if ma > INF_BITS || mb > INF_BITS {
        out = QNAN_BITS;
    } else if ma == INF_BITS {
        out = select(mb == INF_BITS, QNAN_BITS, sign | INF_BITS);
    } else if mb == INF_BITS {
        out = sign;
    } else if mb == 0u32 {
        out = select(ma == 0u32, QNAN_BITS, sign | INF_BITS);
    } else if ma != 0u32 {
        // Normalize both significands to 24 bits.
        let la = 23u32 - top_bit(sf_sig(ma));
        let mut sa = sf_sig(ma) << la;
        let mut ea = sf_exp(ma) - i32::cast_from(la);
        let lb = 23u32 - top_bit(sf_sig(mb));
        let sb = sf_sig(mb) << lb;
        let eb = sf_exp(mb) - i32::cast_from(lb);
        if sa < sb {
            sa <<= 1u32;
            ea -= 1i32;
        }
        // Long division: 26 quotient bits (1 integer, 25 fraction), the remainder as sticky bit.
        let mut q = 0u32;
        let mut r = sa;
        for _bit in 0..26u32 {
            q <<= 1u32;
            if r >= sb {
                r -= sb;
                q |= 1u32;
            }
            r <<= 1u32;
        }
        out = sf_pack(sign, q, ea - eb - 25i32, r != 0u32);
    }
    out
}

/// `a * 2^k` for a finite magnitude `a`, exactly rounded (ties to even) onto the subnormal grid
/// when the result is that small: the MX element scaling `v / 2^e`.
#[cube]
pub fn sf_scale_pow2(a: u32, k: i32) -> u32 {
    sf_pack(0u32, sf_sig(a), sf_exp(a) + k, false)
}
