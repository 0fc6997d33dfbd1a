//! Hardware-error wiring (docs/spec.md section 6): every targeted matmul's output goes through the
//! error model with a key that distinguishes seed, step, phase+site, call and pass; exactly the
//! configured phase's model is perturbed; backward-only noise leaves the forward untouched and
//! changes the gradients; the same run draws the same noise.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::load_qwen2;
use aqn_core::hw_noise::{
    HwErrorModel, HwNoiseConfig, HwSite, NoiseKey, NoisePasses, NoiseSource, SiteNoise,
};
use aqn_core::model::{Padding, QLinearConfig, Qwen2ForCausalLM};
use aqn_core::phase::{Phase, Phases};
use aqn_core::rng::normal_f64;
use aqn_core::site::LinearKind;
use burn::tensor::{Device, Int, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn e5() -> HwNoiseConfig {
    HwNoiseConfig {
        seed: 11,
        ..HwNoiseConfig::new(HwErrorModel::RelativeGaussian { scale: 0.05 })
    }
}

fn ids(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(vec![5i64, 17, 200, 33, 99, 101, 7], [1, 7]),
        device,
    )
}

fn logits(model: &Qwen2ForCausalLM, device: &Device) -> Vec<f32> {
    values(model.forward(ids(device), &Padding::none(1), None))
}

#[test]
fn a_site_perturbs_its_output_with_its_own_key_per_call() {
    let device = Device::ndarray();
    let mut lin = QLinearConfig::new(256, 192)
        .with_init_std(0.1)
        .init(&device);
    let name = "model.layers.3.mlp.up_proj";
    lin.hooks.noise = Some(SiteNoise::new(&e5(), name).activate(Phase::Rollout, 7));
    let x: Vec<f32> = (0..64 * 256).map(|i| normal_f64(1, i) as f32).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [64, 256]), &device);
    let clean = {
        let mut plain = lin.clone();
        plain.hooks.noise = None;
        plain.forward(x.clone())
    };
    let model = HwErrorModel::RelativeGaussian { scale: 0.05 };
    let site = NoiseKey::site_id(&format!("rollout/{name}"));
    for call in 0..2 {
        let got = values(lin.forward(x.clone()));
        let key = NoiseKey::new(11, 7, site, call);
        let want = values(
            model
                .inject(clean.clone(), &key, NoiseSource::Counter)
                .unwrap(),
        );
        assert_eq!(got, want, "call {call}");
        // 5% relative Gaussian: the relative perturbation has std 0.05.
        let y = values(clean.clone());
        let rel: Vec<f64> = got
            .iter()
            .zip(&y)
            .map(|(&a, &b)| f64::from(a - b) / f64::from(b.abs()))
            .collect();
        let n = rel.len() as f64;
        let mean = rel.iter().sum::<f64>() / n;
        let std = (rel.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((std / 0.05 - 1.0).abs() < 0.05, "call {call}: std {std}");
    }
    assert_eq!(lin.hooks.noise.as_ref().unwrap().calls(), 2);
}

#[test]
fn only_the_configured_phase_is_perturbed() {
    let device = Device::ndarray();
    let plain = load_qwen2(&fixture("qwen2-untied"), &device).unwrap();
    let clean = logits(&plain, &device);
    for phase in [Phases::Rollout, Phases::Training, Phases::Both] {
        let model = plain
            .clone()
            .with_hw_noise(&HwNoiseConfig { phase, ..e5() })
            .unwrap();
        // Wired but not armed: the model itself is clean.
        assert_eq!(logits(&model, &device), clean, "{phase}: unarmed model");
        let rollout = logits(&model.for_phase(Phase::Rollout, 3), &device);
        let training = logits(&model.for_phase(Phase::Training, 3), &device);
        assert_eq!(
            rollout == clean,
            !phase.includes(Phase::Rollout),
            "{phase} rollout"
        );
        assert_eq!(
            training == clean,
            !phase.includes(Phase::Training),
            "{phase} training"
        );
        if phase == Phases::Both {
            assert_ne!(rollout, training, "the two phases share their noise");
        }
    }
}

