//! Bounded fuzzing of every parser of user files (issue 20): safetensors (`tensor_file`), `.npy`
//! (`npy_file`), verl parquet and GSM8K jsonl (`task`), HF `config.json` and
//! `generation_config.json` (`model::config`, `generation`), TOML configuration files
//! (`config::file_settings`), SRDD reports and run logs. Each starts from a valid file and applies
//! a few byte-level mutations (bit flips, byte and 8-byte overwrites, truncation, deletion,
//! insertion of bytes or of tokens that break parsers: huge numbers, NaN, nulls, quotes,
//! brackets). The parser must return (never panic, never abort on a huge allocation) and, when it
//! refuses, with its typed error naming the file.
//!
//! Bounded for CI: a fixed number of cases per parser (`CASES`), about 10 s in release on the
//! 2-core CI machine.

use std::path::{Path, PathBuf};

use aqn_core::config::ConfigFile;
use aqn_core::generation::GenerationConfig;
use aqn_core::model::Qwen2Config;
use aqn_core::npy_file::read_npy;
use aqn_core::run::log::{parse_audit, parse_metrics};
use aqn_core::srdd::SrddReport;
use aqn_core::task::dataset::{load_problems, parse_jsonl};
use aqn_core::tensor_file::{FloatDtype, OutTensor, TensorFile, serialize};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per parser.
const CASES: u32 = 384;
/// The name every parser is given for its input; errors about the file must carry it.
const SOURCE: &str = "fuzzed-input";

/// Tokens inserted into text formats: numbers out of every range, non-numbers, structure.
const TOKENS: &[&str] = &[
    "18446744073709551616",
    "-1",
    "1e400",
    "NaN",
    "nan",
    "inf",
    "null",
    "true",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "=",
    "\n",
    "\\u0000",
    "99999999999999999999999999",
    "[[x]]",
    "\u{FEFF}",
];

