//! verl's GSM8K parquet files (docs/spec.md section 7), as `examples/data_preprocess/gsm8k.py` writes
//! them: one row per problem with
//!
//! | column | type | used as |
//! |---|---|---|
//! | `data_source` | string | [`Problem::source`] |
//! | `prompt` | list of struct {`role`, `content`} | the single `user` message is [`Problem::prompt`] |
//! | `ability` | string | (ignored) |
//! | `reward_model` | struct {`style`, `ground_truth`} | `ground_truth` is [`Problem::answer`] |
//! | `extra_info` | struct {`split`, `index`, `answer`, `question`} (optional) | `answer` is [`Problem::solution`] |
//!
//! Read with the `parquet` crate's record API (no Arrow), Snappy-compressed or uncompressed pages.
//! Prompts with several messages (a system prompt, multi-turn) are refused: this project's
//! trainer gives one user message to the chat template. Every error names the file, the 1-based
//! row and the column.

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use super::error::TaskError;
use super::problem::Problem;

/// The role of the message that becomes the prompt.
const USER_ROLE: &str = "user";

/// Reads a verl GSM8K parquet file.
pub fn load_verl_parquet(path: &Path) -> Result<Vec<Problem>, TaskError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| TaskError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    read_verl_parquet(file, &name)
}

/// Reads verl parquet rows from any chunk reader (`name` labels errors).
///
/// The `parquet` crate panics on some corrupt files (a slice index out of range in its
/// decoders; tests/parser_fuzz.rs found one with a single changed byte): such a panic is
/// reported as a malformed file, never a crash.
pub fn read_verl_parquet<R: ChunkReader + 'static>(
    reader: R,
    name: &str,
) -> Result<Vec<Problem>, TaskError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_rows(reader, name)))
        .unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(TaskError::Malformed {
                path: name.to_string(),
                row: 0,
                message: format!("not a readable Parquet file: the reader failed on it ({reason})"),
            })
        })
}

/// [`read_verl_parquet`] without the guard.
fn read_rows<R: ChunkReader + 'static>(reader: R, name: &str) -> Result<Vec<Problem>, TaskError> {
    let malformed = |row: usize, e: parquet::errors::ParquetError| TaskError::Malformed {
        path: name.to_string(),
        row,
        message: format!("not a readable Parquet file: {e}"),
    };
    let reader = SerializedFileReader::new(reader).map_err(|e| malformed(0, e))?;
    let rows = reader.get_row_iter(None).map_err(|e| malformed(0, e))?;
    let mut problems = Vec::new();
    for (i, row) in rows.enumerate() {
        let row_no = i + 1;
        let row = row.map_err(|e| malformed(row_no, e))?;
        problems.push(RowReader { name, row: row_no }.problem(&row)?);
    }
    Ok(problems)
}

/// The Parquet logical type of a value, for error messages.
fn field_type(field: &Field) -> String {
    match field {
        Field::Null => "null",
        Field::Bool(_) => "a boolean",
        Field::Byte(_)
        | Field::Short(_)
        | Field::Int(_)
        | Field::Long(_)
        | Field::UByte(_)
        | Field::UShort(_)
        | Field::UInt(_)
        | Field::ULong(_) => "an integer",
        Field::Float16(_) | Field::Float(_) | Field::Double(_) | Field::Decimal(_) => "a number",
        Field::Str(_) => "a string",
        Field::Bytes(_) => "binary",
        Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => "a date or time",
        Field::Group(_) => "a struct",
        Field::ListInternal(_) => "a list",
        Field::MapInternal(_) => "a map",
    }
    .to_string()
}

/// Column lookups of one row, with errors that name the file, row and column.
struct RowReader<'a> {
    name: &'a str,
    row: usize,
}

impl RowReader<'_> {
    fn missing(&self, column: &str) -> TaskError {
        TaskError::MissingColumn {
            path: self.name.to_string(),
            row: self.row,
            column: column.to_string(),
        }
    }

    fn wrong(&self, column: &str, expected: &'static str, found: &Field) -> TaskError {
        TaskError::WrongType {
            path: self.name.to_string(),
            row: self.row,
            column: column.to_string(),
            expected,
            found: field_type(found),
        }
    }

    /// The non-null field `key` of `group` (`column` is its dotted name).
    fn get<'r>(&self, group: &'r Row, key: &str, column: &str) -> Result<&'r Field, TaskError> {
        match group.get_column_iter().find(|(k, _)| k.as_str() == key) {
            None | Some((_, Field::Null)) => Err(self.missing(column)),
            Some((_, f)) => Ok(f),
        }
    }

    fn string<'r>(&self, group: &'r Row, key: &str, column: &str) -> Result<&'r str, TaskError> {
        match self.get(group, key, column)? {
            Field::Str(s) => Ok(s),
            other => Err(self.wrong(column, "a string", other)),
        }
    }

    fn group<'r>(&self, group: &'r Row, key: &str, column: &str) -> Result<&'r Row, TaskError> {
        match self.get(group, key, column)? {
            Field::Group(g) => Ok(g),
            other => Err(self.wrong(column, "a struct", other)),
        }
    }

    fn problem(&self, row: &Row) -> Result<Problem, TaskError> {
        let source = self.string(row, "data_source", "data_source")?.to_string();
        let messages = match self.get(row, "prompt", "prompt")? {
            Field::ListInternal(list) => list.elements(),
            other => return Err(self.wrong("prompt", "a list of {role, content}", other)),
        };
        let mut roles = Vec::with_capacity(messages.len());
        let mut user = None;
        for (j, message) in messages.iter().enumerate() {
            let column = format!("prompt[{j}]");
            let Field::Group(m) = message else {
                return Err(self.wrong(&column, "a struct {role, content}", message));
            };
            let role = self.string(m, "role", &format!("{column}.role"))?;
            let content = self.string(m, "content", &format!("{column}.content"))?;
            roles.push(role.to_string());
            if role == USER_ROLE {
                user = Some(content);
            }
        }
        let prompt = match (user, roles.len()) {
            (Some(content), 1) => content.to_string(),
            _ => {
                return Err(TaskError::Malformed {
                    path: self.name.to_string(),
                    row: self.row,
                    message: format!(
                        "column `prompt` holds the roles [{}]; exactly one `user` message is supported",
                        roles.join(", ")
                    ),
                });
            }
        };
        let reward_model = self.group(row, "reward_model", "reward_model")?;
        let answer = self
            .string(reward_model, "ground_truth", "reward_model.ground_truth")?
            .to_string();
        // extra_info is optional, and so is its `answer` (the worked solution).
        let solution = match row
            .get_column_iter()
            .find(|(k, _)| k.as_str() == "extra_info")
        {
            Some((_, Field::Group(info))) => {
                match info.get_column_iter().find(|(k, _)| k.as_str() == "answer") {
                    Some((_, Field::Str(s))) => Some(s.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Problem {
            prompt,
            answer,
            source,
            solution,
        })
    }
}
