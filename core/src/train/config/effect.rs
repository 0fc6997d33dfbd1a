//! When each configuration key takes effect. Every key of the schema has one rule in [`RULES`]
//! (a test walks the schema of every preset and profile to hold that): it always takes effect,
//! or only when another setting allows it (`algorithm.kl.coef` only with a KL placement,
//! `finetune.lora.*` only for LoRA runs, ...). A key the user chose that cannot take effect is
//! refused by name, with the setting that prevents it ([`TrainConfig::check_effect`]), instead
//! of being accepted and ignored.
//!
//! A key counts as chosen when a `--set` names it, or when a `--config` file gives it a value
//! other than the one the defaults, profile and preset already give (so a run's own
//! `config.toml`, which restates every key, can be passed back as `--config`). The presets are
//! held to the same rules by a test.
//!
//! Four keys take effect only within facts known once the model and data are loaded (the run's
//! length, the vocabulary, the test set): [`RunFacts`] and [`TrainConfig::check_run_effect`].

use std::collections::BTreeSet;

use super::{ConfigError, FinetuneMode, SYNTHETIC, TrainConfig};
use crate::phase::Phase;
use crate::qat::QuantMode;
use crate::rl::kl::KlPlacement;
use crate::rl::lr_schedule::LrScheduleKind;
use crate::rl::rollout_corr::{IsLevel, RsLevel};
use crate::task::RewardKind;

/// Why a key cannot take effect under `config` (`None`: it takes effect).
type Blocker = fn(&TrainConfig) -> Option<String>;

/// A key (or, ending in `.`, every key under a prefix) and when it takes effect.
pub struct Rule {
    /// `section.key`, or `section.` for every key below.
    pub key: &'static str,
    /// `None`: always; else what prevents it.
    pub blocker: Option<Blocker>,
}

const fn always(key: &'static str) -> Rule {
    Rule { key, blocker: None }
}

const fn when(key: &'static str, blocker: Blocker) -> Rule {
    Rule {
        key,
        blocker: Some(blocker),
    }
}

fn kl_off(c: &TrainConfig) -> Option<String> {
    (c.algorithm.kl.placement == KlPlacement::None).then(|| {
        "algorithm.kl.placement is \"none\" (no KL term); set it to \"loss\" or \"reward\"".into()
    })
}

fn filtering_off(c: &TrainConfig) -> Option<String> {
    (!c.algorithm.filter_groups.enable)
        .then(|| "algorithm.filter_groups.enable is false (no dynamic sampling)".into())
}

fn overlong_off(c: &TrainConfig) -> Option<String> {
    (!c.algorithm.reward.overlong_buffer.enable)
        .then(|| "algorithm.reward.overlong_buffer.enable is false".into())
}

fn not_gsm8k_reward(c: &TrainConfig) -> Option<String> {
    (c.algorithm.reward.kind == RewardKind::Dapo).then(|| {
        "algorithm.reward.kind is \"dapo\" (+1/-1, no format score); it applies to \"gsm8k\" and \"gsm8k-flexible\"".into()
    })
}

fn is_off(c: &TrainConfig) -> Option<String> {
    (c.algorithm.rollout_correction.rollout_is == IsLevel::Off).then(|| {
        "algorithm.rollout_correction.rollout_is is \"none\" (no importance-sampling weights); set it to \"token\" or \"sequence\"".into()
    })
}

/// Rollout correction reweights tokens by how the rollout policy's sampling differs from the
/// training policy. Without a difference (AQN noise in the rollout phase only, HW noise in the
/// rollout phase, W4A4's activation quantization, which sees each decoding step's tensor in the
/// rollout and the whole sequence in the trainer, a temperature other than 1, top-k, top-p or
/// min-p)
/// every weight is 1 up to rounding.
fn no_mismatch(c: &TrainConfig) -> Option<String> {
    let aqn_rollout_only = c
        .aqn
        .as_ref()
        .is_some_and(|a| a.phase.includes(Phase::Rollout) && !a.phase.includes(Phase::Training));
    let hw_rollout = c
        .hw_noise
        .as_ref()
        .is_some_and(|h| h.phase.includes(Phase::Rollout));
    let activations = c.quant.mode == QuantMode::W4A4;
    let r = &c.rollout;
    let sampler = r.temperature != 1.0 || r.top_k > 0 || r.top_p < 1.0 || r.min_p > 0.0;
    (!aqn_rollout_only && !hw_rollout && !activations && !sampler).then(|| {
        "the rollout policy samples from the training policy's own distribution (no AQN noise in \
         the rollout phase only, no HW noise in the rollout phase, no W4A4 activation \
         quantization, rollout.temperature 1, no top-k/top-p/min-p), so every importance ratio is 1 up \
         to rounding"
            .into()
    })
}

