//! Batched generation for rollouts: left-padded prompts, one prefill pass, then one token per step
//! with the KV cache; rows that finish are dropped from the batch (and from the cache), so the
//! remaining steps cost only what the unfinished rows need.
//!
//! Each step's logits come back to the host, where the [`Sampler`] picks each row's token. Two
//! log-probabilities of the token are kept, both at no extra forward pass:
//! - `logprobs`: **under the model's distribution at temperature 1** (`log_softmax(logits)[token]`,
//!   no top-k/top-p), whatever the sampler did: the quantity the trainer recomputes with a
//!   teacher-forced pass (`logp_old`, docs/spec.md section 7);
//! - `sampling_logprobs`: under the distribution the token was **drawn from**, the rollout policy
//!   as it ran (temperature, top-k and top-p applied and renormalized; 0 for greedy decoding):
//!   the behaviour policy of rollout correction (docs/spec.md section 9). At temperature 1
//!   without top-k/top-p the two are equal.
//!
//! Generation runs on `model.valid()`, so an autodiff model builds no graph.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

use super::sampling::{Draw, Sample, Sampler, log_prob};
use crate::model::KvCache;
use crate::model::config::TokenIds;
use crate::model::qwen2::{Padding, Qwen2ForCausalLM};

/// Why a batch could not be generated.
#[derive(Debug, Error, PartialEq)]
pub enum GenerateError {
    /// No prompts.
    #[error("generation needs at least one prompt")]
    EmptyBatch,
    /// A prompt without tokens.
    #[error("prompt {index} is empty")]
    EmptyPrompt {
        /// Its index in the batch.
        index: usize,
    },
    /// A token id the model has no embedding for.
    #[error(
        "prompt {index} holds token {token} at position {position}; the vocabulary has {vocab_size} tokens"
    )]
    TokenOutOfRange {
        /// The prompt.
        index: usize,
        /// Where in it.
        position: usize,
        /// The id.
        token: u32,
        /// The model's vocabulary.
        vocab_size: usize,
    },
    /// A setting out of range.
    #[error("generation `{knob}` = {value}: {reason}")]
    Invalid {
        /// `max_new_tokens`, `eos_token_ids` or `pad_token_id`.
        knob: &'static str,
        /// The value.
        value: String,
        /// The rule.
        reason: String,
    },
    /// Prompt plus response would exceed the model's positions.
    #[error(
        "prompt of {prompt_len} tokens + max_new_tokens {max_new_tokens} exceeds max_position_embeddings ({max_positions})"
    )]
    TooLong {
        /// The longest prompt.
        prompt_len: usize,
        /// The requested response length.
        max_new_tokens: usize,
        /// The model's limit.
        max_positions: usize,
    },
    /// `generation_config.json` / `config.json` unreadable or without the needed tokens.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading logits back from the device failed.
    #[error("reading logits from the device: {0}")]
    Device(String),
}

/// When to stop and how to pad.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Longest response (tokens generated per prompt, EOS included).
    pub max_new_tokens: usize,
    /// A row stops after emitting any of these (may be empty: every row runs to `max_new_tokens`).
    pub eos_token_ids: Vec<u32>,
    /// Fills prompts' left padding and responses after their end.
    pub pad_token_id: u32,
}

/// `generation_config.json` of an HF checkpoint (only the token fields are read: sampling is
/// configured explicitly with [`super::sampling::SamplingConfig`]).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

impl GenerationConfig {
    /// A config.
    pub fn new(max_new_tokens: usize, eos_token_ids: Vec<u32>, pad_token_id: u32) -> Self {
        Self {
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
        }
    }

