//! End-to-end tests of `aqn-native srdd` on the fixture models: the per-layer table, the JSON
//! report (read back with `SrddReport`, and its numbers checked against an independent
//! computation from transformers' own layer outputs), --what weights / linear-inputs, the SVG
//! chart, --rin, and every bad input with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aqn_core::formats::QuantSpec;
use aqn_core::quant_error::ErrorMetrics;
use aqn_core::srdd::{SrddMetric, SrddReport};
use aqn_core::tensor_file::{TensorFile, read_bytes};

fn aqn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aqn-native"))
        .arg("srdd")
        .args(args)
        .output()
        .expect("run aqn-native")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_srdd");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed: {}", stderr(o));
}

fn read_report(path: &Path) -> SrddReport {
    SrddReport::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The single-line prompts of a fixture (prompt 2 spans lines) with their indices.
fn fixture_prompts(model: &str) -> Vec<(usize, String)> {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(model).join("expected.json")).unwrap(),
    )
    .unwrap();
    json["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p["text"].as_str().unwrap().to_string()))
        .filter(|(_, t)| !t.contains('\n'))
        .collect()
}

#[test]
fn table_and_report_agree_with_transformers_layer_outputs() {
    for model in ["qwen2-untied", "qwen2-tied"] {
        let prompts = fixture_prompts(model);
        let file = tmp(&format!("{model}_prompts.txt"));
        let text: Vec<&str> = prompts.iter().map(|(_, t)| t.as_str()).collect();
        std::fs::write(&file, text.join("\n\n") + "\n").unwrap();
        let report_path = tmp(&format!("{model}_report.json"));
        let dir = fixture(model);
        let o = aqn(&[
            "--model",
            dir.to_str().unwrap(),
            "--format",
            "mxfp4",
            "--prompts",
            file.to_str().unwrap(),
            "--output",
            report_path.to_str().unwrap(),
        ]);
        ok(&o);
        let out = stdout(&o);
        let layers = if model == "qwen2-untied" { 3 } else { 2 };
        assert!(
            out.contains(&format!("({} prompts)", prompts.len())),
            "{out}"
        );
        assert!(out.contains("layer  sqnr_db  deadzone"), "{out}");
        assert!(out.contains("strategy: "), "{out}");
        let report = read_report(&report_path);
        assert_eq!(report.config.num_layers, layers);
        assert_eq!(report.config.quant_type, "mxfp4:floor");
        assert_eq!(report.report.per_layer.len(), layers);

        // The oracle: transformers' layer outputs of the same prompts, quantized here.
        let bytes = read_bytes(&dir.join("expected.safetensors")).unwrap();
        let expected = TensorFile::parse(&bytes, "expected.safetensors").unwrap();
        let spec: QuantSpec = "mxfp4".parse().unwrap();
        for l in 0..layers {
            let per_prompt: Vec<ErrorMetrics> = prompts
                .iter()
                .map(|(p, _)| {
                    let h = expected.read(&format!("hidden.{p}.{l}")).unwrap();
                    let q = spec.fake_quantize_along(&h.data, &h.shape, 1).unwrap();
                    ErrorMetrics::compute(&h.data, &q)
                })
                .collect();
            let n = per_prompt.len() as f64;
            let rel = per_prompt
                .iter()
                .map(|m| m.mean_relative_error)
                .sum::<f64>()
                / n;
            let sqnr = per_prompt.iter().map(|m| m.sqnr_db).sum::<f64>() / n;
            let norm = per_prompt.iter().map(|m| m.norm).sum::<f64>() / n;
            let got = &report.report.per_layer[l];
            // Layer outputs agree with transformers to ~1e-5; an element that sits on a rounding
            // boundary may flip, so the averages agree to well under 1%.
            assert!(
                (got.relative_error / rel - 1.0).abs() < 0.01,
                "{model} layer {l}: {} vs {rel}",
                got.relative_error
            );
            assert!(
                (got.sqnr_db - sqnr).abs() < 0.05,
                "{model} layer {l}: {} vs {sqnr}",
                got.sqnr_db
            );
            assert!(
                (got.output_norm / norm - 1.0).abs() < 1e-4,
                "{model} layer {l}"
            );
            // The table prints the same numbers.
            assert!(
                out.contains(&format!("{:.2}%", got.relative_error * 100.0)),
                "{out}"
            );
        }
    }
}

