//! Packed frozen weights (issue 11): a projection holding its weight as codes + scales computes
//! bit for bit what the fake-quant projection (a cached f32 `Q(W)` and a matmul) computes, forward
//! and backward, for every format, scale mode, NVFP4 level and block layout, on the few-row
//! kernel and on the tiled path, on the CPU and (feature `wgpu`) on Mesa lavapipe, where the
//! tiles are decoded on the device; a checkpoint loaded packed gives the same logits, generations and
//! gradients as the latent model quantized after loading, in a fraction of the memory; packed
//! weights refuse what their codes cannot do.
#![allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.

use std::path::{Path, PathBuf};

use aqn_core::checkpoint::load_qwen2;
use aqn_core::checkpoint::loader::{LoadPlan, load_qwen2_with};
use aqn_core::formats::QuantSpec;
use aqn_core::generation::{GenerationConfig, SamplingConfig, generate};
use aqn_core::model::WeightDtype;
use aqn_core::model::{Padding, QLinear};
use aqn_core::qat::{LinearQuant, QuantConfig, QuantExclude, QuantMode, WeightQuantState};
use aqn_core::quant::QuantGradient;
use aqn_core::quant::packed::gemm::{packed_gemm, packed_gemm_reference, sgemm_order_available};
use aqn_core::quant::packed::{FEW_ROWS, PackedWeight, TILE_ELEMENTS};
use aqn_core::rng::normal_f64;
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

const SPECS: &[&str] = &[
    "mxfp4",
    "mxfp4:ceil",
    "mxfp4:even",
    "mxfp4:rceil",
    "nvfp4",
    "nvfp4:single-level",
    "nvfp4:tile16x16",
    "nvfp4:sr=7",
    "fp8",
    "bf16",
];

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

fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// A frozen projection `[out, inp]` quantized with `spec` (W4A4 when `w4a4`): the fake-quant
/// reference with its cached `Q(W)`, and the same layer packed.
fn pair(
    out: usize,
    inp: usize,
    spec: &QuantSpec,
    w4a4: bool,
    device: &Device,
) -> (QLinear, QLinear) {
    let w = normals(out * inp, out as u64 * 31 + inp as u64, 0.02);
    let b = normals(out, 5, 0.1);
    let mut lin = QLinear::new(
        Param::from_data(TensorData::new(w, [out, inp]), device),
        Some(Param::from_data(TensorData::new(b, [out]), device)),
    )
    .no_grad();
    lin.hooks.quant = WeightQuantState::new(Some(LinearQuant {
        weights: *spec,
        activations: w4a4.then(|| "nvfp4".parse().unwrap()),
        gradient: QuantGradient::Ste,
    }));
    let lin = lin.refresh_quantized_weight();
    assert!(lin.hooks.quant.is_cached());
    let packed = lin.clone().into_packed().unwrap();
    assert!(packed.is_packed() && packed.weight.is_none());
    (lin, packed)
}

/// Forward (1..=70 rows) and input-gradient bits of the fake-quant and the packed projection on
/// an autodiff `device`, for every spec, W4A16 and W4A4, `[out, inp]`.
fn check_packed_projection(ad: &Device, out: usize, inp: usize) {
    for spec in SPECS {
        let spec: QuantSpec = spec.parse().unwrap();
        for w4a4 in [false, true] {
            let (dense, packed) = pair(out, inp, &spec, w4a4, ad);
            let what = format!("{} w4a4={w4a4} [{out}, {inp}]", spec.label());
            // 1..=FEW_ROWS rows take the code-reading kernel on the CPU, more rows the tiles.
            for rows in [1, 2, FEW_ROWS, FEW_ROWS + 1, 70] {
                let x = Tensor::<2>::from_data(
                    TensorData::new(normals(rows * inp, rows as u64, 1.0), [rows, inp]),
                    ad,
                );
                assert_eq!(
                    bits(dense.forward(x.clone())),
                    bits(packed.forward(x)),
                    "{what} forward, {rows} rows"
                );
            }
            // Backward: the gradient reaching the input (W is frozen) through both layers.
            let rows = 40;
            let x = normals(rows * inp, 9, 1.0);
            let g = Tensor::<2>::from_data(
                TensorData::new(normals(rows * out, 10, 1.0), [rows, out]),
                ad,
            );
            let grad = |layer: &QLinear| {
                let x = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, inp]), ad)
                    .require_grad();
                let grads = (layer.forward(x.clone()) * g.clone()).sum().backward();
                bits(x.grad(&grads).unwrap())
            };
            assert_eq!(grad(&dense), grad(&packed), "{what} backward");
        }
    }
}

#[test]
fn packed_projection_equals_fake_quant_forward_and_backward() {
    // 600 inputs: two whole sgemm chunks of 256 and a partial one; 900 outputs: three row tiles.
    const { assert!(900 * 600 > 2 * TILE_ELEMENTS) };
    check_packed_projection(&Device::ndarray().autodiff(), 900, 600);
}

