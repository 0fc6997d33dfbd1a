//! Where and when hardware error is injected (SPEC.md section 6): the error model, the matmuls it
//! perturbs, forward and/or backward, in which phase. Applied to a model by
//! `Qwen2ForCausalLM::with_hw_noise` (see [`super::wiring`]).
//!
//! TOML form (unknown fields refused):
//! ```toml
//! [hw_noise]
//! model = { kind = "relative-gaussian", scale = 0.05 }   # the seed's E5 runs
//! sites = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # default
//! passes = "forward"      # forward (default) | backward | both
//! phase = "both"          # rollout | training | both (default)
//! seed = 0
//! source = "counter"      # counter (default, reproducible everywhere) | device-rng
//! ```

use serde::{Deserialize, Serialize};

use super::{HwErrorModel, HwNoiseError, NoiseSource};
use crate::named::named_enum;
use crate::phase::Phases;
use crate::site::LinearKind;

named_enum! {
    /// A matmul that hardware error can be injected into.
    HwSite, "hardware-noise site", HwNoiseError {
        /// Attention query projection.
        QProj => "q_proj",
        /// Attention key projection.
        KProj => "k_proj",
        /// Attention value projection.
        VProj => "v_proj",
        /// Attention output projection.
        OProj => "o_proj",
        /// MLP gate projection.
        GateProj => "gate_proj",
        /// MLP up projection.
        UpProj => "up_proj",
        /// MLP down projection.
        DownProj => "down_proj",
        /// The LM head.
        LmHead => "lm_head",
        /// The attention score matmul `q k^T`.
        AttnScores => "attn_scores" | "scores",
        /// The attention context matmul `softmax(scores) v`.
        AttnContext => "attn_context" | "context",
    }
}

impl HwSite {
    /// The projection this site is, `None` for the two attention matmuls.
    pub fn linear(self) -> Option<LinearKind> {
        Some(match self {
            HwSite::QProj => LinearKind::QProj,
            HwSite::KProj => LinearKind::KProj,
            HwSite::VProj => LinearKind::VProj,
            HwSite::OProj => LinearKind::OProj,
            HwSite::GateProj => LinearKind::GateProj,
            HwSite::UpProj => LinearKind::UpProj,
            HwSite::DownProj => LinearKind::DownProj,
            HwSite::LmHead => LinearKind::LmHead,
            HwSite::AttnScores | HwSite::AttnContext => return None,
        })
    }

    /// The seven projections of every decoder layer (the default sites).
    pub const PROJECTIONS: [HwSite; 7] = [
        HwSite::QProj,
        HwSite::KProj,
        HwSite::VProj,
        HwSite::OProj,
        HwSite::GateProj,
        HwSite::UpProj,
        HwSite::DownProj,
    ];
}

named_enum! {
    /// Which passes of a matmul get the error.
    #[derive(Default)]
    NoisePasses, "noise passes", HwNoiseError {
        /// The output in the forward pass (default).
        #[default]
        Forward => "forward",
        /// The gradient flowing back through the output (training phase only).
        Backward => "backward",
        /// Both.
        Both => "both",
    }
}

impl NoisePasses {
    /// Whether the forward output is perturbed.
    pub fn forward(self) -> bool {
        matches!(self, NoisePasses::Forward | NoisePasses::Both)
    }

    /// Whether the gradient is perturbed.
    pub fn backward(self) -> bool {
        matches!(self, NoisePasses::Backward | NoisePasses::Both)
    }
}

fn default_sites() -> Vec<HwSite> {
    HwSite::PROJECTIONS.to_vec()
}

fn default_phase() -> Phases {
    Phases::Both
}

/// Hardware-error injection on the model's matmuls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwNoiseConfig {
    /// The error model and its parameter.
    pub model: HwErrorModel,
    /// The matmuls perturbed in every decoder layer (and the LM head if listed); default the
    /// seven projections.
    #[serde(default = "default_sites")]
    pub sites: Vec<HwSite>,
    /// Forward output, backward gradient, or both.
    #[serde(default)]
    pub passes: NoisePasses,
    /// The phases it applies to (default both: the simulated hardware is always noisy).
    #[serde(default = "default_phase")]
    pub phase: Phases,
    /// The run's noise seed (part of every draw's key).
    #[serde(default)]
    pub seed: u64,
    /// Where the N(0,1) draws come from.
    #[serde(default)]
    pub source: NoiseSource,
}

impl HwNoiseConfig {
    /// The seed's E5 setup: 5% relative Gaussian on the forward output of every projection, in
    /// both phases.
    pub fn new(model: HwErrorModel) -> Self {
        Self {
            model,
            sites: default_sites(),
            passes: NoisePasses::default(),
            phase: default_phase(),
            seed: 0,
            source: NoiseSource::default(),
        }
    }

    /// Refuses a bad model parameter, no sites, repeated sites, and gradient noise in the rollout
    /// phase alone (rollouts compute no gradients, so it would never act).
    pub fn validate(&self) -> Result<(), HwNoiseError> {
        self.model.validate()?;
        if self.sites.is_empty() {
            return Err(HwNoiseError::BadParameter {
                model: "hw_noise",
                name: "sites",
                value: "[]".into(),
                expected: "list at least one matmul (q_proj, ..., attn_scores, attn_context)",
            });
        }
        for (i, s) in self.sites.iter().enumerate() {
            if self.sites[..i].contains(s) {
                return Err(HwNoiseError::BadParameter {
                    model: "hw_noise",
                    name: "sites",
                    value: s.to_string(),
                    expected: "each site at most once",
                });
            }
        }
        if self.passes == NoisePasses::Backward && self.phase == Phases::Rollout {
            return Err(HwNoiseError::BadParameter {
                model: "hw_noise",
                name: "passes",
                value: "backward".into(),
                expected: "gradient noise needs the training phase (phase = training or both): \
                           rollouts compute no gradients",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_like_json_and_refusals() {
        let c: HwNoiseConfig = serde_json::from_str(
            r#"{"model":{"kind":"relative-gaussian","scale":0.05},"sites":["q_proj","scores"],"passes":"both"}"#,
        )
        .unwrap();
        assert_eq!(c.sites, vec![HwSite::QProj, HwSite::AttnScores]);
        assert_eq!(c.phase, Phases::Both);
        assert!(c.passes.forward() && c.passes.backward());
        c.validate().unwrap();
        let err = serde_json::from_str::<HwNoiseConfig>(
            r#"{"model":{"kind":"deadzone","threshold":0.1},"site":["q_proj"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `site`"), "{err}");
        let err = serde_json::from_str::<HwNoiseConfig>(
            r#"{"model":{"kind":"deadzone","threshold":0.1},"sites":["qk"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`qk`") && err.contains("attn_scores"), "{err}");
        let bad = |f: &dyn Fn(&mut HwNoiseConfig), needle: &str| {
            let mut c = HwNoiseConfig::new(HwErrorModel::RelativeGaussian { scale: 0.05 });
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        };
        bad(&|c| c.sites.clear(), "sites = []");
        bad(&|c| c.sites.push(HwSite::QProj), "sites = q_proj");
        bad(
            &|c| {
                c.passes = NoisePasses::Backward;
                c.phase = Phases::Rollout;
            },
            "training phase",
        );
        bad(
            &|c| c.model = HwErrorModel::RelativeGaussian { scale: -1.0 },
            "scale = -1",
        );
    }
}
