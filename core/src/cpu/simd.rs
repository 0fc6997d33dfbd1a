//! Vector-friendly scalar code for the fused CPU kernels: an `exp` without a library call, sums
//! with a fixed number of independent lanes (so the compiler vectorizes them and the result does
//! not depend on it), and [`multiversion!`], which compiles a loop once per instruction set and
//! picks the best the CPU has at run time (the binary itself targets baseline x86-64).
//!
//! The lane sums fix their order (16 partial sums, then a fixed tree), so every instruction set
//! gives the same bits: only the speed differs.

/// Partial sums of [`sum`] and [`dot`].
pub const LANES: usize = 16;

/// 1.5 * 2^23: adding it to an integer-valued float under 2^22 in magnitude keeps the sum in
/// `[2^23, 2^24)`, where the mantissa's low bits count whole units (so `bits(v + M) - bits(M)`
/// is `v`, negative or not).
const EXP_MAGIC: f32 = 12_582_912.0;

/// `e^x` to about 2 ulp (Cephes' `expf`: `2^n` times a degree-6 polynomial on
/// `[-ln2/2, ln2/2]`), 0 below `-88.37` (as the library's underflow), `+inf` from `127.5 ln 2 =
/// 88.376` (the library's overflow is at 88.72: `2^128` has no exponent bits; the kernels take
/// `exp` of values at most 0, and of `-x` in a sigmoid, where `1 / (1 + inf) = 0` is the f32
/// result anyway).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const HI: f32 = 88.722_83;
    const LO: f32 = -88.376_26;
    let xc = x.clamp(LO, HI);
    let fx = (xc * LOG2E + 0.5).floor();
    let r = xc - fx * C1 - fx * C2;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // 2^fx from its exponent bits: fx in [-127, 128]; -127 gives the bits of 0.0 (underflow).
    // The biased exponent fx + 127 is read from the mantissa bits of fx + 127 + EXP_MAGIC,
    // not by a float-to-int cast, whose saturation checks cost as much as half the polynomial
    // (a NaN x gives other bits here; it is returned below).
    let biased = ((fx + (127.0 + EXP_MAGIC)).to_bits() as i32) - EXP_MAGIC.to_bits() as i32;
    let pow2 = f32::from_bits((biased.clamp(0, 255) as u32) << 23);
    let e = y * pow2;
    if x > HI {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        e
    }
}

/// `1 / (1 + e^-x)`.
/// `x[i] = exp(x[i] - shift)` in place, returning their sum: [`sum`] of the results, bit for bit
/// (the same lanes, in the same order), in one pass.
#[inline(always)]
pub fn exp_sum(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - shift);
            *a += *v;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
        *v = exp(*v - shift);
        *a += *v;
    }
    combine(acc)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The sum of `x` in [`LANES`] interleaved partial sums, combined pairwise.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += *v;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += *v;
    }
    combine(acc)
}

/// `sum(a[i] * b[i])` in [`LANES`] interleaved partial sums.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for ((s, x), y) in acc.iter_mut().zip(ca.remainder()).zip(cb.remainder()) {
        *s += x * y;
    }
    combine(acc)
}

/// The largest value of `x` (`-inf` for an empty slice; NaN propagates as `f32::max` does not).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = if *v > *a { *v } else { *a };
    }
    acc.into_iter()
        .fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m })
}

#[inline(always)]
fn combine(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0]
}

/// Defines `fn $name(args) body` compiled three times (AVX-512, AVX2 + FMA, baseline) and
/// dispatched on the CPU's features at run time. The body must not call `mul_add` (that would
/// give each version other bits); the helpers above are `inline(always)` so they compile into
/// each version.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_the_library() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3.0 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn exp_reads_the_exponent_as_the_cast_would() {
        // Every fx the clamped argument can give, and the values around the clamp bounds.
        for fx in -130..=130 {
            let f = fx as f32;
            let biased = ((f + (127.0 + EXP_MAGIC)).to_bits() as i32) - EXP_MAGIC.to_bits() as i32;
            assert_eq!(biased, fx + 127, "fx = {fx}");
        }
        let mut x = -89.0f32;
        while x < 88.37 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                got == 0.0 && want < 1.2e-38
                    || ((got - want) / want).abs() < 3.0 * f32::EPSILON as f64,
                "exp({x}) = {got}, not {want}"
            );
            x += 0.001;
        }
        assert_eq!(exp(88.377), f32::INFINITY);
    }

    #[test]
    fn exp_sum_is_exp_then_sum_bit_for_bit() {
        for n in [0, 5, 16, 37, 130] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
            let mut fused = x.clone();
            let total = exp_sum(&mut fused, 2.5);
            let plain: Vec<f32> = x.iter().map(|&v| exp(v - 2.5)).collect();
            assert_eq!(fused, plain, "values, n = {n}");
            assert_eq!(total.to_bits(), sum(&plain).to_bits(), "sum, n = {n}");
        }
    }

    #[test]
    fn lane_sums_are_sums() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        assert_eq!(sum(&x), x.iter().sum::<f32>());
        assert_eq!(dot(&x, &x), x.iter().map(|v| v * v).sum::<f32>());
        assert_eq!(max(&x), 18.0);
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
