//! One experiment of the catalogue: a compiled-in TOML preset read the way the trainer reads it,
//! on the seed's scale (the profile `qwen2.5-1.5b-gsm8k` over GSM8K's training split).
//!
//! The catalogue reads only what a schedule needs: the category and epochs (`[experiment]`), the
//! noise schedule and RIN policy (`[aqn]`), and the generation batch (`[batch]` of the profile,
//! of its `[category.NAME]` table and of the preset, merged in that order as the trainer merges
//! them). The trainer reads the whole document and refuses unknown keys; this view ignores the
//! rest. One epoch has `floor(prompts / generation batch)` steps, as the trainer's data stream
//! counts whole generation batches (docs/spec.md section 8 gives the seed's batch sizes).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::CatalogueError;
use super::embedded::{self, Document};
use crate::rin::{RinConfig, RinPreset};
use crate::schedule::{RunLength, ScheduleParams};

/// The profile of the seed's runs: Qwen2.5-1.5B-Instruct on GSM8K with its batch sizes.
pub const SEED_PROFILE: &str = "qwen2.5-1.5b-gsm8k";
/// Problems in GSM8K's training split (verl's `train.parquet`): 7473 / 128 = 58 steps per epoch
/// for the HW runs, 7473 / 256 = 29 for the LoRA and full fine-tuning runs.
pub const GSM8K_TRAIN_PROMPTS: u64 = 7473;

/// The parts of a preset the catalogue reads.
#[derive(Deserialize)]
struct PresetDoc {
    experiment: ExperimentDoc,
    aqn: Option<AqnDoc>,
    #[serde(default)]
    batch: BatchDoc,
}

/// `[experiment]`: both keys are required here (the trainer would default them).
#[derive(Deserialize)]
struct ExperimentDoc {
    category: String,
    epochs: u64,
}

/// `[aqn]`: the schedule table as the trainer reads it, and the RIN policy.
#[derive(Deserialize)]
struct AqnDoc {
    #[serde(default)]
    schedule: ScheduleParams,
    rin: Option<RinDoc>,
}

/// `[aqn.rin]`: the policy in compact text (`"e9b"`, `"targeted:top-k=4"`) or table form.
#[derive(Deserialize)]
struct RinDoc {
    policy: toml::Value,
}

/// `[batch]` of a profile, of a profile's category table, or of a preset.
#[derive(Default, Deserialize)]
struct BatchDoc {
    gen_batch_size: Option<u64>,
    train_batch_scale: Option<f64>,
}

/// The parts of a profile the catalogue reads.
#[derive(Deserialize)]
struct ProfileDoc {
    #[serde(default)]
    batch: BatchDoc,
    #[serde(default)]
    category: BTreeMap<String, CategoryDoc>,
}

/// `[category.NAME]` of a profile.
#[derive(Deserialize)]
struct CategoryDoc {
    #[serde(default)]
    batch: BatchDoc,
}

fn parse<T: for<'de> Deserialize<'de>>(kind: &str, doc: Document) -> Result<T, CatalogueError> {
    toml::from_str(doc.text).map_err(|source| CatalogueError::Toml {
        document: format!("{kind} {}", doc.name),
        source,
    })
}

/// What the catalogue knows of one TOML preset.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// The preset's name.
    pub preset: &'static str,
    /// Its experiment table (`hw`, `quant`, `lora`): which category table of a profile applies.
    pub category: String,
    /// Passes over the training prompts.
    pub epochs: u64,
    /// `[aqn].schedule` with the trainer's defaults, if the preset has AQN.
    pub schedule: Option<ScheduleParams>,
    /// `[aqn].rin.policy`, if the preset has RIN.
    pub rin: Option<RinConfig>,
    /// The RIN preset the policy names, when it is a bare preset name (`policy = "e9b"`).
    pub rin_preset: Option<RinPreset>,
    /// Its run on the seed's scale: `epochs` epochs of GSM8K over the seed profile's
    /// generation batch.
    pub seed_run: RunLength,
}

impl Experiment {
    /// Reads the compiled-in preset `name` (case-insensitive; an unknown name is refused with
    /// the valid ones).
    pub fn read(name: &str) -> Result<Self, CatalogueError> {
        let doc = embedded::preset(name)?;
        let preset = doc.name;
        let parsed: PresetDoc = parse("preset", doc)?;
        let generation = seed_generation_batch(preset, &parsed)?;
        let (schedule, rin, rin_preset) = match parsed.aqn {
            None => (None, None, None),
            Some(aqn) => {
                let (rin, rin_preset) = match aqn.rin {
                    None => (None, None),
                    Some(r) => read_rin(preset, r.policy)?,
                };
                (Some(aqn.schedule), rin, rin_preset)
            }
        };
        let steps_per_epoch = GSM8K_TRAIN_PROMPTS / generation;
        if steps_per_epoch == 0 {
            return Err(CatalogueError::NoWholeBatch {
                preset,
                prompts: GSM8K_TRAIN_PROMPTS,
                generation,
            });
        }
        let seed_run = RunLength::epochs(parsed.experiment.epochs, steps_per_epoch);
        seed_run
            .validate()
            .map_err(|source| CatalogueError::Schedule { preset, source })?;
        Ok(Self {
            preset,
            category: parsed.experiment.category,
            epochs: parsed.experiment.epochs,
            schedule,
            rin,
            rin_preset,
            seed_run,
        })
    }
}

