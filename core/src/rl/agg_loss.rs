//! verl's `agg_loss`: the one place where a per-token loss matrix `L` [B, T] and its response mask
//! `M` [B, T] become a scalar (docs/spec.md section 7). Every loss of this module tree (policy, KL,
//! entropy) goes through it.
//!
//! | mode | value |
//! |---|---|
//! | `token-mean` | `sum(L M) / N_tok`, `N_tok = sum(M)` |
//! | `seq-mean-token-sum` | `sum_b [sum_t L M]_b / N_seq` |
//! | `seq-mean-token-mean` | `sum_b ([sum_t L M]_b / ([sum_t M]_b + 1e-8)) / N_seq` |
//! | `seq-mean-token-sum-norm` | `sum(L M) / C` |
//!
//! `N_seq` counts the sequences with at least one response token (verl excludes fully masked
//! rows). `C` is the normalization constant `loss_scale_factor`: docs/spec.md's default is the maximum
//! response length (the trainer passes it); without one, verl (and this code) uses `T`, the padded
//! width of the batch, which varies from batch to batch. [`AggNorm`] can also replace `N_tok` and
//! `N_seq` by the totals of a whole mini-batch, as verl's engine workers do, so that gradient
//! accumulation over micro-batches gives the mini-batch's loss.
//!
//! Masked entries are zeroed before the multiply (`where(M, L, 0) * M`), as verl's `masked_sum`
//! does, so a NaN or infinite loss on padding cannot leak into the sum. One deviation: verl's
//! `token-mean` and `seq-mean` modes divide 0 by 0 (NaN) for a batch without a single response
//! token; here the denominators are at least 1, so such a batch has loss 0 (this changes nothing
//! else: token and sequence counts are integers).

use crate::named::named_enum;

use super::error::RlError;

/// verl's `1e-8` in `seq-mean-token-mean`'s per-sequence token mean.
pub const SEQ_TOKEN_COUNT_EPSILON: f64 = 1e-8;
/// The smallest token or sequence count divided by (see the module docs).
pub const MIN_COUNT: f64 = 1.0;

named_enum! {
    /// verl's `loss_agg_mode`.
    #[derive(Default)]
    AggMode, "loss aggregation mode (loss_agg_mode)", RlError {
        /// Mean over all response tokens of the batch (verl's default; DAPO's token-level loss).
        #[default]
        TokenMean => "token-mean",
        /// Sum over each sequence's tokens, mean over sequences.
        SeqMeanTokenSum => "seq-mean-token-sum",
        /// Mean over each sequence's tokens, mean over sequences (the original GRPO).
        SeqMeanTokenMean => "seq-mean-token-mean",
        /// Sum over all tokens divided by a constant (Dr.GRPO).
        SeqMeanTokenSumNorm => "seq-mean-token-sum-norm",
    }
}

/// Optional normalizers of [`agg_loss`] (all `None`: the micro-batch's own counts).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AggNorm {
    /// `token-mean`'s `N_tok` (verl's `batch_num_tokens`): the response tokens of the whole
    /// mini-batch when a micro-batch is one of several.
    pub batch_num_tokens: Option<f64>,
    /// The seq-mean modes' `N_seq` (verl's `global_batch_size`).
    pub global_batch_size: Option<f64>,
    /// `seq-mean-token-sum-norm`'s constant `C` (verl's `loss_scale_factor`); `None` uses `T`.
    pub loss_scale_factor: Option<f64>,
}

impl AggNorm {
    /// Checks that every given normalizer is a finite number > 0.
    pub fn validate(&self) -> Result<(), RlError> {
        for (name, v) in [
            ("batch_num_tokens", self.batch_num_tokens),
            ("global_batch_size", self.global_batch_size),
            ("loss_scale_factor", self.loss_scale_factor),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(RlError::InvalidSetting {
                    name,
                    value: v.to_string(),
                    requirement: "it must be a finite number > 0".into(),
                });
            }
        }
        Ok(())
    }
}

