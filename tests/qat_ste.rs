//! Quantization modes of the projections (docs/spec.md section 2): autodiff gradients of W4A16 and
//! W4A4 `QLinear`s (alone and in a stack of two) equal the analytic STE formulas computed by hand
//! from Q(W) and Q(x); the no-STE switch stops the gradient; BF16 mode is the plain model bit for
//! bit; a quantized model computes exactly what a model holding Q(W) computes; exclusions and
//! refusals.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::{NamedParamMapper, load_qwen2};
use aqn_core::formats::QuantSpec;
use aqn_core::model::{Padding, QLinear, Qwen2ForCausalLM};
use aqn_core::qat::{QuantConfig, QuantExclude, QuantMode, QuantModule, WeightQuantState};
use aqn_core::quant::QuantGradient;
use aqn_core::rng::normal_f64;
use aqn_core::site::LinearKind;
use burn::module::Param;
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};

/// f32 sums of up to 64 terms against f64 sums: a few ulps of the largest partial sum.
const GRAD_TOLERANCE: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn normals(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (normal_f64(seed, i) * scale) as f32)
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// A row-major matrix on the host.
#[derive(Clone)]
struct Mat {
    rows: usize,
    cols: usize,
    v: Vec<f64>,
}

impl Mat {
    fn new(rows: usize, cols: usize, v: &[f32]) -> Self {
        assert_eq!(v.len(), rows * cols);
        Self {
            rows,
            cols,
            v: v.iter().map(|&x| f64::from(x)).collect(),
        }
    }
    fn at(&self, r: usize, c: usize) -> f64 {
        self.v[r * self.cols + c]
    }
    /// self [r, k] x other [k, c]
    fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(self.cols, other.rows);
        let mut v = vec![0.0; self.rows * other.cols];
        for r in 0..self.rows {
            for c in 0..other.cols {
                v[r * other.cols + c] =
                    (0..self.cols).map(|k| self.at(r, k) * other.at(k, c)).sum();
            }
        }
        Mat {
            rows: self.rows,
            cols: other.cols,
            v,
        }
    }
    fn t(&self) -> Mat {
        let mut v = vec![0.0; self.v.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                v[c * self.rows + r] = self.at(r, c);
            }
        }
        Mat {
            rows: self.cols,
            cols: self.rows,
            v,
        }
    }
}

/// `Q` along the last axis of a `[rows, cols]` matrix, by the slice API.
fn q(spec: &QuantSpec, m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    spec.fake_quantize_along(m, &[rows, cols], 1).unwrap()
}

fn assert_close(got: &[f32], want: &Mat, what: &str) {
    assert_eq!(got.len(), want.v.len(), "{what}: length");
    let scale = want.v.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(&want.v).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= GRAD_TOLERANCE * scale,
            "{what}[{i}]: autodiff {g} vs analytic {w}"
        );
    }
}

/// A projection `[out, in]` with bias on `device`, quantized as `mode` says.
fn linear(
    d_in: usize,
    d_out: usize,
    seed: u64,
    mode: QuantMode,
    spec: QuantSpec,
    gradient: QuantGradient,
    device: &Device,
) -> QLinear {
    let w = Tensor::<2>::from_data(
        TensorData::new(normals(d_out * d_in, seed, 0.3), [d_out, d_in]),
        device,
    );
    let b = Tensor::<1>::from_data(
        TensorData::new(normals(d_out, seed + 1, 0.1), [d_out]),
        device,
    );
    let mut lin = QLinear::new(Param::from_tensor(w), Some(Param::from_tensor(b)));
    let config = QuantConfig::new(mode)
        .with_weights(spec)
        .with_gradient(gradient);
    let site = aqn_core::site::LinearSite::decoder(0, LinearKind::UpProj);
    lin.hooks.quant = WeightQuantState::new(config.for_site(&site));
    lin
}

