//! [`GroupId`]: which group a rollout sample belongs to. GRPO's advantages and DAPO's dynamic
//! sampling compare the `rollout.n` responses to one prompt with each other, so each response
//! carries the identity of its group: the generation batch of the step it was sampled in, and
//! the prompt's position in that batch (the same training prompt drawn in two generation batches
//! makes two groups).

use serde::{Deserialize, Serialize};

/// The group of a rollout sample, unique within a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId {
    /// The generation batch of the step (0-based; several with dynamic sampling).
    pub gen_batch: u64,
    /// The prompt's position in the generation batch.
    pub prompt: u64,
}

/// Prompts per generation batch the numeric key leaves room for (a generation batch holds
/// far fewer: each prompt costs `rollout.n` generated responses).
const PROMPTS_PER_KEY_BATCH: u64 = 1_000_000;

impl GroupId {
    /// The group of the `prompt`-th prompt of generation batch `gen_batch`.
    pub fn new(gen_batch: u64, prompt: usize) -> Self {
        let prompt = prompt as u64;
        debug_assert!(
            prompt < PROMPTS_PER_KEY_BATCH,
            "a generation batch of a million prompts"
        );
        Self { gen_batch, prompt }
    }

    /// The number the advantage estimator and the dynamic sampler group by:
    /// `gen_batch * 1_000_000 + prompt`, distinct for distinct groups of a step and ordered as
    /// the groups are.
    pub fn key(self) -> u64 {
        self.gen_batch * PROMPTS_PER_KEY_BATCH + self.prompt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_ordered_and_the_documented_encoding() {
        let ids: Vec<GroupId> = (0..3)
            .flat_map(|b| (0..5).map(move |p| GroupId::new(b, p)))
            .collect();
        let keys: Vec<u64> = ids.iter().map(|g| g.key()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(GroupId::new(2, 7).key(), 2 * 1_000_000 + 7);
        assert_eq!(GroupId::new(0, 999_999).key() + 1, GroupId::new(1, 0).key());
    }

    #[test]
    fn a_group_id_crosses_workers_as_json() {
        let id = GroupId::new(4, 11);
        let back: GroupId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
    }
}