/// The plain reference of [`agg_loss`] on rows of f64 (the loop version the tensor version is
/// tested against). `loss` and `mask` are `[B][T]`.
pub fn agg_loss_reference(
    loss: &[Vec<f64>],
    mask: &[Vec<f64>],
    mode: AggMode,
    norm: &AggNorm,
) -> f64 {
    let masked = |l: f64, m: f64| if m != 0.0 { l * m } else { 0.0 };
    let row_sums: Vec<f64> = loss
        .iter()
        .zip(mask)
        .map(|(l, m)| l.iter().zip(m).map(|(&l, &m)| masked(l, m)).sum())
        .collect();
    let row_counts: Vec<f64> = mask.iter().map(|m| m.iter().sum()).collect();
    let n_seq = || {
        norm.global_batch_size
            .unwrap_or_else(|| row_counts.iter().filter(|&&c| c > 0.0).count() as f64)
            .max(MIN_COUNT)
    };
    let seq_sum = |values: &[f64]| -> f64 {
        values
            .iter()
            .zip(&row_counts)
            .filter(|(_, c)| **c > 0.0)
            .map(|(v, _)| v)
            .sum()
    };
    match mode {
        AggMode::TokenMean => {
            let n_tok = norm
                .batch_num_tokens
                .unwrap_or_else(|| row_counts.iter().sum())
                .max(MIN_COUNT);
            row_sums.iter().sum::<f64>() / n_tok
        }
        AggMode::SeqMeanTokenSum => seq_sum(&row_sums) / n_seq(),
        AggMode::SeqMeanTokenMean => {
            let means: Vec<f64> = row_sums
                .iter()
                .zip(&row_counts)
                .map(|(s, c)| s / (c + SEQ_TOKEN_COUNT_EPSILON))
                .collect();
            seq_sum(&means) / n_seq()
        }
        AggMode::SeqMeanTokenSumNorm => {
            let width = mask.first().map_or(0, Vec::len) as f64;
            row_sums.iter().sum::<f64>() / norm.loss_scale_factor.unwrap_or(width)
        }
    }
}

#[cfg(feature = "burn")]
pub use tensor::{agg_loss, masked_mean, masked_sum};

#[cfg(feature = "burn")]
mod tensor {
    use burn::tensor::Tensor;

    use super::{AggMode, AggNorm, MIN_COUNT, SEQ_TOKEN_COUNT_EPSILON};

    /// verl's `masked_sum`: `sum(where(M, L, 0) * M)` over all entries.
    pub fn masked_sum(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
        zero_masked(values, mask.clone()).mul(mask).sum()
    }

    /// verl's `masked_mean`: `masked_sum / (sum(M) + 1e-8)` (for metrics).
    pub fn masked_mean(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
        let count = mask.clone().sum().add_scalar(SEQ_TOKEN_COUNT_EPSILON);
        masked_sum(values, mask).div(count)
    }

    /// `where(M != 0, L, 0)`.
    fn zero_masked(values: Tensor<2>, mask: Tensor<2>) -> Tensor<2> {
        values.mask_fill(mask.equal_elem(0.0), 0.0)
    }

