//! The RIN configurations of the seed's experiments (`../shared/seed/000_08cdde852ebad6cd.txt`,
//! its E9/E12 rows and the "Upcoming Work: Systematic RIN Study" section), with the fork's run
//! scripts for the details the summary leaves out.
//!
//! A preset's name is part of the compact policy syntax ([`super::RinConfig`]'s `FromStr`), so
//! the presets live here rather than in the experiment catalogue (`crate::catalogue`), which
//! reads this module. The catalogue's TOML presets refer to them by name: `e9b.toml` uses `e9b`,
//! `e12.toml` (and its variants) `e12`. `e9a` is the schedule preset E9a's stand-in for the
//! model-independent `targeted:top-k=4` of `e9a.toml` (the same layers on the seed's model; the
//! catalogue's tests check it). The E13 study (`e13i-*`, `e13l`, `e13m`, `e13n`) has no TOML
//! preset: those are RIN-only presets, for `--rin` and `[aqn.rin]`.

use super::{LayerSet, RinError, RinPolicy, TargetedPolicy, TieredPolicy, Zone, ZonesPolicy};
use crate::named::named_enum;

/// E13i-high: sigma 0.08 on layers 10-19 against the base 0.05.
pub const E13I_HIGH_MULTIPLIER: f64 = 0.08 / 0.05;
/// E13i-low: sigma 0.03 on layers 10-19 against the base 0.05.
pub const E13I_LOW_MULTIPLIER: f64 = 0.03 / 0.05;

named_enum! {
    /// A RIN configuration used by one of the seed's experiments.
    RinPreset, "RIN preset", RinError {
        /// E9a (and E9a-high-sigma): targeted layers 14-17, the SRDD high-error band of
        /// Qwen2.5-1.5B (the fork's `layer_multipliers={14..17: 1.0}`, default 0).
        E9a => "e9a" | "e9a-high" | "e9a-high-sigma",
        /// E9b, the best HW-inject run: tiered 1.5 / 1.2 / 1.0 (see [`TieredPolicy`]).
        E9b => "e9b",
        /// E12 ("High sigma + RIN", RIN mode `variable` in the seed's table): `err / mean`.
        E12 => "e12",
        /// E13i-baseline: global RIN, every layer at 1.
        E13iGlobal => "e13i-global" | "e13i-baseline",
        /// E13i-targeted: targeted layers 10-19 (the middle zone, errors ~40%).
        E13iTargeted => "e13i-targeted",
        /// E13i-high: layers 10-19 at 1.6x (sigma 0.08 vs 0.05), the escape hypothesis.
        E13iHigh => "e13i-high",
        /// E13i-low: layers 10-19 at 0.6x (sigma 0.03 vs 0.05), the sufficient-error hypothesis.
        E13iLow => "e13i-low",
        /// E13l: variable, high error -> more noise (max 1.17x on the real profile).
        E13l => "e13l",
        /// E13m: inverse, high error -> less noise (max 1.21x on the real profile).
        E13m => "e13m",
        /// E13n: inverse normalized by its maximum, so no layer exceeds the base sigma.
        E13n => "e13n",
    }
}

impl RinPreset {
    /// The preset's policy (its configuration, [`super::RinConfig`] from this policy, adds no clip
    /// and the metric `relative_error`).
    pub fn policy(self) -> RinPolicy {
        let range = |a, b| LayerSet::range(a, b).expect("preset ranges are ordered");
        let zones = |m| {
            RinPolicy::Zones(ZonesPolicy::single(vec![Zone {
                layers: range(10, 19),
                multiplier: m,
            }]))
        };
        match self {
            RinPreset::E9a => RinPolicy::Targeted(TargetedPolicy::layers(range(14, 17))),
            RinPreset::E9b => RinPolicy::Tiered(TieredPolicy::default()),
            RinPreset::E12 | RinPreset::E13l => RinPolicy::Variable {},
            RinPreset::E13iGlobal => RinPolicy::Uniform {},
            RinPreset::E13iTargeted => RinPolicy::Targeted(TargetedPolicy::layers(range(10, 19))),
            RinPreset::E13iHigh => zones(E13I_HIGH_MULTIPLIER),
            RinPreset::E13iLow => zones(E13I_LOW_MULTIPLIER),
            RinPreset::E13m => RinPolicy::Inverse {},
            RinPreset::E13n => RinPolicy::InverseNormalized {},
        }
    }
}
