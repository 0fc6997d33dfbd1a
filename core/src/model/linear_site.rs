//! The model's linear projections by site: which decoder layer and which projection
//! (`model.layers.3.mlp.down_proj`, `lm_head`), and traversals that visit or replace each
//! [`QLinear`] with its site. Quantization modes, LoRA adapters, hardware-error injection and
//! SRDD's input capture are attached to the projections through these traversals, so every
//! feature names the projections the same way.

use thiserror::Error;

use super::attention::Attention;
use super::linear::QLinear;
use super::qwen2::Qwen2ForCausalLM;
use crate::named::named_enum;

/// A refused projection name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SiteNameError {
    /// A name that is not one of the enum's variants.
    #[error("unknown {what} `{value}`; valid choices: {valid}")]
    UnknownName {
        /// What was being parsed.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// The accepted names, comma separated.
        valid: String,
    },
}

named_enum! {
    /// A linear projection of Qwen2, by its HF module name.
    LinearKind, "linear projection", SiteNameError {
        /// Attention query projection.
        QProj => "q_proj",
        /// Attention key projection.
        KProj => "k_proj",
        /// Attention value projection.
        VProj => "v_proj",
        /// Attention output projection.
        OProj => "o_proj",
        /// MLP gate projection.
        GateProj => "gate_proj",
        /// MLP up projection.
        UpProj => "up_proj",
        /// MLP down projection.
        DownProj => "down_proj",
        /// The LM head (the embedding matrix when tied).
        LmHead => "lm_head",
    }
}

impl LinearKind {
    /// The seven projections of a decoder layer, in module order.
    pub const DECODER: [LinearKind; 7] = [
        LinearKind::QProj,
        LinearKind::KProj,
        LinearKind::VProj,
        LinearKind::OProj,
        LinearKind::GateProj,
        LinearKind::UpProj,
        LinearKind::DownProj,
    ];

    /// `self_attn` or `mlp` for decoder projections, `None` for the LM head.
    pub fn block(self) -> Option<&'static str> {
        match self {
            LinearKind::QProj | LinearKind::KProj | LinearKind::VProj | LinearKind::OProj => {
                Some("self_attn")
            }
            LinearKind::GateProj | LinearKind::UpProj | LinearKind::DownProj => Some("mlp"),
            LinearKind::LmHead => None,
        }
    }
}

/// Where a projection sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearSite {
    /// The decoder layer (`None` for the LM head).
    pub layer: Option<usize>,
    /// The projection.
    pub kind: LinearKind,
}

impl LinearSite {
    /// A projection of decoder layer `layer`.
    pub fn decoder(layer: usize, kind: LinearKind) -> Self {
        Self {
            layer: Some(layer),
            kind,
        }
    }

    /// The LM head.
    pub fn lm_head() -> Self {
        Self {
            layer: None,
            kind: LinearKind::LmHead,
        }
    }

    /// The HF module path: `model.layers.3.self_attn.q_proj`, `lm_head`.
    pub fn module_path(&self) -> String {
        match (self.layer, self.kind.block()) {
            (Some(l), Some(block)) => format!("model.layers.{l}.{block}.{}", self.kind),
            _ => self.kind.name().to_string(),
        }
    }
}

/// One of the two matmuls inside attention (not projections: they have no weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionMatmul {
    /// `q k^T` (the scores).
    Scores,
    /// `softmax(scores) v` (the context).
    Context,
}

impl AttentionMatmul {
    /// The site name under the layer's attention: `model.layers.3.self_attn.scores`.
    pub fn site_name(self, layer: usize) -> String {
        let what = match self {
            AttentionMatmul::Scores => "scores",
            AttentionMatmul::Context => "context",
        };
        format!("model.layers.{layer}.self_attn.{what}")
    }
}

