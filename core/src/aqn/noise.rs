//! [`Aqn`]: the schedule, the resolved targets and the RIN multipliers of a run, and the draw of
//! one step's noisy model.
//!
//! `apply(&model, step, seed)` returns a **copy** whose targeted parameters are
//! `w_clean + N(0, (sigma(step) m_l)^2)` (per element, standard normals from the counter RNG keyed
//! by `(seed, step, parameter name)`), and leaves `model` untouched: the clean model is the cache,
//! and restoring is going back to it, so noise never accumulates and every draw is reproducible.
//! Non-targeted parameters of the copy are the clean tensors themselves.

use std::path::Path;

use burn::module::Param;
use burn::tensor::Tensor;

use super::audit::{AqnAudit, AqnTargetAudit};
use super::targets::{AqnTarget, resolve};
use super::{AqnConfig, AqnError};
use crate::checkpoint::NamedParamMapper;
use crate::hw_noise::{NoiseKey, NoiseSource};
use crate::model::Qwen2ForCausalLM;
use crate::phase::{Phase, Phases};
use crate::rin::{RinConfig, RinPolicy};
use crate::schedule::{RunLength, SigmaSchedule};
use crate::srdd::SrddReport;

/// Domain tag of the AQN noise streams (distinct from hardware-noise site names).
const AQN_DOMAIN: &str = "aqn/";

/// The AQN of a run.
#[derive(Clone, Debug)]
pub struct Aqn {
    schedule: SigmaSchedule,
    targets: Vec<AqnTarget>,
    phase: Phases,
    rin: Option<RinConfig>,
    /// The per-layer errors the RIN policy reads (zeros for policies that read none).
    errors: Vec<f64>,
    num_layers: usize,
}

impl Aqn {
    /// Builds the schedule for the run's length, resolves the targets on `model`, and reads the
    /// SRDD report named by `config.rin.report` (if any).
    pub fn new(
        config: &AqnConfig,
        model: &Qwen2ForCausalLM,
        run: RunLength,
    ) -> Result<Self, AqnError> {
        let report = match config.rin.as_ref().and_then(|r| r.report.as_deref()) {
            Some(path) => Some(read_report(path)?),
            None => None,
        };
        Self::with_report(config, model, run, report.as_ref())
    }

    /// [`Self::new`] with the SRDD report given in memory (it takes precedence over
    /// `config.rin.report`).
    pub fn with_report(
        config: &AqnConfig,
        model: &Qwen2ForCausalLM,
        run: RunLength,
        report: Option<&SrddReport>,
    ) -> Result<Self, AqnError> {
        let s = &config.schedule;
        let schedule = SigmaSchedule::build(s.kind, s.sigma_start, s.sigma_end, s.stages, run)?;
        let targets = resolve(model, &config.targets)?;
        let num_layers = model.num_layers();
        let rin = config.rin.as_ref().map(|r| r.policy.clone());
        let errors = match (&rin, report) {
            (None, _) => vec![0.0; num_layers],
            (Some(rin), Some(report)) => {
                if report.config.num_layers != num_layers {
                    return Err(AqnError::LayerCount {
                        what: format!("the SRDD report of {}", report.config.model_path),
                        found: report.config.num_layers,
                        expected: num_layers,
                    });
                }
                report.layer_values(rin.metric)
            }
            (Some(rin), None) => {
                let reads_errors = match &rin.policy {
                    RinPolicy::Uniform {} | RinPolicy::Zones(_) => false,
                    RinPolicy::Targeted(t) => t.layers.is_none(),
                    _ => true,
                };
                if reads_errors {
                    return Err(AqnError::RinNeedsReport {
                        policy: rin.label(),
                    });
                }
                vec![0.0; num_layers]
            }
        };
        let aqn = Self {
            schedule,
            targets,
            phase: config.phase,
            rin,
            errors,
            num_layers,
        };
        // Refuse a policy that cannot produce multipliers now rather than at step 1.
        aqn.multipliers(1)?;
        Ok(aqn)
    }

    /// The sigma schedule.
    pub fn schedule(&self) -> &SigmaSchedule {
        &self.schedule
    }

    /// The targeted tensors.
    pub fn targets(&self) -> &[AqnTarget] {
        &self.targets
    }

    /// The phases whose model gets the noise.
    pub fn phases(&self) -> Phases {
        self.phase
    }

    /// Whether the model of `phase` gets the noise.
    pub fn noises(&self, phase: Phase) -> bool {
        self.phase.includes(phase)
    }

    /// The RIN multipliers at `step`, one per decoder layer (all 1 without RIN).
    pub fn multipliers(&self, step: u64) -> Result<Vec<f64>, AqnError> {
        let m = match &self.rin {
            None => vec![1.0; self.num_layers],
            Some(rin) => rin.multipliers(&self.errors, step, self.schedule.total_steps())?,
        };
        if m.len() != self.num_layers {
            return Err(AqnError::LayerCount {
                what: "the RIN multiplier vector".into(),
                found: m.len(),
                expected: self.num_layers,
            });
        }
        Ok(m)
    }

