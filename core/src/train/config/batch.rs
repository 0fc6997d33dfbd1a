//! Batch sizes (TOML `[batch]`): prompts per optimizer step, per generation batch and per PPO
//! mini-batch, responses per forward/backward pass, and the scale of the QeRL-style presets.

use serde::{Deserialize, Serialize};

/// Batch sizes (TOML `[batch]`), in prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Prompts per optimizer step (verl's `train_batch_size`); a step trains on
    /// `train_batch_size * n` responses.
    pub train_batch_size: usize,
    /// Prompts per generation batch (verl's `gen_batch_size`; with dynamic sampling the trainer
    /// generates batches of this size until `train_batch_size` groups are kept).
    pub gen_batch_size: usize,
    /// Prompts per PPO mini-batch (one optimizer step each).
    pub ppo_mini_batch_size: usize,
    /// Passes over each step's data.
    pub ppo_epochs: usize,
    /// Responses per forward/backward pass (verl's name; 0: the whole mini-batch in one pass).
    /// The gradients of the micro-batches of a mini-batch are summed, each loss normalized by
    /// the whole mini-batch's token or sequence count, so the update equals the one-pass update
    /// (to float rounding); also the chunk size of the old and reference log-prob passes.
    pub ppo_micro_batch_size: usize,
    /// Multiplies `gen_batch_size` (at least 1 prompt); the train and mini-batch sizes are then
    /// capped by the scaled generation batch. The QeRL-style presets use 1/8: the seed's 256
    /// prompts per generation batch become 32, and its train batch of 128 becomes 32.
    pub train_batch_scale: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            train_batch_size: 16,
            gen_batch_size: 16,
            ppo_mini_batch_size: 16,
            ppo_epochs: 1,
            ppo_micro_batch_size: 0,
            train_batch_scale: 1.0,
        }
    }
}

impl BatchConfig {
    /// `gen_batch_size` after the scale.
    pub fn generation(&self) -> usize {
        ((self.gen_batch_size as f64 * self.train_batch_scale).round() as usize).max(1)
    }

    /// `train_batch_size`, capped by the scaled generation batch when the scale is below 1.
    pub fn train(&self) -> usize {
        if self.train_batch_scale < 1.0 {
            self.train_batch_size.min(self.generation())
        } else {
            self.train_batch_size
        }
    }

    /// `ppo_mini_batch_size`, capped by the train batch when the scale is below 1.
    pub fn mini(&self) -> usize {
        if self.train_batch_scale < 1.0 {
            self.ppo_mini_batch_size.min(self.train())
        } else {
            self.ppo_mini_batch_size
        }
    }

    /// Responses per forward/backward pass, given the group size `n`: `ppo_micro_batch_size`, or
    /// the whole mini-batch (`mini() * n`) when it is 0 or larger.
    pub fn micro(&self, n: usize) -> usize {
        let mini = self.mini() * n;
        match self.ppo_micro_batch_size {
            0 => mini,
            m => m.min(mini),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batch_sizes_resolve_to_responses_per_pass() {
        let mut b = BatchConfig {
            ppo_mini_batch_size: 4,
            ..BatchConfig::default()
        };
        assert_eq!(b.micro(8), 32, "0 = the whole mini-batch");
        b.ppo_micro_batch_size = 6;
        assert_eq!(b.micro(8), 6);
        b.ppo_micro_batch_size = 100;
        assert_eq!(b.micro(8), 32, "capped by the mini-batch");
    }
}
