//! Calibration prompts for SRDD: a text file with one prompt per line, or the built-in set.

use std::path::Path;

use super::SrddError;

/// The built-in calibration prompts: GSM8K-style word problems (the seed's task) and a chat
/// turn. The synthetic task of `crate::task` can replace them once the trainer passes its
/// problems here (hook: [`super::scan`] takes any tokenized prompts).
pub const DEFAULT_PROMPTS: &[&str] = &[
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. \
     How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. \
     How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she \
     needs. How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he \
     write a year? Let's think step by step and output the final answer after \"####\".",
    "What is 2 + 3? Answer: 2 + 3 = 5. #### 5",
    "You are a helpful assistant. Solve the problem and explain each step briefly.",
];

/// Largest prompt file read (checked before reading it): 16 MiB, thousands of times what a
/// calibration set needs.
pub const MAX_PROMPT_FILE_BYTES: u64 = 16 << 20;
/// Most prompts a scan runs (each is a forward pass; the metrics are averaged over them).
pub const MAX_PROMPTS: usize = 10_000;

/// The non-empty lines of a prompt file, in order. A file above [`MAX_PROMPT_FILE_BYTES`] or with
/// more than [`MAX_PROMPTS`] prompts is refused, naming the size and the limit.
pub fn read_prompts(path: &Path) -> Result<Vec<String>, SrddError> {
    let refuse = |reason: String| SrddError::Prompts {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| refuse(e.to_string()))?
        .len();
    if size > MAX_PROMPT_FILE_BYTES {
        return Err(refuse(format!(
            "it is {size} bytes, above the limit of {MAX_PROMPT_FILE_BYTES} bytes for a \
             calibration set"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if prompts.len() > MAX_PROMPTS {
        return Err(refuse(format!(
            "it holds {} prompts, above the limit of {MAX_PROMPTS} (each is a forward pass)",
            prompts.len()
        )));
    }
    if prompts.is_empty() {
        return Err(SrddError::Prompts {
            path: path.display().to_string(),
            reason: "it holds no prompt (one prompt per line, blank lines are skipped)".into(),
        });
    }
    Ok(prompts)
}
