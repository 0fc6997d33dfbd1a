//! The LoRA configuration (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
//! arXiv:2106.09685, as PEFT implements it): rank, alpha, dropout and the projections adapted.
//!
//! TOML form (unknown fields refused):
//! ```toml
//! [lora]
//! rank = 32            # the seed's LoRA runs
//! alpha = 16
//! dropout = 0.0
//! targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
//! seed = 0             # initialization of A and the dropout masks
//! ```

use serde::{Deserialize, Serialize};

use super::LoraError;
use crate::named::UnknownName;
use crate::site::LinearKind;

/// The seed's LoRA runs (docs/spec.md section 8): rank 32.
pub const DEFAULT_RANK: usize = 32;
/// The seed's LoRA runs: alpha 16.
pub const DEFAULT_ALPHA: f64 = 16.0;

/// What a refused target is called in errors.
const TARGET: &str = "LoRA target";

/// A LoRA target by PEFT's `target_modules` name: a decoder projection (`q_proj`, ...,
/// `down_proj`). The LM head is refused like an unknown name, listing the valid targets.
pub fn parse_target(name: &str) -> Result<LinearKind, LoraError> {
    match name.parse::<LinearKind>() {
        Ok(kind) if kind.is_decoder() => Ok(kind),
        _ => Err(UnknownName::new(TARGET, name, LinearKind::decoder_names()).into()),
    }
}

/// Serde of the target list: the projections' names, each parsed by [`parse_target`].
mod target_names {
    use serde::de::{Deserialize, Deserializer, Error};

    use crate::site::LinearKind;

    /// One target, refused with [`super::parse_target`]'s error at its place in the list.
    struct Target(LinearKind);

    impl<'de> Deserialize<'de> for Target {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let name = String::deserialize(d)?;
            super::parse_target(&name)
                .map(Target)
                .map_err(D::Error::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LinearKind>, D::Error> {
        let targets = Vec::<Target>::deserialize(d)?;
        Ok(targets.into_iter().map(|t| t.0).collect())
    }
}

fn default_rank() -> usize {
    DEFAULT_RANK
}
fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}
fn default_targets() -> Vec<LinearKind> {
    LinearKind::DECODER.to_vec()
}

/// Rank, alpha, dropout and targets of the adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// r: inner dimension of `B A` (>= 1).
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// alpha: the update is scaled by `alpha / r` (or `alpha / sqrt(r)` with `rslora`).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout probability on the LoRA input in the training pass, in [0, 1).
    #[serde(default)]
    pub dropout: f64,
    /// The adapted projections of every decoder layer (default all seven; never the LM head).
    #[serde(
        default = "default_targets",
        deserialize_with = "target_names::deserialize"
    )]
    pub targets: Vec<LinearKind>,
    /// Rank-stabilized scaling `alpha / sqrt(r)` (PEFT's `use_rslora`).
    #[serde(default)]
    pub rslora: bool,
    /// Seed of the initialization of A and of the dropout masks.
    #[serde(default)]
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: DEFAULT_RANK,
            alpha: DEFAULT_ALPHA,
            dropout: 0.0,
            targets: default_targets(),
            rslora: false,
            seed: 0,
        }
    }
}

impl LoraConfig {
    /// `alpha / r`, or `alpha / sqrt(r)` with `rslora`.
    pub fn scaling(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Refuses rank 0, a non-positive or non-finite alpha, dropout outside [0, 1), an empty
    /// or repeating target list, and the LM head as a target.
    pub fn validate(&self) -> Result<(), LoraError> {
        let bad = |field, value: String, reason: &str| {
            Err(LoraError::Invalid {
                field,
                value,
                reason: reason.to_string(),
            })
        };
        if self.rank == 0 {
            return bad("rank", "0".into(), "it must be at least 1");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(
                "alpha",
                self.alpha.to_string(),
                "it must be a finite number > 0",
            );
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad("dropout", self.dropout.to_string(), "it must lie in [0, 1)");
        }
        if self.targets.is_empty() {
            return bad(
                "targets",
                "[]".into(),
                &format!("list at least one of {}", LinearKind::decoder_names()),
            );
        }
        if let Some(head) = self.targets.iter().find(|t| !t.is_decoder()) {
            return Err(UnknownName::new(TARGET, head.name(), LinearKind::decoder_names()).into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(t) {
                return bad("targets", t.to_string(), "each target at most once");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_scaling_and_refusals() {
        let c: LoraConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, LoraConfig::default());
        assert_eq!(c.scaling(), 0.5);
        let r = LoraConfig {
            rslora: true,
            rank: 16,
            ..LoraConfig::default()
        };
        assert_eq!(r.scaling(), 4.0);
        let err = serde_json::from_str::<LoraConfig>(r#"{"targets":["q_proj","lm_head"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`lm_head`") && err.contains("down_proj"),
            "{err}"
        );
        let err = serde_json::from_str::<LoraConfig>(r#"{"r":8}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `r`"), "{err}");
        for (c, needle) in [
            (
                LoraConfig {
                    rank: 0,
                    ..LoraConfig::default()
                },
                "rank = 0",
            ),
            (
                LoraConfig {
                    alpha: -1.0,
                    ..LoraConfig::default()
                },
                "alpha = -1",
            ),
            (
                LoraConfig {
                    dropout: 1.0,
                    ..LoraConfig::default()
                },
                "dropout = 1",
            ),
            (
                LoraConfig {
                    targets: vec![],
                    ..LoraConfig::default()
                },
                "targets = []",
            ),
            (
                LoraConfig {
                    targets: vec![LinearKind::QProj, LinearKind::QProj],
                    ..LoraConfig::default()
                },
                "targets = q_proj",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn targets_are_the_decoder_projections_by_name() {
        for kind in LinearKind::DECODER {
            assert_eq!(parse_target(kind.name()).unwrap(), *kind);
        }
        assert_eq!(parse_target(" Up_Proj").unwrap(), LinearKind::UpProj);
        let valid = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";
        for name in ["lm_head", "qproj"] {
            assert_eq!(
                parse_target(name).unwrap_err().to_string(),
                format!("unknown LoRA target `{name}`; valid choices: {valid}")
            );
        }
        let head = LoraConfig {
            targets: vec![LinearKind::QProj, LinearKind::LmHead],
            ..LoraConfig::default()
        };
        let err = head.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("unknown LoRA target `lm_head`; valid choices: {valid}")
        );
        let c = LoraConfig::default();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(&format!(
            "\"targets\":[\"{}\"]",
            valid.replace(", ", "\",\"")
        )));
        assert_eq!(serde_json::from_str::<LoraConfig>(&json).unwrap(), c);
    }
}
