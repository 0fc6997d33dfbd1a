//! The reward function of a run: which scorer, and the optional overlong shaping (docs/spec.md section
//! 7). One call, [`RewardConfig::score`], turns a decoded response into the scalar the advantage
//! estimators see and the `acc` that DAPO's dynamic sampling filters on.
//!
//! | kind | correct | wrong | no answer | `acc` |
//! |---|---|---|---|---|
//! | `gsm8k` | 1.0 | `format_score` (0.0) | 0.0 | strict answer == ground truth |
//! | `gsm8k-flexible` | 1.0 | `format_score` (0.0) | 0.0 | flexible answer == ground truth |
//! | `dapo` | +1 | -1 | -1 | strict answer == ground truth |
//!
//! The overlong shaping ([`OverlongBufferConfig`]) is added to every kind's score when enabled,
//! as verl's DAPO reward manager adds it to whatever its scorer returns.

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

use super::dapo_reward::{OverlongBufferConfig, compute_dapo_score};
use super::error::TaskError;
use super::gsm8k_reward::{
    DEFAULT_CORRECT_SCORE, DEFAULT_FORMAT_SCORE, ExtractMethod, compute_gsm8k_score, is_correct,
};

named_enum! {
    /// The scorer of a response.
    RewardKind, "reward kind", TaskError {
        /// verl's GSM8K scorer, strict extraction (`#### N`): 1 / format_score / 0.
        Gsm8k => "gsm8k" | "gsm8k-strict",
        /// verl's GSM8K scorer, flexible extraction (the last number).
        Gsm8kFlexible => "gsm8k-flexible",
        /// DAPO: +1 correct, -1 otherwise (strict extraction).
        Dapo => "dapo",
    }
}

/// The reward settings (TOML: `[reward]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// The scorer (default `gsm8k`).
    pub kind: RewardKind,
    /// The GSM8K scorers' reward for a found but wrong answer (default 0.0).
    pub format_score: f64,
    /// DAPO's overlong shaping (default off).
    pub overlong_buffer: OverlongBufferConfig,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            kind: RewardKind::Gsm8k,
            format_score: DEFAULT_FORMAT_SCORE,
            overlong_buffer: OverlongBufferConfig::default(),
        }
    }
}

/// The reward of one response.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardOutcome {
    /// The scalar reward: the scorer's value plus `overlong_reward`.
    pub score: f64,
    /// Whether the extracted answer equals the ground truth.
    pub acc: bool,
    /// The overlong shaping term (0 when off or within the limit).
    pub overlong_reward: f64,
}

impl RewardConfig {
    /// The DAPO reward with an enabled overlong buffer.
    pub fn dapo(overlong_buffer: OverlongBufferConfig) -> Self {
        Self {
            kind: RewardKind::Dapo,
            format_score: DEFAULT_FORMAT_SCORE,
            overlong_buffer,
        }
    }

    /// Checks the settings; `max_response_len` is the generation limit in tokens.
    pub fn validate(&self, max_response_len: usize) -> Result<(), TaskError> {
        if !self.format_score.is_finite() {
            return Err(TaskError::InvalidSetting {
                name: "format_score",
                value: self.format_score.to_string(),
                requirement: "it must be a finite number".into(),
            });
        }
        if self.kind == RewardKind::Dapo && self.format_score != DEFAULT_FORMAT_SCORE {
            return Err(TaskError::InvalidSetting {
                name: "format_score",
                value: self.format_score.to_string(),
                requirement: "the dapo reward has no format score (it is +1 / -1); leave it at 0"
                    .into(),
            });
        }
        self.overlong_buffer.validate(max_response_len)
    }

    /// Whether any response can be scored correct against `ground_truth`: the ideal one,
    /// `#### GROUND_TRUTH` (the form every kind reads), scores `acc`. A ground truth no
    /// extraction can produce (`abc`, an empty string) is never matched.
    pub fn can_match(&self, ground_truth: &str) -> bool {
        self.score(&format!("#### {ground_truth}"), ground_truth, 0, 1)
            .acc
    }