/// The same on Burn's wgpu device pinned to Vulkan (Mesa lavapipe in CI): the fake-quant side
/// takes the fused kernel's cached `Q(W)`, the packed side its tiles, both the device's matmul.
/// A missing adapter fails the test; it never skips.
#[cfg(feature = "wgpu")]
#[test]
fn packed_projection_equals_fake_quant_on_wgpu() {
    use aqn_core::wgpu_device::{GraphicsApi, open_wgpu};
    let device = open_wgpu(GraphicsApi::Vulkan)
        .unwrap_or_else(|e| panic!("{e} (install mesa-vulkan-drivers)"))
        .device;
    // On a GPU a tile holds up to 2^24 values, so each of these weights is one tile: the
    // tiling itself is the CPU's code (checked above), the device decoder is checked below.
    let ad = device.autodiff();
    check_packed_projection(&ad, 900, 600);
    check_packed_projection(&ad, 48, 64);
}

/// The device decoder of packed weights (codes kept on the GPU, tiles decoded there) returns the
/// host decoder's bits for every storage (FP4 formats and block layouts, FP8, BF16, f32), for
/// row tiles, column tiles and odd rectangles, NaN blocks included.
#[cfg(feature = "wgpu")]
#[test]
fn device_decoder_is_the_host_decoder_on_wgpu() {
    use aqn_core::quant::fused::packed_decode::decode_tile_cube;
    use aqn_core::wgpu_device::{GraphicsApi, open_wgpu};
    use burn::backend::Cube;
    let device = open_wgpu(GraphicsApi::Vulkan)
        .unwrap_or_else(|e| panic!("{e} (install mesa-vulkan-drivers)"))
        .device;
    let like = Tensor::<2>::empty([1, 1], &device)
        .try_into_primitive::<Cube>()
        .unwrap();
    // 40 rows: a partial 16x16 tile row; 97 columns: odd row starts (half-byte codes).
    let (rows, cols) = (40, 97);
    let mut x = normals(rows * cols, 17, 0.02);
    x[3] = f32::NAN;
    x[cols + 60] = 3.0;
    let mut weights: Vec<(String, PackedWeight)> = SPECS
        .iter()
        .map(|s| {
            let spec: QuantSpec = s.parse().unwrap();
            (
                spec.label(),
                PackedWeight::quantize(&x, rows, cols, &spec).unwrap(),
            )
        })
        .collect();
    weights.push((
        "f32".into(),
        PackedWeight::f32(x.clone(), rows, cols).unwrap(),
    ));
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
    };
    for (label, w) in &weights {
        let host = w.dequantize();
        for (r, c) in [
            (0..rows, 0..cols),
            (3..21, 0..cols),
            (0..rows, 33..64),
            (7..8, 1..96),
            (17..40, 5..6),
        ] {
            let tile = decode_tile_cube(w, r.clone(), c.clone(), &like).unwrap();
            let got = Tensor::<2>::from_primitive::<Cube>(tile)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let want: Vec<f32> = r
                .clone()
                .flat_map(|i| host[i * cols + c.start..i * cols + c.end].to_vec())
                .collect();
            assert!(same(&got, &want), "{label} rows {r:?} cols {c:?}");
        }
    }
}

#[test]
fn few_row_kernel_is_its_reference_and_the_matmul() {
    if !sgemm_order_available() {
        eprintln!("no AVX2+FMA here: the projections use the tiled path only");
        return;
    }
    let (out, inp) = (37, 520);
    let w = normals(out * inp, 3, 0.05);
    for spec in ["nvfp4", "mxfp4:rceil", "fp8"] {
        let p = PackedWeight::quantize(&w, out, inp, &spec.parse().unwrap()).unwrap();
        let deq = p.dequantize();
        let cpu = Device::ndarray();
        let wt = Tensor::<2>::from_data(TensorData::new(deq, [out, inp]), &cpu);
        for rows in [1usize, 5, 9] {
            let x = normals(rows * inp, rows as u64 + 40, 1.0);
            let kernel = packed_gemm(&x, rows, &p);
            assert_eq!(kernel, packed_gemm_reference(&x, rows, &p), "{spec}");
            let xt = Tensor::<2>::from_data(TensorData::new(x, [rows, inp]), &cpu);
            let mm: Vec<f32> = xt
                .matmul(wt.clone().transpose())
                .into_data()
                .to_vec()
                .unwrap();
            let b = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(b(&kernel), b(&mm), "{spec} {rows} rows against the matmul");
        }
    }
}

