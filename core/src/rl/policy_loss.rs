//! The clipped policy-gradient loss of PPO (Schulman et al., 2017) with clip-higher (DAPO, Yu et
//! al., 2025) and dual clip (Ye et al., "Mastering Complex Control in MOBA Games with Deep RL",
//! 2020), as verl's `compute_policy_loss_vanilla` (docs/spec.md section 7).
//!
//! Per response token, with `logp` the current policy's log-probability (differentiated),
//! `logp_old` the rollout policy's, and `A` the advantage:
//!
//! ```text
//! r  = exp(clamp(logp - logp_old, -20, 20))
//! L1 = -A r
//! L2 = -A clip(r, 1 - e_low, 1 + e_high)
//! L  = max(L1, L2)
//! L  = min(L, -A c)          only where A < 0 (dual clip)
//! ```
//!
//! aggregated with [`agg_loss`]. Metrics as verl: `actor/pg_clipfrac` (masked mean of
//! `L2 > L1`), `actor/pg_clipfrac_lower` (masked mean of `max(L1, L2) > -A c` where `A < 0`),
//! `actor/ppo_kl` (masked mean of `-(clamped logp - logp_old)`).

use serde::{Deserialize, Serialize};

use super::agg_loss::AggMode;
use super::error::RlError;

/// The clamp of `logp - logp_old` before the exponential (verl's `-20.0, 20.0`).
pub const LOG_RATIO_CLAMP: f64 = 20.0;
/// Default `e_low` and `e_high` (PPO's 0.2).
pub const DEFAULT_CLIP_RATIO: f64 = 0.2;
/// DAPO's clip-higher `e_high`.
pub const DAPO_CLIP_RATIO_HIGH: f64 = 0.28;
/// Default dual-clip constant `c` (verl's `clip_ratio_c`).
pub const DEFAULT_CLIP_RATIO_C: f64 = 3.0;

/// The policy-loss settings, verl's `actor_rollout_ref.actor` names (TOML: `[actor]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyLossConfig {
    /// `e_low`: the ratio is clipped below at `1 - e_low` (0 < e_low < 1; default 0.2).
    pub clip_ratio_low: f64,
    /// `e_high`: the ratio is clipped above at `1 + e_high` (> 0; default 0.2, DAPO 0.28).
    pub clip_ratio_high: f64,
    /// The dual-clip bound `c` for negative advantages (> 1; default 3).
    pub clip_ratio_c: f64,
    /// How token losses become the scalar loss (default `token-mean`).
    pub loss_agg_mode: AggMode,
    /// `seq-mean-token-sum-norm`'s constant (docs/spec.md: the maximum response length; `None`
    /// divides by the batch's padded width as verl does). Refused with the other modes.
    pub loss_scale_factor: Option<f64>,
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        Self {
            clip_ratio_low: DEFAULT_CLIP_RATIO,
            clip_ratio_high: DEFAULT_CLIP_RATIO,
            clip_ratio_c: DEFAULT_CLIP_RATIO_C,
            loss_agg_mode: AggMode::TokenMean,
            loss_scale_factor: None,
        }
    }
}

