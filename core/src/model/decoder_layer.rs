//! One pre-norm decoder layer of Qwen2: `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, AttentionConfig};
use super::cache::LayerCache;
use super::linear::QLinear;
use super::mlp::{Mlp, MlpConfig};
use super::rms_norm::{RmsNorm, RmsNormConfig};
use crate::ops::{AttentionMask, RotaryTables};
use crate::site::LinearKind;

/// Configuration of a [`DecoderLayer`].
#[derive(Config, Debug)]
pub struct DecoderLayerConfig {
    /// The attention block.
    pub attention: AttentionConfig,
    /// The MLP block.
    pub mlp: MlpConfig,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
}

/// Attention and MLP blocks, each behind an RMSNorm and inside a residual connection. Field names
/// are HF's (`self_attn`, `mlp`, `input_layernorm`, `post_attention_layernorm`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Grouped-query self-attention.
    pub self_attn: Attention,
    /// SwiGLU MLP.
    pub mlp: Mlp,
    /// Norm before the attention block.
    pub input_layernorm: RmsNorm,
    /// Norm before the MLP block.
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayerConfig {
    /// A layer with HF's initialization (normal weights, zero biases, unit norms).
    pub fn init(&self, device: &Device) -> DecoderLayer {
        let norm = RmsNormConfig::new(self.attention.hidden_size).with_epsilon(self.rms_norm_eps);
        DecoderLayer {
            self_attn: self.attention.init(device),
            mlp: self.mlp.init(device),
            input_layernorm: norm.init(device),
            post_attention_layernorm: norm.init(device),
        }
    }
}

/// One projection field of a decoder layer: its kind, and read and write access to it.
struct LinearField {
    kind: LinearKind,
    get: fn(&DecoderLayer) -> &QLinear,
    get_mut: fn(&mut DecoderLayer) -> &mut QLinear,
}

/// The [`LinearField`] of `kind`, at `block.field`.
macro_rules! field {
    ($kind:ident, $block:ident . $field:ident) => {
        LinearField {
            kind: LinearKind::$kind,
            get: |layer| &layer.$block.$field,
            get_mut: |layer| &mut layer.$block.$field,
        }
    };
}

/// A decoder layer's projections in module order ([`LinearKind::DECODER`]'s): the one table that
/// joins a projection kind to its field. Every traversal of the projections goes through it.
const LINEAR_FIELDS: &[LinearField] = &[
    field!(QProj, self_attn.q_proj),
    field!(KProj, self_attn.k_proj),
    field!(VProj, self_attn.v_proj),
    field!(OProj, self_attn.o_proj),
    field!(GateProj, mlp.gate_proj),
    field!(UpProj, mlp.up_proj),
    field!(DownProj, mlp.down_proj),
];

impl DecoderLayer {
    /// The layer's projections with their kinds, in module order (q/k/v/o, gate/up/down).
    pub fn linears(&self) -> impl Iterator<Item = (LinearKind, &QLinear)> {
        LINEAR_FIELDS.iter().map(move |f| (f.kind, (f.get)(self)))
    }

    /// Replaces every projection by `f(kind, projection)`, in the order of [`Self::linears`];
    /// stops at the first error.
    pub fn try_map_linears<E>(
        mut self,
        mut f: impl FnMut(LinearKind, QLinear) -> Result<QLinear, E>,
    ) -> Result<Self, E> {
        for field in LINEAR_FIELDS {
            let slot = (field.get_mut)(&mut self);
            *slot = f(field.kind, slot.clone())?;
        }
        Ok(self)
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`; output: the same (the residual stream after this layer)
    /// - `mask`: `[batch, 1, seq, cached + seq]`, true where a key is hidden
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RotaryTables,
        mask: &AttentionMask,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        // The residual adds: one multi-threaded pass each on the CPU backend.
        let attn =
            self.self_attn
                .forward(self.input_layernorm.forward(x.clone()), rope, mask, cache);
        let h = crate::ops::add(x, attn);
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(h.clone()));
        crate::ops::add(h, mlp)
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use crate::model::{QLinearConfig, Qwen2Config};
    use crate::site::LinearSite;

    #[test]
    fn the_field_table_joins_each_kind_to_the_field_named_after_it() {
        let kinds: Vec<LinearKind> = LINEAR_FIELDS.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, LinearKind::DECODER);
        // Mark each projection of layer 1 with its own output width through the table's write
        // access; Burn's parameter names (the HF module paths) must then show each mark at the
        // kind's own name, and the table's read access must find it there too.
        let device = Device::ndarray();
        let mark =
            |kind: LinearKind| 100 + LinearKind::DECODER.iter().position(|k| *k == kind).unwrap();
        let mut model = Qwen2Config::new(32, 16, 24, 2, 4, 2).init(&device);
        let layer = model.model.layers.remove(1);
        let layer = layer
            .try_map_linears(|kind, _| Ok::<_, ()>(QLinearConfig::new(3, mark(kind)).init(&device)))
            .unwrap();
        for (kind, linear) in layer.linears() {
            assert_eq!(linear.d_output(), mark(kind), "{kind}");
        }
        model.model.layers.insert(1, layer);
        let shapes = model.named_shapes();
        for kind in LinearKind::DECODER {
            let name = format!("{}.weight", LinearSite::decoder(1, *kind).module_path());
            let shape = &shapes.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(*shape, vec![mark(*kind), 3], "{name}");
        }
    }
}
