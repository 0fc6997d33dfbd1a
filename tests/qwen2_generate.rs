//! Generation on the tiny fixtures: greedy decoding equals transformers' batched greedy `generate`
//! (tokens, EOS stop, log-probs); sampling is reproducible from its seed; returned log-probs are the
//! model's temperature-1 log-probabilities of the sampled tokens (checked against a full forward
//! pass over prompt + response); bad requests are refused.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::load_qwen2;
use aqn_core::generation::sampling::log_prob;
use aqn_core::generation::{
    GenerateError, GenerationConfig, Rollout, Sampler, SamplingConfig, generate,
};
use aqn_core::model::{Padding, Qwen2ForCausalLM};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

/// Log-probabilities are computed from logits that match transformers' within 1e-4.
const LOGPROB_TOLERANCE: f32 = 1e-4;
const MODELS: [&str; 2] = ["qwen2-untied", "qwen2-tied"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

#[derive(Deserialize)]
struct Greedy {
    prompts: Vec<Vec<u32>>,
    max_new_tokens: usize,
    eos_token_id: u32,
    pad_token_id: u32,
    responses: Vec<Vec<u32>>,
    logprobs: Vec<Vec<f32>>,
}

fn greedy_fixture(name: &str) -> Greedy {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(json["greedy"].clone()).unwrap()
}

fn setup(name: &str) -> (Qwen2ForCausalLM, Greedy, GenerationConfig) {
    let model = load_qwen2(&fixture(name), &Device::ndarray()).unwrap();
    let g = greedy_fixture(name);
    // The fixture's EOS is a token the model emits mid-sequence, not the checkpoint's <|im_end|>.
    let config = GenerationConfig::new(g.max_new_tokens, vec![g.eos_token_id], g.pad_token_id);
    (model, g, config)
}

#[test]
fn stop_and_pad_tokens_come_from_the_checkpoint() {
    let c = GenerationConfig::from_checkpoint(&fixture("qwen2-tied"), 7).unwrap();
    assert_eq!(c, GenerationConfig::new(7, vec![354], 352));
}

#[test]
fn generation_on_an_autodiff_model_equals_the_plain_one() {
    let g = greedy_fixture("qwen2-untied");
    let config = GenerationConfig::new(g.max_new_tokens, vec![g.eos_token_id], g.pad_token_id);
    let model = load_qwen2(&fixture("qwen2-untied"), &Device::ndarray().autodiff()).unwrap();
    let r = generate(&model, &g.prompts, &config, &mut Sampler::Greedy).unwrap();
    for (b, want) in g.responses.iter().enumerate() {
        assert_eq!(&generated(&r, b), want);
    }
}

fn generated(r: &Rollout, b: usize) -> Vec<u32> {
    r.responses[b]
        .iter()
        .zip(&r.mask[b])
        .filter(|(_, m)| **m)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn greedy_equals_transformers_batched_generate() {
    for name in MODELS {
        let (model, g, config) = setup(name);
        let mut sampler = SamplingConfig::greedy().build().unwrap();
        let r = generate(&model, &g.prompts, &config, &mut sampler).unwrap();
        let width = g.responses.iter().map(Vec::len).max().unwrap();
        assert_eq!(r.response_len(), width, "{name}");
        for (b, want) in g.responses.iter().enumerate() {
            assert_eq!(&generated(&r, b), want, "{name} prompt {b}");
            assert_eq!(
                r.finished[b],
                want.last() == Some(&g.eos_token_id),
                "{name} prompt {b}"
            );
            // After the response: padding, masked out, log-prob 0.
            assert!(
                r.responses[b][want.len()..]
                    .iter()
                    .all(|&t| t == g.pad_token_id)
            );
            assert!(r.logprobs[b][want.len()..].iter().all(|&l| l == 0.0));
            for (t, (got, exp)) in r.logprobs[b].iter().zip(&g.logprobs[b]).enumerate() {
                assert!(
                    (got - exp).abs() < LOGPROB_TOLERANCE,
                    "{name} prompt {b} token {t}: log-prob {got} vs transformers {exp}"
                );
            }
        }
        assert_eq!(
            r.lengths(),
            g.responses.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // Each prompt alone gives the same response as in the batch.
        for (b, prompt) in g.prompts.iter().enumerate() {
            let mut sampler = Sampler::Greedy;
            let alone =
                generate(&model, std::slice::from_ref(prompt), &config, &mut sampler).unwrap();
            assert_eq!(
                generated(&alone, 0),
                g.responses[b],
                "{name} prompt {b} alone"
            );
        }
    }
}

#[test]
fn top_k_1_and_a_tiny_top_p_sample_the_greedy_tokens() {
    let (model, g, config) = setup("qwen2-untied");
    for sampling in [
        SamplingConfig::with_temperature(1.3, 5).top_k(1),
        SamplingConfig::with_temperature(0.8, 6).top_p(1e-6),
    ] {
        let r = generate(&model, &g.prompts, &config, &mut sampling.build().unwrap()).unwrap();
        for (b, want) in g.responses.iter().enumerate() {
            assert_eq!(&generated(&r, b), want, "{sampling:?} prompt {b}");
        }
    }
}

/// Log-softmax (temperature 1) of the logits that predict each response token, from one forward
/// pass over the left-padded prompt + response: the teacher-forced log-probabilities.
fn recomputed_logprobs(model: &Qwen2ForCausalLM, r: &Rollout) -> Vec<Vec<f32>> {
    let device = Device::ndarray();
    let rows: Vec<Vec<u32>> = r
        .prompts
        .iter()
        .zip(&r.responses)
        .map(|(p, resp)| [p.clone(), resp.clone()].concat())
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|row| {
            std::iter::repeat_n(0i64, width - row.len()).chain(row.iter().map(|&t| t as i64))
        })
        .collect();
    let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [rows.len(), width]), &device);
    let logits = model.forward(input, &Padding::from_lengths(&lengths), None);
    let vocab = model.config().vocab_size;
    let data = logits.into_data().to_vec::<f32>().unwrap();
    let n = r.response_len();
    (0..rows.len())
        .map(|b| {
            (0..n)
                .map(|t| {
                    // Token t of the response sits at column width - n + t; position before it predicts it.
                    let col = width - n + t - 1;
                    let at = (b * width + col) * vocab;
                    log_prob(&data[at..at + vocab], r.responses[b][t] as usize) as f32
                })
                .collect()
        })
        .collect()
}

