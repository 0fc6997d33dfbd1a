//! The packed projections of a Qwen2.5-1.5B decoding step on the CPU: `y = x Q(W)^T` for the
//! weight shapes of the model, by the few-row kernel (`quant::packed::gemm::packed_gemm`, codes
//! decoded in registers) and by the tiled path (`PackedWeight::decode_rows` tiles of
//! `quant::packed::TILE_ELEMENTS` values, then the GEMM `cpu::linear`), for 1 to 64 rows of `x`.
//!
//! Each case runs `AQN_BENCH_WARMUP` times untimed, then `AQN_BENCH_REPEATS` times; the fastest
//! run is reported (robust to other work on the machine), with the least CPU time the process
//! spent in one run (`cpu_seconds`, all threads: what to compare variants by on a busy
//! machine), as one JSON line per case on stdout:
//! the weight's bytes read per second (`weight_gb_per_s`, against the memory bandwidth of
//! `--bench machine_peak`) and the multiply-adds per second (`gflop_per_s`, 2 per weight and
//! row, against its FMA peak).
//!
//! `cargo bench -p aqn-core --bench packed_gemm` (env: AQN_BENCH_ROWS="1 2 8 16 32 64",
//! AQN_BENCH_FORMATS="nvfp4 mxfp4 bf16", AQN_BENCH_PATHS="kernel tiles", AQN_BENCH_WEIGHTS (the
//! weight names to run, default all); threads:
//! RAYON_NUM_THREADS, with MATMUL_NUM_THREADS=1 as the programs set it)
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::hint::black_box;
use std::time::Instant;

use aqn_core::formats::QuantSpec;
use aqn_core::quant::packed::gemm::{packed_gemm, sgemm_order_available};
use aqn_core::quant::packed::{PackedWeight, TILE_ELEMENTS};
use aqn_core::rng::normal_f64;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// `[out, in]` of the projections of one decoder layer (gate and up share a shape) and a
/// quarter of the tied LM head (151936 rows in the model).
const SHAPES: &[(&str, usize, usize)] = &[
    ("q_proj", 1536, 1536),
    ("k_proj", 256, 1536),
    ("gate_proj", 8960, 1536),
    ("down_proj", 1536, 8960),
    ("lm_head/4", 37984, 1536),
];

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a non-negative integer")),
        Err(_) => default,
    }
}

/// CPU seconds used by the process so far (all threads).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The fastest of `repeats` runs after `warmup`: wall seconds, and the CPU seconds of the
/// process during the fastest-CPU run (robust to other work on the machine taking turns).
fn best_seconds(warmup: usize, repeats: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..warmup {
        f();
    }
    (0..repeats.max(1))
        .map(|_| {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            f();
            (t0.elapsed().as_secs_f64(), cpu_seconds() - c0)
        })
        .fold((f64::INFINITY, f64::INFINITY), |(w, c), (w1, c1)| {
            (w.min(w1), c.min(c1))
        })
}

/// A weight of `format` (`bf16`: unquantized values that are all bf16, held in two bytes).
fn weight(format: &str, out: usize, inp: usize) -> PackedWeight {
    let values: Vec<f32> = (0..out * inp)
        .into_par_iter()
        .map(|i| (normal_f64(1, i as u64) * 0.02) as f32)
        .collect();
    if format == "bf16" {
        let exact = values
            .into_par_iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000))
            .collect();
        return PackedWeight::f32(exact, out, inp).expect("a valid shape");
    }
    let spec: QuantSpec = format.parse().expect("a format name");
    PackedWeight::quantize(&values, out, inp, &spec).expect("a valid shape")
}

/// The tiled path: row tiles of at most TILE_ELEMENTS values, each decoded and multiplied.
fn tiled(x: &Tensor<2>, w: &PackedWeight) -> Vec<Tensor<2>> {
    let [out, k] = w.dims();
    let device = x.device();
    let height = (TILE_ELEMENTS / k).max(32) / 16 * 16;
    let mut parts = Vec::new();
    let mut o0 = 0;
    while o0 < out {
        let o1 = (o0 + height).min(out);
        let mut tile = vec![0.0f32; (o1 - o0) * k];
        w.decode_rows(o0, o1, &mut tile);
        let tile = Tensor::<2>::from_data(TensorData::new(tile, [o1 - o0, k]), &device);
        parts.push(aqn_core::cpu::linear(x.clone(), tile));
        o0 = o1;
    }
    parts
}

fn main() {
    aqn_core::cpu::configure_gemm_threads();
    let warmup = env_usize("AQN_BENCH_WARMUP", 2);
    let repeats = env_usize("AQN_BENCH_REPEATS", 10);
    let rows_list: Vec<usize> = env_list("AQN_BENCH_ROWS", "1 2 8 16 32 64")
        .iter()
        .map(|r| r.parse().expect("row counts"))
        .collect();
    let formats = env_list("AQN_BENCH_FORMATS", "nvfp4 mxfp4 bf16");
    let paths = env_list("AQN_BENCH_PATHS", "kernel tiles");
    let names = env_list("AQN_BENCH_WEIGHTS", "");
    let device = Device::ndarray();
    let threads = rayon::current_num_threads();
    for format in &formats {
        for &(name, out, inp) in SHAPES {
            if !names.is_empty() && !names.iter().any(|n| n == name) {
                continue;
            }
            let w = weight(format, out, inp);
            let bytes = w.storage_bytes() as f64;
            for &rows in &rows_list {
                let x: Vec<f32> = (0..rows * inp)
                    .map(|i| normal_f64(2, i as u64) as f32)
                    .collect();
                let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, inp]), &device);
                for path in &paths {
                    let (seconds, cpu) = match path.as_str() {
                        "kernel" if sgemm_order_available() => {
                            best_seconds(warmup, repeats, || {
                                black_box(packed_gemm(black_box(&x), rows, &w));
                            })
                        }
                        "tiles" => best_seconds(warmup, repeats, || {
                            black_box(tiled(&xt, &w));
                        }),
                        _ => continue,
                    };
                    println!(
                        "{{\"format\":\"{format}\",\"weight\":\"{name}\",\"out\":{out},\"in\":{inp},\
                         \"rows\":{rows},\"path\":\"{path}\",\"threads\":{threads},\
                         \"seconds\":{seconds:.6},\"cpu_seconds\":{cpu:.6},\
                         \"weight_gb_per_s\":{:.2},\"gflop_per_s\":{:.1}}}",
                        bytes / seconds / 1e9,
                        2.0 * (rows * out * inp) as f64 / seconds / 1e9
                    );
                }
            }
        }
    }
}
