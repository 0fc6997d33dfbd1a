//! The finite check of the trained weights: after every optimizer update the trainable tensors
//! must hold only finite values, or the run stops there, naming the step and the first tensor at
//! fault, before any checkpoint is written from them. With `optim.grad_clip` > 0 a non-finite
//! gradient skips its update (verl's rule, counted in `actor/skipped_updates`); without clipping,
//! or when a finite gradient overflows the weights (a learning rate far too large), this check is
//! what stops a run from saving NaN adapters or weights.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::checkpoint::named_params::NamedParamVisitor;
use crate::model::Qwen2ForCausalLM;
use crate::non_finite::NonFiniteCounts;

/// A trained tensor that holds a NaN or an infinity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonFiniteWeight {
    /// Its HF name.
    pub tensor: String,
    /// Its values.
    pub elements: usize,
    /// How many are NaN, +inf, -inf.
    pub counts: NonFiniteCounts,
    /// Trained tensors with non-finite values, this one included.
    pub tensors: usize,
}

/// Counts the non-finite values of the trainable parameters, keeping the first tensor at fault.
#[derive(Default)]
struct FiniteScan {
    first: Option<(String, usize, NonFiniteCounts)>,
    tensors: usize,
}

impl NamedParamVisitor for FiniteScan {
    fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        // One reduction on the device first: any NaN or infinity makes the sum non-finite, so a
        // finite sum proves the tensor clean without copying it to the host (the common case,
        // after every update). A non-finite sum is counted value by value (an overflowing sum of
        // finite values counts nothing).
        let detached = param.val().detach();
        if detached.clone().sum().into_scalar::<f32>().is_finite() {
            return;
        }
        let values = detached
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("a float tensor converts to f32");
        let counts = NonFiniteCounts::of(&values);
        if !counts.is_clean() {
            self.tensors += 1;
            self.first
                .get_or_insert_with(|| (name.to_string(), values.len(), counts));
        }
    }
}

/// The first trainable tensor of `model` with a non-finite value, if any.
pub fn non_finite_weight(model: &Qwen2ForCausalLM) -> Option<NonFiniteWeight> {
    let mut scan = FiniteScan::default();
    model.visit_named(&mut scan);
    let (tensor, elements, counts) = scan.first?;
    Some(NonFiniteWeight {
        tensor,
        elements,
        counts,
        tensors: scan.tensors,
    })
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::checkpoint::named_params::NamedParamMapper;
    use crate::lora::LoraConfig;
    use crate::model::Qwen2Config;

    /// Puts NaN and +inf into the tensors whose name contains `needle`.
    struct Poison<'a>(&'a str);

    impl NamedParamMapper for Poison<'_> {
        fn map<const D: usize>(&mut self, name: &str, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if !name.contains(self.0) {
                return p;
            }
            p.map(|t| {
                let n = t.shape().num_elements();
                let mut v = vec![0.5f32; n];
                v[0] = f32::NAN;
                v[n - 1] = f32::INFINITY;
                let trained = t.is_require_grad();
                let poisoned = Tensor::<D>::from_data(
                    burn::tensor::TensorData::new(v, t.shape()),
                    &t.device(),
                );
                if trained {
                    poisoned.require_grad()
                } else {
                    poisoned
                }
            })
        }
    }

    #[test]
    fn the_first_trained_tensor_with_a_non_finite_value_is_named() {
        let device = Device::ndarray().autodiff();
        let model = Qwen2Config::new(32, 16, 24, 2, 4, 2)
            .init(&device)
            .with_lora(&LoraConfig::default())
            .unwrap();
        assert_eq!(non_finite_weight(&model), None);
        // A frozen base weight is not read: only trained tensors are checked.
        let frozen = model
            .clone()
            .map_named(&mut Poison("layers.1.mlp.down_proj.weight"));
        assert_eq!(non_finite_weight(&frozen), None);
        let bad = model.map_named(&mut Poison("layers.1.self_attn.q_proj.lora_A"));
        let found = non_finite_weight(&bad).expect("a NaN adapter is found");
        assert_eq!(
            found.tensor,
            "model.layers.1.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!((found.counts.nan, found.counts.pos_inf), (1, 1));
        assert_eq!(found.tensors, 1);
    }
}