    /// The noisy copy of `model` for `step` and its audit (see the module docs). Refuses a step
    /// outside the run, and a step where sigma > 0 but every target's multiplier is 0.
    pub fn apply(
        &self,
        model: &Qwen2ForCausalLM,
        step: u64,
        seed: u64,
    ) -> Result<(Qwen2ForCausalLM, AqnAudit), AqnError> {
        let sigma = self.schedule.sigma(step)?;
        let multipliers = self.multipliers(step)?;
        let plan: Vec<(AqnTarget, f64, f64)> = self
            .targets
            .iter()
            .map(|t| {
                let m = t.layer.map_or(1.0, |l| multipliers[l]);
                (t.clone(), m, sigma * m)
            })
            .collect();
        if sigma > 0.0 && plan.iter().all(|(_, _, s)| *s == 0.0) {
            return Err(AqnError::AllMultipliersZero {
                step,
                sigma,
                multipliers,
            });
        }
        let mut mapper = Perturb {
            plan: &plan,
            seed,
            step,
            stds: vec![None; plan.len()],
            error: None,
        };
        let noisy = model.clone().map_named(&mut mapper);
        if let Some(e) = mapper.error {
            return Err(e);
        }
        // A noised projection weight invalidates its cached Q(W).
        let noisy = if plan.iter().any(|(t, _, s)| *s > 0.0 && !is_norm(&t.name)) {
            noisy.refresh_quantized_weights()
        } else {
            noisy
        };
        let targets = plan
            .iter()
            .zip(mapper.stds)
            .map(|((t, m, s), std)| AqnTargetAudit {
                name: t.name.clone(),
                layer: t.layer,
                multiplier: *m,
                sigma: *s,
                realized_std: std.unwrap_or(0.0),
                elements: t.elements,
            })
            .collect();
        Ok((
            noisy,
            AqnAudit {
                step,
                sigma,
                multipliers,
                targets,
            },
        ))
    }
}

fn is_norm(name: &str) -> bool {
    name.ends_with("layernorm.weight") || name == "model.norm.weight"
}

fn read_report(path: &Path) -> Result<SrddReport, AqnError> {
    let text = std::fs::read_to_string(path).map_err(|source| AqnError::ReportFile {
        path: path.display().to_string(),
        source,
    })?;
    SrddReport::from_json(&text).map_err(|source| AqnError::ReportInvalid {
        path: path.display().to_string(),
        source,
    })
}

/// Adds each target's noise and measures it.
struct Perturb<'a> {
    plan: &'a [(AqnTarget, f64, f64)],
    seed: u64,
    step: u64,
    stds: Vec<Option<f64>>,
    error: Option<AqnError>,
}

/// Population standard deviation of `a - b`, in f64.
fn std_of_difference(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().max(1) as f64;
    let d = a.iter().zip(b).map(|(&x, &y)| f64::from(x) - f64::from(y));
    let mean = d.clone().sum::<f64>() / n;
    (d.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

fn host<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>, AqnError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| AqnError::Read {
            name: name.to_string(),
            reason: format!("{e:?}"),
        })
}

impl NamedParamMapper for Perturb<'_> {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(i) = self.plan.iter().position(|(t, _, _)| t.name == name) else {
            return param;
        };
        let sigma = self.plan[i].2;
        if sigma == 0.0 || self.error.is_some() {
            self.stds[i] = Some(0.0);
            return param;
        }
        let key = NoiseKey::new(
            self.seed,
            self.step,
            NoiseKey::site_id(&format!("{AQN_DOMAIN}{name}")),
            0,
        );
        let mut measured = None;
        let param = param.map(|w| {
            let require_grad = w.is_require_grad();
            let dims = w.dims();
            let n: usize = dims.iter().product();
            let clean = w.detach();
            let noise: Tensor<D> = NoiseSource::Counter
                .standard_normal(n, &key, &clean.device())
                .reshape(dims)
                .mul_scalar(sigma);
            // A fresh leaf (same parameter id): gradients of a noisy training model reach the
            // optimizer under the clean parameter's id.
            let noisy = (clean.clone() + noise).detach();
            measured = Some((clean, noisy.clone()));
            noisy.set_require_grad(require_grad)
        });
        if let Some((clean, noisy)) = measured {
            match (host(noisy, name), host(clean, name)) {
                (Ok(a), Ok(b)) => self.stds[i] = Some(std_of_difference(&a, &b)),
                (Err(e), _) | (_, Err(e)) => self.error = Some(e),
            }
        }
        param
    }
}
