//! Gradient accumulation over micro-batches (issue 11): the gradients and the losses of a PPO
//! mini-batch computed in micro-batches equal the one-pass computation within 1e-5, for every
//! loss aggregation mode, off-policy with a KL loss term and an entropy bonus, for full
//! fine-tuning of a W4A4 model (also with rollout correction's weights and rejected tokens,
//! issue 22) and for LoRA on a packed NVFP4 base.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::loader::{LoadPlan, load_qwen2_with};
use aqn_core::lora::LoraConfig;
use aqn_core::model::Qwen2ForCausalLM;
use aqn_core::model::WeightDtype;
use aqn_core::qat::{QuantConfig, QuantMode};
use aqn_core::rl::agg_loss::AggMode;
use aqn_core::rl::kl::{KlConfig, KlPlacement};
use aqn_core::rl::metrics::PG_LOSS;
use aqn_core::rl::policy_loss::PolicyLossConfig;
use aqn_core::rng::normal_f64;
use aqn_core::train::micro_batch::{
    PolicyLossSettings, PolicyMicroBatch, RowCorrection, policy_gradients,
};
use aqn_core::train::sequence::{SequenceBatch, response_logprobs};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

const TOLERANCE: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Six sequences: two prompts shared by three responses each, responses of different lengths
/// (one empty, which the seq-mean modes do not count).
fn sequences() -> (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<f64>) {
    let (a, b) = (vec![3u32, 7, 9, 11, 2], vec![5u32, 6, 1]);
    let prompts = vec![a.clone(), a.clone(), a, b.clone(), b.clone(), b];
    let responses = vec![
        vec![1, 2, 3, 4, 5, 6],
        vec![4],
        vec![5, 6, 7, 8, 9],
        vec![],
        vec![12, 13, 14],
        vec![15, 16, 17, 18, 19, 20, 21],
    ];
    let adv = (0..6).map(|i| normal_f64(17, i)).collect();
    (prompts, responses, adv)
}

fn grads_of(model: &Qwen2ForCausalLM, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(g.into_data().to_vec::<f32>().unwrap());
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// Rollout correction of row `row` with `len` tokens: weights in [0.5, 2.5), every third token
/// rejected, row 2 rejected whole (so rejected tokens and a row without any kept token are both
/// in the batch: the denominators must leave them out in every micro-batch cut).
fn row_correction(row: usize, len: usize) -> (Vec<f64>, Vec<bool>) {
    let weights = (0..len)
        .map(|j| 1.5 + normal_f64(29, (row * 100 + j) as u64).clamp(-1.0, 1.0))
        .collect();
    let keep = (0..len)
        .map(|j| row != 2 && !(row + j).is_multiple_of(3))
        .collect();
    (weights, keep)
}

/// The mini-batch of `sequences()` cut at `cuts`, with the old log-probs of a perturbed policy
/// and the reference log-probs of `reference`, both computed per micro-batch as the trainer does
/// (and rollout correction when `corrected`).
fn micro_batches(
    model: &Qwen2ForCausalLM,
    reference: &Qwen2ForCausalLM,
    cuts: &[usize],
    device: &Device,
    corrected: bool,
) -> Vec<PolicyMicroBatch> {
    let (prompts, responses, adv) = sequences();
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&prompts.len()]) {
        let batch = SequenceBatch::new(&prompts[start..end], &responses[start..end], 0, device);
        let old = response_logprobs(&model.valid(), &batch, false)
            .0
            .add_scalar(0.05);
        let r = response_logprobs(&reference.valid(), &batch, false).0;
        let correction = corrected.then(|| {
            let (weights, keep) = (start..end)
                .map(|row| row_correction(row, responses[row].len()))
                .unzip();
            RowCorrection {
                weights: Some(weights),
                keep,
            }
        });
        out.push(PolicyMicroBatch {
            batch,
            advantages: adv[start..end].to_vec(),
            old_log_prob: Some(old),
            ref_log_prob: Some(r),
            correction,
        });
        start = end;
    }
    out
}

