//! One problem of a data set, whatever its source (a verl parquet row, a jsonl line, the built-in
//! synthetic task).

use serde::{Deserialize, Serialize};

/// One problem: the user message, the ground-truth answer and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// The user message given to the chat template (question plus instruction).
    pub prompt: String,
    /// The ground truth, compared as a string with the extracted answer (`"72"`, `"-3"`).
    pub answer: String,
    /// verl's `data_source` (`openai/gsm8k`, `aqn/synthetic-arithmetic`).
    pub source: String,
    /// A worked reference solution ending in `#### N`, where the data has one (for supervised
    /// warm-up and for display).
    pub solution: Option<String>,
}
