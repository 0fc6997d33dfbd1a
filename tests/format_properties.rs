//! Property tests of the formats (proptest): representability, idempotence, sign symmetry and the
//! half-step error bound.

#![allow(clippy::needless_range_loop)] // parallel arrays indexed by element

use aqn_core::formats::e2m1::{E2M1_VALUES, unpack_nibble};
use aqn_core::formats::e4m3::e4m3_to_f32;
use aqn_core::formats::e8m0::e8m0_to_f32;
use aqn_core::formats::{
    BlockLayout, MxScaleMode, NvScaling, PackedTensor, QuantFormat, QuantSpec,
};
use proptest::prelude::*;

/// A tensor `[rows, row_len]` of finite values spanning many magnitudes, with some exact zeros.
fn tensor() -> impl Strategy<Value = (Vec<f32>, usize)> {
    (1usize..6, 1usize..70, -20i32..20).prop_flat_map(|(rows, row_len, exp)| {
        let scale = 2f32.powi(exp);
        (
            proptest::collection::vec(
                prop_oneof![
                    8 => (-8.0f32..8.0).prop_map(move |v| v * scale),
                    1 => Just(0.0f32),
                    1 => (-1e-3f32..1e-3).prop_map(move |v| v * scale),
                ],
                rows * row_len,
            ),
            Just(row_len),
        )
    })
}

fn fp4_specs() -> Vec<QuantSpec> {
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
    v
}

/// The scale (block scale times tensor scale) that element `i` of `p` was quantized with.
fn element_scale(p: &PackedTensor, i: usize) -> f64 {
    let grid = p.grid().unwrap();
    let (r, c) = (i / p.row_len, i % p.row_len);
    let block = match grid.layout {
        BlockLayout::Row => r * grid.block_cols() + c / grid.block,
        BlockLayout::Tile16x16 => (r / grid.block) * grid.block_cols() + c / grid.block,
    };
    match p.spec.format {
        QuantFormat::Mxfp4 => e8m0_to_f32(p.scales[block]) as f64,
        _ => e4m3_to_f32(p.scales[block]) as f64 * p.tensor_scale as f64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every dequantized value is an E2M1 value times its block's scale (times g).
    #[test]
    fn dequantized_values_are_representable((x, row_len) in tensor()) {
        for spec in fp4_specs() {
            let p = spec.quantize(&x, row_len).unwrap();
            let q = spec.fake_quantize_vec(&x, row_len).unwrap();
            for i in 0..x.len() {
                let code = unpack_nibble(&p.codes, i);
                let s = element_scale(&p, i);
                if spec.format == QuantFormat::Mxfp4 {
                    // Exact: an E2M1 value times a power of two.
                    let want = (E2M1_VALUES[code as usize] as f64 * s) as f32;
                    prop_assert_eq!(q[i].to_bits(), want.to_bits(), "{} element {}", spec, i);
                }
                // The value over its scale is on the E2M1 grid (exact in f64 for both formats:
                // q = (p * s) * g in f32 with p * s exact; the f64 quotient is within 2^-23 of p).
                let ratio = q[i] as f64 / s;
                let p_val = E2M1_VALUES[code as usize] as f64;
                prop_assert!((ratio - p_val).abs() <= 2f64.powi(-22) * p_val.abs().max(1.0), "{} element {}: {} / {} is not E2M1 {}", spec, i, q[i], s, p_val);
            }
        }
    }

    /// Re-quantizing a dequantized tensor returns the same codes and scales (MXFP4 FLOOR and
    /// EVEN, NVFP4) and, for every mode, the same values. CEIL and RCEIL can pick a smaller scale
    /// the second time (a block max of 2.1 * 2^e rounds to 2 * 2^e, whose ceil is one lower), so
    /// their codes may change while their values do not.
    #[test]
    fn requantizing_is_idempotent((x, row_len) in tensor()) {
        for spec in fp4_specs() {
            let q = spec.fake_quantize_vec(&x, row_len).unwrap();
            let qq = spec.fake_quantize_vec(&q, row_len).unwrap();
            let same_codes = matches!(
                (spec.format, spec.scale_mode, spec.nv_scaling),
                (QuantFormat::Mxfp4, MxScaleMode::Floor | MxScaleMode::Even, _) | (QuantFormat::Nvfp4, _, _)
            );
            if same_codes {
                let (p1, p2) = (spec.quantize(&x, row_len).unwrap(), spec.quantize(&q, row_len).unwrap());
                prop_assert_eq!(&p1.codes, &p2.codes, "{} codes", spec);
                prop_assert_eq!(&p1.scales, &p2.scales, "{} scales", spec);
            }
            for i in 0..x.len() {
                prop_assert_eq!(q[i].to_bits(), qq[i].to_bits(), "{} element {}", spec, i);
            }
        }
    }

    /// q(-x) = -q(x) for every format.
    #[test]
    fn sign_symmetry((x, row_len) in tensor()) {
        let neg: Vec<f32> = x.iter().map(|v| -v).collect();
        let mut specs = fp4_specs();
        specs.push(QuantSpec::new(QuantFormat::Fp8));
        specs.push(QuantSpec::new(QuantFormat::Bf16));
        for spec in specs {
            let (a, b) = (spec.fake_quantize_vec(&x, row_len).unwrap(), spec.fake_quantize_vec(&neg, row_len).unwrap());
            for i in 0..x.len() {
                prop_assert_eq!(a[i].to_bits() ^ 0x8000_0000, b[i].to_bits(), "{} element {}", spec, i);
            }
        }
    }

    /// Each element that does not saturate is within half a grid step of its block (MXFP4:
    /// exactly; NVFP4: up to the f32 rounding of `v * m` and `(p * s) * g`, a few ulps).
    #[test]
    fn error_at_most_half_a_step((x, row_len) in tensor()) {
        for spec in fp4_specs() {
            let p = spec.quantize(&x, row_len).unwrap();
            let q = spec.fake_quantize_vec(&x, row_len).unwrap();
            for i in 0..x.len() {
                let s = element_scale(&p, i);
                let scaled = (x[i] as f64).abs() / s;
                if scaled > 6.0 {
                    continue; // saturates
                }
                let step = if scaled < 2.0 { 0.5 } else if scaled < 4.0 { 1.0 } else { 2.0 };
                let err = (x[i] as f64 - q[i] as f64).abs();
                let bound = 0.5 * step * s;
                let slack = if spec.format == QuantFormat::Mxfp4 { 0.0 } else { 4.0 * f32::EPSILON as f64 * (x[i] as f64).abs().max(6.0 * s) };
                prop_assert!(err <= bound + slack, "{} element {}: x={} q={} err={} > half step {}", spec, i, x[i], q[i], err, bound);
            }
        }
    }
}
