//! The checks of a resolved configuration: sizes and ranges of its own sections, combinations
//! across sections (batch sizes, base storage, dynamic sampling), and each owned section's own
//! checks (`[actor]`, `[quant]`, ...), whose errors are kept as the source.

use super::effect::{leaf_keys, lookup};
use super::{BaseStorage, ConfigError, FinetuneMode, TrainConfig};
use crate::aqn::AqnTargets;
use crate::site::{LinearKind, LinearSite};

/// A value out of range.
fn invalid(name: &str, value: String, requirement: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value,
        requirement: requirement.to_string(),
    }
}

/// Whether AQN on `targets` perturbs projection weights (which a packed base does not hold as
/// latent tensors). A pattern counts when it matches a projection weight's name in any of the
/// first 256 decoder layers.
fn aqn_needs_latent(targets: &AqnTargets) -> bool {
    match targets {
        AqnTargets::Rmsnorm { .. } => false,
        AqnTargets::Linear { .. } => true,
        AqnTargets::Pattern { pattern } => {
            pattern.matches("lm_head.weight")
                || pattern.matches("model.embed_tokens.weight")
                || (0..256).any(|l| {
                    LinearKind::DECODER.iter().any(|k| {
                        pattern.matches(&format!(
                            "{}.weight",
                            LinearSite::decoder(l, *k).module_path()
                        ))
                    })
                })
        }
    }
}