impl PolicyLossConfig {
    /// DAPO's settings: clip 0.2 / 0.28, token-mean.
    pub fn dapo() -> Self {
        Self {
            clip_ratio_high: DAPO_CLIP_RATIO_HIGH,
            ..Self::default()
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RlError> {
        let bad = |name, value: f64, requirement: &str| RlError::InvalidSetting {
            name,
            value: value.to_string(),
            requirement: requirement.to_string(),
        };
        if !(self.clip_ratio_low > 0.0 && self.clip_ratio_low < 1.0) {
            return Err(bad(
                "clip_ratio_low",
                self.clip_ratio_low,
                "it must be in (0, 1) so that 1 - clip_ratio_low is a positive ratio bound",
            ));
        }
        if !(self.clip_ratio_high > 0.0 && self.clip_ratio_high.is_finite()) {
            return Err(bad(
                "clip_ratio_high",
                self.clip_ratio_high,
                "it must be a finite number > 0",
            ));
        }
        if !(self.clip_ratio_c > 1.0 && self.clip_ratio_c.is_finite()) {
            return Err(bad(
                "clip_ratio_c",
                self.clip_ratio_c,
                "the dual-clip bound must be a finite number > 1 (verl asserts the same)",
            ));
        }
        match (self.loss_agg_mode, self.loss_scale_factor) {
            (_, Some(c)) if !(c.is_finite() && c > 0.0) => Err(bad(
                "loss_scale_factor",
                c,
                "it must be a finite number > 0",
            )),
            (AggMode::SeqMeanTokenSumNorm, _) | (_, None) => Ok(()),
            (mode, Some(c)) => Err(RlError::InvalidSetting {
                name: "loss_scale_factor",
                value: c.to_string(),
                requirement: format!(
                    "it only applies to loss_agg_mode = seq-mean-token-sum-norm, not {mode}"
                ),
            }),
        }
    }
}

/// One token of the reference computation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenPolicyLoss {
    /// The token's loss `L`.
    pub loss: f64,
    /// `L2 > L1`: the clipped surrogate was taken.
    pub clipped: bool,
    /// `A < 0` and `max(L1, L2) > -A c`: the dual clip was taken.
    pub clipped_lower: bool,
    /// `clamp(logp - logp_old, -20, 20)`.
    pub log_ratio: f64,
}

/// The plain per-token reference of the loss (see the module docs), in f64.
pub fn policy_loss_reference(
    log_prob: f64,
    old_log_prob: f64,
    advantage: f64,
    config: &PolicyLossConfig,
) -> TokenPolicyLoss {
    let log_ratio = (log_prob - old_log_prob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let ratio = log_ratio.exp();
    let l1 = -advantage * ratio;
    let l2 = -advantage * ratio.clamp(1.0 - config.clip_ratio_low, 1.0 + config.clip_ratio_high);
    let clip1 = l1.max(l2);
    let l3 = -advantage * config.clip_ratio_c;
    let negative = advantage < 0.0;
    TokenPolicyLoss {
        loss: if negative { clip1.min(l3) } else { clip1 },
        clipped: l2 > l1,
        clipped_lower: negative && clip1 > l3,
        log_ratio,
    }
}

#[cfg(feature = "burn")]
pub use tensor::compute_policy_loss_vanilla;

#[cfg(feature = "burn")]
mod tensor {
    use burn::tensor::Tensor;

    use super::super::agg_loss::{AggNorm, agg_loss, masked_mean};
    use super::super::error::RlError;
    use super::super::metrics::{Metrics, PG_CLIPFRAC, PG_CLIPFRAC_LOWER, PPO_KL};
    use super::{LOG_RATIO_CLAMP, PolicyLossConfig};

    /// verl's `compute_policy_loss_vanilla` (see the module docs): `(loss, metrics)`.
    /// Differentiable with respect to `log_prob`; the other inputs are constants.
    ///
    /// # Shapes
    /// - `old_log_prob`, `log_prob`, `advantages`, `response_mask`: [B, T] (the advantage of a
    ///   response repeated over its tokens; the mask 1 on response tokens, 0 on padding)
    /// - loss: [1]
    ///
    /// `norm` supplies mini-batch normalizers for micro-batches (see [`AggNorm`]); the config's
    /// `loss_scale_factor` is used when `norm` has none.
    #[allow(clippy::too_many_arguments)]
    pub fn compute_policy_loss_vanilla(
        old_log_prob: Tensor<2>,
        log_prob: Tensor<2>,
        advantages: Tensor<2>,
        response_mask: Tensor<2>,
        rollout_is_weights: Option<Tensor<2>>,
        config: &PolicyLossConfig,
        norm: &AggNorm,
    ) -> Result<(Tensor<1>, Metrics), RlError> {
        config.validate()?;
        norm.validate()?;
        let dims = log_prob.dims();
        for (name, d) in [
            ("old_log_prob", old_log_prob.dims()),
            ("advantages", advantages.dims()),
            ("response_mask", response_mask.dims()),
        ] {
            if d != dims {
                return Err(RlError::ShapeMismatch(format!(
                    "log_prob is {dims:?} but {name} is {d:?}"
                )));
            }
        }
        let old_log_prob = old_log_prob.detach();
        let advantages = advantages.detach();
        let response_mask = response_mask.detach();

        let log_ratio = (log_prob - old_log_prob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
        let ratio = log_ratio.clone().exp();
        let neg_adv = advantages.clone().neg();
        let pg1 = neg_adv.clone().mul(ratio.clone());
        let pg2 = neg_adv
            .clone()
            .mul(ratio.clamp(1.0 - config.clip_ratio_low, 1.0 + config.clip_ratio_high));
        let clip1 = pg1.clone().max_pair(pg2.clone());
        let pg3 = neg_adv.mul_scalar(config.clip_ratio_c);
        let clip2 = clip1.clone().min_pair(pg3.clone());
        let negative = advantages.lower_elem(0.0);
        let mut losses = clip1.clone().mask_where(negative.clone(), clip2);
        if let Some(w) = rollout_is_weights {
            if w.dims() != dims {
                return Err(RlError::ShapeMismatch(format!(
                    "log_prob is {dims:?} but rollout_is_weights is {:?}",
                    w.dims()
                )));
            }
            // Rollout correction (docs/spec.md section 9): each token's loss times its weight.
            losses = losses.mul(w.detach());
        }

        let clipfrac = masked_mean(
            pg2.detach().greater(pg1.detach()).float(),
            response_mask.clone(),
        );
        let lower = clip1.detach().greater(pg3).float().mul(negative.float());
        let clipfrac_lower = masked_mean(lower, response_mask.clone());
        let ppo_kl = masked_mean(log_ratio.detach().neg(), response_mask.clone());

        let norm = AggNorm {
            loss_scale_factor: norm.loss_scale_factor.or(config.loss_scale_factor),
            ..*norm
        };
        let loss = agg_loss(losses, response_mask, config.loss_agg_mode, &norm);
        let mut metrics = Metrics::new();
        metrics.insert(PG_CLIPFRAC, f64::from(clipfrac.into_scalar::<f32>()));
        metrics.insert(
            PG_CLIPFRAC_LOWER,
            f64::from(clipfrac_lower.into_scalar::<f32>()),
        );
        metrics.insert(PPO_KL, f64::from(ppo_kl.into_scalar::<f32>()));
        Ok((loss, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PolicyLossConfig {
        PolicyLossConfig {
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.28,
            clip_ratio_c: 3.0,
            ..PolicyLossConfig::default()
        }
    }

    #[test]
    fn token_loss_by_hand() {
        let c = cfg();
        let ln = f64::ln;
        // A > 0, r = 1.1 inside [0.8, 1.28]: L = -A r.
        let t = policy_loss_reference(ln(1.1), 0.0, 2.0, &c);
        assert!((t.loss + 2.2).abs() < 1e-12 && !t.clipped && !t.clipped_lower);
        // A > 0, r = 1.5 above 1 + e_high: the clipped term -A 1.28 is larger.
        let t = policy_loss_reference(ln(1.5), 0.0, 1.0, &c);
        assert!((t.loss + 1.28).abs() < 1e-12 && t.clipped);
        // A > 0, r = 0.5 below 1 - e_low: -A r = -0.5 is larger than -A 0.8: not clipped.
        let t = policy_loss_reference(ln(0.5), 0.0, 1.0, &c);
        assert!((t.loss + 0.5).abs() < 1e-12 && !t.clipped);
        // A < 0, r = 0.5: -A clip(r) = 0.8 > -A r = 0.5: clipped below.
        let t = policy_loss_reference(ln(0.5), 0.0, -1.0, &c);
        assert!((t.loss - 0.8).abs() < 1e-12 && t.clipped && !t.clipped_lower);
        // A < 0, r = 2 (within the dual clip): L = -A r = 2 < -A c = 3.
        let t = policy_loss_reference(ln(2.0), 0.0, -1.0, &c);
        assert!((t.loss - 2.0).abs() < 1e-12 && !t.clipped_lower);
        // A < 0, r = 5: the dual clip caps the loss at -A c = 1.5 for A = -0.5.
        let t = policy_loss_reference(ln(5.0), 0.0, -0.5, &c);
        assert!((t.loss - 1.5).abs() < 1e-12 && t.clipped_lower && !t.clipped);
        // A > 0 with r = 5 is not dual-clipped: L = -A 1.28.
        let t = policy_loss_reference(ln(5.0), 0.0, 0.5, &c);
        assert!((t.loss + 0.64).abs() < 1e-12 && !t.clipped_lower);
        // A = 0: zero loss, never clipped.
        let t = policy_loss_reference(3.0, 0.0, 0.0, &c);
        assert!(t.loss == 0.0 && !t.clipped && !t.clipped_lower);
        // The log-ratio clamp: a difference of 50 counts as 20.
        let t = policy_loss_reference(50.0, 0.0, -1e-9, &c);
        assert_eq!(t.log_ratio, 20.0);
        assert!((t.loss - 3e-9).abs() < 1e-20);
    }

    #[test]
    fn settings_are_checked() {
        cfg().validate().unwrap();
        PolicyLossConfig::dapo().validate().unwrap();
        let e = |c: PolicyLossConfig| c.validate().unwrap_err().to_string();
        assert!(
            e(PolicyLossConfig {
                clip_ratio_c: 1.0,
                ..cfg()
            })
            .contains("clip_ratio_c = 1")
        );
        assert!(
            e(PolicyLossConfig {
                clip_ratio_low: 1.0,
                ..cfg()
            })
            .contains("clip_ratio_low = 1")
        );
        assert!(
            e(PolicyLossConfig {
                clip_ratio_high: 0.0,
                ..cfg()
            })
            .contains("clip_ratio_high = 0")
        );
        let s = e(PolicyLossConfig {
            loss_scale_factor: Some(512.0),
            ..cfg()
        });
        assert!(
            s.contains("only applies to loss_agg_mode = seq-mean-token-sum-norm, not token-mean"),
            "{s}"
        );
        PolicyLossConfig {
            loss_agg_mode: AggMode::SeqMeanTokenSumNorm,
            loss_scale_factor: Some(512.0),
            ..cfg()
        }
        .validate()
        .unwrap();
        let parsed: PolicyLossConfig = serde_json::from_str(
            r#"{"clip_ratio_high": 0.28, "loss_agg_mode": "seq-mean-token-mean"}"#,
        )
        .unwrap();
        assert_eq!(parsed.loss_agg_mode, AggMode::SeqMeanTokenMean);
        assert!(serde_json::from_str::<PolicyLossConfig>(r#"{"clip_ratio": 0.2}"#).is_err());
    }

    #[cfg(feature = "burn")]
    #[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
    mod tensor {
        use burn::tensor::{Device, Tensor, TensorData};

        use super::super::super::agg_loss::{AggNorm, agg_loss_reference};
        use super::super::super::metrics::{PG_CLIPFRAC, PG_CLIPFRAC_LOWER, PPO_KL};
        use super::super::*;
        use super::cfg;
        use crate::rng::CounterRng;

        fn t2(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
            let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
            Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
        }

        fn values(t: Tensor<2>) -> Vec<f32> {
            t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        }

        /// Random inputs whose ratios land in every regime (inside, above, below, dual clip).
        fn random_batch(rng: &mut CounterRng) -> [Vec<Vec<f64>>; 4] {
            let (b, t) = (1 + rng.below(4) as usize, 1 + rng.below(6) as usize);
            fn draw(
                rng: &mut CounterRng,
                (b, t): (usize, usize),
                f: impl Fn(&mut CounterRng) -> f64,
            ) -> Vec<Vec<f64>> {
                (0..b)
                    .map(|_| (0..t).map(|_| (f(rng) as f32) as f64).collect())
                    .collect()
            }
            let old = draw(rng, (b, t), |r| -1.0 - r.next_f64() * 3.0);
            let delta = draw(rng, (b, t), |r| r.normal() * 0.8);
            let logp: Vec<Vec<f64>> = old
                .iter()
                .zip(&delta)
                .map(|(o, d)| {
                    o.iter()
                        .zip(d)
                        .map(|(a, b)| ((a + b) as f32) as f64)
                        .collect()
                })
                .collect();
            // Advantages per sequence (as the trainer broadcasts them), some negative.
            let adv: Vec<Vec<f64>> = (0..b)
                .map(|_| vec![((rng.normal() * 1.5) as f32) as f64; t])
                .collect();
            let mask = draw(rng, (b, t), |r| (r.below(4) > 0) as u8 as f64);
            [old, logp, adv, mask]
        }

        /// The loop reference and the tensor version agree on the loss, its gradient with
        /// respect to logp and the metrics, for every aggregation mode.
        #[test]
        fn loop_and_tensor_versions_agree() {
            let device = Device::ndarray().autodiff();
            let mut rng = CounterRng::new(42);
            let mut regimes = [0usize; 4];
            for case in 0..60 {
                let [old, logp, adv, mask] = random_batch(&mut rng);
                let config = PolicyLossConfig {
                    loss_agg_mode: AggMode::ALL[case % 4],
                    ..cfg()
                };
                let norm = AggNorm::default();
                // Reference: token losses, their aggregate and the analytic gradient.
                let tokens: Vec<Vec<TokenPolicyLoss>> = logp
                    .iter()
                    .zip(&old)
                    .zip(&adv)
                    .map(|((l, o), a)| {
                        l.iter()
                            .zip(o)
                            .zip(a)
                            .map(|((&l, &o), &a)| policy_loss_reference(l, o, a, &config))
                            .collect()
                    })
                    .collect();
                let loss_rows: Vec<Vec<f64>> = tokens
                    .iter()
                    .map(|r| r.iter().map(|t| t.loss).collect())
                    .collect();
                let want = agg_loss_reference(&loss_rows, &mask, config.loss_agg_mode, &norm);
                let n: f64 = mask.iter().flatten().sum();
                let masked_mean = |f: &dyn Fn(&TokenPolicyLoss) -> f64| {
                    tokens
                        .iter()
                        .flatten()
                        .zip(mask.iter().flatten())
                        .map(|(t, m)| f(t) * m)
                        .sum::<f64>()
                        / (n + 1e-8)
                };
                for (t, m) in tokens.iter().flatten().zip(mask.iter().flatten()) {
                    if *m > 0.0 {
                        regimes[usize::from(t.clipped) + 2 * usize::from(t.clipped_lower)] += 1;
                    }
                }

                let logp_t = t2(&logp, &device).require_grad();
                let (loss, metrics) = compute_policy_loss_vanilla(
                    t2(&old, &device),
                    logp_t.clone(),
                    t2(&adv, &device),
                    t2(&mask, &device),
                    None,
                    &config,
                    &norm,
                )
                .unwrap();
                let got = loss.clone().into_scalar::<f32>() as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
                let close = |key: &str, want: f64| {
                    let got = metrics[key];
                    assert!((got - want).abs() < 1e-5, "{key}: {got} vs {want}");
                };
                close(
                    PG_CLIPFRAC,
                    masked_mean(&|t| f64::from(u8::from(t.clipped))),
                );
                close(
                    PG_CLIPFRAC_LOWER,
                    masked_mean(&|t| f64::from(u8::from(t.clipped_lower))),
                );
                close(PPO_KL, masked_mean(&|t| -t.log_ratio));

                // Gradient: dL/dlogp by finite differences of the reference aggregate.
                let grads = loss.backward();
                let g = values(logp_t.grad(&grads).unwrap());
                let t = logp[0].len();
                for (i, row) in logp.iter().enumerate() {
                    for j in 0..t {
                        let h = 1e-6;
                        let bumped = |d: f64| {
                            let rows: Vec<Vec<f64>> = loss_rows
                                .iter()
                                .enumerate()
                                .map(|(bi, r)| {
                                    if bi != i {
                                        return r.clone();
                                    }
                                    let mut r = r.clone();
                                    r[j] = policy_loss_reference(
                                        row[j] + d,
                                        old[i][j],
                                        adv[i][j],
                                        &config,
                                    )
                                    .loss;
                                    r
                                })
                                .collect();
                            agg_loss_reference(&rows, &mask, config.loss_agg_mode, &norm)
                        };
                        let fd = (bumped(h) - bumped(-h)) / (2.0 * h);
                        let got = f64::from(g[i * t + j]);
                        // Kinks (the clip boundaries) are measure-zero; f32 noise is ~1e-6.
                        assert!(
                            (got - fd).abs() < 1e-3 * (1.0 + fd.abs()),
                            "grad [{i},{j}]: {got} vs {fd}"
                        );
                    }
                }
            }
            // Every regime was exercised: plain, clipped, dual-clipped.
            assert!(
                regimes[0] > 0 && regimes[1] > 0 && regimes[2] > 0,
                "{regimes:?}"
            );
        }

        /// Negative advantages far beyond the ratio bound hit the dual clip: the loss is -A c and
        /// no gradient flows.
        #[test]
        fn dual_clip_caps_the_loss_and_stops_the_gradient() {
            let device = Device::ndarray().autodiff();
            let config = cfg();
            let logp = t2(&[vec![f64::ln(10.0), f64::ln(0.9)]], &device).require_grad();
            let old = t2(&[vec![0.0, 0.0]], &device);
            let adv = t2(&[vec![-2.0, -2.0]], &device);
            let mask = t2(&[vec![1.0, 1.0]], &device);
            let (loss, m) = compute_policy_loss_vanilla(
                old,
                logp.clone(),
                adv,
                mask,
                None,
                &config,
                &AggNorm::default(),
            )
            .unwrap();
            // Token 0: -A c = 6 (r = 10); token 1: -A r = 1.8; token-mean 3.9.
            let l = loss.clone().into_scalar::<f32>();
            assert!((l - 3.9).abs() < 1e-6, "{l}");
            assert!((m[PG_CLIPFRAC_LOWER] - 0.5).abs() < 1e-6);
            assert_eq!(m[PG_CLIPFRAC], 0.0);
            let g = values(logp.grad(&loss.backward()).unwrap());
            // Token 0: capped, zero gradient; token 1: d(-A r)/dlogp / 2 = 2 * 0.9 / 2.
            assert_eq!(g[0], 0.0);
            assert!((g[1] - 0.9).abs() < 1e-6, "{g:?}");
        }

        #[test]
        fn shape_mismatch_is_refused() {
            let device = Device::ndarray();
            let a = Tensor::<2>::zeros([2, 3], &device);
            let b = Tensor::<2>::zeros([2, 4], &device);
            let e = compute_policy_loss_vanilla(
                a.clone(),
                a.clone(),
                b,
                a,
                None,
                &cfg(),
                &AggNorm::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("advantages is [2, 4]"), "{e}");
        }
    }
}
