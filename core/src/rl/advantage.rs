//! Outcome advantages of GRPO (Shao et al., "DeepSeekMath", 2024) and Dr.GRPO (Liu et al.,
//! "Understanding R1-Zero-Like Training: A Critical Perspective", 2025), as verl's
//! `compute_grpo_outcome_advantage` (docs/spec.md section 7).
//!
//! A group is the responses to one prompt (samples with the same group id). With `s_i` the
//! scalar score of response `i` and `mean`, `std` over its group (`std` unbiased, `n - 1`):
//!
//! - GRPO: `A_i = (s_i - mean) / (std + 1e-6)`;
//! - Dr.GRPO: `A_i = s_i - mean` (no std normalization, verl's `norm_adv_by_std_in_grpo = false`).
//!
//! A group of size 1 uses `mean = 0`, `std = 1` (so its advantage is `s / (1 + 1e-6)`, or `s`),
//! and a group whose scores are all equal gets `A = 0`. The advantage of a response applies to
//! every one of its tokens (the trainer broadcasts it over the response mask). Advantages are not
//! differentiated, so this is plain f64 arithmetic.

use std::collections::HashMap;

use crate::named::named_enum;

use super::error::RlError;

/// verl's `epsilon` of the GRPO advantage: `A = (s - mean) / (std + GRPO_STD_EPSILON)`.
pub const GRPO_STD_EPSILON: f64 = 1e-6;
/// The mean verl uses for a group of one response.
pub const SINGLETON_GROUP_MEAN: f64 = 0.0;
/// The std verl uses for a group of one response.
pub const SINGLETON_GROUP_STD: f64 = 1.0;

named_enum! {
    /// The advantage estimator.
    AdvantageEstimator, "advantage estimator", RlError {
        /// GRPO: group-normalized by mean and std.
        Grpo => "grpo",
        /// Dr.GRPO: group mean subtracted, no std normalization.
        DrGrpo => "dr-grpo" | "dr_grpo" | "drgrpo",
    }
}

impl AdvantageEstimator {
    /// The advantages of `scores` grouped by `group_ids` (see the module docs).
    pub fn compute(self, scores: &[f64], group_ids: &[u64]) -> Result<Vec<f64>, RlError> {
        compute_grpo_outcome_advantage(scores, group_ids, self == AdvantageEstimator::Grpo)
    }
}

/// The mean and unbiased std of a group, verl's way (size 1: mean 0, std 1).
pub fn group_mean_std(scores: &[f64]) -> (f64, f64) {
    let n = scores.len();
    if n <= 1 {
        return (SINGLETON_GROUP_MEAN, SINGLETON_GROUP_STD);
    }
    let mean = scores.iter().sum::<f64>() / n as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// verl's `compute_grpo_outcome_advantage`: one advantage per sample; `norm_adv_by_std` selects
/// GRPO (true) or Dr.GRPO (false). Group ids are arbitrary labels; samples of a group need not be
/// adjacent.
pub fn compute_grpo_outcome_advantage(
    scores: &[f64],
    group_ids: &[u64],
    norm_adv_by_std: bool,
) -> Result<Vec<f64>, RlError> {
    if scores.len() != group_ids.len() {
        return Err(RlError::ShapeMismatch(format!(
            "{} scores but {} group ids",
            scores.len(),
            group_ids.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(RlError::InvalidInput(format!(
            "score {} of sample {i} is not a finite number",
            scores[i]
        )));
    }
    let mut groups: HashMap<u64, Vec<f64>> = HashMap::new();
    for (&id, &s) in group_ids.iter().zip(scores) {
        groups.entry(id).or_default().push(s);
    }
    let stats: HashMap<u64, (f64, f64)> = groups
        .iter()
        .map(|(&id, members)| (id, group_mean_std(members)))
        .collect();
    Ok(group_ids
        .iter()
        .zip(scores)
        .map(|(id, &s)| {
            let (mean, std) = stats[id];
            if norm_adv_by_std {
                (s - mean) / (std + GRPO_STD_EPSILON)
            } else {
                s - mean
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn grpo_by_hand() {
        // Group 7: [1, 0, 0, 1]: mean 0.5, unbiased var = 4 * 0.25 / 3 = 1/3.
        // Group 3: [2, 4]: mean 3, std = sqrt(2).
        let scores = [1.0, 2.0, 0.0, 0.0, 4.0, 1.0];
        let ids = [7, 3, 7, 7, 3, 7];
        let a = compute_grpo_outcome_advantage(&scores, &ids, true).unwrap();
        let s7 = (1.0f64 / 3.0).sqrt() + 1e-6;
        let s3 = 2.0f64.sqrt() + 1e-6;
        close(
            &a,
            &[
                0.5 / s7,
                -1.0 / s3,
                -0.5 / s7,
                -0.5 / s7,
                1.0 / s3,
                0.5 / s7,
            ],
        );
        // Dr.GRPO: only the mean.
        let d = compute_grpo_outcome_advantage(&scores, &ids, false).unwrap();
        close(&d, &[0.5, -1.0, -0.5, -0.5, 1.0, 0.5]);
        assert_eq!(
            AdvantageEstimator::DrGrpo.compute(&scores, &ids).unwrap(),
            d
        );
        assert_eq!(AdvantageEstimator::Grpo.compute(&scores, &ids).unwrap(), a);
    }

    #[test]
    fn groups_of_size_one_use_mean_0_std_1() {
        let a = compute_grpo_outcome_advantage(&[0.8, -1.0], &[1, 2], true).unwrap();
        close(&a, &[0.8 / (1.0 + 1e-6), -1.0 / (1.0 + 1e-6)]);
        let d = compute_grpo_outcome_advantage(&[0.8, -1.0], &[1, 2], false).unwrap();
        close(&d, &[0.8, -1.0]);
    }

    #[test]
    fn all_equal_rewards_give_zero() {
        for v in [1.0, 0.0, -1.0] {
            let a = compute_grpo_outcome_advantage(&[v; 5], &[4; 5], true).unwrap();
            assert_eq!(a, vec![0.0; 5]);
            let d = compute_grpo_outcome_advantage(&[v; 5], &[4; 5], false).unwrap();
            assert_eq!(d, vec![0.0; 5]);
        }
        // Advantages of a group sum to zero, and GRPO's have unit (unbiased) std.
        let scores = [0.3, 1.7, -0.2, 0.9, 0.0];
        let a = compute_grpo_outcome_advantage(&scores, &[0; 5], true).unwrap();
        assert!(a.iter().sum::<f64>().abs() < 1e-12);
        let (_, std) = group_mean_std(&a);
        assert!((std - 1.0).abs() < 1e-5, "{std}");
    }

    #[test]
    fn refusals() {
        let e = compute_grpo_outcome_advantage(&[1.0], &[1, 2], true).unwrap_err();
        assert!(e.to_string().contains("1 scores but 2 group ids"), "{e}");
        let e = compute_grpo_outcome_advantage(&[f64::NAN], &[1], true).unwrap_err();
        assert!(e.to_string().contains("sample 0"), "{e}");
        let e = "ppo".parse::<AdvantageEstimator>().unwrap_err().to_string();
        assert!(e.contains("grpo, dr-grpo"), "{e}");
    }
}
