//! Exact power-of-two arithmetic with ordinary tensor ops (no bit casts), so that the composed
//! quantizer runs on every backend. Multiplying by a power of two is exact in f32 whenever the
//! result is a normal number, and every step below stays in that range.

use burn::tensor::Tensor;

/// Ladder of exponents: 64 + 32 + ... + 1 = 127 covers the whole f32 exponent range.
const LADDER: [i32; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `2^k` as f32 (exact for `k` in `[-126, 127]`).
pub fn pow2(k: i32) -> f32 {
    crate::formats::e8m0::exp2i(k)
}

/// For `a >= 0` (finite), returns `(p, r)` with `p` the largest power of two `<= a` and
/// `r = a / p` in `[1, 2)`. Exact for `a >= 2^-126`; for smaller `a` (zero, subnormals) `p` is
/// at most `2^-126` and `r` meaningless; callers clamp the scale to their minimum there.
pub fn floor_pow2<const D: usize>(a: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let mut r = a;
    let mut p = r.ones_like();
    // Scale large values down: while r >= 2^k, divide by 2^k.
    for k in LADDER {
        let big = r.clone().greater_equal_elem(pow2(k));
        r = r.clone().mask_where(big.clone(), r.mul_scalar(pow2(-k)));
        p = p.clone().mask_where(big, p.mul_scalar(pow2(k)));
    }
    // Scale small values up: while r * 2^k < 2, multiply by 2^k.
    for k in LADDER {
        let small = r.clone().lower_elem(pow2(1 - k));
        r = r.clone().mask_where(small.clone(), r.mul_scalar(pow2(k)));
        p = p.clone().mask_where(small, p.mul_scalar(pow2(-k)));
    }
    (p, r)
}
