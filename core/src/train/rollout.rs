//! Rollouts (step 1 of the trainer): the rollout policy samples `rollout.n` responses for each
//! prompt of a generation batch, and the reward scores each. Without dynamic sampling one
//! generation batch is the train batch; with DAPO's dynamic sampling further batches follow
//! (at most `max_num_gen_batches`) until `train_batch_size` groups whose metric is not constant
//! are kept.
//!
//! Each response row draws from its own random stream (seeded by its index in the batch), so a
//! row's response does not depend on how the rows are grouped: in micro-batches (which bound the
//! KV cache) or across the workers of a data-parallel run, which take the groups of a
//! contiguous block of prompts each.

use serde::{Deserialize, Serialize};

use super::collective::{all_gather_json, shard};
use super::data::DataStream;
use super::error::{Context, TrainError};
use super::group_id::GroupId;
use super::sequence::SequenceBatch;
use super::setup::RunContext;
use crate::generation::{RowSampling, SamplingConfig, generate_with};
use crate::model::Qwen2ForCausalLM;
use crate::rl::dynamic_sampling::{FilterMetric, SamplerStatus};
use crate::rng::counter_hash;
use crate::run::StepMetrics;
use crate::run::metric_keys::{
    DAPO_NUM_GEN_BATCHES, RESPONSE_LENGTH_CLIP_RATIO, RESPONSE_LENGTH_MEAN, REWARD_ACC,
    REWARD_GEN_ACC, REWARD_MEAN,
};

/// Salt of the rollout sampling streams (XORed into the seed).
const ROLLOUT_SALT: u64 = 0x524f_4c4c;

/// One sampled response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Sample {
    /// Index into the tokenized training prompts.
    pub prompt: usize,
    /// Its group.
    pub group: GroupId,
    /// Response tokens (EOS included when it was generated), no padding.
    pub response: Vec<u32>,
    /// Each response token's log-probability under the distribution the rollout policy drew it
    /// from (noise, quantization, temperature, top-k/top-p as they ran): the behaviour policy of
    /// the mismatch metrics and of rollout correction. Sent between workers as bit patterns,
    /// so a `-inf` (a token the rollout policy gave an f32-underflowing probability) survives.
    #[serde(with = "f32_bits")]
    pub rollout_log_probs: Vec<f32>,
    /// Reward.
    pub score: f64,
    /// Correctness.
    pub acc: bool,
    /// Whether the response hit the length limit.
    pub truncated: bool,
}

/// The samples a step trains on, and what generating them took.
#[derive(Debug, Default)]
pub(super) struct Rollouts {
    /// The kept samples, group after group.
    pub samples: Vec<Sample>,
    /// Generation batches generated.
    pub gen_batches: u64,
    /// Responses generated (kept or not).
    pub generated: usize,
    /// Of those, the correct ones.
    pub gen_correct: usize,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// The dynamic sampler's metrics (none without it).
    pub sampler_metrics: StepMetrics,
}

impl Rollouts {
    /// Counts a generated batch.
    fn count(&mut self, batch: &[Sample]) {
        self.gen_batches += 1;
        self.generated += batch.len();
        self.gen_tokens += batch.iter().map(|s| s.response.len()).sum::<usize>();
        self.gen_correct += batch.iter().filter(|s| s.acc).count();
    }

    /// The group keys of the samples, in order.
    pub fn group_keys(&self) -> Vec<u64> {
        self.samples.iter().map(|s| s.group.key()).collect()
    }

