// IEEE-754 binary32 arithmetic on bit patterns (u32), correctly rounded to nearest, ties to even,
// with subnormal inputs and results, signed zeros, infinities and NaN.
//
// Why: WGSL has no f64 and no u64, GPUs may flush f32 subnormals to zero, and WGSL only promises
// 2.5 ulp for `/`. The quantizers must match the Rust reference (core/src/formats) bit for bit,
// including subnormal inputs and the subnormal scale 2^-127, so every floating-point step that can
// round is done here with integer operations. Rust's f32 `+ - * /` give the same bits on x86-64
// and wasm32 (IEEE, no flush-to-zero); these functions give them on any GPU.
//
// This file is the first part of one module: the host concatenates softfloat.wgsl,
// quantize.wgsl and error_stats.wgsl (aqn_shaders::WGSL).

const SIGN_BIT: u32 = 0x80000000u;
const ABS_MASK: u32 = 0x7fffffffu;
const INF_BITS: u32 = 0x7f800000u;
const QNAN_BITS: u32 = 0x7fc00000u;
const MANT_MASK: u32 = 0x007fffffu;
const IMPLICIT_BIT: u32 = 0x00800000u;
const ONE_BITS: u32 = 0x3f800000u;

fn is_finite_bits(b: u32) -> bool {
    return (b & ABS_MASK) < INF_BITS;
}

// The integer significand of a finite magnitude: value = sig * 2^exp (exp from sf_exp).
fn sf_sig(m: u32) -> u32 {
    let field = (m >> 23u) & 0xffu;
    if (field == 0u) {
        return m & MANT_MASK;
    }
    return (m & MANT_MASK) | IMPLICIT_BIT;
}

fn sf_exp(m: u32) -> i32 {
    let field = i32((m >> 23u) & 0xffu);
    if (field == 0) {
        return -149;
    }
    return field - 150;
}

// 2^k as f32 bits, exactly, for k in [-149, 127].
fn pow2_bits(k: i32) -> u32 {
    if (k >= -126) {
        return u32(k + 127) << 23u;
    }
    return 1u << u32(k + 149);
}

// sig / 2^s rounded to nearest, ties to even; `sticky` says that nonzero bits lie below sig's LSB.
fn rshift_rne(sig: u32, s: u32, sticky: bool) -> u32 {
    if (s == 0u) {
        return sig;
    }
    if (s > 32u) {
        return 0u; // sig < 2^32 <= 2^(s-1): below one half
    }
    var q: u32;
    var rem: u32;
    var half: u32;
    if (s == 32u) {
        q = 0u;
        rem = sig;
        half = 0x80000000u;
    } else {
        q = sig >> s;
        rem = sig & ((1u << s) - 1u);
        half = 1u << (s - 1u);
    }
    if (rem > half || (rem == half && (sticky || (q & 1u) == 1u))) {
        q = q + 1u;
    }
    return q;
}

// sign | the f32 nearest (ties to even) to (sig + f) * 2^exp, where 0 <= f < 1 and f > 0 iff
// `sticky`. Overflow gives infinity; results below 2^-126 are rounded onto the subnormal grid.
fn sf_pack(sign: u32, sig: u32, exp: i32, sticky: bool) -> u32 {
    if (sig == 0u) {
        return sign;
    }
    let p = i32(firstLeadingBit(sig));
    // Normal result: keep 24 bits (shift by p - 23); subnormal: align to 2^-149.
    var s = p - 23;
    if (exp + s + 150 < 1) {
        s = -149 - exp;
    }
    var m: u32;
    if (s > 0) {
        m = rshift_rne(sig, u32(s), sticky);
    } else {
        m = sig << u32(-s);
    }
    // value = m * 2^base with m in [2^23, 2^24] (normal) or base = -149 (subnormal): in both cases
    // the bits are ((base + 149) << 23) + m, the implicit bit of m adding the exponent's missing 1
    // and a rounding carry to 2^24 bumping the exponent.
    let base = exp + s;
    if (base + 149 >= 254) {
        return sign | INF_BITS;
    }
    let bits = (u32(base + 149) << 23u) + m;
    if (bits >= INF_BITS) {
        return sign | INF_BITS;
    }
    return sign | bits;
}

