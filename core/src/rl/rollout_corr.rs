//! Rollout correction (docs/spec.md section 9): importance-sampling weights and rejection that
//! correct the policy gradient for tokens sampled by a rollout policy other than the training
//! policy (AQN's noise, a quantized rollout, HW-error injection, the sampler's temperature and
//! filters), as verl 0.7's `rollout_corr_helper.py` in its decoupled mode.
//!
//! With `lr = logp_old - logp_rollout` per response token and `S = sum_t lr` per response:
//!
//! ```text
//! IS  token:     w_t = exp(clamp(lr_t, -20, 20))
//!     sequence:  w_t = exp(clamp(S, -20, 20))           every token of the response
//!     truncated (TIS): w = min(w, C)                     C = rollout_is_threshold
//! RS  token:     r_t = exp(clamp(lr_t, -20, 20))
//!     sequence:  r   = exp(clamp(S, -20, 20))
//!     geometric: r   = exp(clamp(mean_t lr, -20, 20))
//!     a token is kept when lo <= r <= hi                 hi = rollout_rs_threshold,
//!                                                        lo = rollout_rs_threshold_lower or 1/hi
//! ```
//!
//! The weights multiply each token's policy loss before aggregation; rejection removes tokens
//! from the loss mask, so a rejected token leaves the numerator **and** the denominator of every
//! aggregation (not a zero weight over the original count: the normalization bug slime fixed in
//! its PR 657). The IS metrics are taken before truncation, as verl does; keys in
//! [`crate::run::metric_keys`].

use serde::{Deserialize, Serialize};

use super::error::RlError;
use super::metrics::Metrics;
use super::rollout_mismatch::{PairedLogProbs, SAFETY_BOUND, row_mean, token_mean};
use crate::named::named_enum;
use crate::run::metric_keys::{
    IS_EFF_SAMPLE_SIZE, IS_MAX, IS_MEAN, IS_MIN, IS_RATIO_FRACTION_HIGH, IS_RATIO_FRACTION_LOW,
    IS_SEQ_FRACTION_HIGH, IS_SEQ_FRACTION_LOW, IS_SEQ_MAX, IS_SEQ_MAX_DEVIATION, IS_SEQ_MEAN,
    IS_SEQ_MIN, IS_SEQ_STD, IS_STD, RS_MASKED_FRACTION, RS_SEQ_MASKED_FRACTION,
};

/// verl's default `rollout_is_threshold` (the truncation C of TIS).
pub const DEFAULT_IS_THRESHOLD: f64 = 2.0;

named_enum! {
    /// Where importance-sampling weights are computed (verl's `rollout_is`).
    #[derive(Default)]
    IsLevel, "rollout_is level", RlError {
        /// No weights (verl's `null`).
        #[default]
        Off => "none" | "null" | "off",
        /// One weight per token.
        Token => "token",
        /// One weight per response, the product of its tokens' ratios.
        Sequence => "sequence",
    }
}

named_enum! {
    /// Where rejection sampling decides (verl's `rollout_rs`).
    #[derive(Default)]
    RsLevel, "rollout_rs level", RlError {
        /// No rejection (verl's `null`).
        #[default]
        Off => "none" | "null" | "off",
        /// Each token on its own ratio.
        Token => "token",
        /// A whole response on the product of its ratios.
        Sequence => "sequence",
        /// A whole response on the geometric mean of its ratios.
        Geometric => "geometric",
    }
}

/// `algorithm.rollout_correction`, verl's names. Off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutCorrectionConfig {
    /// Importance-sampling weights: `none`, `token` or `sequence`.
    pub rollout_is: IsLevel,
    /// The truncation C of the weights (TIS; > 0, default 2).
    pub rollout_is_threshold: f64,
    /// Rejection: `none`, `token`, `sequence` or `geometric`.
    pub rollout_rs: RsLevel,
    /// The upper bound `hi` of a kept ratio (required with rejection).
    pub rollout_rs_threshold: Option<f64>,
    /// The lower bound `lo` (default `1 / hi`).
    pub rollout_rs_threshold_lower: Option<f64>,
}

impl Default for RolloutCorrectionConfig {
    fn default() -> Self {
        Self {
            rollout_is: IsLevel::Off,
            rollout_is_threshold: DEFAULT_IS_THRESHOLD,
            rollout_rs: RsLevel::Off,
            rollout_rs_threshold: None,
            rollout_rs_threshold_lower: None,
        }
    }
}

