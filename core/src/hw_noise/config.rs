//! Where and when hardware error is injected (docs/spec.md section 6): the error model, the matmuls it
//! perturbs, forward and/or backward, in which phase. Applied to a model by
//! `Qwen2ForCausalLM::with_hw_noise` (`crate::model::attach::hw_noise`).
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
use crate::named::{named_enum, named_traits};
use crate::phase::Phases;
use crate::site::{AttentionMatmul, LinearKind};

/// A matmul that hardware error can be injected into: a projection (in every decoder layer, or
/// the LM head) or one of the two attention matmuls of every decoder layer. Named as the
/// projection (`q_proj`) or the matmul (`attn_scores`, alias `scores`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HwSite {
    /// A projection.
    Linear(LinearKind),
    /// The attention score (`q k^T`) or context (`softmax(scores) v`) matmul.
    Attention(AttentionMatmul),
}

named_traits!(HwSite, "hardware-noise site", HwNoiseError);

impl HwSite {
    /// Every site: the projections, then the attention matmuls.
    pub const ALL: &'static [HwSite] = &{
        const N: usize = LinearKind::ALL.len() + AttentionMatmul::ALL.len();
        let mut all = [HwSite::Linear(LinearKind::LmHead); N];
        let mut i = 0;
        while i < LinearKind::ALL.len() {
            all[i] = HwSite::Linear(LinearKind::ALL[i]);
            i += 1;
        }
        while i < N {
            all[i] = HwSite::Attention(AttentionMatmul::ALL[i - LinearKind::ALL.len()]);
            i += 1;
        }
        all
    };

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            HwSite::Linear(kind) => kind.name(),
            HwSite::Attention(matmul) => matmul.name(),
        }
    }

    /// The site of a lowercase name or alias.
    fn from_name(name: &str) -> Option<Self> {
        let linear = name.parse().map(HwSite::Linear);
        linear.or_else(|_| name.parse().map(HwSite::Attention)).ok()
    }

    /// The projection this site is, `None` for the two attention matmuls.
    pub fn linear(self) -> Option<LinearKind> {
        match self {
            HwSite::Linear(kind) => Some(kind),
            HwSite::Attention(_) => None,
        }
    }
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

/// The projections of every decoder layer.
fn default_sites() -> Vec<HwSite> {
    LinearKind::DECODER
        .iter()
        .map(|&k| HwSite::Linear(k))
        .collect()
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
        assert_eq!(
            c.sites,
            vec![
                HwSite::Linear(LinearKind::QProj),
                HwSite::Attention(AttentionMatmul::Scores)
            ]
        );
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
        bad(
            &|c| c.sites.push(HwSite::Linear(LinearKind::QProj)),
            "sites = q_proj",
        );
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

    #[test]
    fn sites_are_the_projections_then_the_attention_matmuls_by_name() {
        assert_eq!(
            HwSite::valid_names(),
            "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, \
             attn_scores, attn_context"
        );
        for site in HwSite::ALL {
            assert_eq!(site.name().parse::<HwSite>().unwrap(), *site);
            let json = serde_json::to_string(site).unwrap();
            assert_eq!(json, format!("\"{}\"", site.name()));
            assert_eq!(serde_json::from_str::<HwSite>(&json).unwrap(), *site);
        }
        assert_eq!(
            " Context".parse::<HwSite>().unwrap(),
            HwSite::Attention(AttentionMatmul::Context)
        );
        assert_eq!(
            "embed_tokens".parse::<HwSite>().unwrap_err().to_string(),
            format!(
                "unknown hardware-noise site `embed_tokens`; valid choices: {}",
                HwSite::valid_names()
            )
        );
        assert_eq!(
            default_sites(),
            LinearKind::DECODER
                .iter()
                .map(|k| HwSite::Linear(*k))
                .collect::<Vec<_>>()
        );
    }
}