/// `rollout_is` on (`none` is always accepted: it turns a preset's correction off).
fn is_on_without_mismatch(c: &TrainConfig) -> Option<String> {
    is_off(c).is_none().then(|| no_mismatch(c)).flatten()
}

/// `rollout_rs` on (`none` is always accepted).
fn rs_on_without_mismatch(c: &TrainConfig) -> Option<String> {
    rs_off(c).is_none().then(|| no_mismatch(c)).flatten()
}

fn is_off_or_no_mismatch(c: &TrainConfig) -> Option<String> {
    is_off(c).or_else(|| no_mismatch(c))
}

fn rs_off_or_no_mismatch(c: &TrainConfig) -> Option<String> {
    rs_off(c).or_else(|| no_mismatch(c))
}

fn rs_off(c: &TrainConfig) -> Option<String> {
    (c.algorithm.rollout_correction.rollout_rs == RsLevel::Off).then(|| {
        "algorithm.rollout_correction.rollout_rs is \"none\" (no rejection); set it to \"token\", \"sequence\" or \"geometric\"".into()
    })
}

fn not_lora(c: &TrainConfig) -> Option<String> {
    (c.finetune.mode != FinetuneMode::Lora)
        .then(|| "finetune.mode is \"full\" (no adapters)".into())
}

fn unquantized(c: &TrainConfig) -> Option<String> {
    (c.quant.mode == QuantMode::Bf16)
        .then(|| "quant.mode is \"bf16\" (no fake quantization)".into())
}

fn no_activation_quant(c: &TrainConfig) -> Option<String> {
    (c.quant.mode != QuantMode::W4A4).then(|| {
        format!(
            "quant.mode is \"{}\"; activations are quantized only in \"w4a4\"",
            c.quant.mode
        )
    })
}

/// The quantizers' gradient reaches a trained tensor only through the weights of a full
/// fine-tuning run or through the activations of W4A4 (LoRA trains beside a frozen base).
fn gradient_unused(c: &TrainConfig) -> Option<String> {
    if let Some(why) = unquantized(c) {
        return Some(why);
    }
    (c.finetune.mode == FinetuneMode::Lora && c.quant.mode != QuantMode::W4A4).then(|| {
        "a LoRA run on a W4A16 base trains no quantized tensor (the quantizer's gradient goes to \
         the frozen weights only); it applies to finetune.mode = \"full\" or quant.mode = \"w4a4\""
            .into()
    })
}

fn no_synthetic_data(c: &TrainConfig) -> Option<String> {
    (c.data.train != SYNTHETIC && c.data.test != SYNTHETIC)
        .then(|| "neither data.train nor data.test is \"synthetic\"".into())
}

fn synthetic_template(_: &TrainConfig) -> Option<String> {
    Some("the built-in task's prompts follow data.prompt_template; set that key instead".into())
}

fn no_bare_questions(c: &TrainConfig) -> Option<String> {
    let bare = |s: &str| s == SYNTHETIC || s.ends_with(".jsonl");
    (!bare(&c.data.train) && !bare(&c.data.test)).then(|| {
        "data.train and data.test are verl parquet files, whose prompts are used as they are".into()
    })
}

fn not_cosine(c: &TrainConfig) -> Option<String> {
    (c.optim.schedule.lr_scheduler_type != LrScheduleKind::Cosine).then(|| {
        "optim.schedule.lr_scheduler_type is \"constant\"; it applies to \"cosine\"".into()
    })
}

fn bf16_eval_same(c: &TrainConfig) -> Option<String> {
    unquantized(c).map(|why| format!("{why}: the run's own evaluation is already unquantized"))
}

