//! Evaluation: greedy answers to held-out problems, scored with the strict GSM8K reward.
//! Always on a clean model (no AQN, no HW noise) in the quantization mode it is given.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::generation::{GenerateError, GenerationConfig, SamplingConfig, generate};
use crate::model::Qwen2ForCausalLM;
use crate::task::Problem;
use crate::task::gsm8k_reward::{ExtractMethod, is_correct};
use crate::tokenizer::{ChatMessage, Qwen2Tokenizer, TokenizerError};

/// Errors of evaluation and prompt building.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Tokenization or chat templating failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Generation failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Nothing to evaluate.
    #[error("evaluation needs at least one problem")]
    NoProblems,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Fraction of problems whose strict `#### N` answer equals the ground truth.
    pub accuracy: f64,
    /// Fraction whose last number equals it (verl's flexible extraction), for reference.
    pub accuracy_flexible: f64,
    /// Problems evaluated.
    pub problems: usize,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// The first few (prompt, response, correct) triples, for logs.
    pub examples: Vec<(String, String, bool)>,
}

/// How many examples an [`EvalResult`] keeps.
pub const EVAL_EXAMPLES: usize = 3;

/// The token ids of `problem`'s chat-formatted prompt (user turn plus the assistant header).
pub fn prompt_ids(tokenizer: &Qwen2Tokenizer, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
    let text = tokenizer.apply_chat_template(&[ChatMessage::new("user", prompt)], None, true)?;
    tokenizer.encode(&text, false)
}

/// Evaluates `model` on `problems` (greedy, strict reward), `batch_size` problems per generation
/// call; `on_batch` receives the number of problems done.
pub fn evaluate(
    model: &Qwen2ForCausalLM,
    tokenizer: &Qwen2Tokenizer,
    problems: &[Problem],
    generation: &GenerationConfig,
    batch_size: usize,
    on_batch: impl FnMut(usize),
) -> Result<EvalResult, EvalError> {
    let part = evaluate_part(
        model,
        tokenizer,
        problems,
        generation,
        batch_size,
        (0, 1),
        on_batch,
    )?;
    Ok(EvalPart::merge(&[part], problems.len()))
}

/// The counts of one worker's share of an evaluation (see [`evaluate_part`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalPart {
    /// Problems answered correctly (strict extraction).
    pub strict: usize,
    /// Problems answered correctly (flexible extraction).
    pub flexible: usize,
    /// Response tokens.
    pub tokens: usize,
    /// The first [`EVAL_EXAMPLES`] of its problems: (problem index, prompt, response, correct).
    pub examples: Vec<(usize, String, String, bool)>,
}

impl EvalPart {
    /// The result of an evaluation of `problems` problems split into `parts` (any order): the
    /// same as one worker evaluating all of them (greedy answers do not depend on the batch).
    pub fn merge(parts: &[EvalPart], problems: usize) -> EvalResult {
        let mut examples: Vec<&(usize, String, String, bool)> =
            parts.iter().flat_map(|p| &p.examples).collect();
        examples.sort_by_key(|e| e.0);
        let n = problems.max(1) as f64;
        EvalResult {
            accuracy: parts.iter().map(|p| p.strict).sum::<usize>() as f64 / n,
            accuracy_flexible: parts.iter().map(|p| p.flexible).sum::<usize>() as f64 / n,
            problems,
            mean_response_tokens: parts.iter().map(|p| p.tokens).sum::<usize>() as f64 / n,
            examples: examples
                .into_iter()
                .take(EVAL_EXAMPLES)
                .map(|(_, prompt, text, ok)| (prompt.clone(), text.clone(), *ok))
                .collect(),
        }
    }
}

/// Worker `rank`'s share of [`evaluate`] over `world` workers: the generation batches
/// (`batch_size` problems each) whose index is `rank` modulo `world`.
pub fn evaluate_part(
    model: &Qwen2ForCausalLM,
    tokenizer: &Qwen2Tokenizer,
    problems: &[Problem],
    generation: &GenerationConfig,
    batch_size: usize,
    (rank, world): (usize, usize),
    mut on_batch: impl FnMut(usize),
) -> Result<EvalPart, EvalError> {
    if problems.is_empty() {
        return Err(EvalError::NoProblems);
    }
    let model = model.valid();
    let mut sampler = SamplingConfig::greedy()
        .build()
        .expect("greedy sampling is valid");
    let mut part = EvalPart::default();
    let batch_size = batch_size.max(1);
    for (i, chunk) in problems.chunks(batch_size).enumerate() {
        if i % world.max(1) != rank {
            continue;
        }
        let prompts = chunk
            .iter()
            .map(|p| prompt_ids(tokenizer, &p.prompt))
            .collect::<Result<Vec<_>, _>>()?;
        let rollout = generate(&model, &prompts, generation, &mut sampler)?;
        for (j, ((problem, response), len)) in chunk
            .iter()
            .zip(&rollout.responses)
            .zip(rollout.lengths())
            .enumerate()
        {
            let text = tokenizer.decode(&response[..len], true)?;
            let ok = is_correct(&text, &problem.answer, ExtractMethod::Strict);
            part.strict += usize::from(ok);
            part.flexible +=
                usize::from(is_correct(&text, &problem.answer, ExtractMethod::Flexible));
            part.tokens += len;
            if part.examples.len() < EVAL_EXAMPLES {
                part.examples
                    .push((i * batch_size + j, problem.prompt.clone(), text, ok));
            }
        }
        on_batch((i * batch_size + chunk.len()).min(problems.len()));
    }
    Ok(part)
}