    /// The stop and padding tokens of an HF checkpoint directory, as transformers picks them:
    /// `eos_token_id` and `pad_token_id` from `generation_config.json`, else from `config.json`;
    /// without a padding token the first EOS pads.
    pub fn from_checkpoint(dir: &Path, max_new_tokens: usize) -> Result<Self, GenerateError> {
        #[derive(Deserialize)]
        struct Tokens {
            #[serde(default)]
            eos_token_id: Option<TokenIds>,
            #[serde(default)]
            pad_token_id: Option<u32>,
        }
        let read = |name: &str| -> Result<Option<Tokens>, GenerateError> {
            let path = dir.join(name);
            if !path.exists() {
                return Ok(None);
            }
            let fail = |reason: String| GenerateError::Checkpoint {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
            if !value.is_object() {
                return Err(fail(format!("not a JSON object (it holds {value})")));
            }
            // Each token field on its own, so a bad value is named by its field.
            for field in ["eos_token_id", "pad_token_id"] {
                let v = value.get(field).cloned().unwrap_or(serde_json::Value::Null);
                let probe = serde_json::json!({ field: v });
                if let Err(e) = serde_json::from_value::<Tokens>(probe) {
                    return Err(fail(format!("`{field}` = {v}: {e}")));
                }
            }
            serde_json::from_value(value)
                .map(Some)
                .map_err(|e| fail(format!("token ids: {e}")))
        };
        let generation = read(GENERATION_CONFIG_FILE)?;
        let model = read(crate::checkpoint::loader::CONFIG_FILE)?;
        let eos = [&generation, &model]
            .into_iter()
            .flatten()
            .find_map(|t| t.eos_token_id.as_ref())
            .map(TokenIds::to_vec)
            .unwrap_or_default();
        let pad = [&generation, &model]
            .into_iter()
            .flatten()
            .find_map(|t| t.pad_token_id)
            .or_else(|| eos.first().copied())
            .ok_or_else(|| GenerateError::Checkpoint {
                path: dir.display().to_string(),
                reason: format!(
                    "neither {GENERATION_CONFIG_FILE} nor config.json names a pad_token_id or eos_token_id"
                ),
            })?;
        Ok(Self::new(max_new_tokens, eos, pad))
    }
}

/// A generated batch; row `b` answers prompt `b`. Every response row has the same length,
/// [`Rollout::response_len`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The prompts as given.
    pub prompts: Vec<Vec<u32>>,
    /// Generated tokens up to and including EOS, then `pad_token_id`.
    pub responses: Vec<Vec<u32>>,
    /// `log p(token | prompt, earlier tokens)` at temperature 1 for generated tokens; 0 on padding.
    pub logprobs: Vec<Vec<f32>>,
    /// The log-probability of each generated token under the sampling distribution it was drawn
    /// from (see the module docs); 0 on padding.
    pub sampling_logprobs: Vec<Vec<f32>>,
    /// True on generated tokens (EOS included), false on padding.
    pub mask: Vec<Vec<bool>>,
    /// Whether the row ended with an EOS token (otherwise it reached `max_new_tokens`).
    pub finished: Vec<bool>,
}

impl Rollout {
    /// Length of every response row.
    pub fn response_len(&self) -> usize {
        self.responses.first().map_or(0, Vec::len)
    }

    /// Generated tokens per row (EOS included).
    pub fn lengths(&self) -> Vec<usize> {
        self.mask
            .iter()
            .map(|m| m.iter().filter(|&&x| x).count())
            .collect()
    }
}

fn check(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
) -> Result<(), GenerateError> {
    let vocab_size = model.config().vocab_size;
    if prompts.is_empty() {
        return Err(GenerateError::EmptyBatch);
    }
    for (index, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(GenerateError::EmptyPrompt { index });
        }
        if let Some((position, &token)) = p
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab_size)
        {
            return Err(GenerateError::TokenOutOfRange {
                index,
                position,
                token,
                vocab_size,
            });
        }
    }
    if config.max_new_tokens == 0 {
        return Err(GenerateError::Invalid {
            knob: "max_new_tokens",
            value: "0".into(),
            reason: "must be >= 1".into(),
        });
    }
    for (knob, id) in config
        .eos_token_ids
        .iter()
        .map(|&id| ("eos_token_ids", id))
        .chain([("pad_token_id", config.pad_token_id)])
    {
        if id as usize >= vocab_size {
            return Err(GenerateError::Invalid {
                knob,
                value: id.to_string(),
                reason: format!("must be below the vocabulary size ({vocab_size})"),
            });
        }
    }
    let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let max_positions = model.config().max_position_embeddings;
    if prompt_len + config.max_new_tokens > max_positions {
        return Err(GenerateError::TooLong {
            prompt_len,
            max_new_tokens: config.max_new_tokens,
            max_positions,
        });
    }
    Ok(())
}

