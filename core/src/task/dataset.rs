//! Problems for training and evaluation, and the loaders of real data (docs/spec.md section 7):
//!
//! - HF-style jsonl (`{"question": ..., "answer": "... #### 72"}` per line, as GSM8K's
//!   `main` split files): the ground truth is extracted from `answer` as verl's
//!   `examples/data_preprocess/gsm8k.py` does (the *first* `#### (-?[0-9.,]+)`, commas removed),
//!   the prompt is the question with the GSM8K instruction appended.
//! - verl's GSM8K parquet (`data_source`, `prompt` [{role, content}], `ability`,
//!   `reward_model` {style, ground_truth}, `extra_info`), behind the `parquet` feature
//!   ([`super::verl_parquet`]).
//! - The built-in synthetic task ([`super::synthetic`]).
//!
//! Every error names the file, the row (1-based; the line for jsonl) and the column.

use std::path::Path;

use crate::named::named_enum;

use super::error::TaskError;
use super::gsm8k_reward::strict_matches;
use super::problem::Problem;

/// The instruction verl appends to a GSM8K question (after one space).
pub const GSM8K_INSTRUCTION: &str =
    "Let's think step by step and output the final answer after \"####\".";
/// verl's `data_source` of GSM8K, which selects the GSM8K scorer.
pub const GSM8K_SOURCE: &str = "openai/gsm8k";

named_enum! {
    /// How a question becomes the user message.
    #[derive(Default)]
    PromptTemplate, "prompt template", TaskError {
        /// docs/spec.md's GSM8K prompt: question + ` Let's think step by step and output the final
        /// answer after "####".` (default).
        #[default]
        Gsm8k => "gsm8k",
        /// The question alone (shorter contexts for tiny models).
        Question => "question" | "bare",
    }
}

impl PromptTemplate {
    /// The user message for `question`.
    pub fn apply(self, question: &str) -> String {
        match self {
            PromptTemplate::Gsm8k => gsm8k_prompt(question),
            PromptTemplate::Question => question.to_string(),
        }
    }
}

/// docs/spec.md's GSM8K prompt: `question + " " + GSM8K_INSTRUCTION`.
pub fn gsm8k_prompt(question: &str) -> String {
    format!("{question} {GSM8K_INSTRUCTION}")
}

/// The ground truth of a GSM8K `answer` field, as verl's preprocessing extracts it: the first
/// `#### (-?[0-9.,]+)` with its commas removed.
pub fn gsm8k_ground_truth(answer: &str) -> Option<String> {
    strict_matches(answer).first().map(|m| m.replace(',', ""))
}

named_enum! {
    /// A data file's format.
    DataFormat, "data format", TaskError {
        /// One JSON object per line with `question` and `answer`.
        Jsonl => "jsonl" | "json",
        /// verl's parquet schema.
        Parquet => "parquet",
    }
}

impl DataFormat {
    /// The format named by the file's extension (`.jsonl`/`.json`, `.parquet`).
    pub fn from_path(path: &Path) -> Result<Self, TaskError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" => Ok(DataFormat::Jsonl),
            "parquet" => Ok(DataFormat::Parquet),
            _ => Err(TaskError::Unsupported {
                path: path.display().to_string(),
                message: format!(
                    "cannot tell the data format from the extension `{ext}`; name it: {}",
                    DataFormat::valid_names()
                ),
            }),
        }
    }
}

/// Loads a data file in `format` (or the one its extension names). A file without a single
/// problem is refused ([`TaskError::NoProblems`], naming the file and what it holds).
pub fn load_problems(path: &Path, format: Option<DataFormat>) -> Result<Vec<Problem>, TaskError> {
    let format = match format {
        Some(f) => f,
        None => DataFormat::from_path(path)?,
    };
    let problems = match format {
        DataFormat::Jsonl => load_jsonl(path),
        DataFormat::Parquet => load_parquet(path),
    }?;
    if problems.is_empty() {
        let found = match format {
            DataFormat::Jsonl => match std::fs::read_to_string(path) {
                Ok(text) if text.is_empty() => "0 bytes".to_string(),
                Ok(text) => format!("{} blank lines", text.lines().count().max(1)),
                Err(_) => "nothing readable".to_string(),
            },
            DataFormat::Parquet => "0 rows".to_string(),
        };
        return Err(TaskError::NoProblems {
            path: path.display().to_string(),
            found,
        });
    }
    Ok(problems)
}

#[cfg(feature = "parquet")]
fn load_parquet(path: &Path) -> Result<Vec<Problem>, TaskError> {
    super::verl_parquet::load_verl_parquet(path)
}

#[cfg(not(feature = "parquet"))]
fn load_parquet(path: &Path) -> Result<Vec<Problem>, TaskError> {
    Err(TaskError::Unsupported {
        path: path.display().to_string(),
        message: "this build reads no Parquet files; build aqn-core with its `parquet` feature \
                  (aqn-native enables it)"
            .into(),
    })
}

/// Reads an HF-style GSM8K jsonl file.
pub fn load_jsonl(path: &Path) -> Result<Vec<Problem>, TaskError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TaskError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    parse_jsonl(&text, &name)
}

