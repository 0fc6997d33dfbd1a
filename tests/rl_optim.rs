//! The optimizer step of the trainer against PyTorch: Burn 0.22's AdamW built from
//! `AdamWSettings` (PyTorch's defaults) and `rl::grad_clip::clip_grad_norm` (global norm, as
//! `torch.nn.utils.clip_grad_norm_`) follow `torch.optim.AdamW` for five steps. The reference
//! numbers come from `tests/rl_optim_reference.py` (PyTorch 2.15, f32).
//!
//! Also shows why the trainer does not use Burn's own `GradientClipping::Norm`: it clips each
//! parameter tensor by its own norm, which is not verl's rule.

#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use aqn_core::rl::adamw::AdamWSettings;
use aqn_core::rl::grad_clip::{ClippedGrads, clip_grad_norm, grad_global_norm};
use aqn_core::rl::metrics::GRAD_NORM;
use burn::module::{Module, Param};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

const UNCLIPPED_NORMS: [f64; 5] = [
    2.988434314727783,
    2.6776058673858643,
    2.4321835041046143,
    2.239198684692383,
    2.0878055095672607,
];
const UNCLIPPED_W: [f64; 4] = [
    0.0061299800872802734,
    -0.4686652719974518,
    1.4144891500473022,
    0.18780533969402313,
];
const UNCLIPPED_M: [f64; 4] = [
    -0.09163743257522583,
    -1.155640959739685,
    0.6685915589332581,
    -0.2958584725856781,
];
const CLIPPED_1_NORMS: [f64; 5] = [
    2.988434314727783,
    2.6776061058044434,
    2.4310214519500732,
    2.233013391494751,
    2.0729925632476807,
];
const CLIPPED_1_W: [f64; 4] = [
    -0.0034696608781814575,
    -0.4620642066001892,
    1.4103662967681885,
    0.165187805891037,
];
const CLIPPED_1_M: [f64; 4] = [
    -0.09952543675899506,
    -1.1507132053375244,
    0.659107506275177,
    -0.2940388321876526,
];

const W0: [f32; 4] = [0.5, -1.0, 2.0, 0.0];
const M0: [f32; 4] = [0.3, -0.7, 1.2, 0.1];
const C: [f32; 4] = [1.0, 2.0, 0.5, 3.0];
const D: [f32; 4] = [0.1, -0.2, 0.3, -0.4];
const LR: f64 = 0.1;
const WEIGHT_DECAY: f64 = 0.1;

#[derive(Module, Debug)]
struct Toy {
    w: Param<Tensor<1>>,
    m: Param<Tensor<2>>,
}

impl Toy {
    fn new(device: &Device) -> Self {
        Self {
            w: Param::from_tensor(Tensor::from_data(TensorData::new(W0.to_vec(), [4]), device)),
            m: Param::from_tensor(Tensor::from_data(
                TensorData::new(M0.to_vec(), [2, 2]),
                device,
            )),
        }
    }

    /// `sum(0.5 c w^2 + d w) + 0.3 sum(m^3)`.
    fn loss(&self) -> Tensor<1> {
        let device = self.w.val().device();
        let c = Tensor::<1>::from_data(TensorData::new(C.to_vec(), [4]), &device);
        let d = Tensor::<1>::from_data(TensorData::new(D.to_vec(), [4]), &device);
        let w = self.w.val();
        let m = self.m.val();
        (w.clone() * w.clone() * c * 0.5 + w * d).sum() + (m.clone() * m.clone() * m).sum() * 0.3
    }

    fn values(&self) -> (Vec<f32>, Vec<f32>) {
        let v = |d: TensorData| d.convert::<f32>().try_to_vec::<f32>().unwrap();
        (v(self.w.val().into_data()), v(self.m.val().into_data()))
    }
}

fn settings() -> AdamWSettings {
    AdamWSettings {
        weight_decay: WEIGHT_DECAY,
        ..AdamWSettings::default()
    }
}

/// 2e-6: the measured gap is 1.6e-6, from Burn's f32 betas (see `rl::adamw`'s docs).
fn assert_close(got: &[f32], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (f64::from(*g) - w).abs() < 2e-6,
            "{what}: {got:?} vs {want:?}"
        );
    }
}

