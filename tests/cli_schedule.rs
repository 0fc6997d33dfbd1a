//! End-to-end tests of `aqn-native schedule`: table, --json, --csv, --plot (linear and log),
//! presets, --srdd/--rin, and every refusal's message.
//!
//! `tests/fixtures/srdd_sample.json` is a synthetic SRDD report (28 made-up layers peaking at
//! 14-17, labelled so in its `model_path`); `srdd_fixture_is_current` rebuilds it from the
//! profile below with `SrddReport::from_layers` and fails if the file differs. Regenerate with
//! `AQN_REGEN_FIXTURES=1 cargo test --release -p aqn-native --test cli_schedule srdd_fixture`.

use std::path::PathBuf;
use std::process::{Command, Output};

use aqn_core::srdd::{LayerMetrics, SrddLayer, SrddReport, SrddThresholds};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aqn-native");

/// A made-up per-layer relative-error profile (mean exactly 0.36), shaped like the seed's
/// Qwen2.5-1.5B MXFP4 scan: highest in the middle (band 14-17), lowest at layer 26.
const PROFILE: [f64; 28] = [
    0.300, 0.320, 0.330, 0.330, 0.340, 0.350, 0.355, 0.360, 0.360, 0.365, 0.380, 0.390, 0.395,
    0.400, 0.420, 0.432, 0.425, 0.410, 0.395, 0.385, 0.365, 0.355, 0.345, 0.335, 0.330, 0.320,
    0.288, 0.300,
];
const SYNTHETIC_MODEL: &str =
    "SYNTHETIC: made-up 28-layer profile for tests and docs, not a scan of any model";
const SYNTHETIC_TIME: &str = "2026-01-15T00:00:00";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/srdd_sample.json")
}

fn synthetic_report() -> SrddReport {
    let thresholds = SrddThresholds::default();
    let layers = PROFILE
        .iter()
        .enumerate()
        .map(|(i, &rel)| {
            let metrics = LayerMetrics {
                sqnr_db: 17.0 - 20.0 * (rel - 0.36),
                deadzone_ratio: 0.63 * rel,
                saturation_ratio: 0.002 + 0.0001 * i as f64,
                relative_error: rel,
                mean_abs_error: 0.02 * rel,
                max_abs_error: 0.5 + 0.05 * i as f64,
                output_norm: 40.0 + 5.0 * i as f64,
            };
            SrddLayer::new(i, metrics, &thresholds)
        })
        .collect();
    SrddReport::from_layers(SYNTHETIC_MODEL, "mxfp4", thresholds, layers, SYNTHETIC_TIME)
        .expect("the synthetic profile is a valid report")
}

#[test]
fn srdd_fixture_is_current() {
    let want = synthetic_report().to_json() + "\n";
    if std::env::var_os("AQN_REGEN_FIXTURES").is_some() {
        std::fs::write(fixture(), &want).unwrap();
    }
    let have = std::fs::read_to_string(fixture()).unwrap();
    assert_eq!(
        have, want,
        "regenerate with AQN_REGEN_FIXTURES=1 (see the module docs)"
    );
    let report = SrddReport::from_json(&have).unwrap();
    assert_eq!(report.config.num_layers, 28);
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("schedule")
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(&a)).unwrap()
}

fn sigmas(v: &Value) -> Vec<f64> {
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sigma"].as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aqn-cli-schedule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const E13J: [&str; 10] = [
    "--kind",
    "geometric",
    "--sigma-start",
    "0.05",
    "--sigma-end",
    "5e-4",
    "--stages",
    "10",
    "--steps",
    "29",
];

#[test]
fn table_of_the_e13j_case() {
    let out = ok(&E13J);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "# geometric (QeRL): 0.05 -> 0.0005, K = 10, T = 29"
    );
    let rows: Vec<Vec<&str>> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 29);
    assert_eq!(rows[0], ["1", "0", "0"]);
    assert_eq!(rows[1], ["2", "0", "0"]);
    for r in &rows[2..5] {
        assert_eq!(r[1..], ["1", "5.00000e-2"]);
    }
    for r in &rows[26..29] {
        assert_eq!(r[1..], ["9", "5.00000e-4"]);
    }
}

#[test]
fn json_and_csv_agree() {
    let v = json(&E13J);
    assert_eq!(v["schedule"]["kind"], "geometric");
    assert_eq!(v["schedule"]["stages"], 10);
    let s = sigmas(&v);
    assert_eq!(s.len(), 29);
    assert_eq!(&s[..2], &[0.0, 0.0]);
    assert_eq!(&s[2..5], &[0.05, 0.05, 0.05]);
    assert!(close(s[28], 5e-4));
    assert_eq!(v["points"][5]["stage"], 2);

    let mut a = E13J.to_vec();
    a.push("--csv");
    let csv = ok(&a);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,epoch,stage,sigma");
    assert_eq!(lines.len(), 30);
    for (i, line) in lines[1..].iter().enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols[0], (i + 1).to_string());
        assert_eq!(cols[1], "");
        assert_eq!(cols[3].parse::<f64>().unwrap(), s[i], "{line}");
    }
}

