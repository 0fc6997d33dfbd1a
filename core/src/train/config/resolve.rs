//! Resolving a run's configuration: the built-in defaults, then the profile (with its table
//! for the preset's category), the preset, a user TOML file and `--set key=value` overrides
//! merged in this order, `--unset` keys removed, the result deserialized (a key or type the
//! schema refuses is named, with the `--set` that broke it) and validated.

use std::collections::BTreeSet;
use std::path::PathBuf;

use toml::Table;

use super::effect::{changed_keys, leaf_keys};
use super::{Category, ConfigError, TrainConfig};
use crate::catalogue::{preset_text, profile_text};
use crate::config::{apply_override, merge};

fn parse(text: &str, source_name: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|source| ConfigError::Parse {
        source_name: source_name.to_string(),
        source,
    })
}

/// What a run's configuration is made of, in merge order after the defaults.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources {
    /// The profile (scale).
    pub profile: String,
    /// The preset (semantics).
    pub preset: String,
    /// A user TOML file, merged after both.
    pub file: Option<(PathBuf, String)>,
    /// `key=value` overrides, applied last.
    pub sets: Vec<String>,
    /// Keys removed after the overrides (e.g. `aqn` to turn AQN off).
    pub unsets: Vec<String>,
}

fn remove_key(doc: &mut Table, key: &str) -> Result<(), ConfigError> {
    let segments: Vec<&str> = key.split('.').collect();
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| ConfigError::UnsetMissing(key.to_string()))?;
    let mut table = doc;
    for seg in parents {
        table = match table.get_mut(*seg) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(ConfigError::UnsetMissing(key.to_string())),
        };
    }
    table
        .remove(*last)
        .map(|_| ())
        .ok_or_else(|| ConfigError::UnsetMissing(key.to_string()))
}

impl TrainConfig {
    /// Resolves `sources` into a validated configuration.
    pub fn resolve(sources: &ConfigSources) -> Result<Self, ConfigError> {
        Ok(sources.resolve_with_choices()?.0)
    }

    /// The resolved configuration as TOML (written into the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serializes")
    }
}

impl ConfigSources {
    /// Resolves these sources into a validated configuration, with the keys the user chose
    /// (the `--set` keys, and the keys the `--config` file changes; [`super::effect`]); a chosen
    /// key that cannot take effect is refused.
    pub fn resolve_with_choices(&self) -> Result<(TrainConfig, BTreeSet<String>), ConfigError> {
        let sources = self;
        let mut doc = Table::try_from(TrainConfig::default()).map_err(ConfigError::Defaults)?;
        let mut profile = parse(
            profile_text(&sources.profile)?,
            &format!("profile {}", sources.profile),
        )?;
        let preset = parse(
            preset_text(&sources.preset)?,
            &format!("preset {}", sources.preset),
        )?;
        let file = match &sources.file {
            Some((path, text)) => Some(parse(text, &path.display().to_string())?),
            None => None,
        };
        // The category decides which of the profile's per-category tables applies.
        let category_of = |t: &Table| -> Option<String> {
            t.get("experiment")?
                .get("category")?
                .as_str()
                .map(str::to_string)
        };
        let category = file
            .as_ref()
            .and_then(category_of)
            .or_else(|| category_of(&preset))
            .unwrap_or_else(|| Category::default().name().to_string());
        let category: Category = category.parse()?;
        let per_category = profile.remove("category");
        merge(&mut doc, profile);
        if let Some(toml::Value::Table(mut cats)) = per_category
            && let Some(toml::Value::Table(t)) = cats.remove(category.name())
        {
            merge(&mut doc, t);
        }
        merge(&mut doc, preset);
        let before_file = doc.clone();
        if let Some(f) = file {
            merge(&mut doc, f);
        }
        // Compared as the schema reads them (`targets = "rmsnorm"` is `targets.kind`), so a
        // file that restates a value in another spelling chooses nothing.
        let mut chosen = match (normalized(&before_file), normalized(&doc)) {
            (Some(before), Some(after)) => changed_keys(&before, &after),
            _ => changed_keys(&before_file, &doc),
        };
        let before_sets = doc.clone();
        for s in &sources.sets {
            apply_override(&mut doc, s)?;
        }
        for s in &sources.sets {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k).trim();
            chosen.extend(keys_under(&doc, key));
        }
        for key in &sources.unsets {
            remove_key(&mut doc, key)?;
            chosen.retain(|k| k != key && !k.starts_with(&format!("{key}.")));
        }
        let schema = |doc: &Table| -> Result<TrainConfig, String> {
            doc.clone()
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_string())
        };
        let config = match schema(&doc) {
            Ok(config) => config,
            Err(message) => {
                // Name the `--set` that broke the schema (an unknown key, a wrong type).
                let mut probe = before_sets;
                let mut culprit = None;
                if schema(&probe).is_ok() {
                    for s in &sources.sets {
                        apply_override(&mut probe, s)?;
                        if let Err(m) = schema(&probe) {
                            culprit = Some(format!("--set {s}: {m}"));
                            break;
                        }
                    }
                }
                return Err(ConfigError::Schema(culprit.unwrap_or(message)));
            }
        };
        config.validate()?;
        config.check_effect(&chosen)?;
        Ok((config, chosen))
    }
}

