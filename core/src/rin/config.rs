//! A RIN configuration: the policy, an optional clip of the multipliers, and the SRDD metric read
//! as the per-layer error; plus its compact text form for the command line.
//!
//! Compact form: `POLICY[:OPTION]...` or `PRESET[:OPTION]...`:
//! - `uniform`, `variable`, `inverse`, `inverse-normalized`;
//! - `targeted:layers=14-17` | `targeted:top-k=4` | `targeted:threshold=0.4`;
//! - `tiered[:band=4][:neighbours=4][:high=1.5][:mid=1.2][:base=1]`;
//! - `zones:10-19=1.6[:default=1][:at=0.5:10-19=1.0...]` (`at=F` starts the phase in force from
//!   training fraction F; `RANGE=M` sets a zone, `default=D` the other layers of the phase);
//! - a preset name of [`super::RinPreset`] (`e9b`, `e13n`, ...);
//! - for all: `clip=MIN..MAX`, `metric=NAME` (an [`SrddMetric`], default `relative_error`).

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    LayerSet, RinError, RinPolicy, RinPolicyKind, RinPreset, TargetedPolicy, TieredPolicy, Zone,
    ZonePhase, ZonesPolicy,
};
use crate::schedule::SigmaSchedule;
use crate::srdd::{SrddMetric, SrddReport};

/// Clamp every multiplier into `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiplierClip {
    /// Lower bound, finite and >= 0.
    pub min: f64,
    /// Upper bound, finite and >= min.
    pub max: f64,
}

