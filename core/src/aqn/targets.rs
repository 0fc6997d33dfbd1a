//! Resolving the configured targets to the model's parameters, by HF name.

use super::{AqnError, AqnTargets};
use crate::checkpoint::hf_names::weight_name;
use crate::model::Qwen2ForCausalLM;
use crate::site::LinearSite;

/// One targeted tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AqnTarget {
    /// The HF parameter name (`model.layers.3.input_layernorm.weight`).
    pub name: String,
    /// Its decoder layer (`None` for the final norm, the embedding, the LM head), which selects
    /// its RIN multiplier (1 outside the decoder layers).
    pub layer: Option<usize>,
    /// Number of elements.
    pub elements: usize,
}

/// The decoder layer of a parameter name `model.layers.{i}.…`.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether a parameter is a LoRA factor (never an AQN target: the noise goes to the base).
fn is_lora(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// The model's parameters selected by `targets`, in module order; refuses a selection that
/// matches nothing.
pub fn resolve(model: &Qwen2ForCausalLM, targets: &AqnTargets) -> Result<Vec<AqnTarget>, AqnError> {
    let params = model.named_shapes();
    let mut wanted: Vec<String> = Vec::new();
    match targets {
        AqnTargets::Rmsnorm { final_norm } => {
            for l in 0..model.num_layers() {
                wanted.push(format!("model.layers.{l}.input_layernorm.weight"));
                wanted.push(format!("model.layers.{l}.post_attention_layernorm.weight"));
            }
            if *final_norm {
                wanted.push("model.norm.weight".into());
            }
        }
        AqnTargets::Linear { modules } => {
            // With tied embeddings the head's matrix is named as the embedding.
            let tied = model.config().tie_word_embeddings;
            model.visit_linears(|site: &LinearSite, _| {
                if modules.contains(&site.kind) {
                    wanted.push(weight_name(site, tied));
                }
            });
        }
        AqnTargets::Pattern { pattern } => {
            wanted = params
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| !is_lora(n) && pattern.matches(n))
                .collect();
        }
    }
    let out: Vec<AqnTarget> = params
        .iter()
        .filter(|(n, _)| wanted.contains(n))
        .map(|(n, shape)| AqnTarget {
            name: n.clone(),
            layer: layer_of(n),
            elements: shape.iter().product(),
        })
        .collect();
    if out.is_empty() {
        return Err(AqnError::NoTarget {
            targets: targets.to_string(),
        });
    }
    Ok(out)
}