    /// The rollout metrics of the step: rewards (`scores`, the samples' scores after a KL
    /// penalty in the reward), accuracy, response lengths, generation batches.
    pub fn metrics(&self, scores: &[f64]) -> StepMetrics {
        let samples = &self.samples;
        let n = samples.len().max(1) as f64;
        [
            (REWARD_MEAN, scores.iter().sum::<f64>() / n),
            (
                REWARD_ACC,
                samples.iter().filter(|s| s.acc).count() as f64 / n,
            ),
            (
                REWARD_GEN_ACC,
                self.gen_correct as f64 / self.generated.max(1) as f64,
            ),
            (
                RESPONSE_LENGTH_MEAN,
                samples.iter().map(|s| s.response.len()).sum::<usize>() as f64 / n,
            ),
            (
                RESPONSE_LENGTH_CLIP_RATIO,
                samples.iter().filter(|s| s.truncated).count() as f64 / n,
            ),
            (DAPO_NUM_GEN_BATCHES, self.gen_batches as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The step's samples from `model` (the rollout policy), with dynamic sampling when configured.
pub(super) fn collect(
    ctx: &RunContext,
    model: &Qwen2ForCausalLM,
    stream: &mut DataStream,
    step: u64,
) -> Result<Rollouts, TrainError> {
    let filter = &ctx.config.algorithm.filter_groups;
    let mut rollouts = Rollouts::default();
    if !filter.enable {
        let batch = generate_batch(ctx, model, stream, step, 0)?;
        rollouts.count(&batch);
        rollouts.samples = batch;
        return Ok(rollouts);
    }
    let mut sampler = filter
        .sampler(ctx.config.batch.train())
        .context("dynamic sampling")?;
    loop {
        let batch = generate_batch(ctx, model, stream, step, rollouts.gen_batches)?;
        rollouts.count(&batch);
        let ids: Vec<u64> = batch.iter().map(|s| s.group.key()).collect();
        let metric: Vec<f64> = batch
            .iter()
            .map(|s| match filter.metric {
                FilterMetric::Acc => f64::from(u8::from(s.acc)),
                FilterMetric::Score | FilterMetric::SeqFinalReward => s.score,
            })
            .collect();
        let out = sampler
            .offer(&ids, &metric)
            .context(format!("dynamic sampling at step {step}"))?;
        rollouts
            .samples
            .extend(out.keep.iter().map(|&i| batch[i].clone()));
        if out.status == SamplerStatus::Done {
            break;
        }
    }
    rollouts.sampler_metrics = sampler
        .metrics()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Ok(rollouts)
}

/// Generates generation batch `batch` of `step`: this worker's share of the rows, in
/// micro-batches of `rollout.micro_batch_size`, scored; every worker returns the whole batch.
fn generate_batch(
    ctx: &RunContext,
    model: &Qwen2ForCausalLM,
    stream: &mut DataStream,
    step: u64,
    batch: u64,
) -> Result<Vec<Sample>, TrainError> {
    let cfg = ctx.config;
    let prompts = stream.next(cfg.batch.generation());
    let n = cfg.rollout.n;
    let sampling = SamplingConfig {
        temperature: cfg.rollout.temperature,
        top_k: (cfg.rollout.top_k > 0).then_some(cfg.rollout.top_k),
        top_p: (cfg.rollout.top_p < 1.0).then_some(cfg.rollout.top_p),
        min_p: (cfg.rollout.min_p > 0.0).then_some(cfg.rollout.min_p),
        seed: counter_hash(cfg.trainer.seed ^ ROLLOUT_SALT, step * 1024 + batch),
    };
    let c = ctx.collective;
    let mine = shard(prompts.len(), c.rank(), c.world_size());
    let row_ids: Vec<usize> = (mine.start * n..mine.end * n).collect();
    let micro = match cfg.rollout.micro_batch_size {
        0 => row_ids.len().max(1),
        m => m.min(row_ids.len().max(1)),
    };
    let mut rows: Vec<Generated> = Vec::with_capacity(row_ids.len());
    for chunk in row_ids.chunks(micro) {
        let mut samplers = chunk
            .iter()
            .map(|&r| {
                SamplingConfig {
                    seed: counter_hash(sampling.seed, r as u64),
                    ..sampling.clone()
                }
                .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .context("[rollout] sampling")?;
        let chunk_ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&r| ctx.train_prompts[prompts[r / n]].clone())
            .collect();
        let rollout = generate_with(
            model,
            &chunk_ids,
            &ctx.generation,
            RowSampling::PerRow(&mut samplers),
        )
        .context(format!("generating step {step}"))?;
        for (((len, finished), response), log_probs) in rollout
            .lengths()
            .into_iter()
            .zip(rollout.finished)
            .zip(rollout.responses)
            .zip(rollout.sampling_logprobs)
        {
            rows.push(Generated {
                response: response[..len].to_vec(),
                log_probs: log_probs[..len].to_vec(),
                finished,
            });
        }
    }
    let mut samples = Vec::with_capacity(rows.len());
    for (row, generated) in (mine.start * n..).zip(rows) {
        samples.push(score(
            ctx,
            prompts[row / n],
            GroupId::new(batch, row / n),
            generated,
        )?);
    }
    // Every worker continues with the whole batch, in row order.
    Ok(all_gather_json(c, &samples).into_iter().flatten().collect())
}

/// `Vec<f32>` as the values' bit patterns: JSON has no NaN or infinity.
mod f32_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.to_bits())
            .collect::<Vec<u32>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<u32>::deserialize(d)?
            .into_iter()
            .map(f32::from_bits)
            .collect())
    }
}

/// One generated response, unpadded.
struct Generated {
    response: Vec<u32>,
    /// Under the sampling distribution.
    log_probs: Vec<f32>,
    finished: bool,
}

/// The sample of one generated response, scored by the reward.
fn score(
    ctx: &RunContext,
    prompt: usize,
    group: GroupId,
    generated: Generated,
) -> Result<Sample, TrainError> {
    let Generated {
        response,
        log_probs,
        finished,
    } = generated;
    let cfg = ctx.config;
    let text = ctx
        .tokenizer
        .decode(&response, true)
        .context("decoding a response")?;
    let outcome = cfg.algorithm.reward.score(
        &text,
        &ctx.problems.train[prompt].answer,
        response.len(),
        cfg.rollout.max_response_len,
    );
    Ok(Sample {
        prompt,
        group,
        response,
        rollout_log_probs: log_probs,
        score: outcome.score,
        acc: outcome.acc,
        truncated: !finished,
    })
}

/// The teacher-forced batch of `samples` (their prompts and responses, padded).
pub(super) fn sequences(ctx: &RunContext, samples: &[Sample]) -> SequenceBatch {
    let prompts: Vec<Vec<u32>> = samples
        .iter()
        .map(|s| ctx.train_prompts[s.prompt].clone())
        .collect();
    let responses: Vec<Vec<u32>> = samples.iter().map(|s| s.response.clone()).collect();
    SequenceBatch::new(
        &prompts,
        &responses,
        ctx.generation.pad_token_id,
        &ctx.device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(group: GroupId, len: usize, score: f64, acc: bool, truncated: bool) -> Sample {
        Sample {
            prompt: 0,
            group,
            response: vec![1; len],
            rollout_log_probs: vec![-1.0; len],
            score,
            acc,
            truncated,
        }
    }

    #[test]
    fn rollout_metrics_average_over_the_kept_samples_and_count_every_generated_one() {
        let (g0, g1) = (GroupId::new(0, 0), GroupId::new(1, 0));
        let mut r = Rollouts::default();
        // Dynamic sampling: a first batch all wrong (dropped), a second one mixed (kept).
        r.count(&[
            sample(g0, 4, -1.0, false, true),
            sample(g0, 2, -1.0, false, false),
        ]);
        let kept = vec![
            sample(g1, 3, 1.0, true, false),
            sample(g1, 5, -1.0, false, true),
        ];
        r.count(&kept);
        r.samples = kept;
        assert_eq!(r.group_keys(), vec![1_000_000, 1_000_000]);
        let m = r.metrics(&[0.9, -1.1]);
        assert!((m[REWARD_MEAN] - (-0.1)).abs() < 1e-12, "{m:?}");
        assert_eq!(m[REWARD_ACC], 0.5);
        assert_eq!(m[REWARD_GEN_ACC], 0.25);
        assert_eq!(m[RESPONSE_LENGTH_MEAN], 4.0);
        assert_eq!(m[RESPONSE_LENGTH_CLIP_RATIO], 0.5);
        assert_eq!(m[DAPO_NUM_GEN_BATCHES], 2.0);
        assert_eq!((r.generated, r.gen_tokens), (4, 14));
    }

    #[test]
    fn samples_cross_workers_with_infinite_log_probs_intact() {
        let mut s = sample(GroupId::new(0, 0), 3, 1.0, true, false);
        s.rollout_log_probs = vec![f32::NEG_INFINITY, -0.5, f32::NAN];
        let back: Sample = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.rollout_log_probs[..2], [f32::NEG_INFINITY, -0.5]);
        assert!(back.rollout_log_probs[2].is_nan());
    }

    #[test]
    fn metrics_of_no_samples_are_zero_not_nan() {
        let m = Rollouts::default().metrics(&[]);
        assert!(m.values().all(|v| *v == 0.0), "{m:?}");
    }
}
