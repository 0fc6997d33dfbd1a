//! Rollouts of a real checkpoint with its base held packed, on the CPU: the decoding steps
//! alone, against the bytes each step must read. scripts/scale_bench.sh measures the trainer's
//! whole step; this isolates generation (no trainer, no LoRA adapter) for profiling.
//!
//! `AQN_BENCH_MODEL=<HF folder> cargo bench -p aqn-core --bench packed_rollout`
//! (env: AQN_BENCH_FORMAT=nvfp4 (any `quant.weights` spec, or `bf16` for the unquantized base
//! held as bf16), AQN_BENCH_BATCHES="2 8 32", AQN_BENCH_PROMPT_LEN=64, AQN_BENCH_NEW_TOKENS=16,
//! AQN_BENCH_REPEATS=2; threads: RAYON_NUM_THREADS). For each batch, one JSON line: the best
//! of the repeats of a whole `generate` (prefill + every step), of the prefill alone (a
//! one-token generation), the decoding step (their difference over the remaining tokens), and
//! the weight bytes a step reads (the packed projections and the LM head); `*_cpu_s`: the CPU
//! seconds of the process (all threads), for comparisons on a busy machine.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::PathBuf;
use std::time::Instant;

use aqn_core::checkpoint::{LoadPlan, load_qwen2_with};
use aqn_core::generation::{GenerationConfig, SamplingConfig, generate};
use aqn_core::model::WeightDtype;
use aqn_core::qat::{QuantConfig, QuantMode};
use burn::tensor::Device;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_usize(name: &str, default: usize) -> usize {
    env_or(name, &default.to_string())
        .parse()
        .unwrap_or_else(|_| panic!("{name} must be a non-negative integer"))
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

fn main() {
    aqn_core::cpu::configure_gemm_threads();
    aqn_core::cpu::configure_allocator();
    let Ok(dir) = std::env::var("AQN_BENCH_MODEL").map(PathBuf::from) else {
        eprintln!("packed_rollout: set AQN_BENCH_MODEL to an HF checkpoint folder; nothing run");
        return;
    };
    let format = env_or("AQN_BENCH_FORMAT", "nvfp4");
    let batches: Vec<usize> = env_or("AQN_BENCH_BATCHES", "2 8 32")
        .split_whitespace()
        .map(|b| b.parse().expect("batch sizes"))
        .collect();
    let (prompt_len, new_tokens) = (
        env_usize("AQN_BENCH_PROMPT_LEN", 64),
        env_usize("AQN_BENCH_NEW_TOKENS", 16),
    );
    let repeats = env_usize("AQN_BENCH_REPEATS", 2).max(1);
    let (quant, dtype) = if format == "bf16" {
        (QuantConfig::new(QuantMode::Bf16), WeightDtype::Bf16)
    } else {
        let mut q = QuantConfig::new(QuantMode::W4A16);
        q.weights = format.parse().expect("a quantization spec");
        (q, WeightDtype::F32)
    };
    let device = Device::ndarray();
    let t0 = Instant::now();
    let model = load_qwen2_with(&dir, &device, &LoadPlan::packed(quant, dtype))
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
    let load_s = t0.elapsed().as_secs_f64();
    let mut bytes = 0usize;
    model.visit_linears(|_, l| bytes += l.weight_bytes());
    let vocab = model.config().vocab_size as u64;
    for &batch in &batches {
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|_| {
                (0..prompt_len)
                    .map(|i| (aqn_core::rng::counter_hash(5, i as u64) % vocab) as u32)
                    .collect()
            })
            .collect();
        let run = |tokens: usize| {
            (0..repeats)
                .map(|r| {
                    let config = GenerationConfig::new(tokens, vec![], 0);
                    let mut sampler = SamplingConfig::with_temperature(1.0, r as u64)
                        .build()
                        .expect("a sampler");
                    let (t, c) = (Instant::now(), cpu_seconds());
                    generate(&model, &prompts, &config, &mut sampler).expect("generation");
                    (t.elapsed().as_secs_f64(), cpu_seconds() - c)
                })
                .fold((f64::INFINITY, f64::INFINITY), |(w, c), (w1, c1)| {
                    (w.min(w1), c.min(c1))
                })
        };
        let (prefill, prefill_cpu) = run(1);
        let (whole, whole_cpu) = run(new_tokens);
        let steps = (new_tokens - 1).max(1) as f64;
        let (step, step_cpu) = ((whole - prefill) / steps, (whole_cpu - prefill_cpu) / steps);
        println!(
            "{{\"format\":\"{format}\",\"batch\":{batch},\"prompt_len\":{prompt_len},\
             \"new_tokens\":{new_tokens},\"threads\":{},\"load_s\":{load_s:.1},\
             \"generate_s\":{whole:.3},\"tokens_per_s\":{:.2},\"prefill_s\":{prefill:.3},\
             \"step_s\":{step:.4},\"step_cpu_s\":{step_cpu:.4},\"prefill_cpu_s\":{prefill_cpu:.3},\
             \"weight_bytes\":{bytes}}}",
            rayon::current_num_threads(),
            (batch * new_tokens) as f64 / whole,
        );
    }
}
