//! The schedules of the seed's experiments (`../shared/seed/000_08cdde852ebad6cd.txt`, its
//! experiment tables and "AQN Configuration Reference"), as `aqn-native schedule --preset` and the
//! browser playground show them.
//!
//! A schedule preset is a view of a TOML preset ([`Experiment`]): its kind, sigma range, K,
//! epochs and RIN policy are read from the preset's `[experiment]` and `[aqn]` tables, and its
//! steps per epoch from the seed's profile, as the trainer would run it. What the TOML cannot
//! hold stays here: [`PresetSpec::source`], the provenance of each number (the seed's row, and
//! the fork's run scripts where the summary is silent), which the tests check against the
//! numbers read from the TOML, row by row. Two rows are not experiments of the seed's tables but
//! QeRL's own GSM8K run (no TOML preset): their numbers are the constants below.
//!
//! RIN: a TOML preset that names a RIN preset (`rin = { policy = "e9b" }`) gives the schedule
//! preset that RIN preset. E9a's TOML states its policy independently of the model
//! (`targeted:top-k=4`, the four highest-error layers); the schedule preset keeps the seed's
//! layer numbers on Qwen2.5-1.5B ([`RinPreset::E9a`], layers 14-17), and a test checks that both
//! select the same layers on the seed-shaped 28-layer profile.
//!
//! A preset needs the run length to produce values; [`SchedulePreset::default_run`] is the run
//! the experiment had, and [`RunLength::resolve`] merges a caller's overrides into it.

use super::{CatalogueError, Experiment};
use crate::named::named_enum;
use crate::rin::RinPreset;
use crate::schedule::{
    QERL_SIGMA_END, QERL_SIGMA_START, QERL_STAGES, RunLength, ScheduleError, ScheduleKind,
    SigmaSchedule,
};

/// QeRL's GSM8K run: batch 2, about 3700 steps in one epoch (the seed's QeRL comparison table).
pub const QERL_STEPS: u64 = 3700;
/// The seed's "high" range (E5b, E9a-high, E12, QeRL's 5e-2 option).
pub const HIGH_SIGMA_START: f64 = 5e-2;
/// The seed's "high" range.
pub const HIGH_SIGMA_END: f64 = 5e-4;

named_enum! {
    /// A schedule used by one of the seed's experiments.
    SchedulePreset, "schedule preset", CatalogueError {
        /// E5b, epoch-aware AQN under 5% matmul noise.
        E5b => "e5b",
        /// E5c, lower-sigma epoch-aware AQN under 5% matmul noise.
        E5c => "e5c",
        /// E9a, RIN-targeted (layers 14-17).
        E9a => "e9a",
        /// E9a-high-sigma, RIN-targeted with the high range.
        E9aHigh => "e9a-high" | "e9a-high-sigma",
        /// E9b, RIN tiered 1.5 / 1.2 / 1.0, the best HW-inject run.
        E9b => "e9b",
        /// The standard step-based AQN of E6b (= E3b, E4b, E5b-LoRA).
        E6b => "e6b" | "e3b" | "e4b" | "e5b-lora",
        /// E12, high-sigma epoch-aware AQN with RIN, the best LoRA + MXFP4 run.
        E12 => "e12",
        /// QeRL's default: 1e-2 -> 1e-4, K = 10.
        Qerl => "qerl" | "qerl-default",
        /// QeRL's high option: 5e-2 -> 5e-4, K = 10.
        QerlHigh => "qerl-high",
    }
}

/// Everything a preset fixes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PresetSpec {
    /// The schedule kind.
    pub kind: ScheduleKind,
    /// s0.
    pub sigma_start: f64,
    /// s1.
    pub sigma_end: f64,
    /// K.
    pub stages: u32,
    /// The run the experiment had.
    pub run: RunLength,
    /// The experiment's RIN configuration, if it used one.
    pub rin: Option<RinPreset>,
    /// Where the numbers come from.
    pub source: &'static str,
}

/// Where a schedule preset's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    /// A TOML preset of the catalogue.
    Preset {
        /// Its name.
        name: &'static str,
        /// The RIN preset that stands for the TOML's model-independent policy on the seed's
        /// model (only where that policy names no RIN preset).
        seed_rin: Option<RinPreset>,
    },
    /// QeRL's own run: geometric over [`QERL_STAGES`] and [`QERL_STEPS`] steps.
    Qerl {
        /// s0.
        sigma_start: f64,
        /// s1.
        sigma_end: f64,
    },
}