// The full 64-bit product of two u32 as (low word, high word).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// a * b.
fn sf_mul(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN_BIT;
    let ma = a & ABS_MASK;
    let mb = b & ABS_MASK;
    if (ma > INF_BITS || mb > INF_BITS) {
        return QNAN_BITS;
    }
    if (ma == INF_BITS || mb == INF_BITS) {
        if (ma == 0u || mb == 0u) {
            return QNAN_BITS;
        }
        return sign | INF_BITS;
    }
    if (ma == 0u || mb == 0u) {
        return sign;
    }
    let wide = mul_wide(sf_sig(ma), sf_sig(mb));
    var exp = sf_exp(ma) + sf_exp(mb);
    var sig = wide.x;
    var sticky = false;
    if (wide.y != 0u) {
        let k = firstLeadingBit(wide.y) + 1u; // 1..16
        sig = (wide.y << (32u - k)) | (wide.x >> k);
        sticky = (wide.x & ((1u << k) - 1u)) != 0u;
        exp = exp + i32(k);
    }
    return sf_pack(sign, sig, exp, sticky);
}

// a + b.
fn sf_add(a: u32, b: u32) -> u32 {
    var x = a;
    var y = b;
    let mx = x & ABS_MASK;
    let my = y & ABS_MASK;
    if (mx > INF_BITS || my > INF_BITS) {
        return QNAN_BITS;
    }
    if (mx == INF_BITS) {
        if (my == INF_BITS && ((x ^ y) & SIGN_BIT) != 0u) {
            return QNAN_BITS;
        }
        return x;
    }
    if (my == INF_BITS) {
        return y;
    }
    if (mx == 0u && my == 0u) {
        return x & y; // -0 + -0 = -0, otherwise +0
    }
    if (mx < my) {
        x = b;
        y = a;
    }
    let ax = x & ABS_MASK;
    let ay = y & ABS_MASK;
    if (ay == 0u) {
        return x;
    }
    let ex = sf_exp(ax);
    let d = u32(ex - sf_exp(ay)); // >= 0: |x| >= |y|
    // Six guard bits: enough for a correctly rounded sum with the sticky bit.
    let big = sf_sig(ax) << 6u;
    let small = sf_sig(ay) << 6u;
    var shifted = 0u;
    var sticky = false;
    if (d >= 31u) {
        sticky = true;
    } else {
        shifted = small >> d;
        sticky = (small & ((1u << d) - 1u)) != 0u;
    }
    var sum: u32;
    if (((x ^ y) & SIGN_BIT) == 0u) {
        sum = big + shifted;
    } else {
        // big - (shifted + f) = (big - shifted - 1) + (1 - f) with 0 < 1 - f < 1.
        sum = big - shifted;
        if (sticky) {
            sum = sum - 1u;
        }
        if (sum == 0u && !sticky) {
            return 0u; // exact cancellation gives +0
        }
    }
    return sf_pack(x & SIGN_BIT, sum, ex - 6, sticky);
}

// a / b.
fn sf_div(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN_BIT;
    let ma = a & ABS_MASK;
    let mb = b & ABS_MASK;
    if (ma > INF_BITS || mb > INF_BITS) {
        return QNAN_BITS;
    }
    if (ma == INF_BITS) {
        if (mb == INF_BITS) {
            return QNAN_BITS;
        }
        return sign | INF_BITS;
    }
    if (mb == INF_BITS) {
        return sign;
    }
    if (mb == 0u) {
        if (ma == 0u) {
            return QNAN_BITS;
        }
        return sign | INF_BITS;
    }
    if (ma == 0u) {
        return sign;
    }
    // Normalize both significands to 24 bits.
    var sa = sf_sig(ma);
    var ea = sf_exp(ma);
    let la = 23u - firstLeadingBit(sa);
    sa = sa << la;
    ea = ea - i32(la);
    var sb = sf_sig(mb);
    var eb = sf_exp(mb);
    let lb = 23u - firstLeadingBit(sb);
    sb = sb << lb;
    eb = eb - i32(lb);
    if (sa < sb) {
        sa = sa << 1u;
        ea = ea - 1;
    }
    // Long division: 26 quotient bits (1 integer, 25 fraction), the remainder as sticky bit.
    var q = 0u;
    var r = sa;
    for (var i = 0u; i < 26u; i = i + 1u) {
        q = q << 1u;
        if (r >= sb) {
            r = r - sb;
            q = q | 1u;
        }
        r = r << 1u;
    }
    return sf_pack(sign, q, ea - eb - 25, r != 0u);
}
