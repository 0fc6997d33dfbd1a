//! Wiring a [`HwNoiseConfig`] into the model's matmuls: every targeted projection (and, when
//! listed, the two attention matmuls of every layer) gets a [`SiteNoise`], inactive until a phase
//! model is made with `Qwen2ForCausalLM::for_phase`, which arms exactly the sites of that phase.

use burn::tensor::Tensor;

use crate::hw_noise::{HwNoiseConfig, HwNoiseError, HwSite, NoiseKey, SiteNoise, grad_noise};
use crate::model::Qwen2ForCausalLM;
use crate::site::{AttentionMatmul, LinearKind};

impl Qwen2ForCausalLM {
    /// The model with `config` wired into its matmuls, replacing any earlier wiring. Refuses an
    /// invalid config, and gradient noise on a backend without its autodiff step.
    pub fn with_hw_noise(self, config: &HwNoiseConfig) -> Result<Self, HwNoiseError> {
        config.validate()?;
        if config.passes.backward() {
            // Gradient noise needs a custom autodiff step per backend: probe it now rather than
            // in the middle of the first training step.
            let device = self.device().autodiff();
            let probe = Tensor::<1>::zeros([1], &device).require_grad();
            grad_noise(
                probe,
                &config.model,
                &NoiseKey::new(0, 0, 0, 0),
                config.source,
            )?;
        }
        let linear: Vec<LinearKind> = config.sites.iter().filter_map(|s| s.linear()).collect();
        let scores = config
            .sites
            .contains(&HwSite::Attention(AttentionMatmul::Scores));
        let context = config
            .sites
            .contains(&HwSite::Attention(AttentionMatmul::Context));
        let model = self.map_linears(|site, mut lin| {
            lin.hooks.noise = linear
                .contains(&site.kind)
                .then(|| SiteNoise::new(config, site.module_path()));
            lin
        });
        Ok(model.map_attention(|layer, mut attn| {
            attn.hooks.scores =
                scores.then(|| SiteNoise::new(config, AttentionMatmul::Scores.site_name(layer)));
            attn.hooks.context =
                context.then(|| SiteNoise::new(config, AttentionMatmul::Context.site_name(layer)));
            attn
        }))
    }

    /// The model without hardware error on any matmul.
    pub fn without_hw_noise(self) -> Self {
        self.map_linears(|_, mut lin| {
            lin.hooks.noise = None;
            lin
        })
        .map_attention(|_, mut attn| {
            attn.hooks = Default::default();
            attn
        })
    }

    /// Every matmul with hardware error wired, in module order: its name, whether it is active in
    /// this (phase) model, and how many times it was called since it was activated.
    pub fn hw_noise_sites(&self) -> Vec<(String, bool, u64)> {
        let mut out = Vec::new();
        let mut push = |n: &SiteNoise| out.push((n.name().to_string(), n.is_active(), n.calls()));
        for layer in &self.model.layers {
            // The attention projections, the attention matmuls, then the MLP projections.
            let (attention, mlp): (Vec<_>, Vec<_>) = layer
                .linears()
                .map(|(kind, linear)| (kind, linear.hooks.noise.as_ref()))
                .partition(|(kind, _)| kind.block() == Some("self_attn"));
            let hooks = &layer.self_attn.hooks;
            let matmuls = [hooks.scores.as_ref(), hooks.context.as_ref()];
            let noise = |(_, n): (LinearKind, _)| n;
            attention
                .into_iter()
                .map(noise)
                .chain(matmuls)
                .chain(mlp.into_iter().map(noise))
                .flatten()
                .for_each(&mut push);
        }
        if let Some(n) = &self.lm_head.hooks.noise {
            push(n);
        }
        out
    }
}
