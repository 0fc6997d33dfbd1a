//! End-to-end tests of `aqn-native quant-error` and `aqn-native quantize`, including every bad
//! input of issue 2: truncated file, lying header, unsupported dtype, unknown format name.

use aqn_core::formats::QuantSpec;
use aqn_core::tensor_file::{FloatDtype, OutTensor, TensorFile, serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_quant");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn weights() -> Vec<f32> {
    (0..64 * 48)
        .map(|i| (aqn_core::rng::normal_f64(4, i) * 0.02) as f32)
        .collect()
}

fn checkpoint(path: &Path) {
    let w = weights();
    let bytes = serialize(
        &[
            OutTensor::float(
                "model.layers.0.mlp.up_proj.weight",
                vec![48, 64],
                FloatDtype::Bf16,
                &w,
            ),
            OutTensor::float(
                "model.layers.0.self_attn.q_proj.weight",
                vec![64, 48],
                FloatDtype::F32,
                &w,
            ),
            OutTensor::float(
                "model.norm.weight",
                vec![64],
                FloatDtype::F16,
                &vec![1.0; 64],
            ),
            OutTensor::float("lm_head.weight", vec![48, 64], FloatDtype::F32, &w),
        ],
        None,
    )
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn quant_error_default_table_and_json() {
    let o = aqn(&["quant-error", "--json", "--format", "mxfp4,nvfp4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4); // 2 generated tensors x 2 formats
    let find = |t: &str, f: &str| {
        rows.iter()
            .find(|r| r["tensor"].as_str().unwrap().starts_with(t) && r["format"] == f)
            .unwrap()
    };
    let mx = find("normal", "mxfp4:floor");
    let nv = find("normal", "nvfp4:two-level");
    assert!((mx["mean_relative_error"].as_f64().unwrap() - 0.210).abs() < 0.003);
    assert!((nv["mean_relative_error"].as_f64().unwrap() - 0.179).abs() < 0.003);
    assert!((mx["deadzone_ratio"].as_f64().unwrap() - 0.088).abs() < 0.003);
    assert_eq!(mx["elements"], 1 << 20);

    let o = aqn(&["quant-error"]);
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    for want in [
        "rel_err",
        "deadzone",
        "mxfp4:floor",
        "nvfp4:single-level",
        "fp8",
        "bf16",
        "weight-like",
    ] {
        assert!(table.contains(want), "missing {want} in\n{table}");
    }
}

#[test]
fn quant_error_per_tensor_of_a_checkpoint() {
    let path = tmp("ckpt.safetensors");
    checkpoint(&path);
    let o = aqn(&[
        "quant-error",
        "--input",
        path.to_str().unwrap(),
        "--format",
        "nvfp4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["tensor"] == name)
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    assert_eq!(row("model.layers.0.mlp.up_proj.weight")["dtype"], "bf16");
    assert_eq!(row("model.norm.weight")["dtype"], "f16");
    assert_eq!(row("lm_head.weight")["dtype"], "f32");
    // The bf16 copy of the weights has its own (bf16-rounded) values; the error is like the f32 one.
    let e0 = row("model.layers.0.mlp.up_proj.weight")["mean_relative_error"]
        .as_f64()
        .unwrap();
    assert!(e0 > 0.1 && e0 < 0.4, "{e0}");
    // An all-ones norm vector quantizes exactly.
    assert_eq!(
        row("model.norm.weight")["max_abs_error"].as_f64().unwrap(),
        0.0
    );
}

#[test]
fn quantize_writes_fake_quantized_and_packed() {
    let input = tmp("in.safetensors");
    checkpoint(&input);
    let out = tmp("out.safetensors");
    let o = aqn(&[
        "quantize",
        "--format",
        "mxfp4",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--exclude",
        "lm_head",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 tensors quantized with mxfp4:floor, 2 copied unchanged"),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(&out).unwrap();
    let file = TensorFile::parse(&bytes, "out").unwrap();
    let q = file.read("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(q.dtype, FloatDtype::F32);
    let want = QuantSpec::new(aqn_core::formats::QuantFormat::Mxfp4)
        .fake_quantize_vec(&weights(), 48)
        .unwrap();
    assert_eq!(q.data, want);
    assert_eq!(file.read("lm_head.weight").unwrap().data, weights());
    assert_eq!(
        file.read("model.norm.weight").unwrap().dtype,
        FloatDtype::F16
    );

    // --dtype input keeps bf16 for the bf16 tensor.
    let o = aqn(&[
        "quantize",
        "--format",
        "nvfp4",
        "--dtype",
        "input",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let file = TensorFile::parse(&bytes, "out").unwrap();
    assert_eq!(
        file.read("model.layers.0.mlp.up_proj.weight")
            .unwrap()
            .dtype,
        FloatDtype::Bf16
    );

    // --packed: codes + scales that dequantize to the fake-quantized values.
    let o = aqn(&[
        "quantize",
        "--format",
        "nvfp4",
        "--packed",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let file = TensorFile::parse(&bytes, "out").unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    let codes = file.view(&format!("{name}.codes")).unwrap().data().to_vec();
    let scales = file
        .view(&format!("{name}.scales"))
        .unwrap()
        .data()
        .to_vec();
    let g = file.read(&format!("{name}.tensor_scale")).unwrap().data[0];
    let spec: QuantSpec = file.metadata()["aqn.format"].parse().unwrap();
    let packed = aqn_core::formats::PackedTensor {
        spec,
        rows: 64,
        row_len: 48,
        codes,
        scales,
        tensor_scale: g,
    };
    assert_eq!(
        packed.dequantize().unwrap(),
        spec.fake_quantize_vec(&weights(), 48).unwrap()
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    // Unknown format name: the value and the valid choices.
    let o = aqn(&["quant-error", "--format", "mxfp5"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("unknown format `mxfp5`") && e.contains("mxfp4, nvfp4, fp8, bf16"),
        "{e}"
    );
    let o = aqn(&["quant-error", "--format", "nvfp4:rceil"]);
    assert!(
        stderr(&o).contains("unknown format option `rceil`"),
        "{}",
        stderr(&o)
    );

    // Truncated file.
    let good = tmp("good.safetensors");
    checkpoint(&good);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let o = aqn(&["quant-error", "--input", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("truncated.safetensors is not a valid safetensors file"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");

    // A header that lies about a tensor's size: shape 48x64 f32 but offsets for fewer bytes.
    let header = r#"{"w":{"dtype":"F32","shape":[48,64],"data_offsets":[0,400]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header.as_bytes());
    lying.extend_from_slice(&[0u8; 400]);
    let path = tmp("lying.safetensors");
    std::fs::write(&path, &lying).unwrap();
    let o = aqn(&["quant-error", "--input", path.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("lying.safetensors is not a valid safetensors file"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");

    // A header length pointing past the end of the file.
    let mut huge = 1_000_000u64.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let path = tmp("huge_header.safetensors");
    std::fs::write(&path, &huge).unwrap();
    let o = aqn(&["quant-error", "--input", path.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("huge_header.safetensors is not a valid safetensors file"),
        "{}",
        stderr(&o)
    );

    // Unsupported dtype: names the tensor, its dtype and the supported ones.
    let bytes = serialize(
        &[OutTensor::bytes("token_ids", vec![4], vec![1, 2, 3, 4])],
        None,
    )
    .unwrap();
    let path = tmp("u8.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let o = aqn(&[
        "quantize",
        "--format",
        "fp8",
        "--input",
        path.to_str().unwrap(),
        "--output",
        tmp("x.safetensors").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("tensor `token_ids`") && e.contains("U8") && e.contains("f32, f16, bf16"),
        "{e}"
    );

    // Missing file.
    let o = aqn(&["quant-error", "--input", "/nonexistent/model.safetensors"]);
    assert!(
        stderr(&o).contains("cannot read /nonexistent/model.safetensors"),
        "{}",
        stderr(&o)
    );

    // Unknown --dtype value: clap lists the valid ones.
    let o = aqn(&[
        "quantize", "--format", "fp8", "--dtype", "f8", "--input", "a", "--output", "b",
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("'f8'") && e.contains("f32") && e.contains("input"),
        "{e}"
    );
}
