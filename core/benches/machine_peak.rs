//! The machine's own limits, for reading the model benchmarks against them
//! (scripts/scale_bench.sh): memory bandwidth and the f32 FMA peak of Rayon's threads.
//!
//! - `copy_gb_per_s`: STREAM's copy (`b[i] = a[i]`) over 2 x 256 MiB, bytes read plus bytes
//!   written per second;
//! - `read_gb_per_s`: a read-only pass over 256 MiB (what a decoding step does with the weights);
//! - `fma_gflop_per_s`: each thread runs 12 independent chains of 8-lane fused multiply-adds
//!   (AVX2 + FMA where the CPU has them; otherwise scalar `mul_add` chains, which report what they
//!   measure), 2 flops per lane per FMA.
//!
//! Each is run `AQN_BENCH_WARMUP` times untimed, then `AQN_BENCH_REPEATS` times; the best
//! (memory) or median (FMA) run is reported as one JSON line on stdout. Threads:
//! RAYON_NUM_THREADS (default: every core).
//!
//! `cargo bench -p aqn-core --bench machine_peak`

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

/// f32 values of each memory buffer (256 MiB: far past any cache).
const VALUES: usize = 64 << 20;
/// Values per parallel task of the memory passes.
const CHUNK: usize = 1 << 20;
/// FMA iterations per thread and run.
const FMA_ITERS: usize = 50_000_000;
/// Independent accumulators per thread (enough to cover the FMA latency on two pipes).
const CHAINS: usize = 12;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a non-negative integer")),
        Err(_) => default,
    }
}

/// Runs `f` `warmup` times, then `repeats` times, returning the sorted seconds.
fn times(warmup: usize, repeats: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

/// One thread's FMA chains: returns a value that depends on every chain.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iters: usize, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(seed); CHAINS];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm256_fmadd_ps(*c, a, b);
        }
    }
    let mut lanes = [0.0f32; 8];
    let mut total = _mm256_setzero_ps();
    for c in acc {
        total = _mm256_add_ps(total, c);
    }
    // SAFETY: 8 lanes are stored into 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    lanes.iter().sum()
}

/// The same count of scalar chains (a CPU without AVX2/FMA).
fn fma_chains_scalar(iters: usize, seed: f32) -> f32 {
    let mut acc = [seed; CHAINS * 8];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = c.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// Whether the CPU has AVX2 and FMA.
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn fma_chains(iters: usize, seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { fma_chains_avx2(iters, seed) };
    }
    fma_chains_scalar(iters, seed)
}

fn main() {
    let warmup = env_usize("AQN_BENCH_WARMUP", 1);
    let repeats = env_usize("AQN_BENCH_REPEATS", 5);
    let threads = rayon::current_num_threads();
    let bytes = (VALUES * std::mem::size_of::<f32>()) as f64;

    let a: Vec<f32> = (0..VALUES).into_par_iter().map(|i| i as f32).collect();
    let mut b = vec![0.0f32; VALUES];
    let copy = times(warmup, repeats, || {
        b.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        black_box(&mut b);
    });
    let read = times(warmup, repeats, || {
        let x: u32 = a
            .par_chunks(CHUNK)
            .map(|c| c.iter().fold(0u32, |x, v| x ^ v.to_bits()))
            .reduce(|| 0, |p, q| p ^ q);
        black_box(x);
    });
    drop((a, b));

    let fma = times(warmup.min(1), repeats, || {
        let s: f32 = (0..threads)
            .into_par_iter()
            .map(|t| fma_chains(black_box(FMA_ITERS), t as f32))
            .sum();
        black_box(s);
    });
    let flops = (2 * 8 * CHAINS * FMA_ITERS * threads) as f64;
    println!(
        "{{\"threads\":{threads},\"copy_gb_per_s\":{:.2},\"read_gb_per_s\":{:.2},\
         \"fma_gflop_per_s\":{:.1},\"avx2_fma\":{}}}",
        2.0 * bytes / copy[0] / 1e9,
        bytes / read[0] / 1e9,
        flops / fma[fma.len() / 2] / 1e9,
        avx2_fma(),
    );
}
