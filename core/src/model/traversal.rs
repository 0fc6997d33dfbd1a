//! Traversals of the model's projections: visit or replace each [`QLinear`] with its
//! [`LinearSite`], in one fixed order (decoder layers in order, q/k/v/o, gate/up/down, then the
//! LM head). Every feature that attaches to projections goes through these; a decoder layer's
//! projections are reached through its one table of fields
//! ([`DecoderLayer::linears`](super::decoder_layer::DecoderLayer::linears)).

use super::attention::Attention;
use super::linear::QLinear;
use super::qwen2::Qwen2ForCausalLM;
use crate::site::LinearSite;

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
        for (i, layer) in layers.into_iter().enumerate() {
            mapped.push(layer.try_map_linears(|kind, l| f(&LinearSite::decoder(i, kind), l))?);
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
            for (kind, linear) in layer.linears() {
                f(&LinearSite::decoder(i, kind), linear);
            }
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
    use crate::model::Qwen2Config;
    use crate::site::{AttentionMatmul, LinearKind};
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
