//! Evaluation: greedy answers to held-out problems, scored with the strict GSM8K reward.
//! Always on a clean model (no AQN, no HW noise) in the quantization mode it is given.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::model::{
    ChatMessage, GenerateError, GenerationConfig, Qwen2ForCausalLM, Qwen2Tokenizer, SamplingConfig,
    TokenizerError, generate,
};
use crate::task::dataset::Problem;
use crate::task::gsm8k_reward::{ExtractMethod, is_correct};

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

/// Greedy evaluation of `model` on `problems`, `batch_size` prompts at a time. `on_batch` is
/// called after each batch with the number of problems done (for progress bars).
pub fn evaluate(
    model: &Qwen2ForCausalLM,
    tokenizer: &Qwen2Tokenizer,
    problems: &[Problem],
    generation: &GenerationConfig,
    batch_size: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<EvalResult, EvalError> {
    if problems.is_empty() {
        return Err(EvalError::NoProblems);
    }
    let model = model.valid();
    let mut sampler = SamplingConfig::greedy()
        .build()
        .expect("greedy sampling is valid");
    let (mut strict, mut flexible, mut tokens) = (0usize, 0usize, 0usize);
    let mut examples = Vec::new();
    for (i, chunk) in problems.chunks(batch_size.max(1)).enumerate() {
        let prompts = chunk
            .iter()
            .map(|p| prompt_ids(tokenizer, &p.prompt))
            .collect::<Result<Vec<_>, _>>()?;
        let rollout = generate(&model, &prompts, generation, &mut sampler)?;
        for ((problem, response), len) in
            chunk.iter().zip(&rollout.responses).zip(rollout.lengths())
        {
            let text = tokenizer.decode(&response[..len], true)?;
            let ok = is_correct(&text, &problem.answer, ExtractMethod::Strict);
            strict += usize::from(ok);
            flexible += usize::from(is_correct(&text, &problem.answer, ExtractMethod::Flexible));
            tokens += len;
            if examples.len() < EVAL_EXAMPLES {
                examples.push((problem.prompt.clone(), text, ok));
            }
        }
        on_batch((i * batch_size.max(1) + chunk.len()).min(problems.len()));
    }
    let n = problems.len() as f64;
    Ok(EvalResult {
        accuracy: strict as f64 / n,
        accuracy_flexible: flexible as f64 / n,
        problems: problems.len(),
        mean_response_tokens: tokens as f64 / n,
        examples,
    })
}
