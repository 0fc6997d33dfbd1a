//! DAPO's dynamic sampling (Yu et al., 2025; docs/spec.md section 7), as verl's DAPO trainer with
//! `algorithm.filter_groups`: a group (the responses to one prompt) is kept when its metric
//! (`acc` by default) is not identical across the group (numpy's `std > 0`), or when it has a
//! single response; generation batches are drawn until the train batch holds `target_groups`
//! kept groups. verl raises after `max_num_gen_batches` batches; here that bound is mandatory,
//! so a reward that makes every group constant (all right or all wrong) ends in a clear error
//! naming `max_num_gen_batches` instead of generating forever (verl's `0 = unlimited` is refused).
//!
//! [`DynamicSampler`] is a pure state machine the trainer drives: it never generates, loops or
//! sleeps. Per training step:
//!
//! ```text
//! let mut sampler = DynamicSampler::new(target_groups, max_num_gen_batches, metric)?;
//! loop {
//!     let batch = generate();                       // n responses per prompt, scored
//!     let step = sampler.offer(&batch.group_ids, &batch.metric)?;   // Err: bound exceeded
//!     train_batch.extend(step.keep.iter().map(|&i| batch.sample(i)));
//!     if step.status == SamplerStatus::Done { break; }
//! }
//! ```
//!
//! Kept groups are taken in the order they first appear in each batch; qualified groups beyond
//! the target are dropped whole (verl truncates the trajectory list to `train_batch_size * n`,
//! which is the same when every group has `n` adjacent responses).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

use super::error::RlError;
use super::metrics::{Metrics, NUM_GEN_BATCHES};

/// verl's example `max_num_gen_batches` (its default 0 means unlimited, which is refused here).
pub const DEFAULT_MAX_NUM_GEN_BATCHES: usize = 10;

named_enum! {
    /// The per-response value a group must vary in to be kept (verl's `filter_groups.metric`).
    #[derive(Default)]
    FilterMetric, "filter_groups metric", RlError {
        /// Whether the answer is right (default).
        #[default]
        Acc => "acc",
        /// The scorer's reward including overlong shaping (verl's `seq_reward`, `score`).
        Score => "score" | "seq_reward",
        /// The reward after the KL penalty (verl's `seq_final_reward`).
        SeqFinalReward => "seq_final_reward",
    }
}

/// verl's `algorithm.filter_groups` (TOML: `[algorithm.filter_groups]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterGroupsConfig {
    /// Whether dynamic sampling is on (default false; DAPO turns it on).
    pub enable: bool,
    /// The metric (default `acc`).
    pub metric: FilterMetric,
    /// The most generation batches per training step (>= 1; default 10).
    pub max_num_gen_batches: usize,
}

impl Default for FilterGroupsConfig {
    fn default() -> Self {
        Self {
            enable: false,
            metric: FilterMetric::Acc,
            max_num_gen_batches: DEFAULT_MAX_NUM_GEN_BATCHES,
        }
    }
}

impl FilterGroupsConfig {
    /// Checks the settings (only when enabled).
    pub fn validate(&self) -> Result<(), RlError> {
        if self.enable && self.max_num_gen_batches == 0 {
            return Err(max_batches_refused(0));
        }
        Ok(())
    }

    /// A sampler for one training step that needs `target_groups` groups.
    pub fn sampler(&self, target_groups: usize) -> Result<DynamicSampler, RlError> {
        DynamicSampler::new(target_groups, self.max_num_gen_batches, self.metric)
    }
}

fn max_batches_refused(value: usize) -> RlError {
    RlError::InvalidSetting {
        name: "max_num_gen_batches",
        value: value.to_string(),
        requirement: "it must be at least 1 (verl's 0 = unlimited can generate forever when every \
                      group is all right or all wrong)"
            .into(),
    }
}

/// For each sample, whether DAPO's filter keeps its group: the group has one sample, or its
/// metric values are not all equal. Refuses NaN metrics and mismatched lengths.
pub fn filter_groups(group_ids: &[u64], metric: &[f64]) -> Result<Vec<bool>, RlError> {
    check_inputs(group_ids, metric)?;
    let kept = kept_groups(group_ids, metric);
    Ok(group_ids.iter().map(|id| kept.contains_key(id)).collect())
}

fn check_inputs(group_ids: &[u64], metric: &[f64]) -> Result<(), RlError> {
    if group_ids.len() != metric.len() {
        return Err(RlError::ShapeMismatch(format!(
            "{} group ids but {} metric values",
            group_ids.len(),
            metric.len()
        )));
    }
    if let Some(i) = metric.iter().position(|v| v.is_nan()) {
        return Err(RlError::InvalidInput(format!(
            "the filter metric of sample {i} is NaN"
        )));
    }
    Ok(())
}

