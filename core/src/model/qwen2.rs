//! The Qwen2 decoder and its causal-LM head (Qwen2 technical report, arXiv:2407.10671), numerically
//! matching HF transformers' `Qwen2ForCausalLM` (tests/qwen2_parity.rs).
//!
//! Batches are **left padded**: row `b` of `input_ids` starts with `padding.left(b)` padding tokens,
//! which no query attends to and which do not count as positions (the first real token of every row
//! has position 0, as in HF `generate`). Right padding needs nothing: causal attention never lets a
//! real token see a later one, so callers just ignore the logits of trailing padding.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::AttentionConfig;
use super::cache::KvCache;
use super::config::Qwen2Config;
use super::decoder_layer::{DecoderLayer, DecoderLayerConfig};
use super::linear::{QLinear, QLinearConfig};
use super::mlp::MlpConfig;
use super::rms_norm::{RmsNorm, RmsNormConfig};
use super::rotary::{RotaryEmbedding, RotaryEmbeddingConfig};
use crate::formats::FormatError;
use crate::ops::AttentionMask;
use crate::qat::{LinearQuant, WeightQuantState};
use crate::quant::PackedWeight;

/// How many padding tokens start each row of a left-padded batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Padding {
    left: Vec<usize>,
}

impl Padding {
    /// A batch of `batch` rows without padding.
    pub fn none(batch: usize) -> Self {
        Self {
            left: vec![0; batch],
        }
    }

    /// Row `b` starts with `left[b]` padding tokens.
    pub fn left(left: Vec<usize>) -> Self {
        Self { left }
    }

    /// The padding of sequences of the given lengths, left-padded to the longest.
    pub fn from_lengths(lengths: &[usize]) -> Self {
        let width = lengths.iter().copied().max().unwrap_or(0);
        Self {
            left: lengths.iter().map(|&n| width - n).collect(),
        }
    }

    /// Rows.
    pub fn batch_size(&self) -> usize {
        self.left.len()
    }

    /// Padding tokens at the start of row `b`.
    pub fn left_of(&self, b: usize) -> usize {
        self.left[b]
    }

    /// Keeps only the given rows.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        self.left = rows.iter().map(|&r| self.left[r]).collect();
    }

    /// Positions (for RoPE) and the attention mask of `seq` new tokens after `offset` cached ones,
    /// over `keys >= offset + seq` key slots.
    ///
    /// Positions are `offset + i - left[b]` (0 for padding tokens). The mask is
    /// `[batch, 1, seq, keys]` and is **true where query `i` may not see key `j`**: keys in the
    /// query's future (`j > offset + i`, the causal part, which also covers a KV cache's slots not
    /// written yet) and keys that are padding of the row (`j < left[b]`). A padding query therefore
    /// sees nothing; its output is never used.
    fn layout(&self, offset: usize, seq: usize, keys: usize) -> (Vec<usize>, Vec<bool>) {
        let total = keys;
        let mut positions = Vec::with_capacity(self.left.len() * seq);
        let mut mask = Vec::with_capacity(self.left.len() * seq * total);
        for &pad in &self.left {
            for i in 0..seq {
                let q = offset + i;
                positions.push(q.saturating_sub(pad));
                mask.extend((0..total).map(|j| j > q || j < pad));
            }
        }
        (positions, mask)
    }
}

/// The decoder: token embedding, decoder layers, final norm. Field names are HF's.
#[derive(Module, Debug)]
pub struct Qwen2Model {
    /// `[vocab, hidden]`; `None` when the embeddings are tied, in which case the lm_head owns the
    /// one shared matrix (so it exists once for the optimizer and gets both uses' gradients).
    pub embed_tokens: Option<Embedding>,
    /// The decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// The final norm.
    pub norm: RmsNorm,
}

/// Qwen2 with its causal-LM head: `logits = lm_head(norm(layers(embed(ids))))`.
#[derive(Module, Debug)]
pub struct Qwen2ForCausalLM {
    /// The decoder.
    pub model: Qwen2Model,
    /// `[vocab, hidden]`; with tied embeddings this is also the embedding matrix.
    pub lm_head: QLinear,
    #[module(skip)]
    rotary: RotaryEmbedding,
    #[module(skip)]
    config: Qwen2Config,
    /// The embedding table's quantizer (quantization modes that do not exclude `embed_tokens`).
    #[module(skip)]
    embed_quant: WeightQuantState,
    /// The frozen embedding table as codes (a packed base): lookups decode its rows. With tied
    /// embeddings it is the lm_head's packed weight; `embed_tokens` is then `None` either way.
    #[module(skip)]
    embed_packed: Option<PackedWeight>,
}

/// What one forward pass returns besides the final hidden states.
struct Trace {
    normed: Tensor<3>,
    layer_outputs: Vec<Tensor<3>>,
}