#[test]
fn k10_trend_1e2_to_1e4() {
    // T = 100: intervals of exactly 10 steps; stage i+1 holds the trend value i.
    let v = json(&["--stages", "10", "--steps", "100"]);
    let s = sigmas(&v);
    let want = [
        1e-2, 5.62e-3, 3.16e-3, 1.78e-3, 1e-3, 5.62e-4, 3.16e-4, 1.78e-4, 1e-4,
    ];
    for (i, w) in want.iter().enumerate() {
        let got = s[10 * (i + 1) + 4];
        assert!(
            (got / w - 1.0).abs() < 5e-3,
            "stage {}: {got} vs {w}",
            i + 1
        );
    }
}

#[test]
fn presets() {
    let v = json(&["--preset", "e5b"]);
    assert_eq!(v["preset"], "e5b");
    assert!(
        v["preset_source"]
            .as_str()
            .unwrap()
            .contains("stages_per_epoch 5")
    );
    let s = sigmas(&v);
    assert_eq!(s.len(), 116);
    assert_eq!(s[8], 0.0); // step 9: warm-up of epoch 1
    assert_eq!(s[9], 0.05); // step 10: b_0
    assert!(close(s[57], 0.005)); // step 58: b_1 ends epoch 1
    assert_eq!(s[58], 0.0); // step 59: warm-up of epoch 2
    assert_eq!(v["points"][58]["epoch"], 2);
    assert!(close(s[67], 0.005)); // step 68: b_1 starts epoch 2's range
    assert!(close(s[115], 5e-4));

    let e6b = json(&["--preset", "e6b"]);
    assert_eq!(e6b["schedule"]["kind"], "geometric");
    assert_eq!(sigmas(&e6b).len(), 29);
    // Flags override the preset: E12 (K = 10) over 2 epochs of 29 steps.
    let e12 = json(&["--preset", "e12", "--epochs", "2"]);
    assert_eq!(e12["schedule"]["epochs"], 2);
    assert_eq!(e12["schedule"]["stages"], 10);
    assert_eq!(sigmas(&e12).len(), 58);
    let list = ok(&["--list-presets"]);
    for name in [
        "e5b",
        "e5c",
        "e9a",
        "e9a-high",
        "e9b",
        "e6b",
        "e12",
        "qerl",
        "qerl-high",
    ] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
}

#[test]
fn srdd_with_rin_gives_per_layer_sigma() {
    let report = fixture();
    let report = report.to_str().unwrap();
    // The E9b preset brings its tiered policy.
    let v = json(&["--preset", "e9b", "--srdd", report]);
    assert_eq!(v["rin"]["num_layers"], 28);
    assert!(v["rin"]["policy"].as_str().unwrap().starts_with("tiered"));
    let p = &v["points"][9]; // step 10: b_0 = 0.01
    assert_eq!(p["sigma"], 0.01);
    let m: Vec<f64> = p["multipliers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let e: Vec<f64> = p["effective_sigma"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for l in 0..28 {
        let want = match l {
            14..=17 => 1.5,
            10..=13 | 18..=21 => 1.2,
            _ => 1.0,
        };
        assert_eq!(m[l], want, "layer {l}");
        assert_eq!(e[l], 0.01 * want, "layer {l}");
    }
    // --rin overrides: E13n on the same report, table form with one column per layer.
    let table = ok(&["--preset", "e9b", "--srdd", report, "--rin", "e13n"]);
    assert!(
        table.contains("# RIN inverse-normalized on relative_error"),
        "{table}"
    );
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("step"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header.len(), 4 + 28, "{header:?}");
    assert_eq!(header[4..6], ["L0", "L1"]);
    assert_eq!(header[31], "L27");
    let v = json(&["--srdd", report, "--rin", "e13n", "--steps", "29"]);
    let m = v["points"][28]["multipliers"].as_array().unwrap();
    assert!(close(m[26].as_f64().unwrap(), 1.0));
    assert!(close(m[15].as_f64().unwrap(), 0.8 / 1.2));
    // CSV gets one column per layer.
    let csv = ok(&["--srdd", report, "--rin", "variable", "--csv"]);
    assert!(csv.lines().next().unwrap().ends_with(",sigma_layer_27"));
}

/// The contents of the SVG's `<text>` elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

