//! HF checkpoint names. The modules' fields carry HF's names, so a parameter's HF name is its
//! module path as Burn's traversal spells it (`model.layers.3.mlp.up_proj.weight`); the only
//! names that differ are the tied head ([`TIED_HEAD`]) and the LoRA factors ([`RENAMES`]). Also
//! here: the tensors a checkpoint may hold that are not parameters here ([`IGNORED_TENSORS`]), and
//! the file names of an HF folder ([`SINGLE_FILE`], [`INDEX_FILE`], [`CONFIG_FILE`]).

use crate::site::{LinearKind, LinearSite};

/// The single-file weights of an HF checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded HF checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The architecture file of an HF checkpoint.
pub const CONFIG_FILE: &str = "config.json";

/// With tied embeddings the lm_head owns the shared matrix, which HF checkpoints store (once) as
/// the embedding.
pub const TIED_HEAD: (&str, &str) = ("lm_head.weight", "model.embed_tokens.weight");

/// Module-path endings whose HF names differ: the LoRA factors (`crate::lora`), named as PEFT
/// names them without its `base_model.model.` prefix: A `[r, in]`, B `[out, r]`. Not part of a
/// base checkpoint.
pub const RENAMES: &[(&str, &str)] = &[
    (".lora.lora_a", ".lora_A.weight"),
    (".lora.lora_b", ".lora_B.weight"),
];

/// Checkpoint tensors that are not parameters here: the RoPE frequencies some older exports store
/// (recomputed from `rope_theta`). A layer index is written `{i}`.
pub const IGNORED_TENSORS: &[&str] = &["model.layers.{i}.self_attn.rotary_emb.inv_freq"];

/// The HF name of a module path: the path itself unless [`TIED_HEAD`] (with `tied`) or
/// [`RENAMES`] says otherwise; `None` for a path that is no parameter of Qwen2.
pub fn hf_name(module_path: &str, tied: bool) -> Option<String> {
    if !is_parameter_path(module_path) {
        return None;
    }
    let renamed = RENAMES.iter().find_map(|(from, to)| {
        let stem = module_path.strip_suffix(from)?;
        Some(format!("{stem}{to}"))
    });
    Some(renamed.unwrap_or_else(|| stored_name(module_path, tied)))
}

/// The HF name of a projection's weight (`model.layers.3.mlp.up_proj.weight`; the embedding's
/// for the head of a model with `tied` embeddings).
pub fn weight_name(site: &LinearSite, tied: bool) -> String {
    stored_name(&format!("{}.weight", site.module_path()), tied)
}

/// The name `path` is stored under: itself, or the embedding's name for the tied head.
fn stored_name(path: &str, tied: bool) -> String {
    if tied && path == TIED_HEAD.0 {
        TIED_HEAD.1
    } else {
        path
    }
    .to_string()
}

/// Whether `path` names a parameter of Qwen2: the embedding, the final norm, a decoder layer's
/// two norms, a decoder projection's weight, bias or LoRA factors, the LM head's weight. The
/// projections are [`LinearKind`]'s, under their blocks.
fn is_parameter_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let index = |i: &str| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit());
    let projection = |block: &str, name: &str| {
        LinearKind::DECODER
            .iter()
            .any(|k| k.name() == name && k.block() == Some(block))
    };
    match parts.as_slice() {
        ["model", "embed_tokens" | "norm", "weight"] | ["lm_head", "weight"] => true,
        [
            "model",
            "layers",
            i,
            "input_layernorm" | "post_attention_layernorm",
            "weight",
        ] => index(i),
        ["model", "layers", i, block, name, leaf @ ..] => {
            index(i)
                && projection(block, name)
                && matches!(leaf, ["weight"] | ["bias"] | ["lora", "lora_a" | "lora_b"])
        }
        _ => false,
    }
}

/// `model.layers.3.x` -> `model.layers.{i}.x`.
fn generalize(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('.')
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                "{i}"
            } else {
                p
            }
        })
        .collect();
    parts.join(".")
}

/// Whether a checkpoint tensor is one of the [`IGNORED_TENSORS`].
pub(crate) fn is_ignored(name: &str) -> bool {
    IGNORED_TENSORS.contains(&generalize(name).as_str())
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use crate::model::Qwen2Config;
    use burn::tensor::Device;

    #[test]
    fn table_maps_every_parameter_of_a_model() {
        for tied in [false, true] {
            let config = Qwen2Config::new(32, 16, 24, 2, 4, 2).with_tie_word_embeddings(tied);
            let model = config.init(&Device::ndarray());
            let names: Vec<String> = model.named_shapes().into_iter().map(|(n, _)| n).collect();
            // 1 embedding/head + per layer (4 weights + 3 biases + 3 MLP + 2 norms) + final norm
            // (+ lm_head when untied).
            assert_eq!(names.len(), 1 + 2 * 12 + 1 + usize::from(!tied));
            assert!(names.contains(&"model.layers.1.self_attn.k_proj.bias".to_string()));
            assert!(names.contains(&"model.embed_tokens.weight".to_string()));
            assert_eq!(names.contains(&"lm_head.weight".to_string()), !tied);
        }
        assert_eq!(
            hf_name("model.layers.12.mlp.up_proj.weight", false).unwrap(),
            "model.layers.12.mlp.up_proj.weight"
        );
        assert_eq!(
            hf_name("lm_head.weight", true).unwrap(),
            "model.embed_tokens.weight"
        );
        assert!(hf_name("model.layers.0.mlp.act.weight", false).is_none());
        assert!(is_ignored("model.layers.7.self_attn.rotary_emb.inv_freq"));
    }

    #[test]
    fn only_the_tied_head_and_lora_factors_are_renamed() {
        assert_eq!(
            hf_name("model.layers.3.self_attn.v_proj.lora.lora_b", false).unwrap(),
            "model.layers.3.self_attn.v_proj.lora_B.weight"
        );
        assert_eq!(
            hf_name("model.layers.0.mlp.down_proj.lora.lora_a", true).unwrap(),
            "model.layers.0.mlp.down_proj.lora_A.weight"
        );
        for same in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            "model.layers.10.post_attention_layernorm.weight",
            "model.layers.1.self_attn.o_proj.weight",
        ] {
            assert_eq!(hf_name(same, false).as_deref(), Some(same));
        }
        // A projection under the wrong block, or a leaf no module has, is no parameter.
        for not_a_parameter in [
            "model.layers.1.mlp.q_proj.weight",
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.1.mlp.up_proj.scale",
            "model.norm.bias",
            "lm_head",
        ] {
            assert_eq!(hf_name(not_a_parameter, false), None, "{not_a_parameter}");
        }
        let head = LinearSite::lm_head();
        assert_eq!(weight_name(&head, true), "model.embed_tokens.weight");
        assert_eq!(weight_name(&head, false), "lm_head.weight");
        let up = LinearSite::decoder(2, LinearKind::UpProj);
        assert_eq!(weight_name(&up, true), "model.layers.2.mlp.up_proj.weight");
    }
}
