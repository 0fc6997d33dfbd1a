//! Holding a loaded model's frozen weights packed: [`Qwen2ForCausalLM::into_packed`] turns every
//! projection weight and the embedding table of a model that trains nothing (a reference policy)
//! into [`PackedWeight`]s, as the loader's packed plan does while reading a checkpoint
//! (`crate::checkpoint::LoadPlan`). The results are bit for bit the same; the memory is the codes'.

use crate::formats::{FormatError, QuantFormat, QuantSpec};
use crate::model::Qwen2ForCausalLM;
use crate::named::{UnknownName, named_enum};
use crate::qat::LinearQuant;
use crate::quant::PackedWeight;

named_enum! {
    /// The precision the model's weights are held in (`model.dtype`).
    #[derive(Default)]
    WeightDtype, "model dtype", UnknownName {
        /// f32, as read (f16 and bf16 files convert exactly).
        #[default]
        F32 => "f32" | "float32",
        /// Every value rounded to bf16 (nearest even) as it is read: exact for bf16 checkpoints
        /// such as Qwen2.5's. Frozen matrices kept unquantized are then stored as BF16 codes
        /// (2 bytes each); norms, biases and trainable tensors keep an f32 master copy of the
        /// rounded values.
        Bf16 => "bf16" | "bfloat16",
    }
}

/// How a frozen matrix is held: the quantizer's codes, BF16 codes (`dtype = bf16`) or f32
/// values for an unquantized one (`None`).
pub(crate) fn storage_spec(quant: Option<&LinearQuant>, dtype: WeightDtype) -> Option<QuantSpec> {
    match (quant, dtype) {
        (Some(q), _) => Some(q.weights),
        (None, WeightDtype::Bf16) => Some(QuantSpec::new(QuantFormat::Bf16)),
        (None, WeightDtype::F32) => None,
    }
}

impl Qwen2ForCausalLM {
    /// Every projection weight and the embedding table held packed (their quantizers' codes;
    /// unquantized ones as f32 values, or BF16 codes when `dtype` is bf16, which must then be
    /// the model's values already). Refuses a model with trainable weights.
    pub fn into_packed(self, dtype: WeightDtype) -> Result<Self, FormatError> {
        let embed_quant = self.embedding_quantization().copied();
        let embed_storage = storage_spec(embed_quant.as_ref(), dtype);
        let tied = self.config().tie_word_embeddings;
        let model = self.try_map_linears(|site, linear| {
            let storage = storage_spec(linear.quantization(), dtype);
            // A tied head is the embedding table: packed only if both uses hold it alike.
            if linear.is_packed() || (tied && site.layer.is_none() && storage != embed_storage) {
                return Ok(linear);
            }
            linear.into_packed_as(storage)
        })?;
        if model.embedding_packed().is_some() {
            return Ok(model);
        }
        let table = if tied {
            match model.lm_head.packed.clone() {
                Some(p) => p,
                None => return Ok(model),
            }
        } else {
            let Some(w) = model.embedding_weight() else {
                return Ok(model);
            };
            if w.is_require_grad() {
                return Err(FormatError::PackedWeight {
                    what: "packing the embedding".into(),
                    reason: "it is trainable; only frozen weights are held packed".into(),
                });
            }
            let [vocab, hidden] = w.dims();
            let values = w
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| FormatError::BadPacked(format!("{e:?}")))?;
            match embed_storage {
                Some(spec) => PackedWeight::quantize(&values, vocab, hidden, &spec)?,
                None => PackedWeight::f32(values, vocab, hidden)?,
            }
        };
        model.with_packed_embedding(table, embed_quant)
    }
}