/// `doc` as the schema reads it and writes it back (`None` where the schema refuses it).
fn normalized(doc: &Table) -> Option<Table> {
    let config: TrainConfig = doc.clone().try_into().ok()?;
    Table::try_from(&config).ok()
}

/// The leaf keys at or under dotted `key` of `doc` (a table-valued `--set` chooses its leaves).
fn keys_under(doc: &Table, key: &str) -> BTreeSet<String> {
    let mut all = leaf_keys(doc);
    all.retain(|k| k == key || k.starts_with(&format!("{key}.")));
    if all.is_empty() {
        all.insert(key.to_string());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{preset_names, profile_names};

    fn sources(preset: &str) -> ConfigSources {
        ConfigSources {
            profile: "tiny".into(),
            preset: preset.into(),
            ..Default::default()
        }
    }
    #[test]
    fn every_preset_resolves_on_every_profile() {
        for profile in profile_names() {
            for preset in preset_names() {
                let s = ConfigSources {
                    profile: profile.into(),
                    preset: preset.into(),
                    ..Default::default()
                };
                let c = TrainConfig::resolve(&s)
                    .unwrap_or_else(|e| panic!("{profile} x {preset}: {e}"));
                // Round trip through the resolved TOML.
                let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
                assert_eq!(back, c, "{profile} x {preset}");
            }
        }
    }

    #[test]
    fn unknown_names_and_keys_are_errors_naming_them() {
        let e = TrainConfig::resolve(&sources("e99"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown preset `e99`") && e.contains("e12"),
            "{e}"
        );
        let mut s = sources("default");
        s.profile = "huge".into();
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(
            e.contains("unknown profile `huge`") && e.contains("tiny"),
            "{e}"
        );
        let mut s = sources("default");
        s.sets = vec!["actor.clip_ratio_hgh=0.3".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(
            e.contains("clip_ratio_hgh") && e.contains("clip_ratio_high"),
            "{e}"
        );
        let mut s = sources("default");
        s.sets = vec!["actor.loss_agg_mode=token-sum".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("token-sum") && e.contains("token-mean"), "{e}");
        let mut s = sources("default");
        s.sets = vec!["rollout.n=0".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("rollout.n = 0"), "{e}");
        let mut s = sources("default");
        s.unsets = vec!["hw_noise".into()];
        let e = TrainConfig::resolve(&s).unwrap_err().to_string();
        assert!(e.contains("--unset hw_noise"), "{e}");
    }

    #[test]
    fn overrides_and_unsets_take_effect() {
        let mut s = sources("default");
        s.sets = vec![
            "actor.clip_ratio_high=0.3".into(),
            "rollout.n=4".into(),
            "quant.weights=mxfp4:rceil".into(),
        ];
        s.unsets = vec!["aqn".into()];
        let c = TrainConfig::resolve(&s).unwrap();
        assert_eq!(c.actor.clip_ratio_high, 0.3);
        assert_eq!(c.rollout.n, 4);
        assert_eq!(c.quant.weights.label(), "mxfp4:rceil");
        assert!(c.aqn.is_none());
    }

    #[test]
    fn category_tables_of_the_profile_apply() {
        let s = |preset: &str| ConfigSources {
            profile: "qwen2.5-1.5b-gsm8k".into(),
            preset: preset.into(),
            ..Default::default()
        };
        let hw = TrainConfig::resolve(&s("e5")).unwrap();
        let lora = TrainConfig::resolve(&s("e6b")).unwrap();
        assert_eq!(hw.experiment.category, Category::Hw);
        assert_eq!(lora.experiment.category, Category::Lora);
        assert_eq!(
            (hw.optim.lr, hw.rollout.n, hw.batch.train()),
            (5e-7, 5, 128)
        );
        assert_eq!(
            (
                lora.optim.lr,
                lora.rollout.n,
                lora.batch.train(),
                lora.batch.generation()
            ),
            (1e-5, 8, 128, 256)
        );
        let qerl = TrainConfig::resolve(&s("e6b-qerl")).unwrap();
        assert_eq!((qerl.batch.train(), qerl.batch.generation()), (32, 32));
    }

    /// A `-tis` preset is its experiment with token-level TIS (C = 2) and nothing else changed.
    #[test]
    fn tis_variants_add_only_rollout_correction() {
        use crate::rl::rollout_corr::IsLevel;
        for base in ["e6b", "e12", "e13g"] {
            let s = |preset: String| ConfigSources {
                profile: "tiny".into(),
                preset,
                ..Default::default()
            };
            let plain = TrainConfig::resolve(&s(base.into())).unwrap();
            let tis = TrainConfig::resolve(&s(format!("{base}-tis"))).unwrap();
            let c = &tis.algorithm.rollout_correction;
            assert_eq!(
                (c.rollout_is, c.rollout_is_threshold),
                (IsLevel::Token, 2.0)
            );
            assert!(!plain.algorithm.rollout_correction.enabled());
            let mut same = tis.clone();
            same.algorithm.rollout_correction = plain.algorithm.rollout_correction.clone();
            same.experiment.id = plain.experiment.id.clone();
            same.experiment.notes = plain.experiment.notes.clone();
            assert_eq!(same, plain, "{base}-tis");
        }
    }
}