/// One change to a file's bytes; positions are taken modulo the length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    SetU64 { at: usize, value: u64 },
    Truncate { at: usize },
    Remove { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Token { at: usize, token: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (
            any::<usize>(),
            prop_oneof![any::<u64>(), Just(u64::MAX), Just(1 << 40), Just(0)]
        )
            .prop_map(|(at, value)| Mutation::SetU64 { at, value }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Token { at, token }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

fn apply(base: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in ms {
        let n = b.len().max(1);
        match m {
            Mutation::Flip { at, bit } => {
                if let Some(x) = b.get_mut(at % n) {
                    *x ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(x) = b.get_mut(at % n) {
                    *x = *byte;
                }
            }
            Mutation::SetU64 { at, value } => {
                let at = at % n;
                for (k, byte) in value.to_le_bytes().iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            Mutation::Truncate { at } => b.truncate(at % n),
            Mutation::Remove { at, len } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Insert { at, bytes } => {
                let at = (at % n).min(b.len());
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Token { at, token } => {
                let at = (at % n).min(b.len());
                b.splice(at..at, TOKENS[*token].bytes());
            }
        }
    }
    b
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("parser_fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn safetensors_base() -> Vec<u8> {
    let w: Vec<f32> = (0..96).map(|i| i as f32 * 0.25 - 7.0).collect();
    serialize(
        &[
            OutTensor::float("w", vec![8, 12], FloatDtype::F32, &w),
            OutTensor::float("h", vec![4, 6], FloatDtype::Bf16, &w[..24]),
            OutTensor::float("g", vec![3], FloatDtype::F16, &[1.0, -2.0, 0.5]),
            OutTensor::bytes("ids", vec![4], vec![1, 2, 3, 4]),
        ],
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .unwrap()
}

fn npy_base() -> Vec<u8> {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.bytes());
    for i in 0..12 {
        out.extend((i as f32 * 1.5).to_le_bytes());
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors(ms in mutations()) {
        let bytes = apply(&safetensors_base(), &ms);
        match TensorFile::parse(&bytes, SOURCE) {
            Err(e) => prop_assert!(e.to_string().contains(SOURCE), "{e}"),
            Ok(file) => {
                for name in file.names().to_vec() {
                    for read in [file.read(&name), file.read_finite(&name)] {
                        match read {
                            Ok(t) => prop_assert_eq!(t.data.len(), t.shape.iter().product::<usize>()),
                            Err(e) => prop_assert!(e.to_string().contains(SOURCE), "{e}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn npy(ms in mutations()) {
        let bytes = apply(&npy_base(), &ms);
        match read_npy(&bytes, SOURCE, "x") {
            Ok(t) => prop_assert_eq!(t.data.len(), t.shape.iter().product::<usize>()),
            Err(e) => prop_assert!(e.to_string().contains(SOURCE), "{e}"),
        }
    }

    #[test]
    fn verl_parquet(ms in mutations(), which in 0usize..3) {
        let base = fixture(["tests/fixtures/verl_gsm8k/train.parquet",
            "tests/fixtures/verl_gsm8k/uncompressed.parquet",
            "tests/fixtures/verl_gsm8k/system_prompt.parquet"][which]);
        let path = scratch(&format!("{SOURCE}-{}.parquet", std::thread::current().name().unwrap_or("t").replace("::", "_")));
        std::fs::write(&path, apply(&base, &ms)).unwrap();
        if let Err(e) = load_problems(&path, None) {
            prop_assert!(e.to_string().contains(SOURCE), "{e}");
        }
    }

    #[test]
    fn gsm8k_jsonl(ms in mutations()) {
        let text = String::from_utf8_lossy(&apply(&fixture("tests/fixtures/verl_gsm8k/gsm8k.jsonl"), &ms)).into_owned();
        if let Err(e) = parse_jsonl(&text, SOURCE) {
            prop_assert!(e.to_string().contains(SOURCE), "{e}");
        }
    }

    #[test]
    fn hf_config_json(ms in mutations(), which in 0usize..3) {
        let base = fixture(["assets/tiny/config.json", "tests/fixtures/qwen2-tied/config.json",
            "tests/fixtures/qwen2-untied/config.json"][which]);
        let text = String::from_utf8_lossy(&apply(&base, &ms)).into_owned();
        if let Err(e) = Qwen2Config::from_json_str(&text, SOURCE) {
            let m = e.to_string();
            // A parse error names the file; a refused value names its field.
            prop_assert!(m.contains(SOURCE) || m.starts_with("config field `"), "{m}");
        }
    }

    #[test]
    fn generation_config_json(ms in mutations()) {
        let dir = scratch(&format!("gen-{}", std::thread::current().name().unwrap_or("t").replace("::", "_")));
        std::fs::create_dir_all(&dir).unwrap();
        let text = apply(&fixture("tests/fixtures/qwen2-tied/generation_config.json"), &ms);
        std::fs::write(dir.join("generation_config.json"), text).unwrap();
        if let Err(e) = GenerationConfig::from_checkpoint(&dir, 8) {
            prop_assert!(e.to_string().contains("generation_config.json") || e.to_string().contains("pad_token_id"), "{e}");
        }
    }

    #[test]
    fn toml_config_file(ms in mutations()) {
        let base = b"[trainer]\nseed = 3\nmax_steps = 10\n\n[rollout]\nn = 8\ntemperature = 1.0\n\n[quant]\nweights = \"mxfp4:rceil\"\n[quant.exclude]\nlayers = [0, 3]\n";
        let text = String::from_utf8_lossy(&apply(base, &ms)).into_owned();
        match ConfigFile::parse(SOURCE, &text) {
            Ok(file) => {
                for s in &file.settings {
                    prop_assert!(s.line >= 1 && s.column >= 1);
                    prop_assert!(file.locate(s).starts_with(SOURCE));
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with(SOURCE), "{e}"),
        }
    }

    #[test]
    fn srdd_report_and_run_logs(ms in mutations(), which in 0usize..3) {
        let base = fixture(["tests/fixtures/srdd_sample.json",
            "tests/fixtures/run_sample/metrics.jsonl",
            "tests/fixtures/run_sample/noise_audit.jsonl"][which]);
        let text = String::from_utf8_lossy(&apply(&base, &ms)).into_owned();
        match which {
            0 => { let _ = SrddReport::from_json(&text); }
            1 => if let Err(e) = parse_metrics(&text, SOURCE) { prop_assert!(e.to_string().contains(SOURCE)); },
            _ => if let Err(e) = parse_audit(&text, SOURCE) { prop_assert!(e.to_string().contains(SOURCE)); },
        }
    }
}

/// The unmutated bases parse, so the mutations start from valid files.
#[test]
fn the_bases_are_valid() {
    let st = safetensors_base();
    let f = TensorFile::parse(&st, SOURCE).unwrap();
    assert_eq!(f.read("w").unwrap().data.len(), 96);
    assert_eq!(
        read_npy(&npy_base(), SOURCE, "x").unwrap().shape,
        vec![3, 4]
    );
    let path = scratch("base.parquet");
    std::fs::write(&path, fixture("tests/fixtures/verl_gsm8k/train.parquet")).unwrap();
    assert!(!load_problems(&path, None).unwrap().is_empty());
    Qwen2Config::from_json_str(
        &String::from_utf8(fixture("assets/tiny/config.json")).unwrap(),
        SOURCE,
    )
    .unwrap();
}

/// A case the fuzzer found: one changed byte of a verl parquet file made the `parquet` crate
/// panic inside its decoder ("range end index 4 out of range for slice of length 3"). It is a
/// malformed-file error naming the file, not a crash.
#[test]
fn a_parquet_file_that_panics_the_decoder_is_an_error() {
    let base = fixture("tests/fixtures/verl_gsm8k/system_prompt.parquet");
    let ms = [Mutation::Set {
        at: 7794694896784543770,
        byte: 121,
    }];
    let path = scratch(&format!("{SOURCE}-decoder-panic.parquet"));
    std::fs::write(&path, apply(&base, &ms)).unwrap();
    let e = load_problems(&path, None).unwrap_err().to_string();
    assert!(
        e.contains(SOURCE) && e.contains("not a readable Parquet file"),
        "{e}"
    );
}
