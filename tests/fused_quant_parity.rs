//! The fused CubeCL fake-quantize kernels (`aqn_core::quant::fused`) against the CPU reference
//! (`aqn_core::formats`), bit for bit, on Burn's wgpu device (Mesa lavapipe in CI,
//! `mesa-vulkan-drivers`): every format, MXFP4 scale mode, NVFP4 scaling level, the 16x16 tiles
//! and stochastic rounding, along any axis; and the fused straight-through estimator (value and
//! gradient). A missing adapter fails the test; it never skips.
//!
//! The edge tensors hold what a GPU gets wrong without integer soft-float: subnormal inputs,
//! blocks whose MX scale is the subnormal 2^-127, E2M1/E4M3 ties, every amax exponent with the
//! mantissas at the scale-rule boundaries, NaN and Inf blocks, ragged rows and edge tiles, and
//! random bit patterns over the whole f32 range.

use aqn_core::distributions::Distribution;
use aqn_core::formats::mxfp4::mx_scale_exponent;
use aqn_core::formats::{MxScaleMode, QuantSpec};
use aqn_core::quant::fused::{fake_quantize_fused, is_fused_device};
use aqn_core::quant::{QuantGradient, fake_quantize_on_device, quantize_with_gradient};
use aqn_core::rng::counter_hash;
use aqn_core::wgpu_device::{GraphicsApi, open_wgpu};
use burn::tensor::{Device, Tensor, TensorData};

/// Burn's wgpu device pinned to Vulkan (lavapipe in CI): no quiet fallback to OpenGL.
fn device() -> Device {
    open_wgpu(GraphicsApi::Vulkan)
        .unwrap_or_else(|e| panic!("{e} (install mesa-vulkan-drivers)"))
        .device
}

