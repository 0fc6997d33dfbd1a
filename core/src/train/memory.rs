//! The memory a run needs, estimated before the model loads and checked against the machine:
//! a run whose batch sizes, group size or lengths could never fit is refused naming the settings
//! that size it, instead of growing until the allocator aborts. The estimate has three terms,
//! printed with the run's plan: the weights as held (and the optimizer's state), the rollout's
//! KV cache and logits (exact: allocated as sized), and the activations an update keeps for its
//! backward pass (a rough upper bound: the fused kernels keep less). The check is against the
//! first two, on the CPU backends (whose memory is the machine's); the third is shown only.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::{FinetuneMode, TrainConfig};
use crate::model::Qwen2Config;

/// Bytes of an f32.
const F32_BYTES: f64 = 4.0;
/// Bytes per value of a packed 4-bit base (codes and block scales, NVFP4's 16-value blocks).
const PACKED_FP4_BYTES: f64 = 0.5625;
/// AdamW's state and the gradient per trained value, in values (gradient, first and second
/// moments).
const OPTIMIZER_VALUES: f64 = 3.0;
/// Activations an update keeps per token and layer, in multiples of the hidden size (the
/// projections' inputs and outputs, norms, attention, residuals), plus the MLP's intermediate
/// tensors (gate, up, their product).
const ACTIVATION_HIDDEN_MULTIPLE: f64 = 16.0;
/// The MLP's kept intermediate tensors per token and layer, in multiples of its width.
const ACTIVATION_MLP_MULTIPLE: f64 = 4.0;

/// The estimated peak memory of a run, in bytes, by its large terms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// The weights as held (packed or f32), and the optimizer's state of what is trained.
    pub weights: f64,
    /// The rollout's KV cache and per-row logits.
    pub rollout: f64,
    /// The activations an update's micro-batch keeps for the backward pass (its logits
    /// included).
    pub update: f64,
}

impl MemoryEstimate {
    /// The estimate of `config` on a model of `model`'s shape (`packed`: the frozen base held
    /// as codes and scales), for prompts of at most `prompt_len` tokens (the longest training
    /// prompt; at most `rollout.max_prompt_len`).
    pub fn of(config: &TrainConfig, model: &Qwen2Config, packed: bool, prompt_len: usize) -> Self {
        let hidden = model.hidden_size as f64;
        let layers = model.num_hidden_layers as f64;
        let vocab = model.vocab_size as f64;
        let kv_width = (model.num_kv_heads() * model.head_dim()) as f64;
        let q_width = (model.num_attention_heads * model.head_dim()) as f64;
        let mlp = model.intermediate_size as f64;
        let per_layer = hidden * (q_width + 2.0 * kv_width) + q_width * hidden + 3.0 * hidden * mlp;
        let projections = layers * per_layer;
        let embedding = vocab * hidden * if model.tie_word_embeddings { 1.0 } else { 2.0 };
        let base =
            projections * if packed { PACKED_FP4_BYTES } else { F32_BYTES } + embedding * F32_BYTES;
        let trained = match config.finetune.mode {
            FinetuneMode::Full => projections + embedding,
            FinetuneMode::Lora => {
                let r = config.finetune.lora.rank as f64;
                layers * r * (4.0 * hidden + 2.0 * q_width + 4.0 * kv_width + 3.0 * mlp)
            }
        };
        let weights = base + trained * OPTIMIZER_VALUES * F32_BYTES;

        let n = config.rollout.n as f64;
        let rows = match config.rollout.micro_batch_size {
            0 => config.batch.generation() as f64 * n,
            m => (m as f64).min(config.batch.generation() as f64 * n),
        };
        let positions = (prompt_len + config.rollout.max_response_len) as f64;
        let rollout = rows * (layers * 2.0 * kv_width * positions + vocab) * F32_BYTES;

        let micro = config.batch.micro(config.rollout.n) as f64;
        let per_token = layers
            * (ACTIVATION_HIDDEN_MULTIPLE * hidden + ACTIVATION_MLP_MULTIPLE * mlp)
            + 2.0 * vocab;
        let update = micro * positions * per_token * F32_BYTES;
        Self {
            weights,
            rollout,
            update,
        }
    }

    /// The peak: the weights plus the larger of the two phases.
    pub fn peak(&self) -> f64 {
        self.weights + self.rollout.max(self.update)
    }
}

fn gb(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "~{} at the peak (weights and optimizer {}, rollout KV cache and logits {}, update activations {})",
            gb(self.peak()),
            gb(self.weights),
            gb(self.rollout),
            gb(self.update)
        )
    }
}

/// The memory the OS can give this process now (`MemAvailable` of `/proc/meminfo`), where known.
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// `None` when the weights and the rollout of `estimate` fit in `available` bytes, else why not,
/// naming the settings that size them.
pub fn shortfall(estimate: &MemoryEstimate, available: f64) -> Option<String> {
    let need = estimate.weights + estimate.rollout;
    (need > available).then(|| {
        format!(
            "the weights and the rollout need {} ({estimate}), more than the {} this machine \
             has available; lower rollout.n, batch.gen_batch_size or rollout.micro_batch_size \
             (rows generated at once), or rollout.max_prompt_len / rollout.max_response_len",
            gb(need),
            gb(available)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::config::ConfigSources;
    use super::*;

    fn config(sets: &[&str]) -> TrainConfig {
        TrainConfig::resolve(&ConfigSources {
            profile: "tiny".into(),
            preset: "default".into(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn the_estimate_grows_with_what_sizes_it_and_a_huge_group_is_refused() {
        let model = Qwen2Config::new(1000, 64, 128, 2, 4, 2);
        let base = MemoryEstimate::of(&config(&[]), &model, true, 100);
        let latent = MemoryEstimate::of(&config(&[]), &model, false, 100);
        assert!(latent.weights > base.weights);
        let wide = MemoryEstimate::of(&config(&["rollout.n=16"]), &model, true, 100);
        assert!(wide.rollout > 1.9 * base.rollout && wide.weights == base.weights);
        let chunked =
            MemoryEstimate::of(&config(&["rollout.micro_batch_size=4"]), &model, true, 100);
        assert!(chunked.rollout < base.rollout);
        assert!(shortfall(&base, 8e9).is_none());
        let huge = MemoryEstimate::of(&config(&["rollout.n=1000000000"]), &model, true, 100);
        let why = shortfall(&huge, 8e9).expect("a billion responses do not fit");
        assert!(
            why.contains("rollout.n") && why.contains("8.00 GB"),
            "{why}"
        );
    }
}
