//! Real-data loaders against the committed fixtures of `tests/fixtures/verl_gsm8k/`
//! (written by `gen_verl_gsm8k.py` with pandas/pyarrow): verl's GSM8K parquet (Snappy and
//! uncompressed) and HF-style jsonl give the same problems, and every refused file names the
//! file, the row and the column.

use std::path::PathBuf;

use aqn_core::task::{
    DataFormat, GSM8K_SOURCE, RewardConfig, TaskError, gsm8k_prompt, load_problems,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/verl_gsm8k")
        .join(name)
}

fn err(name: &str) -> String {
    load_problems(&fixture(name), None).unwrap_err().to_string()
}

#[test]
fn parquet_and_jsonl_give_the_same_problems() {
    let parquet = load_problems(&fixture("train.parquet"), None).unwrap();
    let plain = load_problems(&fixture("uncompressed.parquet"), Some(DataFormat::Parquet)).unwrap();
    let jsonl = load_problems(&fixture("gsm8k.jsonl"), None).unwrap();
    assert_eq!(parquet.len(), 4);
    assert_eq!(parquet, plain);
    assert_eq!(parquet, jsonl);
    let answers: Vec<&str> = parquet.iter().map(|p| p.answer.as_str()).collect();
    assert_eq!(answers, ["19", "24", "1250", "-3"]);
    let first = &parquet[0];
    assert_eq!(first.source, GSM8K_SOURCE);
    assert_eq!(
        first.prompt,
        gsm8k_prompt("Ann has 12 pens. She buys 7 more pens. How many pens does Ann have now?")
    );
    assert_eq!(
        first.solution.as_deref(),
        Some("Ann has 12 + 7 = <<12+7=19>>19 pens.\n#### 19")
    );
    // The reference solutions earn the full GSM8K reward against their own ground truth.
    let reward = RewardConfig::default();
    for p in &parquet {
        let s = p.solution.as_deref().unwrap();
        assert_eq!(reward.score(s, &p.answer, 10, 100).score, 1.0, "{s}");
    }
}

#[test]
fn refused_files_name_file_row_and_column() {
    let e = err("missing_ground_truth.parquet");
    assert!(e.ends_with("missing_ground_truth.parquet row 2: missing column `reward_model.ground_truth` (absent or null)"), "{e}");
    let e = err("int_ground_truth.parquet");
    assert!(e.ends_with("int_ground_truth.parquet row 1: column `reward_model.ground_truth` must be a string, found an integer"), "{e}");
    let e = err("system_prompt.parquet");
    assert!(e.ends_with("system_prompt.parquet row 1: column `prompt` holds the roles [system, user]; exactly one `user` message is supported"), "{e}");
    let e = err("no_prompt.parquet");
    assert!(
        e.ends_with("no_prompt.parquet row 1: missing column `prompt` (absent or null)"),
        "{e}"
    );
    // A file that is not Parquet.
    let e = load_problems(&fixture("gsm8k.jsonl"), Some(DataFormat::Parquet)).unwrap_err();
    assert!(matches!(e, TaskError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("not a readable Parquet file"), "{e}");
    let e = err("absent.parquet");
    assert!(e.starts_with("cannot read "), "{e}");
}