/// Every spec: each MXFP4 scale mode, both NVFP4 levels, tiles, stochastic rounding, FP8, BF16.
fn specs() -> Vec<QuantSpec> {
    [
        "mxfp4:floor",
        "mxfp4:ceil",
        "mxfp4:even",
        "mxfp4:rceil",
        "mxfp4:floor:sr=7",
        "mxfp4:rceil:sr=12345678901234",
        "nvfp4:two-level",
        "nvfp4:single-level",
        "nvfp4:two-level:sr=5",
        "nvfp4:single-level:sr=9",
        "nvfp4:two-level:tile16x16",
        "nvfp4:single-level:tile16x16",
        "nvfp4:two-level:tile16x16:sr=3",
        "fp8",
        "bf16",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

/// Bits of a tensor's f32 data.
fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The first few differences between the fused result and the reference, for the message.
fn differences(x: &[f32], got: &[u32], want: &[f32]) -> Vec<String> {
    (0..x.len())
        .filter(|&i| got[i] != want[i].to_bits())
        .take(5)
        .map(|i| {
            format!(
                "#{i} x={:e} ({:#010x}): gpu {:e} ({:#010x}), rust {:e} ({:#010x})",
                x[i],
                x[i].to_bits(),
                f32::from_bits(got[i]),
                got[i],
                want[i],
                want[i].to_bits()
            )
        })
        .collect()
}

/// `x` as `[len / row_len, row_len]`, quantized along the rows on the GPU and on the CPU.
fn check(name: &str, spec: &QuantSpec, x: &[f32], row_len: usize) {
    let dev = device();
    let t = Tensor::<2>::from_data(
        TensorData::new(x.to_vec(), [x.len() / row_len, row_len]),
        &dev,
    );
    let got = bits(fake_quantize_fused(t, spec, 1).unwrap_or_else(|e| panic!("{name}: {e}")));
    let want = spec.fake_quantize_vec(x, row_len).unwrap();
    let bad = differences(x, &got, &want);
    assert!(
        bad.is_empty(),
        "{name} {}: fused kernel differs from the reference:\n{}",
        spec.label(),
        bad.join("\n")
    );
}

#[test]
fn generated_tensors_every_spec() {
    assert!(is_fused_device(&device()));
    for dist in [
        Distribution::STANDARD_NORMAL,
        Distribution::WEIGHT_LIKE,
        "laplace:b=0.5".parse().unwrap(),
    ] {
        let x = dist.generate(1 << 15, 11).unwrap();
        for spec in specs() {
            check(&dist.label(), &spec, &x, 512);
            // Ragged rows: partial blocks at every row end, partial edge tiles.
            check(
                &format!("{} ragged", dist.label()),
                &spec,
                &x[..50 * 77],
                50,
            );
            check(
                &format!("{} rows of 7", dist.label()),
                &spec,
                &x[..7 * 13],
                7,
            );
            check(&format!("{} one row", dist.label()), &spec, &x[..33], 33);
        }
    }
}

/// A block per (exponent field, mantissa at a rule boundary): the amax, exact E2M1 ties of its
/// FLOOR scale, and random magnitudes below it (subnormals included when the amax is small).
fn boundary_blocks() -> Vec<f32> {
    let mants = [
        0u32, 1, 0x1f_ffff, 0x20_0000, 0x3f_ffff, 0x40_0000, 0x40_0001, 0x5f_ffff, 0x60_0000,
        0x7f_ffff,
    ];
    let ties = [0.25f32, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5];
    let mut x = Vec::new();
    let mut n = 0u64;
    for field in 0u32..=254 {
        for &mant in &mants {
            let amax = (field << 23) | mant;
            let e = mx_scale_exponent(amax, MxScaleMode::Floor);
            let mut block = vec![f32::from_bits(amax)];
            for &t in &ties {
                let v = t as f64 * 2f64.powi(e);
                if v < f32::from_bits(amax) as f64 && v as f32 as f64 == v {
                    block.push(-(v as f32));
                }
            }
            while block.len() < 32 {
                let h = counter_hash(99, n);
                n += 1;
                let bits = ((h as u32) % (amax + 1)) | (((h >> 32) as u32) & 0x8000_0000);
                block.push(f32::from_bits(bits));
            }
            x.extend(block);
        }
    }
    x
}

#[test]
fn scale_rule_boundaries_and_subnormals() {
    let x = boundary_blocks();
    for spec in specs() {
        check("boundaries", &spec, &x, 32);
        check("boundaries rows of 96", &spec, &x, 96);
        check("boundaries rows of 80", &spec, &x, 80);
    }
    // Whole tensors of tiny values: NVFP4 g from a subnormal-range amax (g falls back to 1) and
    // from ~1e-30 (g is used, 1/g near the top of f32), FP8 scales near the bottom of f32.
    for (name, scale) in [("subnormal", 1e-40f64), ("tiny", 1e-30), ("huge", 1e36)] {
        let x: Vec<f32> = Distribution::STANDARD_NORMAL
            .generate(4096, 5)
            .unwrap()
            .iter()
            .map(|&v| (v as f64 * scale) as f32)
            .collect();
        for spec in specs() {
            check(name, &spec, &x, 64);
        }
    }
}

#[test]
fn special_values_and_random_bit_patterns() {
    let mut x = Distribution::STANDARD_NORMAL.generate(4096, 8).unwrap();
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[77] = f32::NEG_INFINITY;
    x[100] = -0.0;
    x[130] = f32::MAX;
    x[131] = -f32::MAX;
    x[200] = f32::from_bits(1); // the smallest subnormal
    for v in &mut x[256..288] {
        *v = 0.0; // an all-zero block: MXFP4 scale byte 0x00 = 2^-127
    }
    for v in &mut x[288..320] {
        *v = -1e-42; // an all-subnormal block
    }
    for spec in specs() {
        check("specials", &spec, &x, 512);
        check("specials ragged", &spec, &x[..4000], 40);
    }
    // Random bit patterns over the whole f32 range (NaN and Inf included).
    let x: Vec<f32> = (0..1 << 14)
        .map(|i| f32::from_bits(counter_hash(2024, i) as u32))
        .collect();
    for spec in specs() {
        check("random bits", &spec, &x, 256);
    }
    let finite: Vec<f32> = x
        .iter()
        .map(|&v| if v.is_finite() { v } else { 1.5 })
        .collect();
    for spec in specs() {
        check("random finite bits", &spec, &finite, 256);
    }
}

#[test]
fn any_axis_of_a_3d_tensor_and_the_device_dispatch() {
    let dims = [6usize, 40, 5];
    let x = Distribution::STANDARD_NORMAL
        .generate(6 * 40 * 5, 3)
        .unwrap();
    let dev = device();
    for spec in specs() {
        for axis in 0..3 {
            let t = Tensor::<3>::from_data(TensorData::new(x.clone(), dims), &dev);
            let want = spec.fake_quantize_along(&x, &dims, axis).unwrap();
            let got = bits(fake_quantize_fused(t.clone(), &spec, axis).unwrap());
            let bad = differences(&x, &got, &want);
            assert!(
                bad.is_empty(),
                "{} axis {axis}:\n{}",
                spec.label(),
                bad.join("\n")
            );
            // The dispatcher picks the fused kernel on this device: the same bits.
            let via = bits(fake_quantize_on_device(t, &spec, axis).unwrap());
            assert_eq!(via, got, "{} axis {axis} via dispatch", spec.label());
        }
    }
}

#[test]
fn fused_straight_through_value_and_gradient() {
    let dev = device().autodiff();
    let dims = [24usize, 48];
    let mut x = Distribution::STANDARD_NORMAL.generate(24 * 48, 21).unwrap();
    x[5] = 1e-41; // subnormal in, and (MX, tiny block) possibly subnormal out
    let w = Distribution::STANDARD_NORMAL.generate(24 * 48, 22).unwrap();
    for spec in specs() {
        for axis in 0..2 {
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), dims), &dev).require_grad();
            let wt = Tensor::<2>::from_data(TensorData::new(w.clone(), dims), &dev);
            let y = quantize_with_gradient(xt.clone(), &spec, axis, QuantGradient::Ste).unwrap();
            let want = spec.fake_quantize_along(&x, &dims, axis).unwrap();
            let got = bits(y.clone());
            let bad = differences(&x, &got, &want);
            assert!(
                bad.is_empty(),
                "{} STE value:\n{}",
                spec.label(),
                bad.join("\n")
            );
            let grads = (y * wt).sum().backward();
            let g = xt.grad(&grads).expect("the STE passes a gradient");
            let want_g: Vec<u32> = w.iter().map(|v| v.to_bits()).collect();
            assert_eq!(
                bits(g),
                want_g,
                "{} axis {axis}: dL/dx = dL/dQ(x)",
                spec.label()
            );
        }
    }
    // Without STE the quantizer is a constant: no gradient reaches x.
    let spec: QuantSpec = "mxfp4".parse().unwrap();
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), dims), &dev).require_grad();
    let y = quantize_with_gradient(xt.clone(), &spec, 1, QuantGradient::None).unwrap();
    let grads = (y.clone() * y).sum().backward();
    let zero = xt
        .grad(&grads)
        .map(|g| g.abs().max().into_scalar::<f32>() == 0.0)
        .unwrap_or(true);
    assert!(zero, "QuantGradient::None must not pass a gradient");
}

#[test]
#[allow(deprecated)] // Device::ndarray: the CPU backend
fn refuses_host_tensors() {
    let t = Tensor::<2>::zeros([2, 32], &Device::ndarray());
    assert!(!is_fused_device(&t.device()));
    let err = fake_quantize_fused(t, &"mxfp4".parse().unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CubeCL"), "{err}");
}
