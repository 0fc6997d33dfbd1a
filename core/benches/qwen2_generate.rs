//! Rollout throughput of batched generation with the KV cache on the NdArray CPU backend, for the
//! tiny Qwen2 configs the GRPO main job trains (randomly initialized; no EOS, so every row runs
//! to `max_new_tokens`). Throughput is generated tokens (batch x new tokens) per second.
//!
//! `qwen2_train_step` times what a policy update costs on the same batch: a forward pass over
//! prompt + response on an autodiff device, the log-probabilities of the response tokens, and the
//! backward pass (throughput in tokens of the batch per second).
//!
//! `cargo bench -p aqn-core --bench qwen2_generate`
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use aqn_core::generation::{GenerationConfig, SamplingConfig, generate};
use aqn_core::model::{Padding, Qwen2Config};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

struct Case {
    name: &'static str,
    config: Qwen2Config,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "h64_l2_v384_b16_p32_n64",
            config: Qwen2Config::new(384, 64, 128, 2, 4, 2),
            batch: 16,
            prompt_len: 32,
            new_tokens: 64,
        },
        Case {
            name: "h128_l2_v2048_b16_p48_n96",
            config: Qwen2Config::new(2048, 128, 384, 2, 4, 2),
            batch: 16,
            prompt_len: 48,
            new_tokens: 96,
        },
        Case {
            name: "h256_l4_v4096_b32_p64_n128",
            config: Qwen2Config::new(4096, 256, 768, 4, 8, 2).with_tie_word_embeddings(true),
            batch: 32,
            prompt_len: 64,
            new_tokens: 128,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let device = Device::ndarray();
    let mut g = c.benchmark_group("qwen2_generate");
    g.sample_size(10);
    for case in cases() {
        let config = case.config.clone().with_max_position_embeddings(4096);
        let model = config.init(&device);
        let vocab = config.vocab_size as u64;
        let prompts: Vec<Vec<u32>> = (0..case.batch)
            .map(|b| {
                // Lengths vary by up to a quarter, as real prompts do (left padding is exercised).
                let len = case.prompt_len - b % (case.prompt_len / 4);
                (0..len)
                    .map(|i| (aqn_core::rng::counter_hash(b as u64, i as u64) % vocab) as u32)
                    .collect()
            })
            .collect();
        let gen_config = GenerationConfig::new(case.new_tokens, vec![], 0);
        g.throughput(Throughput::Elements((case.batch * case.new_tokens) as u64));
        g.bench_function(case.name, |bench| {
            bench.iter(|| {
                let mut sampler = SamplingConfig::with_temperature(1.0, 7).build().unwrap();
                generate(&model, &prompts, &gen_config, &mut sampler).unwrap()
            })
        });
    }
    g.finish();
}

fn train_step(c: &mut Criterion) {
    let device = Device::ndarray().autodiff();
    let mut g = c.benchmark_group("qwen2_train_step");
    g.sample_size(10);
    for case in cases().into_iter().take(2) {
        let config = case.config.clone().with_max_position_embeddings(4096);
        let model = config.init(&device);
        let (b, len) = (case.batch, case.prompt_len + case.new_tokens);
        let ids: Vec<i64> = (0..b * len)
            .map(|i| (aqn_core::rng::counter_hash(3, i as u64) % config.vocab_size as u64) as i64)
            .collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, len]), &device);
        let padding = Padding::none(b);
        g.throughput(Throughput::Elements((b * len) as u64));
        g.bench_function(case.name, |bench| {
            bench.iter(|| {
                let logits = model.forward(input.clone(), &padding, None);
                // Log-probabilities of the next tokens of the response part, as a GRPO loss reads them.
                let logp = log_softmax(logits.narrow(1, case.prompt_len - 1, case.new_tokens), 2);
                let targets = input.clone().narrow(1, case.prompt_len, case.new_tokens);
                let picked = logp.gather(2, targets.unsqueeze_dim(2));
                picked.mean().neg().backward()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, train_step);
criterion_main!(benches);