/// What a step's correction changes: the weights (with IS) and the kept tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    /// Per response, each token's truncated IS weight (`None` without IS).
    pub weights: Option<Vec<Vec<f64>>>,
    /// Per response, whether each token stays in the loss (all true without rejection).
    pub keep: Vec<Vec<bool>>,
    /// The IS and rejection metrics.
    pub metrics: Metrics,
}

impl RolloutCorrectionConfig {
    /// Whether the loss changes (IS or rejection on).
    pub fn enabled(&self) -> bool {
        self.rollout_is != IsLevel::Off || self.rollout_rs != RsLevel::Off
    }

    /// Checks the settings: thresholds finite and > 0, a rejection bound when rejection is on,
    /// `lo < hi`.
    pub fn validate(&self) -> Result<(), RlError> {
        let bad = |name, value: f64, requirement: &str| RlError::InvalidSetting {
            name,
            value: value.to_string(),
            requirement: requirement.to_string(),
        };
        let c = self.rollout_is_threshold;
        if !(c.is_finite() && c > 0.0) {
            return Err(bad(
                "algorithm.rollout_correction.rollout_is_threshold",
                c,
                "it must be a finite number > 0",
            ));
        }
        let positive = |name, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(bad(name, x, "it must be a finite number > 0"))
            }
            _ => Ok(()),
        };
        positive(
            "algorithm.rollout_correction.rollout_rs_threshold",
            self.rollout_rs_threshold,
        )?;
        positive(
            "algorithm.rollout_correction.rollout_rs_threshold_lower",
            self.rollout_rs_threshold_lower,
        )?;
        if self.rollout_rs != RsLevel::Off {
            let Some((lo, hi)) = self.rs_bounds() else {
                return Err(RlError::InvalidSetting {
                    name: "algorithm.rollout_correction.rollout_rs_threshold",
                    value: "(unset)".into(),
                    requirement: format!(
                        "rollout_rs = \"{}\" needs an upper bound on the kept ratio, e.g. 2.0",
                        self.rollout_rs
                    ),
                });
            };
            if lo >= hi {
                return Err(RlError::InvalidSetting {
                    name: "algorithm.rollout_correction.rollout_rs_threshold_lower",
                    value: lo.to_string(),
                    requirement: format!(
                        "the kept ratios [{lo}, {hi}] are empty or a single point: it must be below rollout_rs_threshold ({hi})"
                    ),
                });
            }
        }
        Ok(())
    }

    /// `(lo, hi)` of rejection (`None` without `rollout_rs_threshold`).
    pub fn rs_bounds(&self) -> Option<(f64, f64)> {
        let hi = self.rollout_rs_threshold?;
        Some((self.rollout_rs_threshold_lower.unwrap_or(1.0 / hi), hi))
    }

    /// The weights, the kept tokens and their metrics for a batch (module docs). Without IS the
    /// IS metrics are those of token-level weights, as diagnostics.
    pub fn correct(&self, lp: PairedLogProbs) -> Result<Correction, RlError> {
        self.validate()?;
        lp.check()?;
        let level = match self.rollout_is {
            IsLevel::Off => IsLevel::Token,
            l => l,
        };
        let raw = is_weights(lp, level);
        let mut metrics = is_metrics(lp, &raw, level, self.rollout_is_threshold);
        let c = self.rollout_is_threshold;
        let weights = (self.rollout_is != IsLevel::Off).then(|| {
            raw.iter()
                .map(|row| row.iter().map(|w| w.min(c)).collect())
                .collect()
        });
        let keep = match self.rs_bounds() {
            Some((lo, hi)) if self.rollout_rs != RsLevel::Off => {
                reject(lp, self.rollout_rs, lo, hi)
            }
            _ => lp.old.iter().map(|r| vec![true; r.len()]).collect(),
        };
        if self.rollout_rs != RsLevel::Off {
            metrics.extend(rs_metrics(&keep));
        }
        Ok(Correction {
            weights,
            keep,
            metrics,
        })
    }
}

/// The untruncated weights of `level` (Token or Sequence).
fn is_weights(lp: PairedLogProbs, level: IsLevel) -> Vec<Vec<f64>> {
    (0..lp.rows())
        .map(|i| match level {
            IsLevel::Sequence => {
                let s: f64 = lp.log_ratio(i).sum();
                vec![s.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp(); lp.old[i].len()]
            }
            _ => lp
                .log_ratio(i)
                .map(|x| x.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp())
                .collect(),
        })
        .collect()
}

