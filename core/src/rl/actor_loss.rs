//! The actor's loss for one (micro-)batch, assembled as verl's `DataParallelPPOActor.update_policy`
//! does:
//!
//! ```text
//! loss = pg_loss                                   compute_policy_loss_vanilla
//!      - entropy_coeff * agg_loss(entropy)         when entropy is given
//!      + kl.coef * agg_loss(kl(logp, ref))         when the KL placement is `loss`
//! ```
//!
//! every term aggregated with the policy config's `loss_agg_mode`. Metrics: the policy loss's,
//! `actor/pg_loss`, `actor/entropy`, `actor/kl_loss` and `actor/kl_coef`.

use burn::tensor::Tensor;

use super::agg_loss::AggNorm;
use super::entropy::compute_entropy_loss;
use super::error::RlError;
use super::kl::{KlConfig, KlPlacement, compute_kl_loss};
use super::metrics::{Metrics, PG_LOSS};
use super::policy_loss::{PolicyLossConfig, compute_policy_loss_vanilla};

/// The tensors of one actor update. Every tensor is [B, T].
#[derive(Clone, Debug)]
pub struct ActorLossInputs {
    /// The current policy's log-probs of the response tokens (differentiated).
    pub log_prob: Tensor<2>,
    /// The rollout policy's log-probs.
    pub old_log_prob: Tensor<2>,
    /// Each response's advantage, repeated over its tokens.
    pub advantages: Tensor<2>,
    /// 1 on the response tokens in the loss, 0 on padding (and on tokens rejected by rollout
    /// correction: they leave every aggregation's numerator and denominator).
    pub response_mask: Tensor<2>,
    /// Rollout correction's importance-sampling weights (docs/spec.md section 9), multiplying
    /// each token's policy loss (`None`: off).
    pub rollout_is_weights: Option<Tensor<2>>,
    /// The reference policy's log-probs (required when the KL placement is `loss`).
    pub ref_log_prob: Option<Tensor<2>>,
    /// Per-token entropy from [`super::entropy::entropy_from_logits`] (required when
    /// `entropy_coeff != 0`; when given with a zero coefficient it is only reported).
    pub entropy: Option<Tensor<2>>,
}

