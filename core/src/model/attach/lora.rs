//! Attaching LoRA adapters to a model on a frozen base, and the full fine-tuning alternative.
//!
//! - [`Qwen2ForCausalLM::with_lora`]: every existing parameter (weights, biases, norms,
//!   embedding) stops requiring gradients, so autodiff records no gradient for it, spends no
//!   memory on it, and Burn's optimizers skip it (`GradientsParams` only collects parameters that
//!   require gradients); fresh adapters (A Kaiming-uniform, B zero) are attached to the target
//!   projections of every decoder layer and are the only trainable parameters. A quantized base
//!   is quantized once ("a frozen quantized base", as in QeRL) rather than at every forward.
//! - [`Qwen2ForCausalLM::for_full_finetuning`]: every parameter trainable, the latent weights in
//!   f32, quantized with the STE at every forward in quantized modes.

use burn::module::Module;

use crate::lora::{LoraAdapter, LoraConfig, LoraError};
use crate::model::Qwen2ForCausalLM;
use crate::site::LinearSite;

impl Qwen2ForCausalLM {
    /// Freezes the base and attaches fresh adapters to `config.targets` of every decoder layer.
    /// Refuses an invalid config and a model that already has adapters.
    pub fn with_lora(self, config: &LoraConfig) -> Result<Self, LoraError> {
        config.validate()?;
        self.attach_lora(config, |site, d_in, d_out, device| {
            LoraAdapter::init(d_in, d_out, config, &site.module_path(), device)
        })
    }

    /// Freezes the base and attaches the adapter `make(site, in, out, device)` to each target.
    pub(crate) fn attach_lora(
        self,
        config: &LoraConfig,
        mut make: impl FnMut(&LinearSite, usize, usize, &burn::tensor::Device) -> LoraAdapter,
    ) -> Result<Self, LoraError> {
        let mut existing = None;
        self.visit_linears(|site, linear| {
            if linear.lora.is_some() && existing.is_none() {
                existing = Some(site.module_path());
            }
        });
        if let Some(site) = existing {
            return Err(LoraError::AlreadyAttached { site });
        }
        let device = self.device();
        let model = self.no_grad().map_linears(|site, mut linear| {
            if config.targets.contains(&site.kind) {
                linear.lora = Some(make(site, linear.d_input(), linear.d_output(), &device));
            }
            linear.refresh_quantized_weight()
        });
        Ok(model.refresh_embedding_quant())
    }

    /// Every parameter trainable (latent f32 weights). Refuses a model with LoRA adapters, whose
    /// base must stay frozen.
    pub fn for_full_finetuning(self) -> Result<Self, LoraError> {
        let mut packed = None;
        self.visit_linears(|site, linear| {
            if linear.is_packed() && packed.is_none() {
                packed = Some(site.module_path());
            }
        });
        if let Some(site) = packed.or_else(|| {
            self.embedding_packed()
                .map(|_| crate::qat::config::EMBEDDING_PATH.to_string())
        }) {
            return Err(LoraError::Invalid {
                field: "base",
                value: site,
                reason: "full fine-tuning trains the base weights, and this one is held packed \
                         (frozen codes, no latent weight); load the model with its latent weights"
                    .into(),
            });
        }
        if self.has_lora() {
            return Err(LoraError::Invalid {
                field: "adapters",
                value: "attached".into(),
                reason: "full fine-tuning trains the base weights; build the model without \
                         `with_lora`"
                    .into(),
            });
        }
        Ok(self.set_require_grad(true).refresh_quantized_weights())
    }

    /// Whether any projection has an adapter.
    pub fn has_lora(&self) -> bool {
        let mut any = false;
        self.visit_linears(|_, linear| any |= linear.lora.is_some());
        any
    }

    /// Every adapter with its site, in module order.
    pub fn lora_adapters(&self) -> Vec<(LinearSite, LoraAdapter)> {
        let mut out = Vec::new();
        self.visit_linears(|site, linear| {
            if let Some(a) = &linear.lora {
                out.push((*site, a.clone()));
            }
        });
        out
    }

    /// The configuration the adapters were built with (rank, alpha, rslora, dropout, seed and the
    /// targets), or `None` without adapters. Refuses adapters that differ between projections or
    /// do not cover the same targets in every decoder layer (PEFT's format cannot express that).
    pub fn lora_config(&self) -> Result<Option<LoraConfig>, LoraError> {
        let adapters = self.lora_adapters();
        let Some((_, first)) = adapters.first() else {
            return Ok(None);
        };
        let mut targets: Vec<_> = adapters
            .iter()
            .filter(|(s, _)| s.layer == Some(0))
            .map(|(s, _)| s.kind)
            .collect();
        targets.dedup();
        let config = LoraConfig {
            rank: first.rank(),
            alpha: first.alpha,
            dropout: first.dropout,
            targets,
            rslora: first.rslora,
            seed: first.seed(),
        };
        for (site, a) in &adapters {
            let same = a.rank() == config.rank
                && a.alpha == config.alpha
                && a.rslora == config.rslora
                && a.dropout == config.dropout;
            let covered = config.targets.contains(&site.kind);
            if !same || !covered {
                return Err(LoraError::Invalid {
                    field: "adapters",
                    value: site.module_path(),
                    reason: "its adapter differs from layer 0's (rank, alpha, dropout, target); \
                             PEFT's adapter format needs one setting for all"
                        .into(),
                });
            }
        }
        let expected = self.num_layers() * config.targets.len();
        if adapters.len() != expected {
            return Err(LoraError::Invalid {
                field: "adapters",
                value: adapters.len().to_string(),
                reason: format!(
                    "{} layers x {} targets need {expected} adapters",
                    self.num_layers(),
                    config.targets.len()
                ),
            });
        }
        Ok(Some(config))
    }
}