#[test]
fn sampling_is_seeded_and_returns_temperature_1_logprobs() {
    let (model, g, mut config) = setup("qwen2-tied");
    config.max_new_tokens = 12;
    let sampling = SamplingConfig::with_temperature(0.7, 1234)
        .top_k(50)
        .top_p(0.95);
    let a = generate(&model, &g.prompts, &config, &mut sampling.build().unwrap()).unwrap();
    let b = generate(&model, &g.prompts, &config, &mut sampling.build().unwrap()).unwrap();
    assert_eq!(a, b, "same seed, same rollout");
    let mut other = sampling.clone();
    other.seed = 1235;
    let c = generate(&model, &g.prompts, &config, &mut other.build().unwrap()).unwrap();
    assert_ne!(a.responses, c.responses, "another seed, another rollout");
    // Sampling, not greedy: the rollout leaves the greedy path somewhere.
    assert!((0..g.prompts.len()).any(|i| generated(&a, i) != g.responses[i]));

    let want = recomputed_logprobs(&model, &a);
    for (row, (got, exp)) in a.logprobs.iter().zip(&want).enumerate() {
        for (t, (x, y)) in got.iter().zip(exp).enumerate() {
            if a.mask[row][t] {
                assert!(
                    (x - y).abs() < LOGPROB_TOLERANCE,
                    "row {row} token {t}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn bad_requests_are_refused() {
    let (model, g, config) = setup("qwen2-tied");
    let mut s = Sampler::Greedy;
    assert_eq!(
        generate(&model, &[], &config, &mut s),
        Err(GenerateError::EmptyBatch)
    );
    assert_eq!(
        generate(&model, &[vec![1], vec![]], &config, &mut s),
        Err(GenerateError::EmptyPrompt { index: 1 })
    );
    let err = generate(&model, &[vec![1, 384]], &config, &mut s).unwrap_err();
    assert!(err.to_string().contains("token 384 at position 1"), "{err}");
    let mut long = config.clone();
    long.max_new_tokens = 300;
    let err = generate(&model, &g.prompts, &long, &mut s).unwrap_err();
    assert!(
        err.to_string().contains("max_position_embeddings (256)"),
        "{err}"
    );
    let mut zero = config.clone();
    zero.max_new_tokens = 0;
    let err = generate(&model, &g.prompts, &zero, &mut s).unwrap_err();
    assert!(err.to_string().contains("`max_new_tokens` = 0"), "{err}");
    let mut eos = config;
    eos.eos_token_ids = vec![1000];
    let err = generate(&model, &g.prompts, &eos, &mut s).unwrap_err();
    assert!(err.to_string().contains("`eos_token_ids` = 1000"), "{err}");
}