/// The RIN configuration of a policy value, and the RIN preset when the value is a bare name.
fn read_rin(
    preset: &'static str,
    policy: toml::Value,
) -> Result<(Option<RinConfig>, Option<RinPreset>), CatalogueError> {
    match policy {
        toml::Value::String(text) => {
            let config = text
                .parse::<RinConfig>()
                .map_err(|source| CatalogueError::Rin { preset, source })?;
            Ok((Some(config), text.parse::<RinPreset>().ok()))
        }
        // The table form is validated as it is deserialized.
        table => {
            let config = table
                .try_into::<RinConfig>()
                .map_err(|source| CatalogueError::Toml {
                    document: format!("preset {preset}: [aqn.rin] policy"),
                    source,
                })?;
            Ok((Some(config), None))
        }
    }
}

/// The generation batch of `preset` on the seed profile: `gen_batch_size` from the profile's
/// `[batch]`, its `[category.NAME.batch]` and the preset's `[batch]` (the last one set wins),
/// times `train_batch_scale` rounded, at least 1 (the trainer's `BatchConfig::generation`).
fn seed_generation_batch(preset: &'static str, parsed: &PresetDoc) -> Result<u64, CatalogueError> {
    let profile_doc = embedded::profile(SEED_PROFILE)?;
    let profile: ProfileDoc = parse("profile", profile_doc)?;
    let category = profile.category.get(&parsed.experiment.category);
    // Merge order: the profile, its category table, the preset; the last one that sets a key wins.
    let layers = [
        Some(&profile.batch),
        category.map(|c| &c.batch),
        Some(&parsed.batch),
    ];
    let gen_batch = layers
        .iter()
        .rev()
        .flatten()
        .find_map(|b| b.gen_batch_size)
        .ok_or(CatalogueError::NoGenerationBatch {
            profile: profile_doc.name,
            preset,
        })?;
    let scale = layers
        .iter()
        .rev()
        .flatten()
        .find_map(|b| b.train_batch_scale)
        .unwrap_or(1.0);
    let scaled = (gen_batch as f64 * scale).round() as u64;
    Ok(scaled.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleKind;

    #[test]
    fn reads_schedule_rin_and_seed_run() {
        let e9b = Experiment::read("e9b").unwrap();
        assert_eq!(e9b.category, "hw");
        assert_eq!(
            e9b.schedule,
            Some(ScheduleParams {
                kind: ScheduleKind::EpochAware,
                sigma_start: 0.01,
                sigma_end: 1e-4,
                stages: 5,
            })
        );
        assert_eq!(e9b.rin_preset, Some(RinPreset::E9b));
        assert_eq!(e9b.seed_run, RunLength::epochs(2, 58));
        // A generic policy is read, but names no RIN preset.
        let e9a = Experiment::read("e9a").unwrap();
        assert_eq!(e9a.rin.unwrap().label(), "targeted:top-k=4");
        assert_eq!(e9a.rin_preset, None);
        // LoRA runs: the profile's generation batch of 256; the QeRL-style batch is 1/8 of it.
        assert_eq!(
            Experiment::read("e12").unwrap().seed_run,
            RunLength::epochs(1, 29)
        );
        assert_eq!(
            Experiment::read("e12-qerl").unwrap().seed_run,
            RunLength::epochs(1, 7473 / 32)
        );
        let baseline = Experiment::read("baseline").unwrap();
        assert_eq!((baseline.schedule, baseline.rin), (None, None));
        let err = Experiment::read("e99").unwrap_err().to_string();
        assert!(err.contains("`e99`") && err.contains("e9b"), "{err}");
    }

    /// The catalogue reads every preset as the trainer resolves it on the seed profile: the
    /// same category, epochs, schedule, RIN policy and generation batch.
    #[cfg(feature = "burn")]
    #[test]
    fn the_trainer_resolves_the_same_numbers() {
        use crate::train::config::{ConfigSources, TrainConfig};
        for name in super::embedded::preset_names() {
            let e = Experiment::read(name).unwrap();
            let config = TrainConfig::resolve(&ConfigSources {
                profile: SEED_PROFILE.into(),
                preset: name.into(),
                ..ConfigSources::default()
            })
            .unwrap();
            assert_eq!(config.experiment.category.name(), e.category, "{name}");
            assert_eq!(config.experiment.epochs, e.epochs, "{name}");
            assert_eq!(
                GSM8K_TRAIN_PROMPTS / config.batch.generation() as u64,
                e.seed_run.steps_per_epoch,
                "{name}"
            );
            assert_eq!(
                config.aqn.as_ref().map(|a| &a.schedule),
                e.schedule.as_ref(),
                "{name}"
            );
            assert_eq!(
                config
                    .aqn
                    .as_ref()
                    .and_then(|a| a.rin.as_ref())
                    .map(|r| &r.policy),
                e.rin.as_ref(),
                "{name}"
            );
        }
    }
}