impl TrainConfig {
    /// Checks values and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_finite()?;
        self.validate_batch()?;
        self.base_storage_packed()?;
        self.validate_ranges()?;
        self.validate_sections()
    }

    /// No setting is a NaN or an infinity (checked over every float of the schema, arrays
    /// included, before any range check reads one).
    fn validate_finite(&self) -> Result<(), ConfigError> {
        let table = toml::Table::try_from(self).map_err(ConfigError::Defaults)?;
        for key in leaf_keys(&table) {
            let floats: Vec<f64> = match lookup(&table, &key) {
                Some(toml::Value::Float(f)) => vec![*f],
                Some(toml::Value::Array(items)) => {
                    items.iter().filter_map(|v| v.as_float()).collect()
                }
                _ => continue,
            };
            if let Some(f) = floats.iter().find(|f| !f.is_finite()) {
                return Err(invalid(&key, f.to_string(), "a finite number"));
            }
        }
        Ok(())
    }

    /// Batch sizes: positive, and consistent with each other.
    fn validate_batch(&self) -> Result<(), ConfigError> {
        let positive = [
            ("experiment.epochs", self.experiment.epochs as usize),
            ("rollout.n", self.rollout.n),
            ("rollout.max_response_len", self.rollout.max_response_len),
            ("batch.train_batch_size", self.batch.train_batch_size),
            ("batch.gen_batch_size", self.batch.gen_batch_size),
            ("batch.ppo_mini_batch_size", self.batch.ppo_mini_batch_size),
            ("batch.ppo_epochs", self.batch.ppo_epochs),
            ("eval.batch_size", self.eval.batch_size),
            ("eval.test_freq", self.eval.test_freq as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(invalid(name, "0".into(), "it must be at least 1"));
            }
        }
        if !(self.batch.train_batch_scale.is_finite() && self.batch.train_batch_scale > 0.0) {
            return Err(invalid(
                "batch.train_batch_scale",
                self.batch.train_batch_scale.to_string(),
                "a number > 0",
            ));
        }
        if self.batch.train() > self.batch.generation() {
            return Err(invalid(
                "batch.train_batch_size",
                self.batch.train().to_string(),
                &format!(
                    "it must not exceed batch.gen_batch_size ({})",
                    self.batch.generation()
                ),
            ));
        }
        if self.batch.generation() > self.batch.train() && !self.algorithm.filter_groups.enable {
            return Err(invalid(
                "batch.gen_batch_size",
                self.batch.generation().to_string(),
                &format!(
                    "it must equal batch.train_batch_size ({}) without dynamic sampling \
                     (algorithm.filter_groups.enable): the extra groups would be generated and thrown away",
                    self.batch.train()
                ),
            ));
        }
        if !self.batch.train().is_multiple_of(self.batch.mini()) {
            return Err(invalid(
                "batch.ppo_mini_batch_size",
                self.batch.mini().to_string(),
                &format!(
                    "it must divide batch.train_batch_size ({})",
                    self.batch.train()
                ),
            ));
        }
        Ok(())
    }

    /// Sampling, optimizer and loop settings in range.
    fn validate_ranges(&self) -> Result<(), ConfigError> {
        if !(self.rollout.temperature.is_finite() && self.rollout.temperature > 0.0) {
            return Err(invalid(
                "rollout.temperature",
                self.rollout.temperature.to_string(),
                "a number > 0 (rollouts sample)",
            ));
        }
        if !(self.rollout.top_p > 0.0 && self.rollout.top_p <= 1.0) {
            return Err(invalid(
                "rollout.top_p",
                self.rollout.top_p.to_string(),
                "a number in (0, 1]",
            ));
        }
        if !(self.rollout.min_p >= 0.0 && self.rollout.min_p <= 1.0) {
            return Err(invalid(
                "rollout.min_p",
                self.rollout.min_p.to_string(),
                "a number in [0, 1] (0: off)",
            ));
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            return Err(invalid(
                "optim.lr",
                self.optim.lr.to_string(),
                "a number > 0",
            ));
        }
        if !(self.optim.grad_clip.is_finite() && self.optim.grad_clip >= 0.0) {
            return Err(invalid(
                "optim.grad_clip",
                self.optim.grad_clip.to_string(),
                "a number >= 0 (0: off)",
            ));
        }
        if self.trainer.max_steps == Some(0) {
            return Err(invalid(
                "trainer.max_steps",
                "0".into(),
                "at least 1 (or remove it)",
            ));
        }
        if self.trainer.max_actor_ckpt_to_keep == Some(0) {
            return Err(invalid(
                "trainer.max_actor_ckpt_to_keep",
                "0".into(),
                "at least 1 (or remove it to keep every checkpoint)",
            ));
        }
        if self.algorithm.filter_groups.enable && self.rollout.n < 2 {
            return Err(invalid(
                "rollout.n",
                self.rollout.n.to_string(),
                "at least 2 with dynamic sampling (a group of one is never filtered)",
            ));
        }
        Ok(())
    }

    /// The owned sections' own checks.
    fn validate_sections(&self) -> Result<(), ConfigError> {
        self.actor
            .validate()
            .map_err(ConfigError::section("actor"))?;
        self.algorithm
            .kl
            .validate()
            .map_err(ConfigError::section("algorithm.kl"))?;
        self.algorithm
            .filter_groups
            .validate()
            .map_err(ConfigError::section("algorithm.filter_groups"))?;
        self.algorithm
            .rollout_correction
            .validate()
            .map_err(ConfigError::section("algorithm.rollout_correction"))?;
        self.algorithm
            .reward
            .validate(self.rollout.max_response_len)
            .map_err(ConfigError::section("algorithm.reward"))?;
        self.optim
            .adamw
            .validate()
            .map_err(ConfigError::section("optim.adamw"))?;
        self.quant
            .validate()
            .map_err(ConfigError::section("quant"))?;
        if self.finetune.mode == FinetuneMode::Lora {
            self.finetune
                .lora
                .validate()
                .map_err(ConfigError::section("finetune.lora"))?;
        }
        if let Some(hw) = &self.hw_noise {
            hw.validate().map_err(ConfigError::section("hw_noise"))?;
        }
        self.data
            .synthetic
            .validate()
            .map_err(ConfigError::section("data.synthetic"))
    }

    /// Whether the run holds its frozen base packed (`model.base_storage`, `auto` resolved); a
    /// `packed` that cannot apply is refused with the setting that prevents it.
    pub fn base_storage_packed(&self) -> Result<bool, ConfigError> {
        let blocker = if self.finetune.mode == FinetuneMode::Full {
            Some("finetune.mode = \"full\" trains the base weights")
        } else if self.eval.bf16 && self.quant.mode != crate::qat::QuantMode::Bf16 {
            Some("eval.bf16 = true evaluates the latent weights unquantized")
        } else if self
            .aqn
            .as_ref()
            .is_some_and(|a| aqn_needs_latent(&a.targets))
        {
            Some(
                "[aqn] targets linear weights, whose noisy copies are re-quantized from the latent weights",
            )
        } else {
            None
        };
        match (self.model.base_storage, blocker) {
            (BaseStorage::Latent, _) => Ok(false),
            (BaseStorage::Auto, b) => Ok(b.is_none()),
            (BaseStorage::Packed, None) => Ok(true),
            (BaseStorage::Packed, Some(why)) => Err(ConfigError::Invalid {
                name: "model.base_storage".into(),
                value: "packed".into(),
                requirement: format!(
                    "a packed base has no latent weights, and {why}; use \"latent\" or \"auto\""
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ConfigSources;
    use super::*;

    fn sources(preset: &str) -> ConfigSources {
        ConfigSources {
            profile: "tiny".into(),
            preset: preset.into(),
            ..Default::default()
        }
    }

    #[test]
    fn base_storage_resolves_and_refuses_what_needs_latent_weights() {
        let resolve = |preset: &str, sets: &[&str]| {
            let mut s = sources(preset);
            s.sets = sets.iter().map(|x| x.to_string()).collect();
            TrainConfig::resolve(&s)
        };
        // auto: packed for a LoRA run, latent where something needs the latent base.
        assert!(
            resolve("default", &[])
                .unwrap()
                .base_storage_packed()
                .unwrap()
        );
        assert!(!resolve("e3a", &[]).unwrap().base_storage_packed().unwrap());
        let bf16_eval = resolve("default", &["eval.bf16=true"]).unwrap();
        assert!(!bf16_eval.base_storage_packed().unwrap());
        let latent = resolve("default", &["model.base_storage=latent"]).unwrap();
        assert!(!latent.base_storage_packed().unwrap());
        // packed where it cannot apply: refused with the setting that prevents it.
        for (preset, sets, why) in [
            ("e3a", vec!["model.base_storage=packed"], "finetune.mode"),
            (
                "default",
                vec!["model.base_storage=packed", "eval.bf16=true"],
                "eval.bf16",
            ),
            (
                "default",
                vec!["model.base_storage=packed", "aqn.targets=linear"],
                "[aqn] targets linear weights",
            ),
        ] {
            let e = resolve(preset, &sets).unwrap_err().to_string();
            assert!(
                e.contains("model.base_storage") && e.contains(why),
                "{preset} {sets:?}: {e}"
            );
        }
        // Unknown names list the valid ones.
        let e = resolve("default", &["model.base_storage=compressed"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("compressed") && e.contains("latent"), "{e}");
        let e = resolve("default", &["model.dtype=f16"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("f16") && e.contains("bf16"), "{e}");
    }
}