/// The actor loss and its metrics (see the module docs).
pub fn compute_actor_loss(
    inputs: ActorLossInputs,
    policy: &PolicyLossConfig,
    kl: &KlConfig,
    entropy_coeff: f64,
    norm: &AggNorm,
) -> Result<(Tensor<1>, Metrics), RlError> {
    kl.validate()?;
    let norm = AggNorm {
        loss_scale_factor: norm.loss_scale_factor.or(policy.loss_scale_factor),
        ..*norm
    };
    let (pg_loss, mut metrics) = compute_policy_loss_vanilla(
        inputs.old_log_prob,
        inputs.log_prob.clone(),
        inputs.advantages,
        inputs.response_mask.clone(),
        inputs.rollout_is_weights,
        policy,
        &norm,
    )?;
    metrics.insert(
        PG_LOSS,
        f64::from(pg_loss.clone().detach().into_scalar::<f32>()),
    );
    let mut loss = pg_loss;
    match (inputs.entropy, entropy_coeff != 0.0) {
        (Some(entropy), _) => {
            let (term, m) = compute_entropy_loss(
                entropy,
                inputs.response_mask.clone(),
                entropy_coeff,
                policy.loss_agg_mode,
                &norm,
            )?;
            metrics.extend(m);
            if entropy_coeff != 0.0 {
                loss = loss + term;
            }
        }
        (None, true) => {
            return Err(RlError::InvalidInput(format!(
                "entropy_coeff = {entropy_coeff} needs the per-token entropy"
            )));
        }
        (None, false) => {}
    }
    if kl.placement == KlPlacement::Loss {
        let Some(ref_log_prob) = inputs.ref_log_prob else {
            return Err(RlError::InvalidInput(
                "kl.placement = loss needs the reference policy's log-probs".into(),
            ));
        };
        let (term, m) = compute_kl_loss(
            inputs.log_prob,
            ref_log_prob,
            inputs.response_mask,
            kl,
            policy.loss_agg_mode,
            &norm,
        )?;
        metrics.extend(m);
        loss = loss + term;
    }
    Ok((loss, metrics))
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::rl::kl::KlEstimator;
    use crate::rl::metrics::{ENTROPY, KL_LOSS};

    fn t2(v: &[f32], device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
    }

    /// slime PR 657's example: five tokens, three rejected, weights kept. The rejected tokens
    /// leave the denominator too: (1.11 + 1.35) / 2 = 1.23, not / 5 = 0.49.
    #[test]
    fn rejected_tokens_leave_the_denominator_and_weights_scale_the_rest() {
        let device = Device::ndarray();
        let row = |v: &[f64]| {
            Tensor::<2>::from_data(
                burn::tensor::TensorData::new(v.iter().map(|&x| x as f32).collect(), [1, v.len()]),
                &device,
            )
        };
        let inputs = ActorLossInputs {
            log_prob: row(&[-1.0; 5]),
            old_log_prob: row(&[-1.0; 5]),
            advantages: row(&[-1.0; 5]),
            response_mask: row(&[1.0, 0.0, 0.0, 0.0, 1.0]),
            rollout_is_weights: Some(row(&[1.11, 0.5, 0.7, 0.9, 1.35])),
            ref_log_prob: None,
            entropy: None,
        };
        let (loss, m) = compute_actor_loss(
            inputs,
            &PolicyLossConfig::default(),
            &KlConfig::none(),
            0.0,
            &AggNorm::default(),
        )
        .unwrap();
        let l = f64::from(loss.into_scalar::<f32>());
        assert!((l - 1.23).abs() < 1e-6, "{l}");
        assert!((m[PG_LOSS] - 1.23).abs() < 1e-6);
    }

    #[test]
    fn terms_add_up() {
        let device = Device::ndarray();
        let inputs = ActorLossInputs {
            log_prob: t2(&[-1.0, -1.0], &device),
            old_log_prob: t2(&[-1.0, -1.0], &device),
            advantages: t2(&[0.5, 0.5], &device),
            response_mask: t2(&[1.0, 1.0], &device),
            rollout_is_weights: None,
            ref_log_prob: Some(t2(&[-1.5, -1.0], &device)),
            entropy: Some(t2(&[2.0, 1.0], &device)),
        };
        let kl = KlConfig {
            estimator: KlEstimator::K1,
            coef: 0.1,
            ..KlConfig::default()
        };
        let (loss, m) = compute_actor_loss(
            inputs.clone(),
            &PolicyLossConfig::default(),
            &kl,
            0.01,
            &AggNorm::default(),
        )
        .unwrap();
        // pg: -A r = -0.5 per token; entropy mean 1.5; k1 mean 0.25.
        let want = -0.5 - 0.01 * 1.5 + 0.1 * 0.25;
        assert!((f64::from(loss.into_scalar::<f32>()) - want).abs() < 1e-6);
        assert_eq!(m[PG_LOSS], -0.5);
        assert_eq!(m[ENTROPY], 1.5);
        assert_eq!(m[KL_LOSS], 0.25);
        // Missing inputs are refused, not skipped.
        let no_ref = ActorLossInputs {
            ref_log_prob: None,
            ..inputs.clone()
        };
        let e = compute_actor_loss(
            no_ref,
            &PolicyLossConfig::default(),
            &kl,
            0.0,
            &AggNorm::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("reference policy"), "{e}");
        let no_entropy = ActorLossInputs {
            entropy: None,
            ..inputs
        };
        let e = compute_actor_loss(
            no_entropy,
            &PolicyLossConfig::default(),
            &KlConfig::none(),
            0.01,
            &AggNorm::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("entropy_coeff = 0.01"), "{e}");
    }
}
