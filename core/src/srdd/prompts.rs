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

/// The non-empty lines of a prompt file, in order.
pub fn read_prompts(path: &Path) -> Result<Vec<String>, SrddError> {
    let text = std::fs::read_to_string(path).map_err(|e| SrddError::Prompts {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if prompts.is_empty() {
        return Err(SrddError::Prompts {
            path: path.display().to_string(),
            reason: "it holds no prompt (one prompt per line, blank lines are skipped)".into(),
        });
    }
    Ok(prompts)
}
