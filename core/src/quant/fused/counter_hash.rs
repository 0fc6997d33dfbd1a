//! `crate::rng::counter_hash` (SplitMix64 of `seed + (index + 1) * golden`, docs/formats.md) on
//! pairs of `u32`: WGSL has no 64-bit integers, so the 64-bit wrapping arithmetic is spelled out
//! with `mul_hi`. Gives the stochastic-rounding uniforms of the fused kernels, bit for bit those
//! of `crate::rng::uniform_f32`.

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

/// `crate::rng::GOLDEN_GAMMA` = 0x9e37_79b9_7f4a_7c15, as (low, high) words.
const GOLDEN_LO: u32 = 0x7f4a_7c15;
const GOLDEN_HI: u32 = 0x9e37_79b9;
/// The two SplitMix64 finalizer multipliers 0xbf58_476d_1ce4_e5b9 and 0x94d0_49bb_1331_11eb.
const MIX1_LO: u32 = 0x1ce4_e5b9;
const MIX1_HI: u32 = 0xbf58_476d;
const MIX2_LO: u32 = 0x1331_11eb;
const MIX2_HI: u32 = 0x94d0_49bb;

/// `(a * b) mod 2^64` for 64-bit values given as (low, high) words.
#[cube]
fn mul64(a_lo: u32, a_hi: u32, b_lo: u32, b_hi: u32) -> (u32, u32) {
    let lo = a_lo * b_lo;
    let hi = u32::mul_hi(a_lo, b_lo) + a_lo * b_hi + a_hi * b_lo;
    (lo, hi)
}

/// `z ^ (z >> s)` for `0 < s < 32`.
#[cube]
fn xor_shift64(lo: u32, hi: u32, #[comptime] s: u32) -> (u32, u32) {
    let shifted_lo = (lo >> s) | (hi << (32u32 - s));
    let shifted_hi = hi >> s;
    (lo ^ shifted_lo, hi ^ shifted_hi)
}

/// The top 24 bits of `counter_hash(seed, index)`, i.e. `uniform_f32(seed, index) * 2^24`.
#[cube]
pub fn counter_hash_u24(seed_lo: u32, seed_hi: u32, index: u32) -> u32 {
    // (index + 1) as a 64-bit value, then times the golden gamma, plus the seed.
    let n_lo = index + 1u32;
    let n_hi = select(n_lo == 0u32, 1u32, 0u32);
    let (g_lo, g_hi) = mul64(n_lo, n_hi, GOLDEN_LO, GOLDEN_HI);
    let z_lo = seed_lo + g_lo;
    let carry = select(z_lo < seed_lo, 1u32, 0u32);
    let z_hi = seed_hi + g_hi + carry;
    // SplitMix64's finalizer.
    let (a_lo, a_hi) = xor_shift64(z_lo, z_hi, 30u32);
    let (b_lo, b_hi) = mul64(a_lo, a_hi, MIX1_LO, MIX1_HI);
    let (c_lo, c_hi) = xor_shift64(b_lo, b_hi, 27u32);
    let (d_lo, d_hi) = mul64(c_lo, c_hi, MIX2_LO, MIX2_HI);
    let (_e_lo, e_hi) = xor_shift64(d_lo, d_hi, 31u32);
    // hash >> 40.
    e_hi >> 8u32
}
