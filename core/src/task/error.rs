//! Why a task, a data file or a reward setting was refused. Every message names the offending
//! value, and for data files the file, the row (or line) and the column.

use thiserror::Error;

/// A refused task setting, data file or reward setting.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TaskError {
    /// A name that is not one of the enum's variants (difficulty, split, reward kind, format).
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A numeric setting outside its valid range.
    #[error("{name} = {value} is refused: {requirement}")]
    InvalidSetting {
        /// The setting, by its configuration name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// What it must satisfy.
        requirement: String,
    },
    /// The synthetic generator could not find enough distinct problems for a split.
    #[error(
        "the synthetic task found only {found} distinct {split} problems for levels [{levels}] after \
         {attempts} draws, fewer than the {wanted} asked for; lower the split size or add harder levels \
         (their problem space is larger)"
    )]
    NotEnoughProblems {
        /// `train` or `test`.
        split: &'static str,
        /// The requested size.
        wanted: usize,
        /// The distinct problems found.
        found: usize,
        /// Draws made before giving up.
        attempts: u64,
        /// The configured levels.
        levels: String,
    },
    /// A data file that could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A data file whose format is not the one expected (bad JSON, not a Parquet file).
    #[error("{path} row {row}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based row (the line for jsonl).
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A row without a required column (or with a null in it).
    #[error("{path} row {row}: missing column `{column}` (absent or null)")]
    MissingColumn {
        /// The file.
        path: String,
        /// 1-based row (the line for jsonl).
        row: usize,
        /// The column, dotted for nested fields (`reward_model.ground_truth`).
        column: String,
    },
    /// A column whose value has the wrong type.
    #[error("{path} row {row}: column `{column}` must be {expected}, found {found}")]
    WrongType {
        /// The file.
        path: String,
        /// 1-based row (the line for jsonl).
        row: usize,
        /// The column, dotted for nested fields.
        column: String,
        /// The expected type.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// A data file that holds no problem at all.
    #[error("{path} holds no problems ({found}); a training or test file needs at least one row")]
    NoProblems {
        /// The file.
        path: String,
        /// What it holds instead (`0 bytes`, `3 blank lines`, `0 rows`).
        found: String,
    },
    /// A file format this build cannot read.
    #[error("{path}: {message}")]
    Unsupported {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}