#[test]
fn plot_writes_an_svg_chart_with_axes() {
    let path = temp("e5b.svg");
    ok(&["--preset", "e5b", "--plot", path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&path).unwrap();
    // aqn-native's mark (by which it recognizes its own files), then the SVG document.
    assert!(
        svg.starts_with("<!-- written by aqn-native schedule -->\n<svg"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    let texts = svg_texts(&svg);
    for label in ["optimizer step", "sigma", "sigma(step)", "100", "5.0e-2"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no text `{label}` in {texts:?}"
        );
    }
    assert!(
        texts[0].starts_with("epoch-aware: 0.05"),
        "title {}",
        texts[0]
    );
    assert!(svg.contains("<polyline"));

    let log = temp("e9b-log.svg");
    let report = fixture();
    ok(&[
        "--preset",
        "e9b",
        "--srdd",
        report.to_str().unwrap(),
        "--plot",
        log.to_str().unwrap(),
        "--log-scale",
    ]);
    let svg = std::fs::read_to_string(&log).unwrap();
    let texts = svg_texts(&svg);
    for label in ["sigma (log scale)", "optimizer step", "1e-2", "1e-3"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no text `{label}` in {texts:?}"
        );
    }
    // The schedule and one curve per layer.
    assert!(svg.matches("<polyline").count() >= 29);
}

#[test]
fn refusals_name_the_value() {
    let report = fixture();
    let report = report.to_str().unwrap();
    let bad_report = temp("bad_srdd.json");
    let text = std::fs::read_to_string(fixture()).unwrap();
    std::fs::write(
        &bad_report,
        text.replace("\"output_norm\"", "\"output_nrm\""),
    )
    .unwrap();
    let bad_report = bad_report.to_str().unwrap();
    let missing = temp("missing.json");
    let missing = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--stages", "2"], vec!["K = 2", ">= 3"]),
        (vec!["--stages", "1"], vec!["K = 1"]),
        (
            vec!["--kind", "epoch-aware", "--stages", "2"],
            vec!["K = 2", "epoch-aware"],
        ),
        (vec!["--sigma-start", "0"], vec!["sigma_start = 0"]),
        (vec!["--sigma-start", "-0.01"], vec!["sigma_start = -0.01"]),
        (vec!["--sigma-end", "NaN"], vec!["sigma_end = NaN"]),
        (vec!["--sigma-end", "inf"], vec!["sigma_end = inf"]),
        (vec!["--steps", "0"], vec!["total_steps = 0"]),
        (vec!["--epochs", "0"], vec!["epochs = 0"]),
        (vec!["--steps-per-epoch", "0"], vec!["steps_per_epoch = 0"]),
        (
            vec!["--steps", "57", "--epochs", "2"],
            vec!["57", "2 epochs"],
        ),
        (
            vec!["--steps", "50", "--epochs", "2", "--steps-per-epoch", "29"],
            vec!["50", "58"],
        ),
        (
            vec!["--kind", "geometric-paper", "--steps", "7"],
            vec!["T = 7", "K = 10"],
        ),
        (vec!["--preset", "e13z"], vec!["`e13z`", "e5b, e5c"]),
        (vec!["--kind", "cosine"], vec!["`cosine`", "epoch-aware"]),
        (
            vec!["--srdd", report, "--rin", "warp"],
            vec!["`warp`", "tiered", "e13n"],
        ),
        (
            vec!["--srdd", report, "--rin", "targeted:layers=20-30"],
            vec!["layer 30", "28 layers"],
        ),
        (
            vec!["--srdd", report, "--rin", "variable:clip=2..1"],
            vec!["clip min 2 > max 1"],
        ),
        (
            vec!["--srdd", report, "--rin", "tiered:band=0"],
            vec!["band_width = 0"],
        ),
        (
            vec!["--srdd", report, "--rin", "targeted:threshold=0.9"],
            vec!["threshold 0.9", "0.432"],
        ),
        (
            vec!["--srdd", report, "--rin", "variable:metric=snr"],
            vec!["`snr`"],
        ),
        (vec!["--srdd", report], vec!["--srdd needs a RIN policy"]),
        (
            vec!["--preset", "e5b", "--srdd", report],
            vec!["preset e5b has none"],
        ),
        (
            vec!["--srdd", bad_report, "--rin", "variable"],
            vec!["output_nrm"],
        ),
        (
            vec!["--srdd", missing, "--rin", "variable"],
            vec!["missing.json"],
        ),
        (vec!["--rin", "variable"], vec!["--srdd"]),
        (vec!["--log-scale"], vec!["--plot"]),
        (vec!["--json", "--csv"], vec!["--csv"]),
        (
            vec!["--plot", "/nonexistent-dir/x.svg"],
            vec!["/nonexistent-dir/x.svg"],
        ),
    ];
    for (args, needles) in cases {
        let err = fails(&args);
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
        }
    }
}
