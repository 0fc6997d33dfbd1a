//! Counter-based random numbers: `hash(seed, index)` gives the same value on every platform, in
//! any order and in parallel, which is what stochastic rounding, noise injection and the WGSL
//! shaders need to agree bit for bit. The exact definition is in `docs/formats.md`.
//!
//! The transcendental functions of the normal samplers (`ln`, `cos`) come from the pure-Rust
//! `libm` crate, not from the platform's C library: the system `log`/`cos` differ between glibc
//! and the wasm32 target by an ulp now and then, and the browser playground must draw the very
//! same tensors as `aqn-native quant-error` for the same seed.

/// The golden-ratio increment of SplitMix64.
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX_MUL_1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX_MUL_2: u64 = 0x94d0_49bb_1331_11eb;
/// 2^-24: the weight of one unit of a 24-bit uniform.
const UNIT_24: f32 = 1.0 / 16_777_216.0;

/// The SplitMix64 finalizer (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014).
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(MIX_MUL_1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX_MUL_2);
    z ^ (z >> 31)
}

/// `mix64(seed + (index + 1) * GOLDEN_GAMMA)`: the `index`-th output of a SplitMix64 stream.
#[inline(always)]
pub fn counter_hash(seed: u64, index: u64) -> u64 {
    mix64(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// A uniform f32 in `[0, 1)` with 24 random bits, exact in f32.
#[inline(always)]
pub fn uniform_f32(seed: u64, index: u64) -> f32 {
    (counter_hash(seed, index) >> 40) as f32 * UNIT_24
}

/// A uniform f64 in `(0, 1]` with 53 random bits (never 0, so `ln` is finite).
#[inline(always)]
pub fn uniform_open_f64(seed: u64, index: u64) -> f64 {
    ((counter_hash(seed, index) >> 11) + 1) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// A standard normal sample by Box-Muller over two counter draws (`2 * index`, `2 * index + 1`).
#[inline]
pub fn normal_f64(seed: u64, index: u64) -> f64 {
    let u1 = uniform_open_f64(seed, index.wrapping_mul(2));
    let u2 = uniform_open_f64(seed, index.wrapping_mul(2).wrapping_add(1));
    (-2.0 * libm::log(u1)).sqrt() * libm::cos(core::f64::consts::TAU * u2)
}

/// A small sequential generator over the same hash, for code that draws values one after another
/// (data generation, sampling). Its state is one counter, so it is trivially saved and restored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CounterRng {
    /// The stream's seed.
    pub seed: u64,
    /// How many values have been drawn.
    pub counter: u64,
}

impl CounterRng {
    /// A generator at the start of the stream `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let v = counter_hash(self.seed, self.counter);
        self.counter = self.counter.wrapping_add(1);
        v
    }

    /// A uniform f64 in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-32 for
    /// the sizes used here).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A standard normal sample (Box-Muller, one pair of draws per sample).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / 9_007_199_254_740_992.0);
        let u2 = self.next_f64();
        (-2.0 * libm::log(u1)).sqrt() * libm::cos(core::f64::consts::TAU * u2)
    }

    /// A seed for an independent child stream, derived from this one.
    pub fn fork(&mut self) -> u64 {
        self.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // SplitMix64 seeded with 1234567: the published first outputs of the reference C code.
        let mut state: u64 = 1_234_567;
        let mut next = || {
            state = state.wrapping_add(GOLDEN_GAMMA);
            mix64(state)
        };
        assert_eq!(next(), 6_457_827_717_110_365_317);
        assert_eq!(next(), 3_203_168_211_198_807_973);
        assert_eq!(counter_hash(1_234_567, 2), 9_817_491_932_198_370_423);
    }

    #[test]
    fn uniform_in_range_and_balanced() {
        let n = 100_000;
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = uniform_f32(7, i);
            assert!((0.0..1.0).contains(&u));
            sum += u as f64;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.005);
    }

    #[test]
    fn normal_moments() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0, 0.0);
        for i in 0..n {
            let z = normal_f64(3, i);
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }
}