    /// verl's `agg_loss` (see the module docs): a differentiable scalar [1].
    ///
    /// # Shapes
    /// - `loss_mat`: [B, T] per-token losses
    /// - `loss_mask`: [B, T], 1 on response tokens, 0 on padding
    /// - output: [1]
    ///
    /// Normalizers in `norm` are assumed valid ([`AggNorm::validate`]).
    pub fn agg_loss(
        loss_mat: Tensor<2>,
        loss_mask: Tensor<2>,
        mode: AggMode,
        norm: &AggNorm,
    ) -> Tensor<1> {
        let [_, width] = loss_mask.dims();
        let masked = zero_masked(loss_mat, loss_mask.clone()).mul(loss_mask.clone());
        // Per-sequence sums, [B, 1], and the mask of sequences with at least one token.
        let seq = |masked: Tensor<2>| masked.sum_dim(1);
        let seq_counts = || loss_mask.clone().sum_dim(1);
        let seq_mean = |seq_values: Tensor<2>| {
            let present = seq_counts().greater_elem(0.0).float();
            let total = seq_values.mul(present.clone()).sum();
            match norm.global_batch_size {
                Some(n) => total.div_scalar(n),
                None => total.div(present.sum().clamp_min(MIN_COUNT)),
            }
        };
        match mode {
            AggMode::TokenMean => {
                let total = masked.sum();
                match norm.batch_num_tokens {
                    Some(n) => total.div_scalar(n),
                    None => total.div(loss_mask.sum().clamp_min(MIN_COUNT)),
                }
            }
            AggMode::SeqMeanTokenSum => seq_mean(seq(masked)),
            AggMode::SeqMeanTokenMean => {
                let means = seq(masked).div(seq_counts().add_scalar(SEQ_TOKEN_COUNT_EPSILON));
                seq_mean(means)
            }
            AggMode::SeqMeanTokenSumNorm => masked
                .sum()
                .div_scalar(norm.loss_scale_factor.unwrap_or(width as f64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        // Row 0: 3 tokens, row 1: 1 token, row 2: fully masked (its NaN must not leak).
        let loss = vec![
            vec![1.0, 2.0, 3.0, 9.0],
            vec![4.0, 7.0, 7.0, 7.0],
            vec![f64::NAN, 5.0, 5.0, 5.0],
        ];
        let mask = vec![
            vec![1.0, 1.0, 1.0, 0.0],
            vec![1.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0],
        ];
        (loss, mask)
    }

    #[test]
    fn each_mode_by_hand() {
        let (loss, mask) = rows();
        let n = AggNorm::default();
        let agg = |mode| agg_loss_reference(&loss, &mask, mode, &n);
        // token-mean: (1 + 2 + 3 + 4) / 4 tokens.
        assert_eq!(agg(AggMode::TokenMean), 2.5);
        // seq-mean-token-sum: (6 + 4) / 2 sequences with tokens.
        assert_eq!(agg(AggMode::SeqMeanTokenSum), 5.0);
        // seq-mean-token-mean: (6/3 + 4/1) / 2, up to verl's 1e-8.
        let want = (6.0 / (3.0 + 1e-8) + 4.0 / (1.0 + 1e-8)) / 2.0;
        assert_eq!(agg(AggMode::SeqMeanTokenMean), want);
        assert!((want - 3.0).abs() < 1e-7);
        // seq-mean-token-sum-norm: 10 / T (4) without a constant, 10 / C with one.
        assert_eq!(agg(AggMode::SeqMeanTokenSumNorm), 2.5);
        let c = AggNorm {
            loss_scale_factor: Some(20.0),
            ..AggNorm::default()
        };
        assert_eq!(
            agg_loss_reference(&loss, &mask, AggMode::SeqMeanTokenSumNorm, &c),
            0.5
        );
        // Mini-batch normalizers replace the counts.
        let g = AggNorm {
            batch_num_tokens: Some(8.0),
            global_batch_size: Some(5.0),
            loss_scale_factor: None,
        };
        assert_eq!(
            agg_loss_reference(&loss, &mask, AggMode::TokenMean, &g),
            10.0 / 8.0
        );
        assert_eq!(
            agg_loss_reference(&loss, &mask, AggMode::SeqMeanTokenSum, &g),
            2.0
        );
    }

    #[test]
    fn empty_batch_is_zero_not_nan() {
        let loss = vec![vec![1.0, 2.0]];
        let mask = vec![vec![0.0, 0.0]];
        for mode in AggMode::ALL {
            assert_eq!(
                agg_loss_reference(&loss, &mask, *mode, &AggNorm::default()),
                0.0
            );
        }
    }

    #[test]
    fn names_and_normalizer_checks() {
        assert_eq!(
            "seq-mean-token-sum-norm".parse(),
            Ok(AggMode::SeqMeanTokenSumNorm)
        );
        assert_eq!(AggMode::default(), AggMode::TokenMean);
        let e = "token_mean".parse::<AggMode>().unwrap_err().to_string();
        assert!(
            e.contains(
                "token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm"
            ),
            "{e}"
        );
        let bad = AggNorm {
            loss_scale_factor: Some(0.0),
            ..AggNorm::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("loss_scale_factor = 0")
        );
    }

    #[cfg(feature = "burn")]
    #[test]
    #[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
    fn tensor_version_matches_the_reference() {
        use burn::tensor::{Device, Tensor, TensorData};
        let device = Device::ndarray();
        let to_t = |rows: &[Vec<f64>]| {
            let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
            Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &device)
        };
        let mut cases = vec![rows()];
        // Random rows with random masks, one of them empty.
        let mut rng = crate::rng::CounterRng::new(11);
        for _ in 0..20 {
            let (b, t) = (1 + rng.below(5) as usize, 1 + rng.below(7) as usize);
            let loss: Vec<Vec<f64>> = (0..b)
                .map(|_| {
                    (0..t)
                        .map(|_| ((rng.normal() * 4.0) as f32) as f64)
                        .collect()
                })
                .collect();
            let mask: Vec<Vec<f64>> = (0..b)
                .map(|_| (0..t).map(|_| (rng.below(3) > 0) as u8 as f64).collect())
                .collect();
            cases.push((loss, mask));
        }
        let norms = [
            AggNorm::default(),
            AggNorm {
                batch_num_tokens: Some(13.0),
                global_batch_size: Some(3.0),
                loss_scale_factor: Some(9.0),
            },
        ];
        for (loss, mask) in &cases {
            for norm in &norms {
                for mode in AggMode::ALL {
                    let want = agg_loss_reference(loss, mask, *mode, norm);
                    let got = agg_loss(to_t(loss), to_t(mask), *mode, norm).into_scalar::<f32>();
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{mode}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
