//! The model's linear projections by site: which decoder layer and which projection
//! (`model.layers.3.mlp.down_proj`, `lm_head`). [`LinearKind`] is the one list of the
//! projections: LoRA targets (the decoder projections), quantized modules (the projections and
//! the embedding, `crate::qat::QuantModule`) and hardware-noise sites (the projections and the
//! [`AttentionMatmul`]s, `crate::hw_noise::HwSite`) are built from it and parse through its
//! names, and the model reaches the projections through one traversal
//! (`crate::model::Qwen2ForCausalLM::map_linears`). A new projection is a variant here and a row
//! in the decoder layer's table of fields (`crate::model::decoder_layer`).

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
    /// The projections of a decoder layer, in module order: every kind but the LM head, which
    /// is declared last.
    pub const DECODER: &'static [LinearKind] = match LinearKind::ALL.split_last() {
        Some((LinearKind::LmHead, decoder)) => decoder,
        _ => panic!("the LM head is the last linear kind"),
    };

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

    /// Whether this is a projection of a decoder layer (every kind but the LM head).
    pub fn is_decoder(self) -> bool {
        self.block().is_some()
    }

    /// The decoder projections' names, comma separated (for error messages).
    pub fn decoder_names() -> String {
        let names: Vec<&str> = Self::DECODER.iter().map(|k| k.name()).collect();
        names.join(", ")
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

named_enum! {
    /// One of the two matmuls inside attention (not projections: they have no weights), by its
    /// hardware-noise site name.
    AttentionMatmul, "attention matmul", UnknownName {
        /// `q k^T` (the scores).
        Scores => "attn_scores" | "scores",
        /// `softmax(scores) v` (the context).
        Context => "attn_context" | "context",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_kinds_are_every_kind_but_the_head() {
        assert_eq!(LinearKind::DECODER.len() + 1, LinearKind::ALL.len());
        assert!(LinearKind::DECODER.iter().all(|k| k.is_decoder()));
        assert!(!LinearKind::LmHead.is_decoder());
        assert_eq!(
            LinearKind::decoder_names(),
            "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
        );
        assert_eq!(
            "scores".parse::<AttentionMatmul>().unwrap(),
            AttentionMatmul::Scores
        );
        assert_eq!(AttentionMatmul::Context.name(), "attn_context");
    }
}