/// Five steps; `max_norm` None runs without clipping. Returns the pre-clip norms.
fn run(max_norm: Option<f64>) -> (Toy, Vec<f64>) {
    let device = Device::ndarray().autodiff();
    let mut toy = Toy::new(&device);
    let mut optim = settings().init().unwrap();
    let mut norms = Vec::new();
    for _ in 0..5 {
        let grads = GradientsParams::from_grads(toy.loss().backward(), &toy);
        let grads = match max_norm {
            None => {
                norms.push(grad_global_norm(&toy, &grads));
                grads
            }
            Some(max_norm) => match clip_grad_norm(&toy, grads, max_norm).unwrap() {
                ClippedGrads::Finite { grads, report } => {
                    norms.push(report.metrics()[GRAD_NORM]);
                    assert!(report.clip_coef <= 1.0);
                    grads
                }
                ClippedGrads::NonFinite { .. } => panic!("finite gradients reported as not finite"),
            },
        };
        toy = optim.step(LR, toy, grads);
    }
    (toy, norms)
}

#[test]
fn adamw_matches_pytorch() {
    let (toy, norms) = run(None);
    let (w, m) = toy.values();
    assert_close(&w, &UNCLIPPED_W, "w");
    assert_close(&m, &UNCLIPPED_M, "m");
    let norms: Vec<f32> = norms.iter().map(|&n| n as f32).collect();
    assert_close(&norms, &UNCLIPPED_NORMS, "grad norms");
}

#[test]
fn adamw_with_global_norm_clipping_matches_pytorch() {
    let (toy, norms) = run(Some(1.0));
    let (w, m) = toy.values();
    assert_close(&w, &CLIPPED_1_W, "w");
    assert_close(&m, &CLIPPED_1_M, "m");
    let norms: Vec<f32> = norms.iter().map(|&n| n as f32).collect();
    assert_close(&norms, &CLIPPED_1_NORMS, "pre-clip grad norms");
}

#[test]
fn global_clipping_by_hand() {
    let device = Device::ndarray().autodiff();
    let toy = Toy::new(&device);
    // dL/dw = c w + d = [0.6, -2.2, 1.3, -0.4]; dL/dm = 0.9 m^2 = [0.081, 0.441, 1.296, 0.009].
    let grads = GradientsParams::from_grads(toy.loss().backward(), &toy);
    let want_sq: f64 = [0.6f64, -2.2, 1.3, -0.4, 0.081, 0.441, 1.296, 0.009]
        .iter()
        .map(|g| g * g)
        .sum();
    let norm = grad_global_norm(&toy, &grads);
    assert!((norm - want_sq.sqrt()).abs() < 1e-6, "{norm}");
    // Clip to 0.5: every gradient scaled by 0.5 / (norm + 1e-6), so the new norm is ~0.5.
    let ClippedGrads::Finite { grads, report } = clip_grad_norm(&toy, grads, 0.5).unwrap() else {
        panic!("not finite");
    };
    assert!((report.clip_coef - 0.5 / (norm + 1e-6)).abs() < 1e-12);
    assert!((grad_global_norm(&toy, &grads) - 0.5).abs() < 1e-6);
    // A bound above the norm leaves the gradients as they are.
    let ClippedGrads::Finite {
        grads: same,
        report,
    } = clip_grad_norm(&toy, grads, 10.0).unwrap()
    else {
        panic!("not finite");
    };
    assert_eq!(report.clip_coef, 1.0);
    assert!((grad_global_norm(&toy, &same) - 0.5).abs() < 1e-6);
    assert!(
        clip_grad_norm(&toy, same, 0.0)
            .unwrap_err()
            .to_string()
            .contains("clip_grad = 0")
    );
}

#[test]
fn non_finite_norm_skips_the_step() {
    let device = Device::ndarray().autodiff();
    let toy = Toy::new(&device);
    let grads = GradientsParams::from_grads((toy.loss() * f32::INFINITY).backward(), &toy);
    match clip_grad_norm(&toy, grads, 1.0).unwrap() {
        ClippedGrads::NonFinite { report } => assert!(!report.grad_norm.is_finite()),
        ClippedGrads::Finite { report, .. } => panic!("finite: {report:?}"),
    }
}

/// Burn's `GradientClippingConfig::Norm(1.0)` clips w and m separately: after five steps the
/// parameters differ from PyTorch's global clipping by far more than rounding.
#[test]
fn burns_per_parameter_clipping_is_not_global() {
    let device = Device::ndarray().autodiff();
    let mut toy = Toy::new(&device);
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(WEIGHT_DECAY as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    for _ in 0..5 {
        let grads = GradientsParams::from_grads(toy.loss().backward(), &toy);
        toy = optim.step(LR, toy, grads);
    }
    let (w, _) = toy.values();
    let diff = w
        .iter()
        .zip(CLIPPED_1_W)
        .map(|(g, r)| (f64::from(*g) - r).abs())
        .fold(0.0, f64::max);
    assert!(
        diff > 1e-3,
        "per-parameter clipping unexpectedly matched global clipping ({diff})"
    );
}
