//! Supervised pretraining of the built-in tiny model on the synthetic task (issue 5, item 2): a
//! Qwen2-architecture model with a character tokenizer, trained from scratch with teacher forcing
//! on worked solutions, saved in HF layout so it loads through the same code as a real model.
//!
//! It is deliberately stopped early: the base model should know some arithmetic and leave RL room
//! to improve (its held-out accuracy well below what RL reaches). Like an instruct model before
//! GSM8K RL, it does not always answer in the `#### N` format the strict reward checks: a share of
//! its worked solutions end in `The answer is N.` instead ([`AnswerFormats`]), more often for some
//! of the task's people than for others, so greedy decoding uses the plain ending for those while
//! sampling still tries `#### N` now and then, and RL can learn the format from the reward.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::evaluate::{EvalError, EvalResult, evaluate, prompt_ids};
use super::sequence::{SequenceBatch, masked_mean, response_logprobs};
use crate::checkpoint::save::{SaveError, save_qwen2};
use crate::generation::GenerationConfig;
use crate::model::Qwen2Config;
use crate::rng::{CounterRng, counter_hash};
use crate::task::Problem;
use crate::task::dataset::PromptTemplate;
use crate::task::synthetic::{
    Difficulty, Split, SyntheticConfig, person_index, vocabulary, with_plain_answer,
};
use crate::tensor_file::FloatDtype;
use crate::tokenizer::char_tokenizer::write_char_tokenizer;
use crate::tokenizer::{Qwen2Tokenizer, TokenizerError};

/// Errors of pretraining.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// A setting out of range.
    #[error("invalid pretrain setting {name} = {value}: {requirement}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        requirement: &'static str,
    },
    /// The task could not be generated.
    #[error(transparent)]
    Task(#[from] crate::task::error::TaskError),
    /// Tokenizer files.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Evaluation.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Saving the model.
    #[error(transparent)]
    Save(#[from] SaveError),
    /// The model configuration.
    #[error(transparent)]
    Config(#[from] crate::model::ConfigError),
}

/// Pretraining settings (the defaults made `assets/tiny`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// The synthetic task (levels, sizes, seed, prompt template).
    pub task: SyntheticConfig,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Final learning rate as a fraction of the peak (cosine decay).
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the initialization and of the batch order.
    pub seed: u64,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Held-out problems per evaluation.
    pub eval_problems: usize,
    /// Longest generated response during evaluation.
    pub max_new_tokens: usize,
    /// How often the worked solutions end in `#### N` rather than `The answer is N.`.
    pub answer_formats: AnswerFormats,
}

/// The share of pretraining solutions that end in `#### N`, by the problem's person: names at
/// even positions of the task's name list (Tom, Ben, Ann, Eva) use `marked_rate`, the others
/// (Sam, Max, Mia, Zoe) `other_rate`; the rest end in `The answer is N.`. 1 and 1: always the
/// GSM8K format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerFormats {
    /// `#### N` rate for the even-position names.
    pub marked_rate: f64,
    /// `#### N` rate for the odd-position names.
    pub other_rate: f64,
}

impl Default for AnswerFormats {
    fn default() -> Self {
        Self {
            marked_rate: 0.95,
            other_rate: 0.25,
        }
    }
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 384,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 2,
            rope_theta: 10_000.0,
            max_position_embeddings: 512,
            task: SyntheticConfig {
                seed: 0,
                levels: vec![Difficulty::Easy, Difficulty::Medium],
                train_size: 20_000,
                test_size: 500,
                prompt_template: PromptTemplate::Question,
            },
            steps: 600,
            batch_size: 32,
            lr: 3e-3,
            warmup_steps: 50,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            seed: 0,
            eval_every: 100,
            eval_problems: 200,
            max_new_tokens: 48,
            answer_formats: AnswerFormats::default(),
        }
    }
}