/// Every projection weight held as codes: logits, a greedy generation and the gradients through
/// a LoRA adapter equal the latent model's, for both fixtures (tied and untied embeddings).
#[test]
fn packed_checkpoint_equals_the_latent_model() {
    let device = Device::ndarray();
    for dir in ["qwen2-tied", "qwen2-untied"] {
        let dir = fixture(dir);
        for (mode, spec) in [
            (QuantMode::W4A16, "nvfp4"),
            (QuantMode::W4A4, "mxfp4"),
            (QuantMode::Bf16, "nvfp4"),
        ] {
            let mut quant = QuantConfig::new(mode);
            if mode != QuantMode::Bf16 {
                quant.weights = spec.parse().unwrap();
            }
            let latent = load_qwen2(&dir, &device)
                .unwrap()
                .no_grad()
                .with_quantization(&quant)
                .unwrap();
            let packed = load_qwen2_with(
                &dir,
                &device,
                &LoadPlan::packed(quant.clone(), WeightDtype::F32),
            )
            .unwrap();
            let mut n_packed = 0;
            packed.visit_linears(|_, l| n_packed += usize::from(l.is_packed()));
            assert_eq!(
                n_packed,
                7 * packed.num_layers() + 1,
                "{mode}: every projection packed"
            );
            let mut bytes = (0, 0);
            latent.visit_linears(|_, l| bytes.0 += l.weight_bytes());
            packed.visit_linears(|_, l| bytes.1 += l.weight_bytes());
            assert!(bytes.1 <= bytes.0, "{mode}: {bytes:?}");
            if mode != QuantMode::Bf16 {
                assert!(bytes.1 * 3 < bytes.0, "{mode}: {bytes:?}");
            }
            let ids: Vec<i64> = (0..24).map(|i| (i * 7 % 50) as i64).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
            let pad = Padding::none(2);
            assert_eq!(
                bits(latent.forward(ids.clone(), &pad, None)),
                bits(packed.forward(ids, &pad, None)),
                "{} {mode} logits",
                dir.display()
            );
            let gen_config = GenerationConfig {
                max_new_tokens: 6,
                eos_token_ids: vec![],
                pad_token_id: 0,
            };
            let prompts = vec![vec![3u32, 9, 4], vec![7u32, 7]];
            let run = |m| {
                let mut s = SamplingConfig::greedy().build().unwrap();
                generate(m, &prompts, &gen_config, &mut s)
                    .unwrap()
                    .responses
            };
            assert_eq!(run(&latent), run(&packed), "{mode} greedy generation");
        }
    }
}

#[test]
fn bf16_dtype_rounds_every_value_and_stores_unquantized_matrices_in_two_bytes() {
    let device = Device::ndarray();
    let dir = fixture("qwen2-untied");
    let quant = QuantConfig {
        exclude: QuantExclude {
            modules: vec![
                aqn_core::qat::QuantModule::Linear(aqn_core::site::LinearKind::LmHead),
                aqn_core::qat::QuantModule::EmbedTokens,
            ],
            ..QuantExclude::default()
        },
        ..QuantConfig::new(QuantMode::W4A16)
    };
    let packed = load_qwen2_with(
        &dir,
        &device,
        &LoadPlan::packed(quant.clone(), WeightDtype::Bf16),
    )
    .unwrap();
    assert_eq!(packed.lm_head.packed.as_ref().unwrap().label(), "bf16");
    assert_eq!(packed.embedding_packed().unwrap().label(), "bf16");
    // The latent reference: the same checkpoint with every value rounded to bf16 first.
    let latent = load_qwen2_with(
        &dir,
        &device,
        &LoadPlan {
            packed: None,
            dtype: WeightDtype::Bf16,
        },
    )
    .unwrap()
    .no_grad()
    .with_quantization(&quant)
    .unwrap();
    let w: Vec<f32> = latent.model.norm.weight.val().into_data().to_vec().unwrap();
    assert!(
        w.iter()
            .all(|v| aqn_core::formats::bf16::round_to_bf16(*v) == *v)
    );
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 2], [1, 4]), &device);
    let pad = Padding::none(1);
    assert_eq!(
        bits(latent.forward(ids.clone(), &pad, None)),
        bits(packed.forward(ids, &pad, None))
    );
    assert!(
        "f64"
            .parse::<WeightDtype>()
            .unwrap_err()
            .to_string()
            .contains("f32, bf16")
    );
}

#[test]
fn packed_weights_refuse_training_and_requantization() {
    let device = Device::ndarray();
    let dir = fixture("qwen2-tied");
    let quant = QuantConfig::new(QuantMode::W4A16);
    let packed =
        load_qwen2_with(&dir, &device, &LoadPlan::packed(quant, WeightDtype::F32)).unwrap();
    // Another format cannot be made from codes, nor the unquantized model.
    let mut other = QuantConfig::new(QuantMode::W4A16);
    other.weights = "mxfp4".parse().unwrap();
    let err = packed
        .clone()
        .with_quantization(&other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nvfp4") && err.contains("latent"), "{err}");
    let err = packed
        .clone()
        .with_quantization(&QuantConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers.0.self_attn.q_proj"), "{err}");
    let err = packed.for_full_finetuning().unwrap_err().to_string();
    assert!(err.contains("packed"), "{err}");
    // A trainable weight is not packed.
    let lin = aqn_core::model::QLinearConfig::new(32, 8).init(&device.autodiff());
    assert!(lin.into_packed().is_err());
}