fn grad<const D: usize>(t: &Tensor<D>, grads: &Gradients) -> Option<Vec<f32>> {
    t.grad(grads).map(values)
}

fn param_grad(p: &Param<Tensor<2>>, grads: &Gradients) -> Option<Vec<f32>> {
    p.val().grad(grads).map(values)
}

fn is_zero(g: &Option<Vec<f32>>) -> bool {
    g.as_ref().is_none_or(|g| g.iter().all(|&v| v == 0.0))
}

const SPECS: [&str; 3] = ["nvfp4", "mxfp4", "mxfp4:rceil"];
const R: usize = 5;
const I: usize = 64;
const H: usize = 48;
const O: usize = 24;

#[test]
fn single_layer_gradients_are_the_ste_formulas() {
    let device = Device::ndarray().autodiff();
    for spec_text in SPECS {
        let spec: QuantSpec = spec_text.parse().unwrap();
        for mode in [QuantMode::W4A16, QuantMode::W4A4] {
            let lin = linear(I, O, 7, mode, spec, QuantGradient::Ste, &device);
            let x0 = normals(R * I, 3, 1.0);
            let c0 = normals(R * O, 4, 1.0);
            let x =
                Tensor::<2>::from_data(TensorData::new(x0.clone(), [R, I]), &device).require_grad();
            let c = Tensor::<2>::from_data(TensorData::new(c0.clone(), [R, O]), &device);
            let y = lin.forward(x.clone());
            let grads = (y.clone() * c).sum().backward();

            let w0 = values(lin.latent().val().detach());
            let qw = Mat::new(O, I, &q(&spec, &w0, O, I));
            let xin = if mode == QuantMode::W4A4 {
                Mat::new(R, I, &q(&spec, &x0, R, I))
            } else {
                Mat::new(R, I, &x0)
            };
            let cm = Mat::new(R, O, &c0);
            // Forward: Q(x) Q(W)^T + b.
            let b0 = values(lin.bias.as_ref().unwrap().val().detach());
            let mut want_y = xin.matmul(&qw.t());
            for r in 0..R {
                for (o, b) in b0.iter().enumerate() {
                    want_y.v[r * O + o] += f64::from(*b);
                }
            }
            let what = format!("{spec_text} {mode}");
            assert_close(&values(y.detach()), &want_y, &format!("{what} y"));
            // dL/dx = C Q(W): the quantized weight, and the STE through Q(x).
            assert_close(
                &grad(&x, &grads).unwrap(),
                &cm.matmul(&qw),
                &format!("{what} dL/dx"),
            );
            // dL/dW = C^T Q(x) (x in W4A16), straight to the latent W.
            assert_close(
                &param_grad(lin.latent(), &grads).unwrap(),
                &cm.t().matmul(&xin),
                &format!("{what} dL/dW"),
            );
            // The weight really is quantized: Q(W) != W, so a test against W would fail.
            assert!(qw.v.iter().zip(&w0).any(|(a, &b)| *a != f64::from(b)));
        }
    }
}