fn check(
    model: &Qwen2ForCausalLM,
    reference: &Qwen2ForCausalLM,
    device: &Device,
    what: &str,
    corrected: bool,
) {
    let kl = KlConfig {
        placement: KlPlacement::Loss,
        ..KlConfig::default()
    };
    for mode in AggMode::ALL {
        let actor = PolicyLossConfig {
            loss_agg_mode: *mode,
            ..PolicyLossConfig::default()
        };
        let settings = PolicyLossSettings {
            actor: &actor,
            kl: &kl,
            entropy_coeff: 0.01,
            loss_scale_factor: (*mode == AggMode::SeqMeanTokenSumNorm).then_some(8.0),
        };
        let whole = micro_batches(model, reference, &[], device, corrected);
        let (g_whole, m_whole) = policy_gradients(model, &whole, &settings).unwrap();
        let g_whole = grads_of(model, &g_whole);
        assert!(!g_whole.is_empty(), "{what}: no trainable gradient");
        let scale = g_whole
            .iter()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-3) as f64;
        for cuts in [vec![2, 4], vec![4], vec![1, 3, 5]] {
            let micros = micro_batches(model, reference, &cuts, device, corrected);
            let (g, m) = policy_gradients(model, &micros, &settings).unwrap();
            let g = grads_of(model, &g);
            assert_eq!(g.len(), g_whole.len());
            let worst = g
                .iter()
                .flatten()
                .zip(g_whole.iter().flatten())
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, f64::max);
            assert!(
                worst <= TOLERANCE * scale,
                "{what} {mode} cuts {cuts:?}: gradient differs by {worst} (largest {scale})"
            );
            for (k, v) in &m_whole {
                assert!(
                    (m[k] - v).abs() <= TOLERANCE * v.abs().max(1.0),
                    "{what} {mode} cuts {cuts:?}: {k} {} vs {v}",
                    m[k]
                );
            }
            assert!(m_whole.contains_key(PG_LOSS));
        }
    }
}

#[test]
fn full_finetuning_w4a4_micro_batches_equal_the_whole_batch() {
    let device = Device::ndarray().autodiff();
    let mut quant = QuantConfig::new(QuantMode::W4A4);
    quant.weights = "mxfp4".parse().unwrap();
    let base = load_qwen2_with(&fixture("qwen2-untied"), &device, &LoadPlan::default())
        .unwrap()
        .with_quantization(&quant)
        .unwrap();
    let reference = base.clone().no_grad();
    let model = base.for_full_finetuning().unwrap();
    check(&model, &reference, &device, "full W4A4", false);
    check(
        &model,
        &reference,
        &device,
        "full W4A4, rollout correction",
        true,
    );
}

#[test]
fn lora_on_a_packed_base_micro_batches_equal_the_whole_batch() {
    let device = Device::ndarray().autodiff();
    let quant = QuantConfig::new(QuantMode::W4A16);
    let base = load_qwen2_with(
        &fixture("qwen2-tied"),
        &device,
        &LoadPlan::packed(quant, WeightDtype::F32),
    )
    .unwrap();
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let model = base.clone().with_lora(&lora).unwrap();
    // B starts at zero (so A has no gradient): give it values so both factors are checked.
    let model = model.map_linears(|site, mut l| {
        if let Some(a) = l.lora.as_mut() {
            let n = a.lora_b.dims().iter().product::<usize>();
            let v: Vec<f32> = (0..n as u64)
                .map(|i| (normal_f64(site.layer.unwrap_or(99) as u64, i) * 0.1) as f32)
                .collect();
            let dims = a.lora_b.dims();
            a.lora_b = a.lora_b.clone().map(|b| {
                Tensor::<2>::from_data(burn::tensor::TensorData::new(v, dims), &b.device())
                    .require_grad()
            });
        }
        l
    });
    check(&model, &base.no_grad(), &device, "LoRA packed", false);
}