/// Every key of the schema, and when it takes effect. Order: the schema's.
pub const RULES: &[Rule] = &[
    always("experiment."),
    always("algorithm.estimator"),
    always("algorithm.entropy_coeff"),
    always("algorithm.reward.kind"),
    when("algorithm.reward.format_score", not_gsm8k_reward),
    always("algorithm.reward.overlong_buffer.enable"),
    when("algorithm.reward.overlong_buffer.", overlong_off),
    always("algorithm.kl.placement"),
    when("algorithm.kl.", kl_off),
    always("algorithm.filter_groups.enable"),
    when("algorithm.filter_groups.", filtering_off),
    when(
        "algorithm.rollout_correction.rollout_is",
        is_on_without_mismatch,
    ),
    when(
        "algorithm.rollout_correction.rollout_is_threshold",
        is_off_or_no_mismatch,
    ),
    when(
        "algorithm.rollout_correction.rollout_rs",
        rs_on_without_mismatch,
    ),
    when("algorithm.rollout_correction.", rs_off_or_no_mismatch),
    always("actor."),
    always("finetune.mode"),
    when("finetune.lora.", not_lora),
    always("quant.mode"),
    when("quant.activations", no_activation_quant),
    when("quant.gradient", gradient_unused),
    when("quant.", unquantized),
    // Present means on; every key of the sections is read (their own checks refuse the rest).
    always("aqn."),
    always("hw_noise."),
    always("model."),
    always("data.train"),
    always("data.test"),
    when("data.synthetic.prompt_template", synthetic_template),
    when("data.synthetic.", no_synthetic_data),
    when("data.prompt_template", no_bare_questions),
    always("rollout."),
    always("batch."),
    always("optim.lr"),
    always("optim.grad_clip"),
    always("optim.adamw."),
    always("optim.schedule.lr_scheduler_type"),
    always("optim.schedule.lr_warmup_steps"),
    always("optim.schedule.lr_warmup_steps_ratio"),
    when("optim.schedule.min_lr_ratio", not_cosine),
    when("optim.schedule.num_cycles", not_cosine),
    always("eval.test_freq"),
    always("eval.problems"),
    always("eval.batch_size"),
    when("eval.bf16", bf16_eval_same),
    always("trainer."),
];

/// The rule of `key`: the first whose key is `key` or a prefix of it.
pub fn rule_of(key: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| match r.key.strip_suffix('.') {
        Some(prefix) => key.starts_with(r.key) || key == prefix,
        None => key == r.key,
    })
}

/// The checkpoints a run of `run_steps` steps writes: every `save_freq` steps (0: none) and at
/// the final step.
fn checkpoints_written(run_steps: u64, save_freq: u64) -> u64 {
    match save_freq {
        0 => 1,
        f => run_steps / f + u64::from(!run_steps.is_multiple_of(f)),
    }
}

/// What the loaded model and data say about the run, for the keys bounded by them.
#[derive(Clone, Copy, Debug)]
pub struct RunFacts {
    /// The steps this run will take (after `trainer.max_steps`).
    pub run_steps: u64,
    /// The model's vocabulary.
    pub vocab_size: usize,
    /// Problems in the test set.
    pub test_problems: usize,
}

fn no_effect(key: &str, value: String, why: String) -> ConfigError {
    ConfigError::NoEffect {
        key: key.to_string(),
        value,
        why,
    }
}

impl TrainConfig {
    /// Refuses the first of the `chosen` keys that cannot take effect under this configuration,
    /// naming the setting that prevents it.
    pub fn check_effect(&self, chosen: &BTreeSet<String>) -> Result<(), ConfigError> {
        let values = toml::Table::try_from(self).map_err(ConfigError::Defaults)?;
        for key in chosen {
            let rule = rule_of(key).ok_or_else(|| {
                no_effect(key, String::new(), "aqn has no rule for this key".into())
            })?;
            if let Some(why) = rule.blocker.and_then(|b| b(self)) {
                let value = lookup(&values, key).map_or_else(String::new, |v| v.to_string());
                return Err(no_effect(key, value, why));
            }
        }
        Ok(())
    }