/// The kept groups of a batch, each with its order of first appearance.
fn kept_groups(group_ids: &[u64], metric: &[f64]) -> HashMap<u64, usize> {
    // id -> (first appearance, first value, size, varies)
    let mut groups: HashMap<u64, (usize, f64, usize, bool)> = HashMap::new();
    for (&id, &v) in group_ids.iter().zip(metric) {
        let order = groups.len();
        let g = groups.entry(id).or_insert((order, v, 0, false));
        g.2 += 1;
        g.3 |= v != g.1;
    }
    groups
        .into_iter()
        .filter(|(_, (_, _, size, varies))| *size == 1 || *varies)
        .map(|(id, (order, ..))| (id, order))
        .collect()
}

/// Whether the train batch is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerStatus {
    /// Generate another batch and offer it.
    NeedMore,
    /// The kept samples fill the train batch.
    Done,
}

/// What to do with one offered batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerStep {
    /// Indices (into the offered batch, ascending) of the samples to add to the train batch.
    pub keep: Vec<usize>,
    /// Groups in the offered batch.
    pub groups_offered: usize,
    /// Groups of the offered batch that passed the filter (some may be beyond the target).
    pub groups_qualified: usize,
    /// Whether to generate more.
    pub status: SamplerStatus,
}

/// The bounded accumulator of one training step (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicSampler {
    target_groups: usize,
    max_num_gen_batches: usize,
    metric: FilterMetric,
    gen_batches: usize,
    kept_groups: usize,
    state: SamplerState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SamplerState {
    Open,
    Done,
    Failed,
}

impl DynamicSampler {
    /// A sampler that needs `target_groups` (>= 1) kept groups within `max_num_gen_batches`
    /// (>= 1) generation batches; `metric` names the filter metric in errors.
    pub fn new(
        target_groups: usize,
        max_num_gen_batches: usize,
        metric: FilterMetric,
    ) -> Result<Self, RlError> {
        if target_groups == 0 {
            return Err(RlError::InvalidSetting {
                name: "train_batch_size",
                value: "0".into(),
                requirement: "dynamic sampling needs at least 1 group per train batch".into(),
            });
        }
        if max_num_gen_batches == 0 {
            return Err(max_batches_refused(0));
        }
        Ok(Self {
            target_groups,
            max_num_gen_batches,
            metric,
            gen_batches: 0,
            kept_groups: 0,
            state: SamplerState::Open,
        })
    }

    /// Generation batches offered so far in this step.
    pub fn gen_batches(&self) -> usize {
        self.gen_batches
    }

    /// Groups kept so far.
    pub fn kept_groups(&self) -> usize {
        self.kept_groups
    }

    /// The groups the train batch needs.
    pub fn target_groups(&self) -> usize {
        self.target_groups
    }

