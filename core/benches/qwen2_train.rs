//! Teacher-forced Qwen2 throughput on the NdArray CPU backend, for comparison with PyTorch eager
//! (scripts/cpu_bench.sh runs both and prints the ratios).
//!
//! One randomly initialized model (hidden 256, intermediate 768, 4 layers, 8 query heads, 2
//! key/value heads, vocab 1024, untied lm_head), a batch of 8 x 256 tokens without padding:
//! - `forward`: the logits of every position on a plain (non-autodiff) device;
//! - `forward_backward`: on an autodiff device, the loss `-mean(log_softmax(logits)[target])` of
//!   the next token at every position (the trainer's `token_logprobs`), and its backward pass
//!   (gradients of every parameter).
//!
//! - `decode_tiny`, `decode_h256`: rollouts with the KV cache on the plain device (generated
//!   tokens/s): 128 prompts x 48 tokens + 64 new with assets/tiny's architecture, 32 x 64 + 64
//!   with the config above; sampling at temperature 1, no end-of-sequence token.
//!
//! Each is run `AQN_BENCH_WARMUP` times untimed, then `AQN_BENCH_REPEATS` times timed; the
//! throughput is batch x seq tokens over the median time. The result is one JSON line on stdout.
//!
//! `cargo bench -p aqn-core --bench qwen2_train`
//! (env: AQN_BENCH_BATCH, AQN_BENCH_SEQ, AQN_BENCH_WARMUP, AQN_BENCH_REPEATS; AQN_BENCH_ONLY=name
//! runs one case alone, for a profiler, and prints its JSON only; threads:
//! RAYON_NUM_THREADS for the fused kernels and the GEMMs, which split rows over Rayon's threads;
//! MATMUL_NUM_THREADS stays 1 unless set: matrixmultiply's own pool would oversubscribe.)
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::time::Instant;

use aqn_core::generation::{GenerationConfig, SamplingConfig, generate};
use aqn_core::model::{Padding, Qwen2Config, Qwen2ForCausalLM};
use aqn_core::ops::token_logprobs;
use burn::tensor::{Device, Int, Tensor, TensorData};

const VOCAB: usize = 1024;
const HIDDEN: usize = 256;
const INTERMEDIATE: usize = 768;
const LAYERS: usize = 4;
const HEADS: usize = 8;
const KV_HEADS: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a non-negative integer")),
        Err(_) => default,
    }
}

/// Threads of a pool sized by `var` (the variable, else the available cores, capped at `cap`).
fn pool_threads(var: &str, cap: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(cores);
    n.min(cap)
}

struct Timing {
    times: Vec<f64>,
}

impl Timing {
    fn median(&self) -> f64 {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        }
    }

    fn json(&self, tokens: usize) -> String {
        let median = self.median();
        let min = self.times.iter().copied().fold(f64::INFINITY, f64::min);
        let times: Vec<String> = self.times.iter().map(|t| format!("{t:.6}")).collect();
        format!(
            "{{\"tokens_per_s\":{:.1},\"median_s\":{median:.6},\"min_s\":{min:.6},\"best_tokens_per_s\":{:.1},\"times_s\":[{}]}}",
            tokens as f64 / median,
            tokens as f64 / min,
            times.join(",")
        )
    }
}

fn time(warmup: usize, repeats: usize, mut f: impl FnMut()) -> Timing {
    for _ in 0..warmup {
        f();
    }
    let times = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    Timing { times }
}

/// `[batch, seq + 1]` token ids: positions `0..seq` are the input, `1..=seq` the targets.
fn token_ids(batch: usize, seq: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids: Vec<i64> = (0..batch * (seq + 1))
        .map(|i| (aqn_core::rng::counter_hash(11, i as u64) % VOCAB as u64) as i64)
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq + 1]), device);
    (ids.clone().narrow(1, 0, seq), ids.narrow(1, 1, seq))
}

fn loss(model: &Qwen2ForCausalLM, input: &Tensor<2, Int>, targets: &Tensor<2, Int>) -> Tensor<1> {
    let padding = Padding::none(input.dims()[0]);
    let logits = model.forward(input.clone(), &padding, None);
    // The trainer's log-prob of the taken token (fused on the CPU backend).
    let (picked, _) = token_logprobs(logits, targets.clone(), false);
    picked.mean().neg()
}

/// A decoding run: `batch` prompts of `prompt` tokens (no padding), `new` tokens each sampled at
/// temperature 1 with no end-of-sequence token, so every row runs to the end.
struct DecodeCase {
    config: Qwen2Config,
    batch: usize,
    prompt: usize,
    new: usize,
}

impl DecodeCase {
    /// assets/tiny's architecture (vocab 54, hidden 128, intermediate 384, 4 layers, 4/2 heads),
    /// a rollout micro-batch of the main job's size (16 prompts x 8 responses).
    fn tiny() -> Self {
        Self {
            config: Qwen2Config::new(54, 128, 384, 4, 4, 2),
            batch: 128,
            prompt: 48,
            new: 64,
        }
    }

