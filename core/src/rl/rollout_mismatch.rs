//! How far the rollout policy's sampling is from the training policy (docs/spec.md section 9):
//! verl's off-policy diagnostics (`compute_offpolicy_metrics`), from the log-probs of the same
//! response tokens under both. AQN's noise and a quantized rollout make this mismatch on
//! purpose; these metrics say how large it is at each step.
//!
//! Inputs are ragged: row `i` holds the log-probs of response `i`'s tokens, no padding. With
//! `lr = logp_old - logp_rollout` per token (`rho = exp(lr)`) and a row's token means written
//! `mean_t`:
//!
//! ```text
//! kl               token mean of -lr                      (k1 estimate of KL(rollout || train))
//! k3_kl            token mean of exp(lr) - lr - 1         (k3, never negative)
//! training_log_ppl mean_i -mean_t logp_old                training_ppl  mean_i exp(-mean_t logp_old)
//! rollout_log_ppl  mean_i -mean_t logp_rollout            rollout_ppl   mean_i exp(-mean_t logp_rollout)
//! log_ppl_diff     mean_i d_i, d_i = mean_t logp_rollout - mean_t logp_old   (and |d|, max, min)
//! ppl_ratio        mean_i exp(d_i)
//! chi2_token       token mean of exp(clamp(lr, -20, 20))^2 - 1
//! chi2_seq         mean_i exp(2 clamp(sum_t lr, -20, 20)) - 1
//! ```
//!
//! Token means are masked means with verl's `1e-8` in the denominator; row means are over every
//! row. The [`crate::run::metric_keys`] constants are the keys.

use super::error::RlError;
use super::metrics::Metrics;
use crate::run::metric_keys::{
    CHI2_SEQ, CHI2_TOKEN, LOG_PPL_ABS_DIFF, LOG_PPL_DIFF, LOG_PPL_DIFF_MAX, LOG_PPL_DIFF_MIN,
    MISMATCH_K3_KL, MISMATCH_KL, PPL_RATIO, ROLLOUT_LOG_PPL, ROLLOUT_PPL, TRAINING_LOG_PPL,
    TRAINING_PPL,
};

/// verl's `SAFETY_BOUND`: log-ratios are clamped to +-20 before an exponential.
pub const SAFETY_BOUND: f64 = 20.0;
/// verl's `masked_mean` adds this to the token count.
pub const MASKED_MEAN_EPS: f64 = 1e-8;

/// The log-probs of a batch's response tokens under the training policy before the update
/// (`old`) and under the rollout policy as it sampled (`rollout`), row by row, unpadded.
#[derive(Clone, Copy, Debug)]
pub struct PairedLogProbs<'a> {
    /// `logp_old`, one row per response.
    pub old: &'a [Vec<f64>],
    /// `logp_rollout`, the same shape.
    pub rollout: &'a [Vec<f64>],
}

impl PairedLogProbs<'_> {
    /// Checks that both sides have the same rows and lengths.
    pub fn check(&self) -> Result<(), RlError> {
        if self.old.len() != self.rollout.len() {
            return Err(RlError::ShapeMismatch(format!(
                "{} rows of training log-probs, {} of rollout log-probs",
                self.old.len(),
                self.rollout.len()
            )));
        }
        for (i, (o, r)) in self.old.iter().zip(self.rollout).enumerate() {
            if o.len() != r.len() {
                return Err(RlError::ShapeMismatch(format!(
                    "row {i}: {} training log-probs, {} rollout log-probs",
                    o.len(),
                    r.len()
                )));
            }
        }
        Ok(())
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.old.len()
    }

    /// Row `i`'s `lr = logp_old - logp_rollout`, unclamped, in f64.
    pub fn log_ratio(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        self.old[i]
            .iter()
            .zip(&self.rollout[i])
            .map(|(&o, &r)| o - r)
    }
}

/// verl's masked mean over the tokens of `rows`: the sum over `1e-8` + the count.
pub fn token_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / (n as f64 + MASKED_MEAN_EPS)
}

