//! The problems of a run, checked before anything is generated from them: no problem may lose
//! input silently. A prompt must hold text, every character of it must survive the tokenizer
//! (the built-in model's character vocabulary drops what it does not know, which would shorten
//! the prompt unseen), and its ground truth must be one the reward can match (a reward that can
//! never score a problem correct teaches nothing from it).

use super::config::TrainConfig;
use super::error::{Context, TrainError};
use crate::task::Problem;
use crate::tokenizer::Qwen2Tokenizer;

/// The characters of `text` the tokenizer cannot give back (in order, each once).
fn lost_characters(tokenizer: &Qwen2Tokenizer, text: &str) -> Result<Vec<char>, TrainError> {
    let ids = tokenizer
        .encode(text, false)
        .context("tokenizing a prompt")?;
    let back = tokenizer.decode(&ids, false).context("decoding a prompt")?;
    let mut lost: Vec<char> = Vec::new();
    for c in text.chars() {
        if !back.contains(c) && !lost.contains(&c) {
            lost.push(c);
        }
    }
    Ok(lost)
}

/// Checks the problems of one split (`source` names it: `data.train = FILE`).
fn check_split(
    config: &TrainConfig,
    tokenizer: &Qwen2Tokenizer,
    problems: &[Problem],
    source: &str,
) -> Result<(), TrainError> {
    let refuse =
        |i: usize, why: String| TrainError::Setup(format!("problem {} of {source}: {why}", i + 1));
    for (i, p) in problems.iter().enumerate() {
        if p.prompt.trim().is_empty() {
            return Err(refuse(i, "its prompt is empty".into()));
        }
        if !config.algorithm.reward.can_match(&p.answer) {
            return Err(refuse(
                i,
                format!(
                    "its ground truth {:?} can never be matched by the {} reward, which compares the number after `####` (or the last number)",
                    p.answer, config.algorithm.reward.kind
                ),
            ));
        }
        let lost = lost_characters(tokenizer, &p.prompt)?;
        if !lost.is_empty() {
            let shown: String = lost.iter().take(8).collect();
            return Err(refuse(
                i,
                format!(
                    "the tokenizer cannot encode {} of its characters ({shown:?}), which would vanish from the prompt",
                    lost.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the training and held-out problems.
pub(super) fn check_problems(
    config: &TrainConfig,
    tokenizer: &Qwen2Tokenizer,
    train: &[Problem],
    test: &[Problem],
) -> Result<(), TrainError> {
    check_split(
        config,
        tokenizer,
        train,
        &format!("data.train = {}", config.data.train),
    )?;
    check_split(
        config,
        tokenizer,
        test,
        &format!("data.test = {}", config.data.test),
    )
}
