//! Hardware error wired to one matmul: the configuration, and while a phase model is in use, the
//! step and a call counter, so that every call of the site draws its own noise, reproducibly.
//!
//! The key of a draw is `(seed, step, site, call, pass)` ([`NoiseKey`]) where `site` hashes the
//! phase and the site name (`rollout/model.layers.3.mlp.down_proj`), so the rollout and the
//! training pass of a step get distinct noise, and `call` counts the calls of the site since the
//! phase model was made (one per prefill and per decoding step in a rollout; one per forward in
//! training). The same run therefore draws the same noise: the counter only depends on the order
//! of the calls, which the program fixes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;

use super::config::{HwNoiseConfig, NoisePasses};
use super::{HwErrorModel, NoiseKey, NoiseSource, grad_noise};
use crate::phase::{Phase, Phases};

/// The state of a site inside a phase model.
#[derive(Clone, Debug)]
struct Active {
    step: u64,
    key_site: u64,
    forward: bool,
    backward: bool,
    calls: Arc<AtomicU64>,
}

/// Hardware error on one matmul's output. Inactive until [`SiteNoise::activate`] is called for a
/// phase the config selects (the trainer's `model.for_phase(phase, step)` does this).
#[derive(Clone, Debug)]
pub struct SiteNoise {
    name: String,
    model: HwErrorModel,
    source: NoiseSource,
    seed: u64,
    passes: NoisePasses,
    phases: Phases,
    active: Option<Active>,
}

impl SiteNoise {
    /// The wiring of `config` to the matmul named `name` (validate the config first).
    pub fn new(config: &HwNoiseConfig, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            model: config.model,
            source: config.source,
            seed: config.seed,
            passes: config.passes,
            phases: config.phase,
            active: None,
        }
    }

    /// The site's name (`model.layers.3.mlp.down_proj`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same wiring, active for `phase` at `step` with a fresh call counter if the config
    /// selects that phase, inactive otherwise. Gradient noise is only armed in the training
    /// phase.
    pub fn activate(&self, phase: Phase, step: u64) -> Self {
        let active = self.phases.includes(phase).then(|| Active {
            step,
            key_site: NoiseKey::site_id(&format!("{phase}/{}", self.name)),
            forward: self.passes.forward(),
            backward: self.passes.backward() && phase == Phase::Training,
            calls: Arc::new(AtomicU64::new(0)),
        });
        Self {
            active,
            ..self.clone()
        }
    }

    /// Whether the site perturbs anything in its current phase.
    pub fn is_active(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.forward || a.backward)
    }

    /// How many times the site was called since it was activated.
    pub fn calls(&self) -> u64 {
        self.active
            .as_ref()
            .map_or(0, |a| a.calls.load(Ordering::Relaxed))
    }

    /// The matmul output with the error applied: `y + delta(y)` in the forward pass and/or the
    /// gradient noise of [`grad_noise`] in the backward pass; `y` unchanged when inactive.
    ///
    /// # Panics
    /// If the model parameter is invalid or gradient noise is not available on the tensor's
    /// backend; both are checked when the noise is wired (`with_hw_noise`).
    pub fn apply<const D: usize>(&self, y: Tensor<D>) -> Tensor<D> {
        let Some(a) = &self.active else { return y };
        if !(a.forward || a.backward) {
            return y;
        }
        let call = a.calls.fetch_add(1, Ordering::Relaxed);
        let key = NoiseKey::new(self.seed, a.step, a.key_site, call);
        let y = if a.forward {
            self.model
                .inject(y, &key, self.source)
                .expect("model validated when the noise was wired")
        } else {
            y
        };
        if a.backward {
            grad_noise(y, &self.model, &key, self.source)
                .expect("gradient-noise backend checked when the noise was wired")
        } else {
            y
        }
    }
}