impl SchedulePreset {
    /// Where the preset's numbers come from: its origin, and the provenance text.
    fn row(self) -> (Origin, &'static str) {
        let toml = |name| Origin::Preset {
            name,
            seed_rin: None,
        };
        match self {
            SchedulePreset::E5b => (
                toml("e5b"),
                "seed: E5b row (epoch-aware, 0.05 -> 0.0005), HW-inject column of the AQN \
                 Configuration Reference; fork script test_noisy_ops_aqn_epoch_aware.sh: \
                 stages_per_epoch 5; 2 epochs x 58 steps (GRPO batch 128)",
            ),
            SchedulePreset::E5c => (
                toml("e5c"),
                "seed: E5c row (epoch-aware, 0.01 -> 0.00001); fork: stages_per_epoch 5; \
                 2 epochs x 58 steps",
            ),
            SchedulePreset::E9a => (
                Origin::Preset {
                    name: "e9a",
                    seed_rin: Some(RinPreset::E9a),
                },
                "seed: E9a row (epoch-aware, 0.01 -> 0.0001, layers 14-17; the fork's script \
                 used 0.01 -> 0.00001); fork: stages_per_epoch 5; 2 epochs x 58 steps",
            ),
            SchedulePreset::E9aHigh => (
                Origin::Preset {
                    name: "e9a-high",
                    seed_rin: Some(RinPreset::E9a),
                },
                "seed: E9a-high-sigma row (epoch-aware, 0.05 -> 0.0005, layers 14-17); fork: \
                 stages_per_epoch 5; 2 epochs x 58 steps",
            ),
            SchedulePreset::E9b => (
                toml("e9b"),
                "seed: E9b row (epoch-aware, 0.01 -> 0.0001, per-layer multipliers; the fork's \
                 script used 0.01 -> 0.00001); fork: stages_per_epoch 5, multipliers 1.5 on \
                 14-17, 1.2 on 10-13 and 18-21; 2 epochs x 58 steps",
            ),
            SchedulePreset::E6b => (
                toml("e6b"),
                "seed: Standard (E3b, E6b) column, epoch_aware off, 0.01 -> 0.0001; the seed \
                 calls the non-epoch-aware decay \"linear\", but the fork's step-based path is \
                 QeRL's K-stage geometric get_sigma_by_step with num_stages 10; 1 epoch x 29 \
                 steps (DAPO gen batch 256)",
            ),
            SchedulePreset::E12 => (
                toml("e12"),
                "seed: High (E12) column, epoch-aware, 0.05 -> 0.0005, RIN variable; fork \
                 script: stages_per_epoch 10; 1 epoch x 29 steps",
            ),
            SchedulePreset::Qerl => (
                Origin::Qerl {
                    sigma_start: QERL_SIGMA_START,
                    sigma_end: QERL_SIGMA_END,
                },
                "QeRL trl_trainer/noise_scheduler.py defaults (sigma_start 1e-2, sigma_end 1e-4, \
                 num_stages 10), docs/spec.md section 8; ~3700 steps (seed: QeRL GSM8K, batch 2)",
            ),
            SchedulePreset::QerlHigh => (
                Origin::Qerl {
                    sigma_start: HIGH_SIGMA_START,
                    sigma_end: HIGH_SIGMA_END,
                },
                "QeRL's 5e-2 -> 5e-4 option (docs/spec.md section 8), K = 10; ~3700 steps",
            ),
        }
    }

    /// The preset's parameters, read from its TOML preset (see the module documentation).
    ///
    /// # Panics
    /// Only if a compiled-in preset is unreadable, which the tests rule out for every row
    /// ([`Self::read_spec`] returns the reason instead).
    pub fn spec(self) -> PresetSpec {
        self.read_spec()
            .unwrap_or_else(|e| panic!("schedule preset {self}: {e} ({e:?})"))
    }

    /// The preset's parameters, or why its compiled-in TOML preset cannot be read.
    pub fn read_spec(self) -> Result<PresetSpec, CatalogueError> {
        let (origin, source) = self.row();
        match origin {
            Origin::Qerl {
                sigma_start,
                sigma_end,
            } => Ok(PresetSpec {
                kind: ScheduleKind::Geometric,
                sigma_start,
                sigma_end,
                stages: QERL_STAGES,
                run: RunLength::steps(QERL_STEPS),
                rin: None,
                source,
            }),
            Origin::Preset { name, seed_rin } => {
                let experiment = Experiment::read(name)?;
                let rin = self.rin_of(&experiment, seed_rin)?;
                let params = experiment.schedule.ok_or(CatalogueError::NoSchedule {
                    preset: experiment.preset,
                })?;
                Ok(PresetSpec {
                    kind: params.kind,
                    sigma_start: params.sigma_start,
                    sigma_end: params.sigma_end,
                    stages: params.stages,
                    run: experiment.seed_run,
                    rin,
                    source,
                })
            }
        }
    }