/// verl's IS metrics of the untruncated weights `w` (the `rollout_is_*` keys).
fn is_metrics(lp: PairedLogProbs, w: &[Vec<f64>], level: IsLevel, c: f64) -> Metrics {
    let tokens = || w.iter().flatten().copied();
    let lo = 1.0 / c;
    let mut m = Metrics::new();
    m.insert(IS_MEAN, token_mean(tokens()));
    match level {
        IsLevel::Sequence => {
            let sums: Vec<f64> = (0..lp.rows()).map(|i| lp.log_ratio(i).sum()).collect();
            let max = sums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = sums.iter().copied().fold(f64::INFINITY, f64::min);
            m.insert(IS_MAX, max.min(SAFETY_BOUND).exp());
            m.insert(IS_MIN, min.exp());
            m.insert(
                IS_RATIO_FRACTION_HIGH,
                row_mean(sums.iter().map(|&s| f64::from(u8::from(s > c.ln())))),
            );
            m.insert(
                IS_RATIO_FRACTION_LOW,
                row_mean(sums.iter().map(|&s| f64::from(u8::from(s < lo.ln())))),
            );
        }
        _ => {
            m.insert(IS_MAX, tokens().fold(f64::NEG_INFINITY, f64::max));
            m.insert(IS_MIN, tokens().fold(f64::INFINITY, f64::min));
            m.insert(
                IS_RATIO_FRACTION_HIGH,
                token_mean(tokens().map(|x| f64::from(u8::from(x > c)))),
            );
            m.insert(
                IS_RATIO_FRACTION_LOW,
                token_mean(tokens().map(|x| f64::from(u8::from(x < lo)))),
            );
        }
    }
    // Spread of the weights clamped to [1/C, C].
    let n = w.iter().map(Vec::len).sum::<usize>();
    let clamped = || tokens().map(|x| x.clamp(lo, c));
    let mean_c = token_mean(clamped());
    let var = token_mean(clamped().map(|x| x * x)) - mean_c * mean_c;
    m.insert(IS_STD, if n > 1 { var.max(0.0).sqrt() } else { 0.0 });
    let ess = token_mean(clamped().map(|x| (x / (mean_c + 1e-8)).powi(2)));
    m.insert(IS_EFF_SAMPLE_SIZE, 1.0 / ess);
    // Per response: its mean weight.
    let s: Vec<f64> = w.iter().map(|r| token_mean(r.iter().copied())).collect();
    let seq_mean = row_mean(s.iter().copied());
    let seq_std = if s.len() > 1 {
        (s.iter().map(|x| (x - seq_mean).powi(2)).sum::<f64>() / (s.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    m.insert(IS_SEQ_MEAN, seq_mean);
    m.insert(IS_SEQ_STD, seq_std);
    m.insert(
        IS_SEQ_MAX,
        s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    m.insert(IS_SEQ_MIN, s.iter().copied().fold(f64::INFINITY, f64::min));
    m.insert(
        IS_SEQ_MAX_DEVIATION,
        s.iter().map(|x| (x - 1.0).abs()).fold(0.0, f64::max),
    );
    m.insert(
        IS_SEQ_FRACTION_HIGH,
        row_mean(s.iter().map(|&x| f64::from(u8::from(x > c)))),
    );
    m.insert(
        IS_SEQ_FRACTION_LOW,
        row_mean(s.iter().map(|&x| f64::from(u8::from(x < lo)))),
    );
    if n == 0 {
        for key in [IS_MAX, IS_MIN, IS_SEQ_MAX, IS_SEQ_MIN] {
            m.insert(key, 0.0);
        }
    }
    m
}

/// The kept tokens of rejection at `level` with bounds `[lo, hi]` on the ratio.
fn reject(lp: PairedLogProbs, level: RsLevel, lo: f64, hi: f64) -> Vec<Vec<bool>> {
    let kept = |log_r: f64| {
        let r = log_r.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp();
        r >= lo && r <= hi
    };
    (0..lp.rows())
        .map(|i| {
            let len = lp.old[i].len();
            match level {
                RsLevel::Sequence => vec![kept(lp.log_ratio(i).sum()); len],
                RsLevel::Geometric => {
                    vec![kept(token_mean(lp.log_ratio(i))); len]
                }
                _ => lp.log_ratio(i).map(kept).collect(),
            }
        })
        .collect()
}

/// The rejection metrics: the rejected share of tokens and of responses.
fn rs_metrics(keep: &[Vec<bool>]) -> Metrics {
    let mut m = Metrics::new();
    m.insert(
        RS_MASKED_FRACTION,
        token_mean(keep.iter().flatten().map(|&k| f64::from(u8::from(!k)))),
    );
    m.insert(
        RS_SEQ_MASKED_FRACTION,
        row_mean(
            keep.iter()
                .map(|r| f64::from(u8::from(r.iter().any(|&k| !k)))),
        ),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(old: &[Vec<f64>], rollout: &[Vec<f64>]) -> Correction {
        RolloutCorrectionConfig {
            rollout_is: IsLevel::Token,
            ..RolloutCorrectionConfig::default()
        }
        .correct(PairedLogProbs { old, rollout })
        .unwrap()
    }

    #[test]
    fn token_weights_are_ratios_truncated_at_the_threshold() {
        let ln = f64::ln;
        let c = lp(&[vec![ln(0.5), ln(0.9)]], &[vec![ln(0.1), ln(0.6)]]);
        let w = c.weights.unwrap();
        // Ratios 5 (truncated to 2) and 1.5.
        assert!(
            (w[0][0] - 2.0).abs() < 1e-6 && (w[0][1] - 1.5).abs() < 1e-6,
            "{w:?}"
        );
        // Metrics before truncation: mean (5 + 1.5) / 2, max 5; one token above C.
        assert!((c.metrics[IS_MEAN] - 3.25).abs() < 1e-5, "{:?}", c.metrics);
        assert!((c.metrics[IS_MAX] - 5.0).abs() < 1e-5);
        assert!((c.metrics[IS_RATIO_FRACTION_HIGH] - 0.5).abs() < 1e-7);
        assert_eq!(c.keep, vec![vec![true, true]]);
    }

    #[test]
    fn rejection_levels_decide_per_token_or_per_response() {
        let ln = f64::ln;
        // Ratios 3, 0.9, 1.0 in one response; 1.1 alone in another.
        let old = vec![vec![ln(0.3), ln(0.9), ln(0.5)], vec![ln(0.55)]];
        let rollout = vec![vec![ln(0.1), ln(1.0), ln(0.5)], vec![ln(0.5)]];
        let rs = |level, hi| {
            RolloutCorrectionConfig {
                rollout_rs: level,
                rollout_rs_threshold: Some(hi),
                ..RolloutCorrectionConfig::default()
            }
            .correct(PairedLogProbs {
                old: &old,
                rollout: &rollout,
            })
            .unwrap()
        };
        let token = rs(RsLevel::Token, 2.0);
        assert_eq!(token.keep, vec![vec![false, true, true], vec![true]]);
        assert!(token.weights.is_none());
        assert!((token.metrics[RS_MASKED_FRACTION] - 0.25).abs() < 1e-7);
        assert_eq!(token.metrics[RS_SEQ_MASKED_FRACTION], 0.5);
        // The product 2.7 is above 2: the whole first response goes.
        let seq = rs(RsLevel::Sequence, 2.0);
        assert_eq!(seq.keep, vec![vec![false; 3], vec![true]]);
        // The geometric mean 2.7^(1/3) = 1.39 is within [0.5, 2].
        let geo = rs(RsLevel::Geometric, 2.0);
        assert_eq!(geo.keep, vec![vec![true; 3], vec![true]]);
        // ... but not within [1/1.2, 1.2].
        assert_eq!(rs(RsLevel::Geometric, 1.2).keep[0], vec![false; 3]);
    }

    #[test]
    fn settings_are_checked_by_name() {
        let e = |c: RolloutCorrectionConfig| c.validate().unwrap_err().to_string();
        let s = e(RolloutCorrectionConfig {
            rollout_rs: RsLevel::Token,
            ..RolloutCorrectionConfig::default()
        });
        assert!(
            s.contains("rollout_rs_threshold") && s.contains("token"),
            "{s}"
        );
        let s = e(RolloutCorrectionConfig {
            rollout_rs: RsLevel::Token,
            rollout_rs_threshold: Some(2.0),
            rollout_rs_threshold_lower: Some(2.0),
            ..RolloutCorrectionConfig::default()
        });
        assert!(s.contains("rollout_rs_threshold_lower = 2"), "{s}");
        let s = e(RolloutCorrectionConfig {
            rollout_is_threshold: 0.0,
            ..RolloutCorrectionConfig::default()
        });
        assert!(s.contains("rollout_is_threshold = 0"), "{s}");
        let s = "geometric-mean".parse::<RsLevel>().unwrap_err().to_string();
        assert!(s.contains("none, token, sequence, geometric"), "{s}");
        assert!(!RolloutCorrectionConfig::default().enabled());
    }
}
