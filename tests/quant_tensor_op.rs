//! The Burn tensor op (composed elementwise ops, any backend) agrees bit for bit with the slice
//! API on the NdArray backend, for every format and option, along every axis; and the STE passes
//! the gradient of docs/spec.md section 2.

#![allow(clippy::needless_range_loop)] // parallel arrays indexed by element
#![allow(deprecated)] // Device::ndarray: the NdArray backend is deprecated upstream but is our CPU reference.

use aqn_core::formats::{BlockLayout, MxScaleMode, NvScaling, QuantFormat, QuantSpec, Rounding};
use aqn_core::quant::{
    QuantGradient, fake_quantize, fake_quantize_reference, quantize_with_gradient,
};
use burn::tensor::{Device, Tensor, TensorData};

fn specs() -> Vec<QuantSpec> {
    let mut v: Vec<QuantSpec> = MxScaleMode::ALL
        .iter()
        .map(|&m| QuantSpec::new(QuantFormat::Mxfp4).with_scale_mode(m))
        .collect();
    for &s in NvScaling::ALL {
        for &b in BlockLayout::ALL {
            v.push(
                QuantSpec::new(QuantFormat::Nvfp4)
                    .with_nv_scaling(s)
                    .with_blocks(b),
            );
        }
    }
    v.push(QuantSpec::new(QuantFormat::Mxfp4).with_rounding(Rounding::Stochastic { seed: 3 }));
    v.push(QuantSpec::new(QuantFormat::Nvfp4).with_rounding(Rounding::Stochastic { seed: 4 }));
    v.push(QuantSpec::new(QuantFormat::Fp8));
    v.push(QuantSpec::new(QuantFormat::Bf16));
    v
}

/// Values over many magnitudes with the special cases mixed in: zeros, -0.0, f32 subnormals,
/// ties, amax mantissas >= 1.75, NaN and Inf, tiny and huge blocks.
fn data(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let z = aqn_core::rng::normal_f64(seed, i as u64);
            let mag = 10f64.powi((i / 37 % 11) as i32 - 6);
            match i % 101 {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-40,
                3 => -1e-45,
                4 => 7.9 * mag as f32,
                5 => 0.25,
                6 => -2.5,
                _ => (z * mag) as f32,
            }
        })
        .collect()
}

fn assert_same_bits(a: &[f32], b: &[f32], ctx: &str) {
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        assert!(
            a[i].to_bits() == b[i].to_bits() || (a[i].is_nan() && b[i].is_nan()),
            "{ctx}: element {i}: tensor op {} vs slice {}",
            a[i],
            b[i]
        );
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn tensor_op_equals_slice_api_2d() {
    let device = Device::ndarray();
    for (rows, cols) in [(4, 64), (3, 100), (17, 33), (1, 1), (20, 48)] {
        let mut x = data(rows * cols, rows as u64 * 31 + cols as u64);
        if x.len() > 200 {
            x[150] = f32::NAN;
            x[190] = f32::NEG_INFINITY;
        }
        for spec in specs() {
            let t = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, cols]), &device);
            let want = spec.fake_quantize_vec(&x, cols).unwrap();
            let got = values(fake_quantize(t, &spec, 1).unwrap());
            assert_same_bits(&got, &want, &format!("{spec} [{rows}, {cols}]"));
        }
    }
}

#[test]
fn tensor_op_equals_slice_api_along_each_axis() {
    let device = Device::ndarray();
    let shape = [3usize, 40, 5];
    let x = data(600, 9);
    for spec in specs() {
        for axis in 0..3 {
            let t = Tensor::<3>::from_data(TensorData::new(x.clone(), shape), &device);
            let want = spec.fake_quantize_along(&x, &shape, axis).unwrap();
            let got = values(fake_quantize(t.clone(), &spec, axis).unwrap());
            assert_same_bits(&got, &want, &format!("{spec} axis {axis}"));
            let reference = values(fake_quantize_reference(t, &spec, axis).unwrap());
            assert_same_bits(&reference, &want, &format!("reference {spec} axis {axis}"));
        }
    }
}

#[test]
fn tensor_op_on_one_million_normals() {
    let device = Device::ndarray();
    let x: Vec<f32> = (0..1 << 20)
        .map(|i| aqn_core::rng::normal_f64(0, i) as f32)
        .collect();
    for spec in [
        QuantSpec::new(QuantFormat::Mxfp4),
        QuantSpec::new(QuantFormat::Nvfp4),
    ] {
        let t = Tensor::<2>::from_data(TensorData::new(x.clone(), [1024, 1024]), &device);
        assert_same_bits(
            &values(fake_quantize(t, &spec, 1).unwrap()),
            &spec.fake_quantize_vec(&x, 1024).unwrap(),
            &spec.label(),
        );
    }
}

#[test]
fn bad_axis_and_spec_are_errors() {
    let device = Device::ndarray();
    let t = Tensor::<2>::zeros([2, 32], &device);
    let err = fake_quantize(t.clone(), &QuantSpec::new(QuantFormat::Mxfp4), 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "axis 2 is out of range for a tensor of rank 2"
    );
    let bad = QuantSpec::new(QuantFormat::Bf16).with_rounding(Rounding::Stochastic { seed: 1 });
    assert!(
        fake_quantize(t, &bad, 1)
            .unwrap_err()
            .to_string()
            .contains("stochastic rounding is not offered for bf16")
    );
}

/// dL/dx through the STE is dL/dQ(x) unchanged; without it, zero (docs/spec.md section 2).
#[test]
fn straight_through_gradient() {
    let device = Device::ndarray().autodiff();
    let x0 = data(2 * 32, 5)
        .into_iter()
        .map(|v| if v.is_finite() { v } else { 0.5 })
        .collect::<Vec<_>>();
    let spec = QuantSpec::new(QuantFormat::Mxfp4);
    let w = Tensor::<2>::from_data(
        TensorData::new(
            (0..64).map(|i| i as f32 * 0.1 - 3.0).collect::<Vec<_>>(),
            [2, 32],
        ),
        &device,
    );
    for gradient in [QuantGradient::Ste, QuantGradient::None] {
        let x =
            Tensor::<2>::from_data(TensorData::new(x0.clone(), [2, 32]), &device).require_grad();
        let q = quantize_with_gradient(x.clone(), &spec, 1, gradient).unwrap();
        // Forward is Q(x) exactly.
        assert_same_bits(
            &values(q.clone().detach()),
            &spec.fake_quantize_vec(&x0, 32).unwrap(),
            "forward",
        );
        let loss = (q * w.clone()).sum();
        let grads = loss.backward();
        let g = x.grad(&grads).map(values).unwrap_or_else(|| vec![0.0; 64]);
        let want: Vec<f32> = match gradient {
            QuantGradient::Ste => values(w.clone().detach()),
            QuantGradient::None => vec![0.0; 64],
        };
        assert_eq!(g, want, "{gradient:?}");
    }
}