fn int_tensor(values: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Logits of the last position of each row, on the host: `rows x vocab`.
fn last_logits(model: &Qwen2ForCausalLM, hidden: Tensor<3>) -> Result<Vec<f32>, GenerateError> {
    let [_, s, _] = hidden.dims();
    model
        .logits(hidden.narrow(1, s - 1, 1))
        .try_into_vec_as::<f32>()
        .map_err(|e| GenerateError::Device(format!("{e:?}")))
}

/// Generates a response for every prompt.
///
/// `sampler` draws for the unfinished rows of each step in prompt order, so the same seed and batch
/// give the same rollout. Temperature 0 ([`Sampler::Greedy`]) reproduces transformers' greedy
/// `generate` (tests/qwen2_generate.rs).
pub fn generate(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    sampler: &mut Sampler,
) -> Result<Rollout, GenerateError> {
    generate_with(model, prompts, config, RowSampling::Shared(sampler))
}

/// Where the draws of [`generate_with`] come from.
pub enum RowSampling<'a> {
    /// One stream for the whole batch, drawn for the unfinished rows of each step in row order:
    /// a row's tokens depend on the rows beside it.
    Shared(&'a mut Sampler),
    /// One sampler (and stream) per row: a row's tokens depend on its prompt, its sampler and the
    /// model only, so the rows can be generated in any grouping (micro-batches, data-parallel
    /// workers) with the same result.
    PerRow(&'a mut [Sampler]),
}

/// [`generate`] with the draws from `sampling`.
///
/// # Panics
/// If a per-row sampling has another length than `prompts`.
pub fn generate_with(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    mut sampling: RowSampling,
) -> Result<Rollout, GenerateError> {
    if let RowSampling::PerRow(samplers) = &sampling {
        assert_eq!(samplers.len(), prompts.len(), "one sampler per row");
    }
    check(model, prompts, config)?;
    // No autodiff graph: rollouts need no gradients (a no-op for a model without autodiff).
    let model = &model.valid();
    let device = model.device();
    let vocab = model.config().vocab_size;
    let batch = prompts.len();
    let (mut cache, mut padding, mut logits) = prefill(model, prompts, config)?;

    let mut responses: Vec<Vec<u32>> = vec![Vec::new(); batch];
    let mut logprobs: Vec<Vec<f32>> = vec![Vec::new(); batch];
    let mut sampling_logprobs: Vec<Vec<f32>> = vec![Vec::new(); batch];
    let mut finished = vec![false; batch];
    // Prompt indices of the rows of the current batch.
    let mut active: Vec<usize> = (0..batch).collect();
    for step in 0..config.max_new_tokens {
        let mut next = Vec::with_capacity(active.len());
        for (row, &b) in active.iter().enumerate() {
            let row_logits = &logits[row * vocab..(row + 1) * vocab];
            let Draw {
                token,
                log_prob: sampled,
            } = match &mut sampling {
                RowSampling::Shared(sampler) => sampler.draw(row_logits),
                RowSampling::PerRow(samplers) => samplers[b].draw(row_logits),
            };
            responses[b].push(token as u32);
            logprobs[b].push(log_prob(row_logits, token) as f32);
            sampling_logprobs[b].push(sampled as f32);
            finished[b] = config.eos_token_ids.contains(&(token as u32));
            next.push(token as i64);
        }
        if step + 1 == config.max_new_tokens {
            break;
        }
        // Drop finished rows from the batch and the cache.
        let keep: Vec<usize> = (0..active.len())
            .filter(|&r| !finished[active[r]])
            .collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let rows = Tensor::<1, Int>::from_data(
                TensorData::new(keep.iter().map(|&r| r as i64).collect(), [keep.len()]),
                &device,
            );
            cache.retain_rows(&rows);
            padding.retain_rows(&keep);
            next = keep.iter().map(|&r| next[r]).collect();
            active = keep.iter().map(|&r| active[r]).collect();
        }
        let hidden = model.forward_hidden(
            int_tensor(next, [active.len(), 1], &device),
            &padding,
            Some(&mut cache),
        );
        logits = last_logits(model, hidden)?;
    }

    Ok(padded_rollout(
        prompts,
        responses,
        [logprobs, sampling_logprobs],
        finished,
        config.pad_token_id,
    ))
}

/// The prompts' forward pass: each distinct prompt once (GRPO's groups share one), left-padded
/// to the longest, its cache rows then repeated for the rows that share it. Returns the cache,
/// the padding and the last position's logits of every row (`[batch * vocab]`).
fn prefill(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
) -> Result<(KvCache, Padding, Vec<f32>), GenerateError> {
    let device = model.device();
    let vocab = model.config().vocab_size;
    let batch = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // A prompt that several rows share (GRPO's groups) is run once; its cache rows are repeated.
    let mut distinct: Vec<&Vec<u32>> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let row_prompt: Vec<usize> = prompts
        .iter()
        .map(|p| {
            *index.entry(p).or_insert_with(|| {
                distinct.push(p);
                distinct.len() - 1
            })
        })
        .collect();
    let distinct_lengths: Vec<usize> = distinct.iter().map(|p| p.len()).collect();
    let ids: Vec<i64> = distinct
        .iter()
        .flat_map(|p| {
            std::iter::repeat_n(config.pad_token_id as i64, width - p.len())
                .chain(p.iter().map(|&t| t as i64))
        })
        .collect();

    let mut cache = model.new_cache(width + config.max_new_tokens);
    let mut padding = Padding::from_lengths(&distinct_lengths);
    let hidden = model.forward_hidden(
        int_tensor(ids, [distinct.len(), width], &device),
        &padding,
        Some(&mut cache),
    );
    let mut logits = last_logits(model, hidden)?;
    if distinct.len() < batch {
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(row_prompt.iter().map(|&r| r as i64).collect(), [batch]),
            &device,
        );
        cache.retain_rows(&rows);
        padding.retain_rows(&row_prompt);
        logits = row_prompt
            .iter()
            .flat_map(|&r| logits[r * vocab..(r + 1) * vocab].iter().copied())
            .collect();
    }
    Ok((cache, padding, logits))
}

/// The responses padded to the longest (`pad` tokens, log-probs 0) with their mask;
/// `log_probs` holds the model's and the sampling distribution's.
fn padded_rollout(
    prompts: &[Vec<u32>],
    mut responses: Vec<Vec<u32>>,
    log_probs: [Vec<Vec<f32>>; 2],
    finished: Vec<bool>,
    pad: u32,
) -> Rollout {
    let [mut logprobs, mut sampling_logprobs] = log_probs;
    let response_len = responses.iter().map(Vec::len).max().unwrap_or(0);
    let mask = responses
        .iter()
        .map(|r| (0..response_len).map(|t| t < r.len()).collect())
        .collect();
    for ((r, lp), slp) in responses
        .iter_mut()
        .zip(&mut logprobs)
        .zip(&mut sampling_logprobs)
    {
        r.resize(response_len, pad);
        lp.resize(response_len, 0.0);
        slp.resize(response_len, 0.0);
    }
    Rollout {
        prompts: prompts.to_vec(),
        responses,
        logprobs,
        sampling_logprobs,
        mask,
        finished,
    }
}
