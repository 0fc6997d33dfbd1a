//! The problems of a run and the order the trainer visits them in.
//!
//! Steps per epoch are `floor(train problems / gen_batch_size)`: like verl's dataloader
//! (`drop_last`), the last incomplete batch of each shuffled pass is not used. The prompts form
//! a stream of passes, each shuffled with its own seed; a step draws `gen_batch_size` prompts per
//! generation batch (equal to `train_batch_size` unless dynamic sampling is on). With dynamic sampling a step may draw several generation batches, and the
//! stream simply continues into the next pass: the run always reaches its step count and its
//! final evaluation (the seed's QeRL-style runs instead ran out of data at about half their
//! steps and skipped the final evaluation).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{DataConfig, SYNTHETIC};
use crate::rng::{CounterRng, counter_hash};
use crate::task::Problem;
use crate::task::dataset::load_problems;
use crate::task::error::TaskError;
use crate::task::synthetic::Split;

/// The train and test problems of a run.
#[derive(Clone, Debug)]
pub struct ProblemSet {
    /// Training prompts.
    pub train: Vec<Problem>,
    /// Held-out prompts.
    pub test: Vec<Problem>,
}

/// Reads one split: the synthetic task or a file.
fn load_split(source: &str, config: &DataConfig, split: Split) -> Result<Vec<Problem>, TaskError> {
    if source == SYNTHETIC {
        let mut synthetic = config.synthetic.clone();
        synthetic.prompt_template = config.prompt_template;
        return synthetic.problems(split);
    }
    let mut problems = load_problems(Path::new(source), None)?;
    // jsonl questions get the prompt template; verl parquet prompts come ready.
    if source.ends_with(".jsonl") {
        for p in &mut problems {
            p.prompt = config.prompt_template.apply(&p.prompt);
        }
    }
    Ok(problems)
}

impl ProblemSet {
    /// Loads both splits.
    pub fn load(config: &DataConfig) -> Result<Self, TaskError> {
        Ok(Self {
            train: load_split(&config.train, config, Split::Train)?,
            test: load_split(&config.test, config, Split::Test)?,
        })
    }
}

/// The position in the stream of shuffled passes over the training prompts. Saved in
/// checkpoints, so a resumed run sees the same prompts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStream {
    /// The run's seed.
    pub seed: u64,
    /// Number of training prompts.
    pub len: usize,
    /// Prompts per generation batch: passes are cut into whole batches of this many.
    pub batch: usize,
    /// The current pass (0-based).
    pub pass: u64,
    /// The next index within the pass's order.
    pub pos: usize,
}

/// Salt of the shuffling streams.
const SHUFFLE_SALT: u64 = 0x5348_5546;

impl DataStream {
    /// The start of the stream.
    pub fn new(seed: u64, len: usize, batch: usize) -> Self {
        Self {
            seed,
            len,
            batch,
            pass: 0,
            pos: 0,
        }
    }

    /// Steps per epoch: whole batches per pass.
    pub fn steps_per_epoch(&self) -> u64 {
        (self.len / self.batch.max(1)) as u64
    }

    /// Prompts of each pass that are never used (the remainder batch).
    pub fn remainder(&self) -> usize {
        self.len % self.batch.max(1)
    }

    /// The order of pass `pass` (a seeded Fisher-Yates shuffle).
    fn order(&self, pass: u64) -> Vec<usize> {
        let mut rng = CounterRng::new(counter_hash(self.seed ^ SHUFFLE_SALT, pass));
        let mut order: Vec<usize> = (0..self.len).collect();
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }

    /// The next `n` prompt indices (`n` at most the batch), starting a new pass when fewer than
    /// a whole batch remain in the current one.
    pub fn next(&mut self, n: usize) -> Vec<usize> {
        let usable = self.len - self.remainder();
        if self.pos + n > usable {
            self.pass += 1;
            self.pos = 0;
        }
        let order = self.order(self.pass);
        let out = order[self.pos..self.pos + n].to_vec();
        self.pos += n;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_shuffled_permutations_without_the_remainder() {
        let mut s = DataStream::new(3, 10, 4);
        assert_eq!((s.steps_per_epoch(), s.remainder()), (2, 2));
        let a: Vec<usize> = [s.next(4), s.next(4)].concat();
        let b: Vec<usize> = [s.next(4), s.next(4)].concat();
        assert_eq!(s.pass, 1);
        let mut sa = a.clone();
        sa.sort_unstable();
        sa.dedup();
        assert_eq!(sa.len(), 8);
        assert_ne!(a, b, "each pass has its own order");
        // Resuming from a saved position gives the same prompts.
        let mut t = DataStream::new(3, 10, 4);
        t.next(4);
        let saved = t.clone();
        let mut r: DataStream =
            serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
        assert_eq!(r.next(4), t.next(4));
    }
}