#[test]
fn two_layer_stack_passes_the_ste_gradient_to_the_earlier_layer() {
    let device = Device::ndarray().autodiff();
    for spec_text in SPECS {
        let spec: QuantSpec = spec_text.parse().unwrap();
        for mode in [QuantMode::W4A16, QuantMode::W4A4] {
            let l1 = linear(I, H, 11, mode, spec, QuantGradient::Ste, &device);
            let l2 = linear(H, O, 13, mode, spec, QuantGradient::Ste, &device);
            let x0 = normals(R * I, 5, 1.0);
            let c0 = normals(R * O, 6, 1.0);
            let x =
                Tensor::<2>::from_data(TensorData::new(x0.clone(), [R, I]), &device).require_grad();
            let c = Tensor::<2>::from_data(TensorData::new(c0, [R, O]), &device);
            let h = l1.forward(x.clone());
            let grads = (l2.forward(h.clone()) * c.clone()).sum().backward();

            let qw1 = Mat::new(H, I, &q(&spec, &values(l1.latent().val().detach()), H, I));
            let qw2 = Mat::new(O, H, &q(&spec, &values(l2.latent().val().detach()), O, H));
            let h0 = values(h.detach());
            let hin = if mode == QuantMode::W4A4 {
                Mat::new(R, H, &q(&spec, &h0, R, H))
            } else {
                Mat::new(R, H, &h0)
            };
            let cm = Mat::new(R, O, &values(c));
            let dh = cm.matmul(&qw2);
            let what = format!("{spec_text} {mode}");
            // dL/dx = (C Q(W2)) Q(W1): through both quantized weights and both STEs.
            assert_close(
                &grad(&x, &grads).unwrap(),
                &dh.matmul(&qw1),
                &format!("{what} dL/dx"),
            );
            assert_close(
                &param_grad(l2.latent(), &grads).unwrap(),
                &cm.t().matmul(&hin),
                &format!("{what} dL/dW2"),
            );
            let xin = if mode == QuantMode::W4A4 {
                Mat::new(R, I, &q(&spec, &x0, R, I))
            } else {
                Mat::new(R, I, &x0)
            };
            assert_close(
                &param_grad(l1.latent(), &grads).unwrap(),
                &dh.t().matmul(&xin),
                &format!("{what} dL/dW1"),
            );
        }
    }
}

#[test]
fn without_the_ste_no_gradient_reaches_the_earlier_layer() {
    let device = Device::ndarray().autodiff();
    let spec: QuantSpec = "nvfp4".parse().unwrap();
    // W4A4 without STE (the seed's E13a-f): the activation quantizer of layer 2 stops everything.
    let l1 = linear(
        I,
        H,
        21,
        QuantMode::W4A4,
        spec,
        QuantGradient::None,
        &device,
    );
    let l2 = linear(
        H,
        O,
        23,
        QuantMode::W4A4,
        spec,
        QuantGradient::None,
        &device,
    );
    let x = Tensor::<2>::from_data(TensorData::new(normals(R * I, 8, 1.0), [R, I]), &device)
        .require_grad();
    let c = Tensor::<2>::from_data(TensorData::new(normals(R * O, 9, 1.0), [R, O]), &device);
    let grads = (l2.forward(l1.forward(x.clone())) * c).sum().backward();
    assert!(is_zero(&grad(&x, &grads)), "dL/dx reached the input");
    assert!(
        is_zero(&param_grad(l1.latent(), &grads)),
        "dL/dW1 is not zero"
    );
    let b1 = l1.bias.as_ref().unwrap().val().grad(&grads).map(values);
    assert!(is_zero(&b1), "the earlier layer's bias got a gradient");
    assert!(
        is_zero(&param_grad(l2.latent(), &grads)),
        "dL/dW2 is not zero"
    );
    // Only the last bias, after every quantizer, still learns.
    let b2 = l2.bias.as_ref().unwrap().val().grad(&grads).map(values);
    assert!(!is_zero(&b2));

    // W4A16 without STE: the weights learn nothing, but dL/dx = C Q(W2) Q(W1) still flows.
    let l1 = linear(
        I,
        H,
        21,
        QuantMode::W4A16,
        spec,
        QuantGradient::None,
        &device,
    );
    let l2 = linear(
        H,
        O,
        23,
        QuantMode::W4A16,
        spec,
        QuantGradient::None,
        &device,
    );
    let x = Tensor::<2>::from_data(TensorData::new(normals(R * I, 8, 1.0), [R, I]), &device)
        .require_grad();
    let c0 = normals(R * O, 9, 1.0);
    let c = Tensor::<2>::from_data(TensorData::new(c0.clone(), [R, O]), &device);
    let grads = (l2.forward(l1.forward(x.clone())) * c).sum().backward();
    assert!(is_zero(&param_grad(l1.latent(), &grads)));
    assert!(is_zero(&param_grad(l2.latent(), &grads)));
    let qw1 = Mat::new(H, I, &q(&spec, &values(l1.latent().val().detach()), H, I));
    let qw2 = Mat::new(O, H, &q(&spec, &values(l2.latent().val().detach()), O, H));
    let want = Mat::new(R, O, &c0).matmul(&qw2).matmul(&qw1);
    assert_close(&grad(&x, &grads).unwrap(), &want, "W4A16 no-STE dL/dx");
}

