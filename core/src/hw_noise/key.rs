//! Where hardware noise comes from: a reproducible key per draw.
//!
//! Every draw of noise is identified by a [`NoiseKey`]: the run's seed, the optimizer step, the
//! call site (a stable id of the matmul, e.g. [`NoiseKey::site_id`] of `layers.3.mlp.down_proj`),
//! the call index within the step (the n-th forward of that site in the step: micro-batches,
//! rollout chunks), and the pass (forward output or backward gradient). The key hashes to a
//! stream seed with the counter hash of [`crate::rng`]; element `i` of the row-major flattened
//! tensor gets `normal_f64(stream, i)`. Two draws share noise only if all five fields agree, and
//! the same key always gives the same noise, on every backend and in any execution order.

use serde::{Deserialize, Serialize};

use crate::rng::counter_hash;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Which pass a draw perturbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoisePass {
    /// The output of the matmul in the forward pass.
    Forward,
    /// The gradient flowing back through the matmul output.
    Backward,
}

/// The identity of one draw of noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NoiseKey {
    /// The run's seed.
    pub seed: u64,
    /// The optimizer step (1-based, as in the schedules).
    pub step: u64,
    /// The call site, e.g. [`NoiseKey::site_id`] of the module path.
    pub site: u64,
    /// The n-th call of this site within the step.
    pub call: u64,
    /// Forward output or backward gradient.
    pub pass: NoisePass,
}

impl NoiseKey {
    /// A forward-pass key.
    pub fn new(seed: u64, step: u64, site: u64, call: u64) -> Self {
        Self {
            seed,
            step,
            site,
            call,
            pass: NoisePass::Forward,
        }
    }

    /// The same key for another pass.
    pub fn with_pass(self, pass: NoisePass) -> Self {
        Self { pass, ..self }
    }

    /// A stable 64-bit id of a call-site name (FNV-1a of its UTF-8 bytes).
    pub fn site_id(name: &str) -> u64 {
        name.bytes().fold(FNV_OFFSET, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
        })
    }

    /// The stream seed of this draw: the counter hash chained over the five fields.
    pub fn stream(&self) -> u64 {
        let pass = match self.pass {
            NoisePass::Forward => 0,
            NoisePass::Backward => 1,
        };
        [self.step, self.site, self.call, pass]
            .into_iter()
            .fold(self.seed, counter_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_stream() {
        let k = NoiseKey::new(7, 3, NoiseKey::site_id("layers.0.mlp.up_proj"), 0);
        let s = k.stream();
        assert_eq!(s, k.stream());
        let variants = [
            NoiseKey { seed: 8, ..k },
            NoiseKey { step: 4, ..k },
            NoiseKey {
                site: k.site ^ 1,
                ..k
            },
            NoiseKey { call: 1, ..k },
            k.with_pass(NoisePass::Backward),
        ];
        for v in variants {
            assert_ne!(v.stream(), s, "{v:?}");
        }
        // FNV-1a reference values.
        assert_eq!(NoiseKey::site_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(NoiseKey::site_id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