    /// The bench's config.
    fn h256(config: Qwen2Config) -> Self {
        Self {
            config,
            batch: 32,
            prompt: 64,
            new: 64,
        }
    }
}

/// Generated tokens/s of `case` on the plain CPU device.
fn decode(case: &DecodeCase, warmup: usize, repeats: usize) -> (Timing, usize) {
    let device = Device::ndarray();
    let config = case
        .config
        .clone()
        .with_max_position_embeddings(case.prompt + case.new + 1);
    let model = config.init(&device);
    let vocab = config.vocab_size as u64;
    let prompts: Vec<Vec<u32>> = (0..case.batch)
        .map(|b| {
            (0..case.prompt)
                .map(|i| (aqn_core::rng::counter_hash(b as u64, i as u64) % vocab) as u32)
                .collect()
        })
        .collect();
    let generation = GenerationConfig::new(case.new, vec![], 0);
    let timing = time(warmup, repeats, || {
        let mut sampler = SamplingConfig::with_temperature(1.0, 7).build().unwrap();
        std::hint::black_box(generate(&model, &prompts, &generation, &mut sampler).unwrap());
    });
    (timing, case.batch * case.new)
}

/// The cases, in the order they run.
const CASES: [&str; 4] = ["forward", "forward_backward", "decode_tiny", "decode_h256"];

fn main() {
    // As aqn-native does: the GEMMs' threads and the allocator's thresholds.
    aqn_core::cpu::configure_gemm_threads();
    let allocator = aqn_core::cpu::configure_allocator();
    let only = std::env::var("AQN_BENCH_ONLY").ok();
    if let Some(name) = &only {
        assert!(
            CASES.contains(&name.as_str()),
            "AQN_BENCH_ONLY={name} is not a case; the cases are {}",
            CASES.join(", ")
        );
    }
    let runs = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let batch = env_usize("AQN_BENCH_BATCH", 8);
    let seq = env_usize("AQN_BENCH_SEQ", 256);
    let warmup = env_usize("AQN_BENCH_WARMUP", 2);
    let repeats = env_usize("AQN_BENCH_REPEATS", 5).max(1);
    let tokens = batch * seq;
    let config = Qwen2Config::new(VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS)
        .with_max_position_embeddings(seq.max(1) + 1);

    let mut results: Vec<String> = Vec::new();

    if runs("forward") {
        // Forward only: a plain device, no autodiff graph.
        let device = Device::ndarray();
        let model = config.init(&device);
        let (input, _) = token_ids(batch, seq, &device);
        let padding = Padding::none(batch);
        let forward = time(warmup, repeats, || {
            let logits = model.forward(input.clone(), &padding, None);
            // NdArray is eager; reading one value makes sure the logits exist before the clock
            // stops.
            std::hint::black_box(logits.narrow(1, seq - 1, 1).into_data());
        });
        results.push(format!("\"forward\":{}", forward.json(tokens)));
    }

    if runs("forward_backward") {
        // Forward + backward on an autodiff device.
        let device = Device::ndarray().autodiff();
        let model = config.init(&device);
        let (input, targets) = token_ids(batch, seq, &device);
        let mut last_loss = 0.0f32;
        let forward_backward = time(warmup, repeats, || {
            let loss = loss(&model, &input, &targets);
            last_loss = loss.clone().into_scalar();
            std::hint::black_box(loss.backward());
        });
        results.push(format!("\"loss\":{last_loss:.5}"));
        results.push(format!(
            "\"forward_backward\":{}",
            forward_backward.json(tokens)
        ));
    }

    // Decoding with the KV cache (rollouts): the built-in tiny model's config and this one.
    for (name, case) in [
        ("decode_tiny", DecodeCase::tiny()),
        ("decode_h256", DecodeCase::h256(config.clone())),
    ] {
        if runs(name) {
            let (timing, tokens) = decode(&case, warmup, repeats);
            results.push(format!("\"{name}\":{}", timing.json(tokens)));
        }
    }

    println!(
        "{{\"impl\":\"aqn-burn-ndarray\",\"rayon_threads\":{},\"matmul_threads\":{},\"allocator_configured\":{allocator},\"config\":{{\"vocab\":{VOCAB},\"hidden\":{HIDDEN},\"intermediate\":{INTERMEDIATE},\"layers\":{LAYERS},\"heads\":{HEADS},\"kv_heads\":{KV_HEADS}}},\"batch\":{batch},\"seq\":{seq},\"tokens\":{tokens},\"warmup\":{warmup},\"repeats\":{repeats},{}}}",
        pool_threads("RAYON_NUM_THREADS", usize::MAX),
        // matrixmultiply defaults to the physical cores (this counts logical ones) and caps at 4.
        pool_threads("MATMUL_NUM_THREADS", 4),
        results.join(","),
    );
}