    /// `train/num_gen_batches`.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.insert(NUM_GEN_BATCHES, self.gen_batches as f64);
        m
    }

    /// Starts the next training step (same target and bound).
    pub fn reset(&mut self) {
        self.gen_batches = 0;
        self.kept_groups = 0;
        self.state = SamplerState::Open;
    }

    /// Offers one scored generation batch (`group_ids[i]` and `metric[i]` of sample `i`).
    /// Returns the samples to keep and whether to generate more, or
    /// [`RlError::DynamicSamplingExhausted`] when this was batch number `max_num_gen_batches`
    /// and the train batch is still not full. After `Done` or an error it refuses further
    /// batches until [`DynamicSampler::reset`].
    pub fn offer(&mut self, group_ids: &[u64], metric: &[f64]) -> Result<SamplerStep, RlError> {
        match self.state {
            SamplerState::Open => {}
            SamplerState::Done => {
                return Err(RlError::SamplerFinished {
                    state: "filled the train batch",
                });
            }
            SamplerState::Failed => return Err(RlError::SamplerFinished { state: "failed" }),
        }
        check_inputs(group_ids, metric)?;
        self.gen_batches += 1;
        let kept = kept_groups(group_ids, metric);
        let mut order: Vec<(usize, u64)> = kept.iter().map(|(&id, &o)| (o, id)).collect();
        order.sort_unstable();
        let room = self.target_groups - self.kept_groups;
        let taken: HashMap<u64, ()> = order.iter().take(room).map(|&(_, id)| (id, ())).collect();
        self.kept_groups += taken.len();
        let keep = group_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| taken.contains_key(id))
            .map(|(i, _)| i)
            .collect();
        let mut offered: Vec<u64> = group_ids.to_vec();
        offered.sort_unstable();
        offered.dedup();
        let status = if self.kept_groups == self.target_groups {
            self.state = SamplerState::Done;
            SamplerStatus::Done
        } else if self.gen_batches >= self.max_num_gen_batches {
            self.state = SamplerState::Failed;
            return Err(RlError::DynamicSamplingExhausted {
                gen_batches: self.gen_batches,
                max_num_gen_batches: self.max_num_gen_batches,
                kept_groups: self.kept_groups,
                target_groups: self.target_groups,
                metric: self.metric.name(),
            });
        } else {
            SamplerStatus::NeedMore
        };
        Ok(SamplerStep {
            keep,
            groups_offered: offered.len(),
            groups_qualified: kept.len(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_varying_groups_and_singletons() {
        // Group 1 varies, group 2 all right, group 3 all wrong, group 4 a single sample.
        let ids = [1, 1, 2, 2, 3, 3, 4, 1];
        let acc = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(
            filter_groups(&ids, &acc).unwrap(),
            vec![true, true, false, false, false, false, true, true]
        );
        let e = filter_groups(&ids, &acc[..3]).unwrap_err();
        assert!(
            e.to_string().contains("8 group ids but 3 metric values"),
            "{e}"
        );
        let e = filter_groups(&[1], &[f64::NAN]).unwrap_err();
        assert!(e.to_string().contains("sample 0 is NaN"), "{e}");
    }

    #[test]
    fn accumulates_until_full_and_truncates_whole_groups() {
        let mut s = DynamicSampler::new(3, 4, FilterMetric::Acc).unwrap();
        // Batch 1: groups 10 (varies), 11 (constant): 1 kept.
        let step = s.offer(&[10, 10, 11, 11], &[1.0, 0.0, 1.0, 1.0]).unwrap();
        assert_eq!(step.keep, vec![0, 1]);
        assert_eq!((step.groups_offered, step.groups_qualified), (2, 1));
        assert_eq!(step.status, SamplerStatus::NeedMore);
        // Batch 2: groups 21, 20, 22 all vary (interleaved); only two fit, in order of
        // appearance (21 first, then 20); group 22 is dropped whole.
        let step = s
            .offer(&[21, 20, 21, 22, 20, 22], &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
            .unwrap();
        assert_eq!(step.keep, vec![0, 1, 2, 4]);
        assert_eq!(step.status, SamplerStatus::Done);
        assert_eq!((s.kept_groups(), s.gen_batches()), (3, 2));
        assert_eq!(s.metrics()[NUM_GEN_BATCHES], 2.0);
        // Finished: no more batches until reset.
        let e = s.offer(&[1], &[1.0]).unwrap_err().to_string();
        assert!(e.contains("already filled the train batch"), "{e}");
        s.reset();
        assert_eq!((s.kept_groups(), s.gen_batches()), (0, 0));
        assert_eq!(
            s.offer(&[1, 2, 3], &[1.0, 0.0, 1.0]).unwrap().status,
            SamplerStatus::Done
        );
    }

    #[test]
    fn the_bound_is_a_clear_error_never_a_hang() {
        // Every group all right: nothing is ever kept.
        let mut s = DynamicSampler::new(2, 3, FilterMetric::Acc).unwrap();
        for _ in 0..2 {
            let step = s.offer(&[1, 1, 2, 2], &[1.0; 4]).unwrap();
            assert!(step.keep.is_empty());
            assert_eq!(step.status, SamplerStatus::NeedMore);
        }
        let e = s.offer(&[1, 1, 2, 2], &[1.0; 4]).unwrap_err();
        assert_eq!(
            e,
            RlError::DynamicSamplingExhausted {
                gen_batches: 3,
                max_num_gen_batches: 3,
                kept_groups: 0,
                target_groups: 2,
                metric: "acc",
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("max_num_gen_batches = 3") && text.contains("0 of the 2 groups"),
            "{text}"
        );
        let e = s.offer(&[1], &[0.0]).unwrap_err().to_string();
        assert!(e.contains("already failed"), "{e}");
        // A bound of 1: the first short batch fails.
        let mut one = DynamicSampler::new(2, 1, FilterMetric::Score).unwrap();
        assert!(one.offer(&[1, 1], &[0.5, 1.0]).is_err());
        // 0 (verl's unlimited) and an empty target are refused up front.
        let e = DynamicSampler::new(2, 0, FilterMetric::Acc)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_num_gen_batches = 0"), "{e}");
        assert!(DynamicSampler::new(0, 3, FilterMetric::Acc).is_err());
        let cfg = FilterGroupsConfig {
            enable: true,
            max_num_gen_batches: 0,
            ..FilterGroupsConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(FilterGroupsConfig::default().sampler(4).is_ok());
    }

    #[test]
    fn config_by_name() {
        let c: FilterGroupsConfig = serde_json::from_str(
            r#"{"enable": true, "metric": "seq_reward", "max_num_gen_batches": 5}"#,
        )
        .unwrap();
        assert_eq!(c.metric, FilterMetric::Score);
        let e = serde_json::from_str::<FilterGroupsConfig>(r#"{"metric": "accuracy"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("acc, score, seq_final_reward"), "{e}");
        assert!(serde_json::from_str::<FilterGroupsConfig>(r#"{"max_gen_batches": 5}"#).is_err());
    }
}