/// The mean over rows (0 for none).
pub fn row_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The off-policy diagnostics of the module docs.
pub fn mismatch_metrics(lp: PairedLogProbs) -> Result<Metrics, RlError> {
    lp.check()?;
    let rows = 0..lp.rows();
    let row_token_mean = |v: &[f64]| token_mean(v.iter().copied());
    let mean_old: Vec<f64> = lp.old.iter().map(|v| row_token_mean(v)).collect();
    let mean_rollout: Vec<f64> = lp.rollout.iter().map(|v| row_token_mean(v)).collect();
    let diff: Vec<f64> = mean_rollout
        .iter()
        .zip(&mean_old)
        .map(|(r, o)| r - o)
        .collect();
    let all_lr = || rows.clone().flat_map(|i| lp.log_ratio(i));
    let mut m = Metrics::new();
    m.insert(TRAINING_LOG_PPL, row_mean(mean_old.iter().map(|x| -x)));
    m.insert(TRAINING_PPL, row_mean(mean_old.iter().map(|x| (-x).exp())));
    m.insert(ROLLOUT_LOG_PPL, row_mean(mean_rollout.iter().map(|x| -x)));
    m.insert(
        ROLLOUT_PPL,
        row_mean(mean_rollout.iter().map(|x| (-x).exp())),
    );
    m.insert(MISMATCH_KL, token_mean(all_lr().map(|x| -x)));
    m.insert(
        MISMATCH_K3_KL,
        token_mean(all_lr().map(|x| x.exp() - x - 1.0)),
    );
    m.insert(LOG_PPL_DIFF, row_mean(diff.iter().copied()));
    m.insert(LOG_PPL_ABS_DIFF, row_mean(diff.iter().map(|d| d.abs())));
    m.insert(
        LOG_PPL_DIFF_MAX,
        diff.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    m.insert(
        LOG_PPL_DIFF_MIN,
        diff.iter().copied().fold(f64::INFINITY, f64::min),
    );
    m.insert(PPL_RATIO, row_mean(diff.iter().map(|d| d.exp())));
    m.insert(
        CHI2_TOKEN,
        token_mean(all_lr().map(|x| (2.0 * x.clamp(-SAFETY_BOUND, SAFETY_BOUND)).exp())) - 1.0,
    );
    m.insert(
        CHI2_SEQ,
        row_mean(rows.map(|i| {
            let s: f64 = lp.log_ratio(i).sum();
            (2.0 * s.clamp(-SAFETY_BOUND, SAFETY_BOUND)).exp()
        })) - 1.0,
    );
    if lp.rows() == 0 {
        m.insert(LOG_PPL_DIFF_MAX, 0.0);
        m.insert(LOG_PPL_DIFF_MIN, 0.0);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_policies_show_no_mismatch() {
        let lp = vec![vec![-0.5, -1.25, -2.0], vec![-0.1]];
        let m = mismatch_metrics(PairedLogProbs {
            old: &lp,
            rollout: &lp,
        })
        .unwrap();
        for key in [MISMATCH_KL, MISMATCH_K3_KL, LOG_PPL_DIFF, LOG_PPL_ABS_DIFF] {
            assert!(m[key].abs() < 1e-12, "{key}: {}", m[key]);
        }
        assert!((m[PPL_RATIO] - 1.0).abs() < 1e-12);
        assert!(m[CHI2_TOKEN].abs() < 1e-7 && m[CHI2_SEQ].abs() < 1e-12);
        // Row 0's mean log-prob is -1.25, row 1's -0.1.
        assert!((m[TRAINING_LOG_PPL] - (1.25 + 0.1) / 2.0).abs() < 1e-7);
        assert!((m[TRAINING_PPL] - (1.25f64.exp() + 0.1f64.exp()) / 2.0).abs() < 1e-6);
        assert_eq!(m[TRAINING_PPL], m[ROLLOUT_PPL]);
    }

    #[test]
    fn diagnostics_by_hand() {
        // One response of two tokens: lr = [ln 2, 0].
        let old = vec![vec![0.5f64.ln(), -1.0]];
        let rollout = vec![vec![0.25f64.ln(), -1.0]];
        let m = mismatch_metrics(PairedLogProbs {
            old: &old,
            rollout: &rollout,
        })
        .unwrap();
        let ln2 = 2f64.ln();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(near(m[MISMATCH_KL], -ln2 / 2.0), "{m:?}");
        assert!(near(m[MISMATCH_K3_KL], (2.0 - ln2 - 1.0) / 2.0));
        assert!(near(m[CHI2_TOKEN], (4.0 + 1.0) / 2.0 - 1.0));
        assert!(near(m[CHI2_SEQ], 4.0 - 1.0));
        assert!(near(m[LOG_PPL_DIFF], -ln2 / 2.0));
        assert!(near(m[LOG_PPL_DIFF_MAX], m[LOG_PPL_DIFF_MIN]));
        assert!(near(m[PPL_RATIO], (-ln2 / 2.0).exp()));
    }

    #[test]
    fn ragged_sides_are_refused() {
        let a = vec![vec![0.0; 2]];
        let b = vec![vec![0.0; 3]];
        let e = mismatch_metrics(PairedLogProbs {
            old: &a,
            rollout: &b,
        })
        .unwrap_err();
        assert!(e.to_string().contains("row 0"), "{e}");
    }
}
