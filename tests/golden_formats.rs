//! Bit-exactness against the independent Python oracle (tests/golden/gen_golden.py, numpy +
//! ml_dtypes). The files are committed; this test needs no Python.

use aqn_core::formats::{
    BlockLayout, MxScaleMode, NvScaling, QuantFormat, QuantSpec, Rounding, bf16, e2m1, e4m3, e8m0,
};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::path::PathBuf;

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn u8s(st: &SafeTensors, name: &str) -> Vec<u8> {
    st.tensor(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .data()
        .to_vec()
}

fn u16s(st: &SafeTensors, name: &str) -> Vec<u16> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Equal bits, or both NaN (the oracle writes one canonical NaN).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[derive(Deserialize)]
struct Case {
    name: String,
    desc: String,
    rows: usize,
    row_len: usize,
    seed: Option<u64>,
}

fn metadata(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).expect("header");
    meta.metadata().clone().expect("metadata")
}

fn check_format_file(file: &str) -> usize {
    let bytes = golden(file);
    let meta = metadata(&bytes);
    let st = SafeTensors::deserialize(&bytes).expect("golden file");
    let format: QuantFormat = meta["format"].parse().unwrap();
    let mut spec = QuantSpec::new(format);
    if let Some(m) = meta.get("scale_mode") {
        spec = spec.with_scale_mode(m.parse::<MxScaleMode>().unwrap());
    }
    if let Some(s) = meta.get("nv_scaling") {
        spec = spec.with_nv_scaling(s.parse::<NvScaling>().unwrap());
    }
    if format == QuantFormat::Nvfp4 {
        spec = spec.with_blocks(meta["blocks"].parse::<BlockLayout>().unwrap());
    }
    let cases: Vec<Case> = serde_json::from_str(&meta["cases"]).unwrap();
    assert!(!cases.is_empty());
    for case in &cases {
        let spec = match case.seed {
            Some(seed) => spec.with_rounding(Rounding::Stochastic { seed }),
            None => spec,
        };
        let at = |t: &str| format!("{}.{t}", case.name);
        let x = f32s(&st, &at("input"));
        assert_eq!(x.len(), case.rows * case.row_len, "{file} {}", case.name);
        let want_deq = f32s(&st, &at("dequant"));
        let ctx = format!(
            "{file} {} ({}) [{}, {}]",
            case.name, case.desc, case.rows, case.row_len
        );

        let packed = spec.quantize(&x, case.row_len).unwrap();
        assert_eq!(packed.codes, u8s(&st, &at("codes")), "{ctx}: codes");
        assert_eq!(packed.scales, u8s(&st, &at("scales")), "{ctx}: scales");
        let g = f32s(&st, &at("tensor_scale"))[0];
        assert_eq!(
            packed.tensor_scale.to_bits(),
            g.to_bits(),
            "{ctx}: tensor scale {} vs {g}",
            packed.tensor_scale
        );

        let fake = spec.fake_quantize_vec(&x, case.row_len).unwrap();
        let deq = packed.dequantize().unwrap();
        for i in 0..x.len() {
            assert!(
                same(fake[i], want_deq[i]),
                "{ctx}: element {i} = {}: fake-quantized {} want {}",
                x[i],
                fake[i],
                want_deq[i]
            );
            assert!(
                same(deq[i], want_deq[i]),
                "{ctx}: element {i}: dequantized {} want {}",
                deq[i],
                want_deq[i]
            );
        }
    }
    cases.len()
}

macro_rules! format_file_test {
    ($name:ident, $file:literal) => {
        #[test]
        fn $name() {
            assert!(check_format_file($file) >= 10);
        }
    };
}

format_file_test!(mxfp4_floor, "mxfp4_floor.safetensors");
format_file_test!(mxfp4_ceil, "mxfp4_ceil.safetensors");
format_file_test!(mxfp4_even, "mxfp4_even.safetensors");
format_file_test!(mxfp4_rceil, "mxfp4_rceil.safetensors");
format_file_test!(nvfp4_two_level, "nvfp4_two_level.safetensors");
format_file_test!(nvfp4_single_level, "nvfp4_single_level.safetensors");
format_file_test!(nvfp4_tile16, "nvfp4_tile16.safetensors");
format_file_test!(mxfp4_stochastic, "mxfp4_stochastic.safetensors");
format_file_test!(nvfp4_stochastic, "nvfp4_stochastic.safetensors");
format_file_test!(fp8, "fp8.safetensors");

#[test]
fn e2m1_codec() {
    let bytes = golden("e2m1.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (c, v) in u8s(&st, "decode_codes")
        .into_iter()
        .zip(f32s(&st, "decode_values"))
    {
        assert!(same(e2m1::e2m1_to_f32(c), v), "code {c:#x}");
    }
    let input = f32s(&st, "encode_input");
    assert!(input.len() > 100);
    for (x, c) in input.into_iter().zip(u8s(&st, "encode_codes")) {
        assert_eq!(
            e2m1::f32_to_e2m1(x),
            c,
            "encode {x:e} ({:#010x})",
            x.to_bits()
        );
    }
}

#[test]
fn e4m3_codec() {
    let bytes = golden("e4m3.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (c, v) in u8s(&st, "decode_codes")
        .into_iter()
        .zip(f32s(&st, "decode_values"))
    {
        assert!(same(e4m3::e4m3_to_f32(c), v), "code {c:#x}");
    }
    let input = f32s(&st, "encode_input");
    assert!(input.len() > 100);
    for (x, c) in input.into_iter().zip(u8s(&st, "encode_codes")) {
        assert_eq!(
            e4m3::f32_to_e4m3(x),
            c,
            "encode {x:e} ({:#010x})",
            x.to_bits()
        );
    }
}

#[test]
fn e8m0_codec() {
    let bytes = golden("e8m0.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let codes = u8s(&st, "decode_codes");
    assert_eq!(codes.len(), 256);
    for (c, v) in codes.into_iter().zip(f32s(&st, "decode_values")) {
        assert!(same(e8m0::e8m0_to_f32(c), v), "code {c:#x}");
    }
}

#[test]
fn bf16_codec() {
    let bytes = golden("bf16.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let codes = u16s(&st, "decode_codes");
    assert_eq!(codes.len(), 65536);
    for (c, v) in codes.into_iter().zip(f32s(&st, "decode_values")) {
        assert_eq!(
            bf16::bf16_bits_to_f32(c).to_bits(),
            v.to_bits(),
            "code {c:#x}"
        );
    }
    let input = f32s(&st, "encode_input");
    assert!(input.len() > 100);
    for (x, c) in input.into_iter().zip(u16s(&st, "encode_codes")) {
        assert_eq!(
            bf16::f32_to_bf16_bits(x),
            c,
            "encode {x:e} ({:#010x})",
            x.to_bits()
        );
    }
}
