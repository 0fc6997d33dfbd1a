//! The model's linear projections by site: which decoder layer and which projection
//! (`model.layers.3.mlp.down_proj`, `lm_head`). Quantization modes, LoRA adapters,
//! hardware-error injection and SRDD's input capture name the projections through these types
//! (and reach them through the model's traversals, `crate::model::Qwen2ForCausalLM::map_linears`),
//! so every feature names the projections the same way.

use crate::named::{UnknownName, named_enum};

named_enum! {
    /// A linear projection of Qwen2, by its HF module name.
    LinearKind, "linear projection", UnknownName {
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