#[test]
fn every_listed_matmul_and_only_those_are_wired_and_called() {
    let device = Device::ndarray();
    let plain = load_qwen2(&fixture("qwen2-tied"), &device).unwrap();
    let clean = logits(&plain, &device);
    let all = HwNoiseConfig {
        sites: HwSite::ALL.to_vec(),
        ..e5()
    };
    let model = plain.clone().with_hw_noise(&all).unwrap();
    let rollout = model.for_phase(Phase::Rollout, 1);
    let _ = logits(&rollout, &device);
    let sites = rollout.hw_noise_sites();
    // 2 layers x (7 projections + 2 attention matmuls) + the LM head.
    assert_eq!(sites.len(), 2 * 9 + 1);
    assert!(
        sites
            .iter()
            .all(|(_, active, calls)| *active && *calls == 1),
        "{sites:?}"
    );
    assert_eq!(sites[4].0, "model.layers.0.self_attn.scores");
    assert_eq!(sites[18].0, "lm_head");
    // Each kind of site alone changes the output.
    for site in HwSite::ALL {
        let one = HwNoiseConfig {
            sites: vec![*site],
            ..e5()
        };
        let m = plain.clone().with_hw_noise(&one).unwrap();
        let r = m.for_phase(Phase::Rollout, 1);
        assert_ne!(logits(&r, &device), clean, "{site}");
        let wired = r.hw_noise_sites();
        let per_model = if *site == HwSite::Linear(LinearKind::LmHead) {
            1
        } else {
            2
        };
        assert_eq!(wired.len(), per_model, "{site}: {wired:?}");
    }
    // Rewiring replaces, and without_hw_noise removes everything.
    let m = model.without_hw_noise();
    assert!(m.hw_noise_sites().is_empty());
    assert_eq!(logits(&m.for_phase(Phase::Rollout, 1), &device), clean);
}

#[test]
fn the_same_step_replays_the_same_noise_and_each_call_draws_anew() {
    let device = Device::ndarray();
    let model = load_qwen2(&fixture("qwen2-untied"), &device)
        .unwrap()
        .with_hw_noise(&e5())
        .unwrap();
    let a = model.for_phase(Phase::Rollout, 4);
    let first = logits(&a, &device);
    let second = logits(&a, &device);
    assert_ne!(
        first, second,
        "the second call reused the first call's noise"
    );
    assert_eq!(logits(&model.for_phase(Phase::Rollout, 4), &device), first);
    assert_ne!(logits(&model.for_phase(Phase::Rollout, 5), &device), first);
    let other_seed = load_qwen2(&fixture("qwen2-untied"), &device)
        .unwrap()
        .with_hw_noise(&HwNoiseConfig { seed: 12, ..e5() })
        .unwrap();
    assert_ne!(
        logits(&other_seed.for_phase(Phase::Rollout, 4), &device),
        first
    );
}

#[test]
fn backward_noise_changes_the_gradients_not_the_forward() {
    let device = Device::ndarray().autodiff();
    let plain = load_qwen2(&fixture("qwen2-tied"), &device).unwrap();
    let loss_and_grad = |m: &Qwen2ForCausalLM| {
        let logits = m.forward(ids(&device), &Padding::none(1), None);
        let out = values(logits.clone().detach());
        let loss = burn::tensor::activation::log_softmax(logits, 2)
            .mean()
            .neg();
        let grads = loss.backward();
        let w = m.model.layers[0].self_attn.q_proj.latent();
        (out, values(w.val().grad(&grads).unwrap()))
    };
    let (clean_out, clean_grad) = loss_and_grad(&plain.for_phase(Phase::Training, 2));
    let backward = plain
        .clone()
        .with_hw_noise(&HwNoiseConfig {
            passes: NoisePasses::Backward,
            ..e5()
        })
        .unwrap()
        .for_phase(Phase::Training, 2);
    let (out, grad) = loss_and_grad(&backward);
    assert_eq!(
        out, clean_out,
        "backward-only noise changed the forward pass"
    );
    assert_ne!(
        grad, clean_grad,
        "backward noise did not reach the gradients"
    );
    let forward = plain
        .with_hw_noise(&e5())
        .unwrap()
        .for_phase(Phase::Training, 2);
    let (out, _) = loss_and_grad(&forward);
    assert_ne!(out, clean_out);
}

#[test]
fn refusals() {
    let device = Device::ndarray();
    let plain = load_qwen2(&fixture("qwen2-tied"), &device).unwrap();
    let err = plain
        .clone()
        .with_hw_noise(&HwNoiseConfig {
            passes: NoisePasses::Backward,
            phase: Phases::Rollout,
            ..e5()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("training phase"), "{err}");
    let err = plain
        .with_hw_noise(&HwNoiseConfig {
            model: HwErrorModel::Deadzone { threshold: 2.0 },
            ..e5()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("threshold = 2"), "{err}");
}