impl Qwen2ForCausalLM {
    /// Replaces every projection (decoder layers in order, q/k/v/o/gate/up/down, then the LM
    /// head) by `f(site, layer)`; stops at the first error.
    pub fn try_map_linears<E>(
        self,
        mut f: impl FnMut(&LinearSite, QLinear) -> Result<QLinear, E>,
    ) -> Result<Self, E> {
        let mut m = self;
        let layers = std::mem::take(&mut m.model.layers);
        let mut mapped = Vec::with_capacity(layers.len());
        for (i, mut layer) in layers.into_iter().enumerate() {
            let site = |kind| LinearSite::decoder(i, kind);
            let a = &mut layer.self_attn;
            a.q_proj = f(&site(LinearKind::QProj), a.q_proj.clone())?;
            a.k_proj = f(&site(LinearKind::KProj), a.k_proj.clone())?;
            a.v_proj = f(&site(LinearKind::VProj), a.v_proj.clone())?;
            a.o_proj = f(&site(LinearKind::OProj), a.o_proj.clone())?;
            let p = &mut layer.mlp;
            p.gate_proj = f(&site(LinearKind::GateProj), p.gate_proj.clone())?;
            p.up_proj = f(&site(LinearKind::UpProj), p.up_proj.clone())?;
            p.down_proj = f(&site(LinearKind::DownProj), p.down_proj.clone())?;
            mapped.push(layer);
        }
        m.model.layers = mapped;
        m.lm_head = f(&LinearSite::lm_head(), m.lm_head.clone())?;
        Ok(m)
    }

    /// [`Self::try_map_linears`] with an infallible `f`.
    pub fn map_linears(self, mut f: impl FnMut(&LinearSite, QLinear) -> QLinear) -> Self {
        match self.try_map_linears(|s, l| Ok::<_, core::convert::Infallible>(f(s, l))) {
            Ok(m) => m,
            Err(never) => match never {},
        }
    }

    /// Visits every projection with its site, in the order of [`Self::try_map_linears`].
    pub fn visit_linears(&self, mut f: impl FnMut(&LinearSite, &QLinear)) {
        for (i, layer) in self.model.layers.iter().enumerate() {
            let site = |kind| LinearSite::decoder(i, kind);
            let a = &layer.self_attn;
            f(&site(LinearKind::QProj), &a.q_proj);
            f(&site(LinearKind::KProj), &a.k_proj);
            f(&site(LinearKind::VProj), &a.v_proj);
            f(&site(LinearKind::OProj), &a.o_proj);
            let p = &layer.mlp;
            f(&site(LinearKind::GateProj), &p.gate_proj);
            f(&site(LinearKind::UpProj), &p.up_proj);
            f(&site(LinearKind::DownProj), &p.down_proj);
        }
        f(&LinearSite::lm_head(), &self.lm_head);
    }

    /// Replaces every decoder layer's attention block by `f(layer, attention)`.
    pub fn map_attention(self, mut f: impl FnMut(usize, Attention) -> Attention) -> Self {
        let mut m = self;
        let layers = std::mem::take(&mut m.model.layers);
        m.model.layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, mut layer)| {
                layer.self_attn = f(i, layer.self_attn);
                layer
            })
            .collect();
        m
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use crate::model::Qwen2Config;
    use burn::tensor::Device;

    #[test]
    fn sites_name_every_projection_once_in_order() {
        let model = Qwen2Config::new(32, 16, 24, 2, 4, 2).init(&Device::ndarray());
        let mut names = Vec::new();
        model.visit_linears(|site, lin| names.push((site.module_path(), lin.d_input())));
        assert_eq!(names.len(), 2 * 7 + 1);
        assert_eq!(names[0].0, "model.layers.0.self_attn.q_proj");
        assert_eq!(names[6], ("model.layers.0.mlp.down_proj".to_string(), 24));
        assert_eq!(names[14].0, "lm_head");
        // Every module path is a prefix of a parameter name of the model.
        let params: Vec<String> = model.named_shapes().into_iter().map(|(n, _)| n).collect();
        for (path, _) in &names[..14] {
            assert!(params.contains(&format!("{path}.weight")), "{path}");
        }
        let mut seen = Vec::new();
        let model = model.map_linears(|site, lin| {
            seen.push(*site);
            lin
        });
        assert_eq!(seen.len(), 15);
        assert_eq!(model.num_layers(), 2);
        let err = "qproj".parse::<LinearKind>().unwrap_err().to_string();
        assert!(err.contains("q_proj, k_proj"), "{err}");
        assert_eq!(
            AttentionMatmul::Scores.site_name(1),
            "model.layers.1.self_attn.scores"
        );
    }
}