impl Qwen2Config {
    /// A model with HF's initialization: weights `N(0, initializer_range^2)`, biases 0, norms 1.
    /// Loading a checkpoint (`model::loader`) replaces these values.
    ///
    /// # Panics
    /// If the config is invalid; configs read from files are validated by [`Qwen2Config::from_file`],
    /// call [`Qwen2Config::validate`] on hand-built ones.
    pub fn init(&self, device: &Device) -> Qwen2ForCausalLM {
        if let Err(e) = self.validate() {
            panic!("invalid Qwen2 config: {e}");
        }
        let std = self.initializer_range;
        let layer = DecoderLayerConfig::new(
            AttentionConfig::new(
                self.hidden_size,
                self.num_attention_heads,
                self.num_kv_heads(),
                self.head_dim(),
            )
            .with_init_std(std),
            MlpConfig::new(self.hidden_size, self.intermediate_size).with_init_std(std),
            self.rms_norm_eps,
        );
        let embed_tokens = (!self.tie_word_embeddings).then(|| {
            EmbeddingConfig::new(self.vocab_size, self.hidden_size)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        });
        Qwen2ForCausalLM {
            model: Qwen2Model {
                embed_tokens,
                layers: (0..self.num_hidden_layers)
                    .map(|_| layer.init(device))
                    .collect(),
                norm: RmsNormConfig::new(self.hidden_size)
                    .with_epsilon(self.rms_norm_eps)
                    .init(device),
            },
            lm_head: QLinearConfig::new(self.hidden_size, self.vocab_size)
                .with_init_std(std)
                .init(device),
            rotary: RotaryEmbeddingConfig::new(self.head_dim())
                .with_theta(self.rope_theta())
                .init(),
            config: self.clone(),
            embed_quant: WeightQuantState::default(),
            embed_packed: None,
        }
    }
}

impl Qwen2ForCausalLM {
    /// The config the model was built from.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// The device the parameters live on (packed weights live in host memory; the computations
    /// with them run on this device).
    pub fn device(&self) -> Device {
        self.model.norm.weight.lazy_device()
    }