    /// Scores a decoded response (special tokens and the EOS text removed) of `response_len`
    /// tokens against the ground truth.
    pub fn score(
        &self,
        response: &str,
        ground_truth: &str,
        response_len: usize,
        max_response_len: usize,
    ) -> RewardOutcome {
        let (base, acc) = match self.kind {
            RewardKind::Gsm8k | RewardKind::Gsm8kFlexible => {
                let method = if self.kind == RewardKind::Gsm8k {
                    ExtractMethod::Strict
                } else {
                    ExtractMethod::Flexible
                };
                (
                    compute_gsm8k_score(
                        response,
                        ground_truth,
                        method,
                        self.format_score,
                        DEFAULT_CORRECT_SCORE,
                    ),
                    is_correct(response, ground_truth, method),
                )
            }
            RewardKind::Dapo => compute_dapo_score(response, ground_truth),
        };
        let overlong_reward = self.overlong_buffer.penalty(response_len, max_response_len);
        RewardOutcome {
            score: base + overlong_reward,
            acc,
            overlong_reward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ground_truth_is_matchable_only_when_its_extraction_can_produce_it() {
        for kind in [
            RewardKind::Gsm8k,
            RewardKind::Gsm8kFlexible,
            RewardKind::Dapo,
        ] {
            let config = RewardConfig {
                kind,
                ..RewardConfig::default()
            };
            for truth in ["72", "-3", "1.5"] {
                assert!(config.can_match(truth), "{kind}: {truth}");
            }
            for truth in ["abc", "", "seven"] {
                assert!(!config.can_match(truth), "{kind}: {truth:?}");
            }
        }
    }

    #[test]
    fn kinds_score_as_tabled() {
        let gsm = RewardConfig::default();
        let flex = RewardConfig {
            kind: RewardKind::Gsm8kFlexible,
            ..RewardConfig::default()
        };
        let dapo = RewardConfig::dapo(OverlongBufferConfig::default());
        for (cfg, right, wrong, none) in [
            (&gsm, 1.0, 0.0, 0.0),
            (&flex, 1.0, 0.0, 0.0),
            (&dapo, 1.0, -1.0, -1.0),
        ] {
            assert_eq!(cfg.score("#### 12", "12", 5, 10).score, right);
            assert!(cfg.score("#### 12", "12", 5, 10).acc);
            assert_eq!(cfg.score("#### 13", "12", 5, 10).score, wrong);
            assert_eq!(cfg.score("none", "12", 5, 10).score, none);
        }
        // Flexible finds an unmarked answer, strict does not.
        assert_eq!(flex.score("it is 12", "12", 3, 10).score, 1.0);
        assert_eq!(gsm.score("it is 12", "12", 3, 10).score, 0.0);
    }

    #[test]
    fn overlong_shaping_is_added() {
        let cfg = RewardConfig::dapo(OverlongBufferConfig::enabled(4, 1.0));
        cfg.validate(20).unwrap();
        let out = cfg.score("#### 12", "12", 18, 20);
        assert_eq!(out.overlong_reward, -0.5);
        assert_eq!(out.score, 0.5);
        assert!(out.acc);
        assert_eq!(cfg.score("#### 11", "12", 20, 20).score, -2.0);
    }

    #[test]
    fn config_by_name_and_refusals() {
        let cfg: RewardConfig = serde_json::from_str(
            r#"{"kind": "dapo", "overlong_buffer": {"enable": true, "len": 4, "penalty_factor": 1.0}}"#,
        )
        .unwrap();
        assert_eq!(cfg.kind, RewardKind::Dapo);
        let err = serde_json::from_str::<RewardConfig>(r#"{"kind": "gsm9k"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gsm8k, gsm8k-flexible, dapo"), "{err}");
        assert!(serde_json::from_str::<RewardConfig>(r#"{"knd": "dapo"}"#).is_err());
        let bad = RewardConfig {
            format_score: 0.1,
            ..RewardConfig::dapo(OverlongBufferConfig::default())
        };
        assert!(
            bad.validate(10)
                .unwrap_err()
                .to_string()
                .contains("format_score")
        );
    }
}