#[test]
fn a_frozen_weight_uses_the_cached_quantized_weight() {
    // Frozen (no gradient) and trainable weights compute the same forward: the cache holds Q(W).
    let device = Device::ndarray().autodiff();
    let spec: QuantSpec = "mxfp4".parse().unwrap();
    let trainable = linear(I, O, 31, QuantMode::W4A4, spec, QuantGradient::Ste, &device);
    let mut frozen = trainable.clone();
    frozen.weight = frozen.weight.map(|w| w.set_require_grad(false));
    let frozen = frozen.refresh_quantized_weight();
    assert!(frozen.hooks.quant.is_cached() && !trainable.hooks.quant.is_cached());
    let x = Tensor::<2>::from_data(TensorData::new(normals(R * I, 2, 1.0), [R, I]), &device);
    assert_eq!(
        values(frozen.forward(x.clone())),
        values(trainable.forward(x.clone()))
    );
    // A trainable weight never reads a cache, even one left from before it was unfrozen.
    let mut unfrozen = frozen.clone();
    unfrozen.weight = unfrozen
        .weight
        .map(|p| p.map(|w| w.mul_scalar(2.0).set_require_grad(true)));
    let direct = {
        let mut l = unfrozen.clone();
        l.hooks.quant = WeightQuantState::new(l.quantization().copied());
        l
    };
    assert_eq!(
        values(unfrozen.forward(x.clone())),
        values(direct.forward(x))
    );
}

fn prompt_ids(device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = vec![5, 17, 200, 33, 99, 101, 7, 300, 12, 64];
    Tensor::from_data(TensorData::new(ids, [1, 10]), device)
}

fn logits(model: &Qwen2ForCausalLM, device: &Device) -> Vec<f32> {
    values(model.forward(prompt_ids(device), &Padding::none(1), None))
}

/// Replaces every 2-D parameter but the excluded ones by Q along its last axis.
struct QuantizeWeights {
    spec: QuantSpec,
    skip: Vec<&'static str>,
}

impl NamedParamMapper for QuantizeWeights {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 2 || self.skip.contains(&name) {
            return param;
        }
        let spec = self.spec;
        param.map(|w| aqn_core::quant::fake_quantize_reference(w, &spec, 1).unwrap())
    }
}

#[test]
fn bf16_mode_is_the_plain_model_bit_for_bit() {
    let device = Device::ndarray();
    for name in ["qwen2-untied", "qwen2-tied"] {
        let plain = load_qwen2(&fixture(name), &device).unwrap();
        let want = logits(&plain, &device);
        let bf16 = plain
            .clone()
            .with_quantization(&QuantConfig::new(QuantMode::Bf16))
            .unwrap();
        assert!(bf16.quantized_sites().is_empty());
        assert_eq!(logits(&bf16, &device), want, "{name}");
        // Switching a quantized model back to BF16 restores it exactly.
        let back = bf16
            .with_quantization(&QuantConfig::new(QuantMode::W4A4))
            .unwrap()
            .with_quantization(&QuantConfig::default())
            .unwrap();
        assert_eq!(logits(&back, &device), want, "{name} back to bf16");
    }
}