#[test]
fn weights_and_linear_inputs() {
    let dir = fixture("qwen2-untied");
    let report_path = tmp("weights.json");
    let o = aqn(&[
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "nvfp4",
        "--what",
        "weights",
        "--output",
        report_path.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(stdout(&o).contains("SRDD weights of"), "{}", stdout(&o));
    let report = read_report(&report_path);
    assert_eq!(report.config.quant_type, "nvfp4:two-level (weights)");
    // Layer 1's seven projection weights, from the checkpoint files, averaged.
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let spec: QuantSpec = "nvfp4".parse().unwrap();
    let mut rel = Vec::new();
    for (name, shard) in index["weight_map"].as_object().unwrap() {
        if name.starts_with("model.layers.1.") && name.ends_with("proj.weight") {
            let bytes = read_bytes(&dir.join(shard.as_str().unwrap())).unwrap();
            let t = TensorFile::parse(&bytes, "shard")
                .unwrap()
                .read(name)
                .unwrap();
            let q = spec.fake_quantize_along(&t.data, &t.shape, 1).unwrap();
            rel.push(ErrorMetrics::compute(&t.data, &q).mean_relative_error);
        }
    }
    assert_eq!(rel.len(), 7);
    let want = rel.iter().sum::<f64>() / 7.0;
    let got = report.report.per_layer[1].relative_error;
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");

    let report_path = tmp("inputs.json");
    let o = aqn(&[
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "fp8",
        "--what",
        "linear-inputs",
        "--output",
        report_path.to_str().unwrap(),
    ]);
    ok(&o);
    let report = read_report(&report_path);
    assert_eq!(report.config.quant_type, "fp8 (linear-inputs)");
    assert!(
        report
            .report
            .per_layer
            .iter()
            .all(|l| l.relative_error > 0.0 && l.relative_error < 0.1)
    );
}

#[test]
fn plot_and_rin() {
    let dir = fixture("qwen2-untied");
    let svg = tmp("srdd.svg");
    let _ = std::fs::remove_file(&svg);
    let o = aqn(&[
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "mxfp4:rceil",
        "--plot",
        svg.to_str().unwrap(),
        "--plot-metric",
        "deadzone_ratio",
        "--rin",
        "variable",
    ]);
    ok(&o);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") || text.contains("<svg"),
        "not an SVG"
    );
    assert!(text.contains("deadzone_ratio") && text.contains("mxfp4:rceil"));
    // The FP4 formats' default deadzone threshold (aqn_core::srdd::thresholds).
    assert!(text.contains("threshold 0.15"), "no threshold line");
    assert!(text.starts_with("<!-- written by aqn-native srdd -->"));
    assert!(
        stderr(&o).contains(&format!(
            "wrote the SRDD chart (deadzone_ratio) to {}",
            svg.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(text.matches("<rect").count() > 3, "bars missing");
    // --rin prints one multiplier per layer; the variable policy's average to 1.
    let out = stdout(&o);
    let start = out.find("RIN variable").expect(&out);
    let rows: Vec<f64> = out[start..]
        .lines()
        .skip(3)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        (rows.iter().sum::<f64>() / 3.0 - 1.0).abs() < 1e-3,
        "{rows:?}"
    );

    // Another metric, with a threshold-free plot.
    let o = aqn(&[
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "mxfp4",
        "--what",
        "weights",
        "--plot",
        svg.to_str().unwrap(),
        "--plot-metric",
        "output_norm",
    ]);
    ok(&o);
    assert!(!std::fs::read_to_string(&svg).unwrap().contains("threshold"));
    // The metric names parse as the report's fields.
    assert_eq!("sqnr".parse::<SrddMetric>().unwrap(), SrddMetric::SqnrDb);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = fixture("qwen2-tied");
    let d = dir.to_str().unwrap();
    let empty = tmp("empty.txt");
    std::fs::write(&empty, "\n  \n\n").unwrap();
    let long = tmp("long.txt");
    std::fs::write(&long, "12 ".repeat(300) + "\n").unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--model", "/nonexistent/model", "--format", "mxfp4"],
            vec!["/nonexistent/model", "not a directory"],
        ),
        (
            vec![
                "--model",
                fixture("").to_str().unwrap().to_owned().leak(),
                "--format",
                "mxfp4",
            ],
            vec!["config.json"],
        ),
        (
            vec!["--model", d, "--format", "mxfp5"],
            vec!["`mxfp5`", "mxfp4, nvfp4, fp8, bf16"],
        ),
        (
            vec!["--model", d, "--format", "mxfp4:round"],
            vec!["`round`", "floor"],
        ),
        (
            vec![
                "--model",
                d,
                "--format",
                "mxfp4",
                "--prompts",
                "/nonexistent/prompts.txt",
            ],
            vec!["/nonexistent/prompts.txt"],
        ),
        (
            vec![
                "--model",
                d,
                "--format",
                "mxfp4",
                "--prompts",
                empty.to_str().unwrap(),
            ],
            vec!["holds no prompt"],
        ),
        (
            vec![
                "--model",
                d,
                "--format",
                "mxfp4",
                "--prompts",
                long.to_str().unwrap(),
            ],
            vec!["prompt 1", "max_position_embeddings (256)"],
        ),
        (
            vec!["--model", d, "--format", "mxfp4", "--what", "activations"],
            vec!["`activations`", "linear-inputs"],
        ),
        (
            vec!["--model", d, "--format", "mxfp4", "--rin", "cosine"],
            vec!["`cosine`", "tiered"],
        ),
        (
            vec!["--model", d, "--format", "mxfp4", "--rin", "e9b"],
            vec!["band_width = 4", "2"],
        ),
        (
            vec![
                "--model",
                d,
                "--format",
                "mxfp4",
                "--deadzone-threshold",
                "-1",
            ],
            vec!["--deadzone-threshold -1"],
        ),
        (
            vec!["--model", d, "--format", "mxfp4", "--plot-metric", "snr"],
            vec!["`snr`", "sqnr_db"],
        ),
        (vec!["--model", d], vec!["--format"]),
    ];
    for (args, needles) in cases {
        let o = aqn(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{err}` lacks `{n}`");
        }
    }
}
