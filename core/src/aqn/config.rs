//! The AQN configuration of a run (docs/spec.md section 4): the sigma schedule, the targets, the
//! phases that see the noise, and optional RIN multipliers from an SRDD report.
//!
//! TOML form (unknown fields refused):
//! ```toml
//! [aqn]
//! phase = "rollout"                 # rollout (default, as QeRL) | training | both
//! targets = "rmsnorm"               # or { kind = "rmsnorm", final_norm = false },
//!                                   # "linear", { kind = "linear", modules = ["q_proj"] },
//!                                   # { kind = "pattern", pattern = "model.layers.1?.*norm.weight" }
//! [aqn.schedule]
//! kind = "geometric"                # docs/spec.md section 3; the run length comes from the trainer
//! sigma_start = 0.01
//! sigma_end = 1e-4
//! stages = 10
//! [aqn.rin]
//! policy = "e9b"                    # a RinConfig in compact form (or its table form)
//! report = "srdd_report.json"       # needed by policies that read per-layer errors
//! ```

use core::fmt;
use core::str::FromStr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AqnError;
use crate::name_pattern::NamePattern;
use crate::phase::Phases;
use crate::rin::RinConfig;
use crate::site::LinearKind;

fn yes() -> bool {
    true
}
fn default_phase() -> Phases {
    Phases::Rollout
}

/// The schedule's parameters (`[aqn.schedule]`); the run length is supplied when the run starts.
/// Defaults: QeRL's geometric 1e-2 -> 1e-4 over K = 10. One type with the schedule module's
/// `ScheduleParams`, which the experiment catalogue reads from the presets too.
pub use crate::schedule::ScheduleParams as AqnScheduleConfig;

/// Which tensors get noise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AqnTargets {
    /// The RMSNorm weights: `input_layernorm` and `post_attention_layernorm` of every decoder
    /// layer, plus the final norm unless `final_norm = false` (the SPEC default).
    Rmsnorm {
        /// Include `model.norm.weight`.
        #[serde(default = "yes")]
        final_norm: bool,
    },
    /// The weights of these projections in every decoder layer (default the seven).
    Linear {
        /// The projections.
        #[serde(default = "default_linear")]
        modules: Vec<LinearKind>,
    },
    /// Every base parameter whose HF name the pattern matches (LoRA factors never are).
    Pattern {
        /// The glob.
        pattern: NamePattern,
    },
}

fn default_linear() -> Vec<LinearKind> {
    LinearKind::DECODER.to_vec()
}

impl Default for AqnTargets {
    fn default() -> Self {
        AqnTargets::Rmsnorm { final_norm: true }
    }
}

/// `rmsnorm`, `rmsnorm:no-final-norm`, `linear`, `linear:q_proj,v_proj`, `pattern:GLOB`.
impl FromStr for AqnTargets {
    type Err = AqnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h.trim(), Some(r.trim())),
            None => (s.trim(), None),
        };
        let unknown = || {
            AqnError::UnknownName(crate::named::UnknownName::new(
                "AQN targets",
                s.to_string(),
                "rmsnorm, rmsnorm:no-final-norm, linear, linear:q_proj,v_proj,..., \
                    pattern:GLOB",
            ))
        };
        match (head.to_ascii_lowercase().as_str(), rest) {
            ("rmsnorm", None) => Ok(AqnTargets::Rmsnorm { final_norm: true }),
            ("rmsnorm", Some("no-final-norm")) => Ok(AqnTargets::Rmsnorm { final_norm: false }),
            ("linear", None) => Ok(AqnTargets::Linear {
                modules: default_linear(),
            }),
            ("linear", Some(list)) => Ok(AqnTargets::Linear {
                modules: list
                    .split(',')
                    .map(|m| {
                        m.parse::<LinearKind>().map_err(|e| AqnError::Invalid {
                            field: "targets",
                            value: s.to_string(),
                            reason: e.to_string(),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            }),
            ("pattern", Some(p)) => Ok(AqnTargets::Pattern {
                pattern: p.parse()?,
            }),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for AqnTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AqnTargets::Rmsnorm { final_norm: true } => f.write_str("rmsnorm"),
            AqnTargets::Rmsnorm { final_norm: false } => f.write_str("rmsnorm:no-final-norm"),
            AqnTargets::Linear { modules } => {
                let names: Vec<&str> = modules.iter().map(|m| m.name()).collect();
                write!(f, "linear:{}", names.join(","))
            }
            AqnTargets::Pattern { pattern } => write!(f, "pattern `{pattern}`"),
        }
    }
}

/// The targets in compact text or table form.
fn targets_text_or_table<'de, D: Deserializer<'de>>(d: D) -> Result<AqnTargets, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        table => serde_json::from_value(table).map_err(serde::de::Error::custom),
    }
}