    /// Refuses the keys bounded by the loaded run that cannot take effect: a checkpoint period
    /// longer than the run, a checkpoint limit the run's checkpoints never exceed,
    /// `rollout.top_k` at or above the vocabulary (no truncation), more evaluation problems than
    /// the test set holds. Only keys in `chosen` are checked, so the
    /// defaults adapt (`eval.problems` = 256 on a smaller test set evaluates all of it).
    pub fn check_run_effect(
        &self,
        facts: &RunFacts,
        chosen: &BTreeSet<String>,
    ) -> Result<(), ConfigError> {
        let save = self.trainer.save_freq;
        if chosen.contains("trainer.save_freq") && save > facts.run_steps {
            return Err(no_effect(
                "trainer.save_freq",
                save.to_string(),
                format!(
                    "the run takes {} steps, so no periodic checkpoint would be written (the final one always is); give at most {} or 0",
                    facts.run_steps, facts.run_steps
                ),
            ));
        }
        let keep = self.trainer.max_actor_ckpt_to_keep;
        if let (true, Some(keep)) = (chosen.contains("trainer.max_actor_ckpt_to_keep"), keep) {
            let saves = checkpoints_written(facts.run_steps, save);
            if saves <= keep {
                return Err(no_effect(
                    "trainer.max_actor_ckpt_to_keep",
                    keep.to_string(),
                    format!(
                        "the run writes {saves} checkpoint(s) (trainer.save_freq = {save} over {} steps), so none would be removed; give less than {saves}",
                        facts.run_steps
                    ),
                ));
            }
        }
        let top_k = self.rollout.top_k;
        if chosen.contains("rollout.top_k") && top_k >= facts.vocab_size {
            return Err(no_effect(
                "rollout.top_k",
                top_k.to_string(),
                format!(
                    "the vocabulary has {} tokens, so it keeps every token; give less than {} (0: off)",
                    facts.vocab_size, facts.vocab_size
                ),
            ));
        }
        let problems = self.eval.problems;
        if chosen.contains("eval.problems") && problems > facts.test_problems {
            return Err(no_effect(
                "eval.problems",
                problems.to_string(),
                format!(
                    "the test set ({}) has {} problems; give at most {} (0: all of them)",
                    self.data.test, facts.test_problems, facts.test_problems
                ),
            ));
        }
        Ok(())
    }
}