    /// The RIN preset of a row: the one its TOML preset names, or the row's stand-in for the
    /// TOML's model-independent policy; anything else is a mismatch.
    fn rin_of(
        self,
        experiment: &Experiment,
        seed_rin: Option<RinPreset>,
    ) -> Result<Option<RinPreset>, CatalogueError> {
        match (&experiment.rin, experiment.rin_preset, seed_rin) {
            (None, _, None) => Ok(None),
            (Some(_), Some(named), None) => Ok(Some(named)),
            (Some(_), None, Some(pinned)) => Ok(Some(pinned)),
            (policy, named, pinned) => Err(CatalogueError::RinMismatch {
                row: self.name(),
                problem: format!(
                    "preset {} has RIN policy {} (RIN preset {}), the row names {}",
                    experiment.preset,
                    policy.as_ref().map_or("none".into(), |p| p.label()),
                    named.map_or("none", |p| p.name()),
                    pinned.map_or("none", |p| p.name()),
                ),
            }),
        }
    }

    /// The run the experiment had.
    pub fn default_run(self) -> RunLength {
        self.spec().run
    }

    /// The experiment's RIN configuration, if any.
    pub fn rin(self) -> Option<RinPreset> {
        self.spec().rin
    }

    /// Where the numbers come from.
    pub fn source(self) -> &'static str {
        self.row().1
    }

    /// The schedule over `run`.
    pub fn schedule(self, run: RunLength) -> Result<SigmaSchedule, ScheduleError> {
        let p = self.spec();
        SigmaSchedule::build(p.kind, p.sigma_start, p.sigma_end, p.stages, run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_over_its_run() {
        for &p in SchedulePreset::ALL {
            let s = p.schedule(p.default_run()).unwrap();
            assert_eq!(s.total_steps(), p.default_run().total_steps());
            let curve = s.curve().unwrap();
            assert!(curve.iter().any(|pt| pt.sigma > 0.0), "{p}");
            assert!(!p.source().is_empty());
        }
    }

    #[test]
    fn preset_values() {
        let e5b = SchedulePreset::E5b
            .schedule(SchedulePreset::E5b.default_run())
            .unwrap();
        assert_eq!(
            e5b,
            SigmaSchedule::epoch_aware(0.05, 5e-4, 5, 2, 58).unwrap()
        );
        let e6b = SchedulePreset::E6b
            .schedule(SchedulePreset::E6b.default_run())
            .unwrap();
        assert_eq!(e6b, SigmaSchedule::geometric(0.01, 1e-4, 10, 29).unwrap());
        let e12 = SchedulePreset::E12
            .schedule(SchedulePreset::E12.default_run())
            .unwrap();
        assert_eq!(
            e12,
            SigmaSchedule::epoch_aware(0.05, 5e-4, 10, 1, 29).unwrap()
        );
        assert_eq!(SchedulePreset::E9b.rin(), Some(RinPreset::E9b));
        assert_eq!(
            "E5B-LoRA".parse::<SchedulePreset>().unwrap(),
            SchedulePreset::E6b
        );
        let err = "e99".parse::<SchedulePreset>().unwrap_err().to_string();
        assert!(err.contains("`e99`") && err.contains("e5b, e5c"), "{err}");
    }

    /// The number after the first `key ` in `text`.
    fn number_after(text: &str, key: &str) -> Option<f64> {
        let rest = &text[text.find(key)? + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        digits.parse().ok()
    }

    /// The sigma range `A -> B` a provenance text quotes first.
    fn quoted_range(text: &str) -> Option<(f64, f64)> {
        let (left, right) = text.split_once("->")?;
        let token = |t: &str| -> Option<f64> {
            t.trim_matches(|c: char| !(c.is_ascii_digit() || c == '.'))
                .parse()
                .ok()
        };
        Some((
            token(left.split_whitespace().last()?)?,
            token(right.split_whitespace().next()?)?,
        ))
    }

    /// Row by row, the numbers read from each TOML preset are the ones the row's provenance
    /// quotes from the seed and the fork's scripts: kind, sigma range, K, epochs x steps.
    #[test]
    fn every_row_agrees_with_its_quoted_source() {
        for &p in SchedulePreset::ALL {
            let (origin, source) = p.row();
            if !matches!(origin, Origin::Preset { .. }) {
                continue;
            }
            let s = p.read_spec().unwrap();
            assert!(source.contains(s.kind.name()), "{p}: kind {}", s.kind);
            assert_eq!(
                quoted_range(source),
                Some((s.sigma_start, s.sigma_end)),
                "{p}: the range of its TOML preset is {} -> {}",
                s.sigma_start,
                s.sigma_end
            );
            let k = number_after(source, "stages_per_epoch")
                .or_else(|| number_after(source, "num_stages"));
            assert_eq!(k, Some(f64::from(s.stages)), "{p}: K of its TOML preset");
            let run = format!(
                "{} epoch{} x {} steps",
                s.run.epochs,
                if s.run.epochs == 1 { "" } else { "s" },
                s.run.steps_per_epoch
            );
            assert!(source.contains(&run), "{p}: its TOML preset runs {run}");
        }
    }

    /// The schedule preset a TOML preset with AQN belongs to: its own name or alias, else the
    /// experiment it is a variant of (`-2ep`, `-qerl`, `-tis`); the default run is E6b's AQN.
    fn row_of(preset: &str) -> Option<SchedulePreset> {
        if preset == "default" {
            return Some(SchedulePreset::E6b);
        }
        let base = preset
            .trim_end_matches("-2ep")
            .trim_end_matches("-qerl")
            .trim_end_matches("-tis");
        base.parse().ok()
    }

    /// Every TOML preset with an AQN schedule has a schedule preset with the same kind, sigma
    /// range, K and RIN (and, for the experiment's own row, the same run).
    #[test]
    fn every_aqn_preset_agrees_with_its_row() {
        let mut rows_seen = Vec::new();
        for name in crate::catalogue::preset_names() {
            let e = Experiment::read(name).unwrap();
            let Some(params) = &e.schedule else {
                continue;
            };
            let row = row_of(name).unwrap_or_else(|| panic!("preset {name} has no schedule row"));
            let s = row.spec();
            assert_eq!(
                (s.kind, s.sigma_start, s.sigma_end, s.stages),
                (
                    params.kind,
                    params.sigma_start,
                    params.sigma_end,
                    params.stages
                ),
                "preset {name} vs schedule preset {row}"
            );
            match (&e.rin, e.rin_preset) {
                (None, _) => assert_eq!(s.rin, None, "preset {name} has no RIN"),
                (Some(_), Some(named)) => assert_eq!(s.rin, Some(named), "preset {name}"),
                // A model-independent policy: the row's stand-in (checked below).
                (Some(_), None) => assert!(s.rin.is_some(), "preset {name}"),
            }
            if row.name() == name {
                assert_eq!(s.run, e.seed_run, "preset {name}");
            }
            rows_seen.push(row);
        }
        for &p in SchedulePreset::ALL {
            let toml_backed = matches!(p.row().0, Origin::Preset { .. });
            assert_eq!(rows_seen.contains(&p), toml_backed, "{p}");
        }
    }

    /// Where a row stands in a RIN preset for its TOML's model-independent policy, both give
    /// the same multipliers on the seed-shaped 28-layer profile (tests/fixtures/srdd_sample.json).
    #[test]
    fn stand_in_rin_presets_select_the_same_layers() {
        use crate::srdd::SrddReport;
        let report =
            SrddReport::from_json(include_str!("../../../tests/fixtures/srdd_sample.json"))
                .unwrap();
        let mut checked = 0;
        for &p in SchedulePreset::ALL {
            let Origin::Preset {
                name,
                seed_rin: Some(stand_in),
            } = p.row().0
            else {
                continue;
            };
            let toml_policy = Experiment::read(name).unwrap().rin.unwrap();
            let total = p.default_run().total_steps();
            for step in [1, total] {
                let want = toml_policy
                    .multipliers_for_report(&report, step, total)
                    .unwrap();
                let have = stand_in
                    .config()
                    .multipliers_for_report(&report, step, total)
                    .unwrap();
                assert_eq!(have, want, "{p}: {stand_in} vs {}", toml_policy.label());
            }
            checked += 1;
        }
        assert_eq!(checked, 2);
    }

    #[test]
    fn a_rin_that_does_not_follow_is_refused() {
        let e9a = Experiment::read("e9a").unwrap();
        let e9b = Experiment::read("e9b").unwrap();
        // The TOML's policy names no RIN preset and the row gives none.
        let err = SchedulePreset::E9a.rin_of(&e9a, None).unwrap_err();
        assert!(err.to_string().contains("targeted:top-k=4"), "{err}");
        // The TOML names one and the row names another.
        let err = SchedulePreset::E9b
            .rin_of(&e9b, Some(RinPreset::E12))
            .unwrap_err()
            .to_string();
        assert!(err.contains("e9b") && err.contains("e12"), "{err}");
        // A row that names a RIN preset for a TOML preset without RIN.
        let e5b = Experiment::read("e5b").unwrap();
        let err = SchedulePreset::E5b
            .rin_of(&e5b, Some(RinPreset::E9a))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none") && err.contains("e9a"), "{err}");
    }
}