impl MultiplierClip {
    /// Refuses non-finite or negative bounds and `min > max`.
    pub fn validate(&self) -> Result<(), RinError> {
        super::check_multiplier("clip min", self.min)?;
        super::check_multiplier("clip max", self.max)?;
        if self.min > self.max {
            return Err(RinError::ClipOrder {
                min: self.min,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// Policy + clip + metric. Serialized as `{ policy = {...}, clip = { min, max }, metric = "..." }`
/// (clip and metric optional, unknown fields refused), validated when deserialized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedConfig")]
pub struct RinConfig {
    /// The policy.
    pub policy: RinPolicy,
    /// Optional clip applied to the policy's multipliers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<MultiplierClip>,
    /// The SRDD metric read as the per-layer error.
    pub metric: SrddMetric,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedConfig {
    policy: RinPolicy,
    #[serde(default)]
    clip: Option<MultiplierClip>,
    #[serde(default = "default_metric")]
    metric: SrddMetric,
}

fn default_metric() -> SrddMetric {
    SrddMetric::RelativeError
}

impl TryFrom<UncheckedConfig> for RinConfig {
    type Error = RinError;
    fn try_from(u: UncheckedConfig) -> Result<Self, Self::Error> {
        let c = RinConfig {
            policy: u.policy,
            clip: u.clip,
            metric: u.metric,
        };
        c.validate()?;
        Ok(c)
    }
}

impl From<RinPolicy> for RinConfig {
    fn from(policy: RinPolicy) -> Self {
        Self {
            policy,
            clip: None,
            metric: default_metric(),
        }
    }
}

impl From<RinPreset> for RinConfig {
    /// The preset's policy, no clip, metric `relative_error`.
    fn from(preset: RinPreset) -> Self {
        RinConfig::from(preset.policy())
    }
}

impl RinPreset {
    /// The configuration (policy, no clip, metric `relative_error`).
    pub fn config(self) -> RinConfig {
        RinConfig::from(self)
    }
}

impl Default for RinConfig {
    fn default() -> Self {
        RinPolicy::default().into()
    }
}

impl RinConfig {
    /// Checks everything that does not depend on the error vector.
    pub fn validate(&self) -> Result<(), RinError> {
        self.policy.validate()?;
        if let Some(clip) = &self.clip {
            clip.validate()?;
        }
        Ok(())
    }

    /// One multiplier per layer at `step` of `total_steps`: the policy's, then clipped. Refuses
    /// the inputs the policy refuses and any multiplier that ends negative or not finite.
    pub fn multipliers(
        &self,
        errors: &[f64],
        step: u64,
        total_steps: u64,
    ) -> Result<Vec<f64>, RinError> {
        self.validate()?;
        let mut m = self.policy.raw_multipliers(errors, step, total_steps)?;
        if let Some(clip) = self.clip {
            for v in &mut m {
                *v = v.clamp(clip.min, clip.max);
            }
        }
        super::check_multipliers(self.policy.kind().name(), &m)?;
        Ok(m)
    }

    /// [`Self::multipliers`] with the errors read from an SRDD report (this config's metric).
    pub fn multipliers_for_report(
        &self,
        report: &SrddReport,
        step: u64,
        total_steps: u64,
    ) -> Result<Vec<f64>, RinError> {
        self.multipliers(&report.layer_values(self.metric), step, total_steps)
    }

    /// The per-layer noise std at `step`: `schedule.sigma(step) * m_l` (docs/spec.md section 4).
    pub fn effective_sigmas(
        &self,
        schedule: &SigmaSchedule,
        errors: &[f64],
        step: u64,
    ) -> Result<Vec<f64>, RinError> {
        let sigma = schedule.sigma(step)?;
        let m = self.multipliers(errors, step, schedule.total_steps())?;
        Ok(m.into_iter().map(|m| sigma * m).collect())
    }

    /// The canonical compact form, which [`FromStr`] parses back.
    pub fn label(&self) -> String {
        let mut s = match &self.policy {
            RinPolicy::Targeted(t) => {
                if let Some(l) = &t.layers {
                    format!("targeted:layers={l}")
                } else if let Some(k) = t.top_k {
                    format!("targeted:top-k={k}")
                } else if let Some(x) = t.threshold {
                    format!("targeted:threshold={x}")
                } else {
                    "targeted".into()
                }
            }
            RinPolicy::Tiered(t) => format!(
                "tiered:band={}:neighbours={}:high={}:mid={}:base={}",
                t.band_width, t.neighbour_width, t.high, t.neighbour, t.base
            ),
            RinPolicy::Zones(z) => {
                let mut s = String::from("zones");
                for (i, phase) in z.phases.iter().enumerate() {
                    if i > 0 {
                        s.push_str(&format!(":at={}", phase.from_fraction));
                    }
                    for zone in &phase.zones {
                        s.push_str(&format!(":{}={}", zone.layers, zone.multiplier));
                    }
                    if phase.default != super::zones::DEFAULT_OUTSIDE {
                        s.push_str(&format!(":default={}", phase.default));
                    }
                }
                s
            }
            p => p.kind().name().to_string(),
        };
        if let Some(c) = &self.clip {
            s.push_str(&format!(":clip={}..{}", c.min, c.max));
        }
        if self.metric != SrddMetric::RelativeError {
            s.push_str(&format!(":metric={}", self.metric));
        }
        s
    }
}

fn parse_f64(name: &'static str, text: &str) -> Result<f64, RinError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| RinError::BadParameter {
            name,
            value: text.to_string(),
            expected: "a number".into(),
        })
}

fn parse_usize(name: &'static str, text: &str) -> Result<usize, RinError> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| RinError::BadParameter {
            name,
            value: text.to_string(),
            expected: "a non-negative integer".into(),
        })
}

fn option_names(kind: RinPolicyKind) -> &'static str {
    match kind {
        RinPolicyKind::Targeted => "layers=LIST, top-k=N, threshold=X, clip=MIN..MAX, metric=NAME",
        RinPolicyKind::Tiered => {
            "band=N, neighbours=N, high=X, mid=X, base=X, clip=MIN..MAX, metric=NAME"
        }
        RinPolicyKind::Zones => "RANGE=X, default=X, at=FRACTION, clip=MIN..MAX, metric=NAME",
        _ => "clip=MIN..MAX, metric=NAME",
    }
}

impl FromStr for RinConfig {
    type Err = RinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let head = parts.next().unwrap_or_default().trim();
        let mut config = if let Ok(preset) = head.parse::<RinPreset>() {
            preset.config()
        } else {
            let kind = head.parse::<RinPolicyKind>().map_err(|_| {
                RinError::UnknownName(crate::named::UnknownName::new(
                    "RIN policy or preset",
                    head,
                    format!(
                        "{}, {}",
                        RinPolicyKind::valid_names(),
                        RinPreset::valid_names()
                    ),
                ))
            })?;
            RinConfig::from(match kind {
                RinPolicyKind::Uniform => RinPolicy::Uniform {},
                RinPolicyKind::Targeted => RinPolicy::Targeted(TargetedPolicy::default()),
                RinPolicyKind::Variable => RinPolicy::Variable {},
                RinPolicyKind::Inverse => RinPolicy::Inverse {},
                RinPolicyKind::InverseNormalized => RinPolicy::InverseNormalized {},
                RinPolicyKind::Tiered => RinPolicy::Tiered(TieredPolicy::default()),
                RinPolicyKind::Zones => RinPolicy::Zones(ZonesPolicy::single(Vec::new())),
            })
        };
        let kind = config.policy.kind();
        for opt in parts {
            let unknown = || {
                RinError::UnknownName(crate::named::UnknownName::new(
                    "RIN option",
                    opt,
                    option_names(kind),
                ))
            };
            let (key, value) = opt.split_once('=').ok_or_else(unknown)?;
            let key = key.trim().to_ascii_lowercase();
            match (key.as_str(), &mut config.policy) {
                ("clip", _) => {
                    let (lo, hi) =
                        value
                            .split_once("..")
                            .ok_or_else(|| RinError::BadParameter {
                                name: "clip",
                                value: value.to_string(),
                                expected: "MIN..MAX, e.g. clip=0.5..1.5".into(),
                            })?;
                    config.clip = Some(MultiplierClip {
                        min: parse_f64("clip min", lo)?,
                        max: parse_f64("clip max", hi)?,
                    });
                }
                ("metric", _) => config.metric = value.parse()?,
                ("layers", RinPolicy::Targeted(t)) => t.layers = Some(value.parse()?),
                ("top-k" | "top_k" | "topk", RinPolicy::Targeted(t)) => {
                    t.top_k = Some(parse_usize("top_k", value)?)
                }
                ("threshold", RinPolicy::Targeted(t)) => {
                    t.threshold = Some(parse_f64("threshold", value)?)
                }
                ("band" | "band_width", RinPolicy::Tiered(t)) => {
                    t.band_width = parse_usize("band_width", value)?
                }
                ("neighbours" | "neighbors" | "neighbour_width", RinPolicy::Tiered(t)) => {
                    t.neighbour_width = parse_usize("neighbour_width", value)?
                }
                ("high", RinPolicy::Tiered(t)) => t.high = parse_f64("high", value)?,
                ("mid" | "neighbour", RinPolicy::Tiered(t)) => {
                    t.neighbour = parse_f64("neighbour", value)?
                }
                ("base", RinPolicy::Tiered(t)) => t.base = parse_f64("base", value)?,
                ("at", RinPolicy::Zones(z)) => z.phases.push(ZonePhase {
                    from_fraction: parse_f64("from_fraction", value)?,
                    default: super::zones::DEFAULT_OUTSIDE,
                    zones: Vec::new(),
                }),
                ("default", RinPolicy::Zones(z)) => {
                    let phase = z.phases.last_mut().expect("zones start with one phase");
                    phase.default = parse_f64("default", value)?;
                }
                (range, RinPolicy::Zones(z)) if range.starts_with(|c: char| c.is_ascii_digit()) => {
                    let phase = z.phases.last_mut().expect("zones start with one phase");
                    phase.zones.push(Zone {
                        layers: range.parse::<LayerSet>()?,
                        multiplier: parse_f64("multiplier", value)?,
                    });
                }
                _ => return Err(unknown()),
            }
        }
        config.validate()?;
        Ok(config)
    }
}

impl fmt::Display for RinConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}