    /// Decoder layers.
    pub fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    /// A KV cache for this model, holding `capacity` positions before it grows.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::with_capacity(self.num_layers(), capacity)
    }

    /// The latent embedding matrix `[vocab, hidden]` (the lm_head's weight when tied), or
    /// `None` when the table is held packed.
    pub fn embedding_weight(&self) -> Option<Tensor<2>> {
        if self.embed_packed.is_some() {
            return None;
        }
        match &self.model.embed_tokens {
            Some(e) => Some(e.weight.val()),
            None => self.lm_head.weight.as_ref().map(|w| w.val()),
        }
    }

    /// The packed embedding table, if the table is held packed.
    pub fn embedding_packed(&self) -> Option<&PackedWeight> {
        self.embed_packed.as_ref()
    }

    /// The table the token lookup reads: the embedding matrix, fake-quantized along the hidden
    /// axis when a quantization mode includes `embed_tokens` (`None` when it is held packed).
    pub fn embedding_table(&self) -> Option<Tensor<2>> {
        self.embedding_weight()
            .map(|w| self.embed_quant.effective(w))
    }

    /// Holds the embedding table as `packed` (the codes of the embedding quantizer, or BF16
    /// codes without one) and drops the latent table. With tied embeddings `packed` must be the
    /// lm_head's own packed weight.
    pub(crate) fn with_packed_embedding(
        mut self,
        packed: PackedWeight,
        quant: Option<LinearQuant>,
    ) -> Result<Self, FormatError> {
        super::linear::check_packed_spec(&packed, quant.as_ref().map(|q| &q.weights))?;
        if self.config.tie_word_embeddings
            && self.lm_head.packed.as_ref().map(PackedWeight::id) != Some(packed.id())
        {
            return Err(FormatError::PackedWeight {
                what: "a packed embedding of a tied model".into(),
                reason: "the table is the lm_head's weight; pack the lm_head with the same codes"
                    .into(),
            });
        }
        self.model.embed_tokens = None;
        self.embed_quant = WeightQuantState::new(quant);
        self.embed_packed = Some(packed);
        Ok(self)
    }

    /// The embedding output of `ids`: rows of the (quantized) table.
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let Some(packed) = &self.embed_packed else {
            let table = self
                .embedding_table()
                .expect("a latent embedding table when none is packed");
            return embedding(table, ids);
        };
        let [b, s] = ids.dims();
        let device = ids.device();
        let [vocab, hidden] = packed.dims();
        let ids = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer token ids");
        let mut out = vec![0.0f32; b * s * hidden];
        for (row, &id) in out.chunks_exact_mut(hidden).zip(&ids) {
            let id = usize::try_from(id)
                .ok()
                .filter(|&i| i < vocab)
                .unwrap_or_else(|| panic!("token id {id} outside the vocabulary of {vocab}"));
            packed.decode_segment(id, 0, hidden, row);
        }
        Tensor::from_data(TensorData::new(out, [b, s, hidden]), &device)
    }

    /// The embedding's quantizer, if a quantization mode includes it.
    pub fn embedding_quantization(&self) -> Option<&LinearQuant> {
        self.embed_quant.quant()
    }

    /// Sets the embedding's quantizer (and fills its cache). A packed table refuses a quantizer
    /// its codes were not made with.
    pub(crate) fn with_embedding_quant(
        mut self,
        quant: Option<LinearQuant>,
    ) -> Result<Self, FormatError> {
        if let Some(packed) = &self.embed_packed {
            super::linear::check_packed_spec(packed, quant.as_ref().map(|q| &q.weights))?;
        }
        self.embed_quant = WeightQuantState::new(quant);
        Ok(self.refresh_embedding_quant())
    }

    /// Recomputes the embedding's cached `Q(E)` from the current matrix (nothing for a packed
    /// table).
    pub(crate) fn refresh_embedding_quant(mut self) -> Self {
        if let Some(table) = self.embedding_weight() {
            self.embed_quant.refresh(&table);
        }
        self
    }

    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        padding: &Padding,
        mut cache: Option<&mut KvCache>,
        keep_layer_outputs: bool,
    ) -> Trace {
        let [b, s] = input_ids.dims();
        assert_eq!(
            padding.batch_size(),
            b,
            "padding has {} rows, input_ids {b}",
            padding.batch_size()
        );
        let device = input_ids.device();
        let (offset, keys) = match cache.as_deref_mut() {
            Some(c) => {
                assert_eq!(c.num_layers(), self.num_layers(), "cache of another model");
                (c.len(), c.reserve(s))
            }
            None => (0, s),
        };
        let (positions, mask) = padding.layout(offset, s, keys);
        let rope = self.rotary.tables(&positions, b, s, &device);
        let mask = AttentionMask::new(mask, [b, 1, s, keys], &device);

        let mut x = self.embed(input_ids);
        let mut layer_outputs = Vec::new();
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = layer.forward(x, &rope, &mask, layer_cache);
            if keep_layer_outputs {
                layer_outputs.push(x.clone());
            }
        }
        Trace {
            normed: self.model.norm.forward(x),
            layer_outputs,
        }
    }

    /// Logits of every position.
    ///
    /// With a cache, `input_ids` are the tokens after the cached ones and the cache grows by them.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]`, left padded as `padding` says
    /// - output: `[batch, seq, vocab]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        padding: &Padding,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.lm_head
            .forward(self.run(input_ids, padding, cache, false).normed)
    }

    /// The final hidden states (after the final norm, before the lm_head): what generation feeds
    /// to [`Qwen2ForCausalLM::logits`] for the last position only.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        padding: &Padding,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.run(input_ids, padding, cache, false).normed
    }

    /// The lm_head applied to final hidden states: `[batch, seq, hidden] -> [batch, seq, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head.forward(hidden)
    }

    /// Logits and the output of every decoder layer (the residual stream after layer `l`, before
    /// the final norm), for SRDD (docs/spec.md section 5).
    ///
    /// Unlike HF's `output_hidden_states`, the list holds no embedding output and its last entry is
    /// not normed: entry `l` is exactly what decoder layer `l` returned.
    ///
    /// # Shapes
    /// - output: `([batch, seq, vocab], num_layers x [batch, seq, hidden])`
    pub fn forward_with_hidden_states(
        &self,
        input_ids: Tensor<2, Int>,
        padding: &Padding,
        cache: Option<&mut KvCache>,
    ) -> (Tensor<3>, Vec<Tensor<3>>) {
        let trace = self.run(input_ids, padding, cache, true);
        (self.lm_head.forward(trace.normed), trace.layer_outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_hides_future_and_padding() {
        let p = Padding::left(vec![0, 2]);
        let (pos, mask) = p.layout(0, 3, 3);
        assert_eq!(pos, vec![0, 1, 2, 0, 0, 0]);
        let row = |b: usize, i: usize| mask[(b * 3 + i) * 3..(b * 3 + i + 1) * 3].to_vec();
        assert_eq!(row(0, 0), vec![false, true, true]);
        assert_eq!(row(0, 2), vec![false, false, false]);
        assert_eq!(row(1, 1), vec![true, true, true]); // a padding query sees nothing
        assert_eq!(row(1, 2), vec![true, true, false]);
        // One new token after 3 cached ones, in a cache 6 slots wide.
        let (pos, mask) = p.layout(3, 1, 6);
        assert_eq!(pos, vec![3, 1]);
        let hidden = [
            false, false, false, false, true, true, true, true, false, false, true, true,
        ];
        assert_eq!(mask, hidden);
    }
}
