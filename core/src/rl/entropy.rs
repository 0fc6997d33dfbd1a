//! The entropy of the policy's next-token distribution, for the entropy bonus (docs/spec.md section 7:
//! optional, coefficient 0 by default) and the `actor/entropy` metric, as verl's
//! `entropy_from_logits` and actor loss:
//!
//! `H = logsumexp(z) - sum_v softmax(z)_v z_v`, computed on `z = logits - max(logits)` (the
//! entropy does not change under a shift, and the shifted exponentials cannot overflow). The
//! bonus subtracts `coef * agg_loss(H)` from the actor loss. Logits are those the log-probs were
//! computed from (after the sampling temperature, as verl divides them before both).

#[cfg(feature = "burn")]
pub use tensor::{compute_entropy_loss, entropy_from_logits};

/// The plain reference: the entropy (nats) of `softmax(logits)`, in f64.
pub fn entropy_reference(logits: &[f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: Vec<f64> = logits.iter().map(|l| l - max).collect();
    let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
    lse - z.iter().map(|v| (v - lse).exp() * v).sum::<f64>()
}

#[cfg(feature = "burn")]
mod tensor {
    use burn::tensor::Tensor;

    use super::super::agg_loss::{AggMode, AggNorm, agg_loss};
    use super::super::error::RlError;
    use super::super::metrics::{ENTROPY, Metrics};

    /// Per-token entropy of the distribution each row of logits defines; differentiable.
    ///
    /// # Shapes
    /// - `logits`: [B, T, V]
    /// - output: [B, T]
    pub fn entropy_from_logits(logits: Tensor<3>) -> Tensor<2> {
        // The shift is a constant of the entropy, so it is detached (its gradient would be 0).
        let max = logits.clone().max_dim(2).detach();
        let z = logits - max;
        let lse = z.clone().exp().sum_dim(2).log();
        let p = (z.clone() - lse.clone()).exp();
        (lse - (p * z).sum_dim(2)).squeeze_dim::<2>(2)
    }

    /// The entropy bonus: `(-coef * agg_loss(H), metrics)` with `actor/entropy` (the aggregate),
    /// to be added to the actor loss as verl's `policy_loss -= entropy_agg * entropy_coeff`.
    ///
    /// # Shapes
    /// - `entropy`, `response_mask`: [B, T]; output [1]
    pub fn compute_entropy_loss(
        entropy: Tensor<2>,
        response_mask: Tensor<2>,
        coef: f64,
        mode: AggMode,
        norm: &AggNorm,
    ) -> Result<(Tensor<1>, Metrics), RlError> {
        if !coef.is_finite() {
            return Err(RlError::InvalidSetting {
                name: "entropy_coeff",
                value: coef.to_string(),
                requirement: "it must be a finite number".into(),
            });
        }
        norm.validate()?;
        if entropy.dims() != response_mask.dims() {
            return Err(RlError::ShapeMismatch(format!(
                "entropy is {:?} but response_mask is {:?}",
                entropy.dims(),
                response_mask.dims()
            )));
        }
        let agg = agg_loss(entropy, response_mask.detach(), mode, norm);
        let mut metrics = Metrics::new();
        metrics.insert(
            ENTROPY,
            f64::from(agg.clone().detach().into_scalar::<f32>()),
        );
        Ok((agg.mul_scalar(-coef), metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_by_hand() {
        // Uniform over 4: ln 4, whatever the offset.
        assert!((entropy_reference(&[0.0; 4]) - 4f64.ln()).abs() < 1e-15);
        assert!((entropy_reference(&[1e4; 4]) - 4f64.ln()).abs() < 1e-12);
        // Two outcomes with p = (1/(1+e), e/(1+e)).
        let p = 1.0 / (1.0 + 1f64.exp());
        let want = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        assert!((entropy_reference(&[0.0, 1.0]) - want).abs() < 1e-15);
        // A near-certain distribution has entropy near 0, never NaN.
        let h = entropy_reference(&[0.0, 1000.0, -1000.0]);
        assert!((0.0..1e-300).contains(&h), "{h}");
    }

    #[cfg(feature = "burn")]
    #[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
    mod tensor {
        use burn::tensor::{Device, Tensor, TensorData};

        use super::super::*;
        use crate::rl::agg_loss::{AggMode, AggNorm};
        use crate::rl::metrics::ENTROPY;
        use crate::rng::CounterRng;

        #[test]
        fn tensor_matches_reference_and_is_stable() {
            let device = Device::ndarray();
            let mut rng = CounterRng::new(9);
            let (b, t, v) = (2, 3, 7);
            let mut logits: Vec<f32> = (0..b * t * v)
                .map(|_| (rng.normal() * 3.0) as f32)
                .collect();
            // One row of huge logits (naive exp would overflow f32), one nearly one-hot.
            for x in &mut logits[..v] {
                *x += 500.0;
            }
            logits[v] = 80.0;
            let h = entropy_from_logits(Tensor::<3>::from_data(
                TensorData::new(logits.clone(), [b, t, v]),
                &device,
            ))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
            for (i, row) in logits.chunks(v).enumerate() {
                let row64: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
                let want = entropy_reference(&row64);
                assert!(h[i].is_finite());
                assert!(
                    (f64::from(h[i]) - want).abs() < 2e-5,
                    "row {i}: {} vs {want}",
                    h[i]
                );
            }
        }

        #[test]
        fn bonus_term_gradient_raises_entropy() {
            let device = Device::ndarray().autodiff();
            let logits = Tensor::<3>::from_data(
                TensorData::new(vec![2.0f32, 0.0, 0.0, 0.0], [1, 1, 4]),
                &device,
            )
            .require_grad();
            let mask = Tensor::<2>::ones([1, 1], &device);
            let h = entropy_from_logits(logits.clone());
            let (term, m) =
                compute_entropy_loss(h, mask, 0.01, AggMode::TokenMean, &AggNorm::default())
                    .unwrap();
            let p0 = 2f64.exp() / (2f64.exp() + 3.0);
            let p1 = 1.0 / (2f64.exp() + 3.0);
            let want_h = -(p0 * p0.ln() + 3.0 * p1 * p1.ln());
            assert!((m[ENTROPY] - want_h).abs() < 1e-6);
            assert!((f64::from(term.clone().into_scalar::<f32>()) + 0.01 * want_h).abs() < 1e-7);
            // dH/dz_v = -p_v (ln p_v + H); the term is -0.01 H, so minimizing it lowers the
            // dominant logit (positive gradient) and raises the others.
            let g = logits
                .grad(&term.backward())
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let dh0 = -p0 * (p0.ln() + want_h);
            assert!((f64::from(g[0]) - (-0.01 * dh0)).abs() < 1e-7, "{g:?}");
            assert!(g[0] > 0.0 && g[1] < 0.0);
            let e = compute_entropy_loss(
                Tensor::<2>::zeros([1, 2], &device),
                Tensor::<2>::ones([1, 3], &device),
                0.0,
                AggMode::TokenMean,
                &AggNorm::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("shape mismatch"), "{e}");
        }
    }
}