/// RIN: the policy (compact text or table) and the SRDD report it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AqnRinConfig {
    /// The policy, clip and metric.
    #[serde(serialize_with = "rin_as_text", deserialize_with = "rin_text_or_table")]
    pub policy: RinConfig,
    /// The SRDD report (JSON of `aqn-native srdd --output`); required unless the policy reads no
    /// per-layer errors (uniform, zones, targeted:layers=...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
}

fn rin_as_text<S: Serializer>(rin: &RinConfig, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rin.label())
}

fn rin_text_or_table<'de, D: Deserializer<'de>>(d: D) -> Result<RinConfig, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    match value {
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

/// The whole AQN configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AqnConfig {
    /// The sigma schedule's parameters.
    #[serde(default)]
    pub schedule: AqnScheduleConfig,
    /// The targeted tensors.
    #[serde(default, deserialize_with = "targets_text_or_table")]
    pub targets: AqnTargets,
    /// The phases whose model gets the noise (default the rollout only).
    #[serde(default = "default_phase")]
    pub phase: Phases,
    /// Per-layer multipliers from an SRDD report (none: 1 for every layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rin: Option<AqnRinConfig>,
}

impl Default for AqnConfig {
    fn default() -> Self {
        Self {
            schedule: AqnScheduleConfig::default(),
            targets: AqnTargets::default(),
            phase: default_phase(),
            rin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::QERL_SIGMA_END;

    #[test]
    fn forms_defaults_and_refusals() {
        let c: AqnConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AqnConfig::default());
        assert_eq!(c.phase, Phases::Rollout);
        let c: AqnConfig = serde_json::from_str(
            r#"{"targets":"linear:q_proj,down_proj","rin":{"policy":"e9b","report":"r.json"},
                "schedule":{"kind":"linear","sigma_start":0.05}}"#,
        )
        .unwrap();
        assert_eq!(
            c.targets,
            AqnTargets::Linear {
                modules: vec![LinearKind::QProj, LinearKind::DownProj]
            }
        );
        assert_eq!(c.schedule.sigma_end, QERL_SIGMA_END);
        assert_eq!(
            c.rin.as_ref().unwrap().policy.label(),
            "tiered:band=4:neighbours=4:high=1.5:mid=1.2:base=1"
        );
        let back: AqnConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let c: AqnConfig =
            serde_json::from_str(r#"{"targets":{"kind":"rmsnorm","final_norm":false}}"#).unwrap();
        assert_eq!(c.targets, AqnTargets::Rmsnorm { final_norm: false });
        assert_eq!(
            "pattern:*.mlp.*".parse::<AqnTargets>().unwrap().to_string(),
            "pattern `*.mlp.*`"
        );
        for (json, needle) in [
            (r#"{"targets":"norms"}"#, "`norms`"),
            (r#"{"targets":"linear:qproj"}"#, "`qproj`"),
            (r#"{"targets":"pattern:"}"#, "empty"),
            (r#"{"targets":{"kind":"rmsnorm","final":false}}"#, "final"),
            (r#"{"phase":"eval"}"#, "`eval`"),
            (r#"{"sigma":0.1}"#, "unknown field `sigma`"),
            (r#"{"schedule":{"kind":"cosine"}}"#, "`cosine`"),
            (r#"{"rin":{"policy":"warp"}}"#, "`warp`"),
            (r#"{"rin":{"policy":"e9b","reprot":"x"}}"#, "reprot"),
        ] {
            let err = serde_json::from_str::<AqnConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
