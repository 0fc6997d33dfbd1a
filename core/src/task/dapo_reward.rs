//! DAPO's reward (Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
//! 2025; docs/spec.md section 7): +1 for a correct answer, -1 otherwise, plus the overlong shaping
//! of verl's `DAPORewardManager`.
//!
//! Correctness is judged by the GSM8K strict extraction ([`super::gsm8k_reward`]): the tasks of
//! this project end their answers with `#### N`. (verl's `math_dapo` scorer extracts `\boxed{}`
//! or `Answer:` for MATH-style data; its +1/-1 and `acc` semantics are the same.)
//!
//! Overlong shaping, with `L_max` the maximum response length and `L_buf` the buffer length:
//! `r_len = min(-(len - (L_max - L_buf)) / L_buf * factor, 0)`, added to the score. It is 0 up to
//! `len = L_max - L_buf` and falls linearly to `-factor` at `len = L_max`; verl computes it for
//! every response when the buffer is enabled, so it applies exactly when `len > L_max - L_buf`.
//! `len` is the number of response tokens (EOS included), as verl's `valid_response_length`.

use serde::{Deserialize, Serialize};

use super::error::TaskError;
use super::gsm8k_reward::{ExtractMethod, is_correct};

/// The reward of a correct answer.
pub const DAPO_CORRECT_REWARD: f64 = 1.0;
/// The reward of a wrong or missing answer.
pub const DAPO_INCORRECT_REWARD: f64 = -1.0;
/// verl's default `overlong_buffer.penalty_factor`.
pub const DEFAULT_OVERLONG_PENALTY_FACTOR: f64 = 1.0;

/// DAPO's +1/-1 correctness reward: `(reward, acc)`.
pub fn compute_dapo_score(response: &str, ground_truth: &str) -> (f64, bool) {
    let acc = is_correct(response, ground_truth, ExtractMethod::Strict);
    let reward = if acc {
        DAPO_CORRECT_REWARD
    } else {
        DAPO_INCORRECT_REWARD
    };
    (reward, acc)
}

/// verl's `reward_model.overlong_buffer` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlongBufferConfig {
    /// Whether the shaping is applied (default false).
    pub enable: bool,
    /// `L_buf`: the buffer length in tokens (>= 1 and <= the maximum response length).
    pub len: usize,
    /// The penalty at the maximum length (>= 0; default 1.0).
    pub penalty_factor: f64,
}

impl Default for OverlongBufferConfig {
    fn default() -> Self {
        Self {
            enable: false,
            len: 0,
            penalty_factor: DEFAULT_OVERLONG_PENALTY_FACTOR,
        }
    }
}

impl OverlongBufferConfig {
    /// An enabled buffer of `len` tokens with the given penalty factor.
    pub fn enabled(len: usize, penalty_factor: f64) -> Self {
        Self {
            enable: true,
            len,
            penalty_factor,
        }
    }

    /// Checks the settings against the maximum response length `max_response_len` (verl asserts
    /// `max_resp_len >= overlong_buffer.len`; a zero-length buffer would divide by zero).
    pub fn validate(&self, max_response_len: usize) -> Result<(), TaskError> {
        if !self.enable {
            return Ok(());
        }
        if self.len == 0 || self.len > max_response_len {
            return Err(TaskError::InvalidSetting {
                name: "overlong_buffer.len",
                value: self.len.to_string(),
                requirement: format!(
                    "it must be between 1 and the maximum response length ({max_response_len})"
                ),
            });
        }
        if !(self.penalty_factor.is_finite() && self.penalty_factor >= 0.0) {
            return Err(TaskError::InvalidSetting {
                name: "overlong_buffer.penalty_factor",
                value: self.penalty_factor.to_string(),
                requirement: "it must be a finite number >= 0".into(),
            });
        }
        Ok(())
    }

    /// The shaping term for a response of `response_len` tokens: 0 when disabled or when
    /// `response_len <= max_response_len - len`, else
    /// `-(response_len - (max_response_len - len)) / len * penalty_factor`.
    /// Call [`OverlongBufferConfig::validate`] first.
    pub fn penalty(&self, response_len: usize, max_response_len: usize) -> f64 {
        if !self.enable || self.len == 0 {
            return 0.0;
        }
        let expected_len = max_response_len as f64 - self.len as f64;
        let exceed_len = response_len as f64 - expected_len;
        // min(-exceed / buf * factor, 0), written so that no -0.0 appears below the threshold.
        if exceed_len <= 0.0 {
            0.0
        } else {
            -exceed_len / self.len as f64 * self.penalty_factor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_one_minus_one() {
        assert_eq!(compute_dapo_score("2 + 2 = 4. #### 4", "4"), (1.0, true));
        assert_eq!(compute_dapo_score("#### 5", "4"), (-1.0, false));
        assert_eq!(compute_dapo_score("4", "4"), (-1.0, false));
    }

    #[test]
    fn overlong_shaping_at_and_past_the_boundary() {
        // L_max = 20, L_buf = 4: free up to 16 tokens, -factor at 20.
        let cfg = OverlongBufferConfig::enabled(4, 1.0);
        cfg.validate(20).unwrap();
        assert_eq!(cfg.penalty(0, 20), 0.0);
        assert_eq!(cfg.penalty(16, 20), 0.0);
        assert!(cfg.penalty(16, 20).is_sign_positive());
        assert_eq!(cfg.penalty(17, 20), -0.25);
        assert_eq!(cfg.penalty(18, 20), -0.5);
        assert_eq!(cfg.penalty(20, 20), -1.0);
        // A factor scales it linearly.
        let half = OverlongBufferConfig::enabled(4, 0.5);
        assert_eq!(half.penalty(19, 20), -0.375);
        // A buffer as long as L_max penalizes every token.
        let all = OverlongBufferConfig::enabled(20, 1.0);
        assert_eq!(all.penalty(1, 20), -0.05);
        // Disabled: nothing.
        assert_eq!(OverlongBufferConfig::default().penalty(20, 20), 0.0);
    }

    #[test]
    fn refused_settings() {
        let e = OverlongBufferConfig::enabled(0, 1.0)
            .validate(20)
            .unwrap_err();
        assert!(e.to_string().contains("overlong_buffer.len = 0"), "{e}");
        let e = OverlongBufferConfig::enabled(21, 1.0)
            .validate(20)
            .unwrap_err();
        assert!(
            e.to_string().contains("maximum response length (20)"),
            "{e}"
        );
        let e = OverlongBufferConfig::enabled(4, -1.0)
            .validate(20)
            .unwrap_err();
        assert!(e.to_string().contains("penalty_factor = -1"), "{e}");
        // Disabled settings are not checked.
        OverlongBufferConfig::default().validate(0).unwrap();
        let cfg: Result<OverlongBufferConfig, _> =
            serde_json::from_str(r#"{"enable": true, "lenn": 4}"#);
        assert!(cfg.is_err());
    }
}