impl PretrainConfig {
    fn validate(&self) -> Result<(), PretrainError> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("eval_every", self.eval_every),
            ("eval_problems", self.eval_problems),
            ("max_new_tokens", self.max_new_tokens),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(PretrainError::Invalid {
                    name,
                    value: "0".into(),
                    requirement: "it must be at least 1",
                });
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(PretrainError::Invalid {
                name: "lr",
                value: self.lr.to_string(),
                requirement: "a positive number",
            });
        }
        for (name, rate) in [
            (
                "answer_formats.marked_rate",
                self.answer_formats.marked_rate,
            ),
            ("answer_formats.other_rate", self.answer_formats.other_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(PretrainError::Invalid {
                    name,
                    value: rate.to_string(),
                    requirement: "a fraction in [0, 1]",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(PretrainError::Invalid {
                name: "min_lr_ratio",
                value: self.min_lr_ratio.to_string(),
                requirement: "a fraction in [0, 1]",
            });
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine decay to `min_lr_ratio`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

/// One line of the pretraining log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    /// 1-based step.
    pub step: usize,
    /// Mean token cross-entropy of the step's batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Evaluation at this step, if one ran.
    pub eval: Option<EvalResult>,
}

/// Salt of the answer-format draws.
const FORMAT_SALT: u64 = 0x464f_524d;

/// Tokenized train problems: chat prompt ids and solution + EOS ids.
struct Tokenized {
    prompts: Vec<Vec<u32>>,
    targets: Vec<Vec<u32>>,
}

fn tokenize(
    tokenizer: &Qwen2Tokenizer,
    problems: &[Problem],
    eos: u32,
    formats: &AnswerFormats,
    seed: u64,
) -> Result<Tokenized, PretrainError> {
    let mut out = Tokenized {
        prompts: Vec::with_capacity(problems.len()),
        targets: Vec::with_capacity(problems.len()),
    };
    for (i, p) in problems.iter().enumerate() {
        out.prompts.push(prompt_ids(tokenizer, &p.prompt)?);
        let solution = p.solution.as_deref().unwrap_or_default();
        let rate = match person_index(&p.prompt) {
            Some(k) if k % 2 == 1 => formats.other_rate,
            _ => formats.marked_rate,
        };
        let draw = CounterRng::new(counter_hash(seed ^ FORMAT_SALT, i as u64)).next_f64();
        let solution = if draw < rate {
            solution.to_string()
        } else {
            with_plain_answer(solution)
        };
        let mut t = tokenizer.encode(&solution, false)?;
        t.push(eos);
        out.targets.push(t);
    }
    Ok(out)
}

/// Pretrains a tiny model and writes it (HF layout, with its tokenizer) to `out_dir`.
/// `device` must be an autodiff device. `on_record` sees every step's record.
pub fn pretrain(
    config: &PretrainConfig,
    device: &Device,
    out_dir: &Path,
    mut on_record: impl FnMut(&PretrainRecord),
) -> Result<Vec<PretrainRecord>, PretrainError> {
    config.validate()?;
    let (vocab_size, ids) =
        write_char_tokenizer(&vocabulary(config.task.prompt_template), out_dir)?;
    let tokenizer = Qwen2Tokenizer::from_dir(out_dir)?;
    let model_config = Qwen2Config::new(
        vocab_size,
        config.hidden_size,
        config.intermediate_size,
        config.num_layers,
        config.num_heads,
        config.num_kv_heads,
    )
    .with_rope_theta(config.rope_theta)
    .with_max_position_embeddings(config.max_position_embeddings);
    model_config.validate()?;
    device.seed(config.seed);
    let mut model = model_config.init(device);

    let train = tokenize(
        &tokenizer,
        &config.task.problems(Split::Train)?,
        ids.im_end,
        &config.answer_formats,
        config.seed,
    )?;
    let test: Vec<Problem> = config
        .task
        .problems(Split::Test)?
        .into_iter()
        .take(config.eval_problems)
        .collect();
    let generation = GenerationConfig::new(config.max_new_tokens, vec![ids.im_end], ids.endoftext);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    let mut records = Vec::with_capacity(config.steps);
    let mut order = CounterRng::new(counter_hash(config.seed, 0xDA7A));
    for step in 0..config.steps {
        let rows: Vec<usize> = (0..config.batch_size)
            .map(|_| order.below(train.prompts.len() as u64) as usize)
            .collect();
        let prompts: Vec<Vec<u32>> = rows.iter().map(|&r| train.prompts[r].clone()).collect();
        let targets: Vec<Vec<u32>> = rows.iter().map(|&r| train.targets[r].clone()).collect();
        let batch = SequenceBatch::new(&prompts, &targets, ids.endoftext, device);
        let (logp, _) = response_logprobs(&model, &batch, false);
        let loss = masked_mean(logp, batch.response_mask.clone()).neg();
        let loss_value: f64 = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = config.lr_at(step);
        model = optim.step(lr, model, grads);
        let done = step + 1;
        let eval = if done % config.eval_every == 0 || done == config.steps {
            Some(evaluate(
                &model.valid(),
                &tokenizer,
                &test,
                &generation,
                64,
                |_| {},
            )?)
        } else {
            None
        };
        let record = PretrainRecord {
            step: done,
            loss: loss_value,
            lr,
            eval,
        };
        on_record(&record);
        records.push(record);
    }
    save_qwen2(
        &model.valid(),
        out_dir,
        FloatDtype::F32,
        ids.im_end,
        ids.endoftext,
    )?;
    Ok(records)
}