/// The JSON type of a value, for error messages.
fn json_type(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
    .to_string()
}

/// Parses jsonl text (`path` names it in errors). Blank lines are skipped; rows are numbered by
/// line.
pub fn parse_jsonl(text: &str, path: &str) -> Result<Vec<Problem>, TaskError> {
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| TaskError::Malformed {
                path: path.to_string(),
                row,
                message: format!("not JSON: {e}"),
            })?;
        let obj = value.as_object().ok_or_else(|| TaskError::WrongType {
            path: path.to_string(),
            row,
            column: "(row)".into(),
            expected: "a JSON object",
            found: json_type(&value),
        })?;
        let field = |column: &str| -> Result<&str, TaskError> {
            match obj.get(column) {
                None | Some(serde_json::Value::Null) => Err(TaskError::MissingColumn {
                    path: path.to_string(),
                    row,
                    column: column.to_string(),
                }),
                Some(serde_json::Value::String(s)) => Ok(s),
                Some(other) => Err(TaskError::WrongType {
                    path: path.to_string(),
                    row,
                    column: column.to_string(),
                    expected: "a string",
                    found: json_type(other),
                }),
            }
        };
        let question = field("question")?;
        if question.trim().is_empty() {
            return Err(TaskError::Malformed {
                path: path.to_string(),
                row,
                message: "column `question` is empty".into(),
            });
        }
        let answer = field("answer")?;
        let truth = gsm8k_ground_truth(answer).ok_or_else(|| TaskError::Malformed {
            path: path.to_string(),
            row,
            message: "column `answer` has no final answer `#### N`".into(),
        })?;
        problems.push(Problem {
            prompt: gsm8k_prompt(question),
            answer: truth,
            source: GSM8K_SOURCE.to_string(),
            solution: Some(answer.to_string()),
        });
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_template() {
        assert_eq!(
            gsm8k_prompt("What is 2+2?"),
            "What is 2+2? Let's think step by step and output the final answer after \"####\"."
        );
        assert_eq!(PromptTemplate::Question.apply("Q?"), "Q?");
        assert_eq!(
            "bare".parse::<PromptTemplate>(),
            Ok(PromptTemplate::Question)
        );
    }

    #[test]
    fn ground_truth_is_the_first_marked_number_without_commas() {
        assert_eq!(
            gsm8k_ground_truth("a <<2*3=6>>6\n#### 1,234"),
            Some("1234".into())
        );
        assert_eq!(gsm8k_ground_truth("#### -5 and #### 6"), Some("-5".into()));
        assert_eq!(gsm8k_ground_truth("no answer"), None);
    }

    #[test]
    fn jsonl_rows_and_errors() {
        let text = "{\"question\": \"Q1?\", \"answer\": \"1+1=2\\n#### 2\"}\n\n{\"question\": \"Q2?\", \"answer\": \"#### 1,000\"}\n";
        let p = parse_jsonl(text, "f.jsonl").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].answer, "2");
        assert_eq!(p[0].prompt, gsm8k_prompt("Q1?"));
        assert_eq!(p[0].source, GSM8K_SOURCE);
        assert_eq!(p[0].solution.as_deref(), Some("1+1=2\n#### 2"));
        assert_eq!(p[1].answer, "1000");

        let err = |t: &str| parse_jsonl(t, "f.jsonl").unwrap_err().to_string();
        assert_eq!(
            err("{\"question\": \"Q\", \"answer\": \"#### 1\"}\n{\"question\": \"Q\"}"),
            "f.jsonl row 2: missing column `answer` (absent or null)"
        );
        assert_eq!(
            err("{\"question\": 3, \"answer\": \"#### 1\"}"),
            "f.jsonl row 1: column `question` must be a string, found a number"
        );
        assert_eq!(
            err("{\"question\": \"Q\", \"answer\": \"4\"}"),
            "f.jsonl row 1: column `answer` has no final answer `#### N`"
        );
        assert!(err("{oops").starts_with("f.jsonl row 1: not JSON"));
        assert!(err("[1]").contains("must be a JSON object, found an array"));
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(
            DataFormat::from_path(Path::new("a/b.jsonl")),
            Ok(DataFormat::Jsonl)
        );
        assert_eq!(
            DataFormat::from_path(Path::new("train.parquet")),
            Ok(DataFormat::Parquet)
        );
        let e = DataFormat::from_path(Path::new("x.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("jsonl, parquet"), "{e}");
        let e = load_problems(Path::new("/nonexistent/x.jsonl"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read /nonexistent/x.jsonl"), "{e}");
    }

    #[test]
    fn empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("aqn-empty-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("train.jsonl");
        std::fs::write(&empty, "").unwrap();
        let e = load_problems(&empty, None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{} holds no problems (0 bytes); a training or test file needs at least one row",
                empty.display()
            )
        );
        std::fs::write(&empty, "\n  \n\n").unwrap();
        let e = load_problems(&empty, None).unwrap_err().to_string();
        assert!(e.contains("(3 blank lines)"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