/// The value at dotted `key` of `table`.
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// The dotted keys of every value of `table` that is not a table (arrays are values).
pub fn leaf_keys(table: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(t: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let key = format!("{prefix}{k}");
            match v {
                toml::Value::Table(inner) => walk(inner, &format!("{key}."), out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
    walk(table, "", &mut out);
    out
}

/// The keys of `after` whose values differ from `before` (or that `before` lacks).
pub fn changed_keys(before: &toml::Table, after: &toml::Table) -> BTreeSet<String> {
    leaf_keys(after)
        .into_iter()
        .filter(|k| lookup(before, k) != lookup(after, k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::ConfigSources;
    use super::*;
    use crate::catalogue::{preset_names, preset_text, profile_names};

    fn sources(profile: &str, preset: &str, sets: &[&str]) -> ConfigSources {
        ConfigSources {
            profile: profile.into(),
            preset: preset.into(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Every key of every preset at every profile, with the optional sections and keys turned
    /// on, has a rule; and every preset's own keys take effect under it.
    #[test]
    fn every_key_of_the_schema_has_a_rule_and_the_presets_follow_them() {
        let optional = [
            "quant.activations=\"nvfp4\"",
            "optim.schedule.lr_warmup_steps=1",
            "trainer.max_steps=1",
        ];
        let mut keys = BTreeSet::new();
        for profile in profile_names() {
            for preset in preset_names() {
                let config = TrainConfig::resolve(&sources(profile, preset, &[])).unwrap();
                keys.extend(leaf_keys(&toml::Table::try_from(&config).unwrap()));
                let own: toml::Table = preset_text(preset).unwrap().parse().unwrap();
                config
                    .check_effect(&leaf_keys(&own))
                    .unwrap_or_else(|e| panic!("preset {preset} at profile {profile}: {e}"));
            }
        }
        for set in optional {
            let mut s = sources("tiny", "e13a", &[set]);
            if set.starts_with("optim.schedule.lr_warmup_steps=") {
                s.unsets = vec!["optim.schedule.lr_warmup_steps_ratio".into()];
            }
            if let Ok(config) = TrainConfig::resolve(&s) {
                keys.extend(leaf_keys(&toml::Table::try_from(&config).unwrap()));
            }
        }
        for must in [
            "quant.activations",
            "trainer.max_steps",
            "hw_noise.model.scale",
        ] {
            assert!(keys.contains(must), "the walk misses {must}: {keys:?}");
        }
        let missing: Vec<&String> = keys.iter().filter(|k| rule_of(k).is_none()).collect();
        assert!(missing.is_empty(), "keys without a rule: {missing:?}");
        assert!(keys.len() > 70, "{} keys", keys.len());
    }

    /// The examples and one key of every conditional rule: refused by name, with the
    /// setting that prevents it; the same key accepted once that setting allows it.
    #[test]
    fn chosen_keys_that_cannot_take_effect_are_refused_by_name() {
        let cases: &[(&str, &[&str], &str, &[&str])] = &[
            (
                "default",
                &["algorithm.kl.coef=0.1"],
                "algorithm.kl.placement",
                &["algorithm.kl.placement=\"loss\""],
            ),
            (
                "e3a",
                &["finetune.lora.rank=8"],
                "finetune.mode",
                &["finetune.mode=\"lora\""],
            ),
            (
                "default",
                &[
                    "algorithm.filter_groups.enable=false",
                    "batch.gen_batch_size=16",
                    "algorithm.filter_groups.max_num_gen_batches=3",
                ],
                "filter_groups.enable is false",
                &["algorithm.filter_groups.enable=true"],
            ),
            (
                "default",
                &["algorithm.reward.overlong_buffer.len=8"],
                "overlong_buffer.enable",
                &["algorithm.reward.overlong_buffer.enable=true"],
            ),
            (
                "default",
                &["algorithm.reward.format_score=0"],
                "\"dapo\"",
                &["algorithm.reward.kind=\"gsm8k\""],
            ),
            (
                "e9b",
                &["quant.weights=\"mxfp4\""],
                "quant.mode is \"bf16\"",
                &["quant.mode=\"w4a16\""],
            ),
            (
                "default",
                &["quant.gradient=\"none\""],
                "LoRA run on a W4A16 base",
                &["quant.mode=\"w4a4\""],
            ),
            (
                "default",
                &["optim.schedule.min_lr_ratio=0.1"],
                "lr_scheduler_type",
                &["optim.schedule.lr_scheduler_type=\"cosine\""],
            ),
            (
                "default",
                &["data.synthetic.prompt_template=\"gsm8k\""],
                "data.prompt_template",
                &[],
            ),
            (
                "e9b",
                &["eval.bf16=true"],
                "quant.mode is \"bf16\"",
                &["quant.mode=\"w4a16\""],
            ),
        ];
        for (preset, sets, why, fix) in cases {
            let key = sets.last().unwrap().split('=').next().unwrap();
            let e = TrainConfig::resolve(&sources("tiny", preset, sets))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{key} = ")) && e.contains("no effect") && e.contains(why),
                "{preset} {sets:?}: {e}"
            );
            if !fix.is_empty() {
                let mut fixed = sets.to_vec();
                fixed.extend_from_slice(fix);
                TrainConfig::resolve(&sources("tiny", preset, &fixed))
                    .unwrap_or_else(|e| panic!("{preset} {fixed:?}: {e}"));
            }
        }
        // A table-valued --set chooses its leaves; --unset drops a choice.
        let e = TrainConfig::resolve(&sources("tiny", "e3a", &["finetune.lora={rank=8}"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("finetune.lora.rank = 8"), "{e}");
    }

    /// A --config file restating the resolved values (a run's own config.toml) chooses nothing;
    /// one that changes an inert key is refused.
    #[test]
    fn a_config_file_chooses_only_what_it_changes() {
        let config = TrainConfig::resolve(&sources("tiny", "default", &[])).unwrap();
        let mut s = sources("tiny", "default", &[]);
        s.file = Some(("config.toml".into(), config.to_toml()));
        let (again, chosen) = s.resolve_with_choices().unwrap();
        assert_eq!(again, config);
        assert!(chosen.is_empty(), "{chosen:?}");
        let mut text = config.to_toml();
        text = text.replace("coef = 0.001", "coef = 0.5");
        s.file = Some(("config.toml".into(), text));
        let e = s.resolve_with_choices().unwrap_err().to_string();
        assert!(e.contains("algorithm.kl.coef = 0.5"), "{e}");
    }

    #[test]
    fn keys_bounded_by_the_run_are_checked_only_when_chosen() {
        let config = TrainConfig::resolve(&sources(
            "tiny",
            "default",
            &[
                "trainer.save_freq=50",
                "rollout.top_k=300",
                "eval.problems=300",
            ],
        ))
        .unwrap();
        let facts = RunFacts {
            run_steps: 20,
            vocab_size: 300,
            test_problems: 256,
        };
        assert!(config.check_run_effect(&facts, &BTreeSet::new()).is_ok());
        for (key, needle) in [
            ("trainer.save_freq", "takes 20 steps"),
            ("rollout.top_k", "vocabulary has 300"),
            ("eval.problems", "has 256 problems"),
        ] {
            let chosen = BTreeSet::from([key.to_string()]);
            let e = config
                .check_run_effect(&facts, &chosen)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{key} = ")) && e.contains(needle),
                "{e}"
            );
        }
    }
}