#[test]
fn quantized_modes_compute_with_the_quantized_weights() {
    let device = Device::ndarray();
    let plain = load_qwen2(&fixture("qwen2-untied"), &device).unwrap();
    for spec_text in ["nvfp4", "mxfp4"] {
        let spec: QuantSpec = spec_text.parse().unwrap();
        let w4a16 = plain
            .clone()
            .with_quantization(&QuantConfig::new(QuantMode::W4A16).with_weights(spec))
            .unwrap();
        // 3 layers x 7 projections; lm_head and the embedding excluded by default.
        assert_eq!(w4a16.quantized_sites().len(), 21);
        assert!(w4a16.lm_head.quantization().is_none());
        assert!(w4a16.embedding_quantization().is_none());
        let by_hand = plain.clone().map_named(&mut QuantizeWeights {
            spec,
            skip: vec!["lm_head.weight", "model.embed_tokens.weight"],
        });
        let got = logits(&w4a16, &device);
        assert_eq!(got, logits(&by_hand, &device), "{spec_text}");
        assert_ne!(got, logits(&plain, &device));
        // Without the default exclusions, the embedding table and the head are quantized too.
        let all = plain
            .clone()
            .with_quantization(
                &QuantConfig::new(QuantMode::W4A16)
                    .with_weights(spec)
                    .with_exclude(QuantExclude {
                        modules: vec![],
                        ..QuantExclude::default()
                    }),
            )
            .unwrap();
        assert!(all.embedding_quantization().is_some());
        let by_hand = plain
            .clone()
            .map_named(&mut QuantizeWeights { spec, skip: vec![] });
        assert_eq!(
            logits(&all, &device),
            logits(&by_hand, &device),
            "{spec_text} all"
        );
        // W4A4 quantizes the inputs as well: different again.
        let w4a4 = plain
            .clone()
            .with_quantization(&QuantConfig::new(QuantMode::W4A4).with_weights(spec))
            .unwrap();
        assert_ne!(logits(&w4a4, &device), got);
    }
}

#[test]
fn exclusions_and_refusals() {
    let device = Device::ndarray();
    let plain = load_qwen2(&fixture("qwen2-untied"), &device).unwrap();
    // The seed's W4A4 kept the first and last decoder layers in BF16.
    let config = QuantConfig::new(QuantMode::W4A4).with_exclude(QuantExclude {
        modules: vec![
            QuantModule::Linear(LinearKind::LmHead),
            QuantModule::EmbedTokens,
            QuantModule::Linear(LinearKind::DownProj),
        ],
        layers: vec![0, 2],
        patterns: vec!["model.layers.1.self_attn.q_proj".parse().unwrap()],
    });
    let model = plain.clone().with_quantization(&config).unwrap();
    let sites: Vec<String> = model
        .quantized_sites()
        .iter()
        .map(|(s, _)| s.module_path())
        .collect();
    assert_eq!(
        sites,
        [
            "model.layers.1.self_attn.k_proj",
            "model.layers.1.self_attn.v_proj",
            "model.layers.1.self_attn.o_proj",
            "model.layers.1.mlp.gate_proj",
            "model.layers.1.mlp.up_proj",
        ]
    );
    let refuse = |config: QuantConfig, needles: &[&str]| {
        let err = plain
            .clone()
            .with_quantization(&config)
            .unwrap_err()
            .to_string();
        for n in needles {
            assert!(err.contains(n), "`{err}` lacks `{n}`");
        }
    };
    refuse(
        QuantConfig::new(QuantMode::W4A4).with_exclude(QuantExclude {
            layers: vec![3],
            ..QuantExclude::default()
        }),
        &["layer 3", "3 decoder layers"],
    );
    refuse(
        QuantConfig::new(QuantMode::W4A4).with_exclude(QuantExclude {
            patterns: vec!["*.dwn_proj".parse().unwrap()],
            ..QuantExclude::default()
        }),
        &["`*.dwn_proj`", "matches no projection"],
    );
    refuse(
        QuantConfig::new(QuantMode::W4A16).with_activations("mxfp4".parse().unwrap()),
        &["activations", "w4a16"],
    );
}
