//! HF checkpoint names: the module paths of the model as Burn's traversal spells them, mapped to
//! the tensor names of an HF checkpoint through one table, and the tensors a checkpoint may hold
//! that are not parameters here.

/// The remapping table: module path (as Burn's traversal spells it, a layer index written `{i}`) to
/// HF checkpoint name. The modules' fields carry HF's names, so every row is the identity; the one
/// exception is the tied head, see [`TIED_HEAD`].
pub const NAME_TABLE: &[(&str, &str)] = &[
    // Token embedding [vocab, hidden]; absent from the module when the embeddings are tied.
    ("model.embed_tokens.weight", "model.embed_tokens.weight"),
    // Attention: q/k/v with bias, o without; weights [out, in] as in PyTorch.
    (
        "model.layers.{i}.self_attn.q_proj.weight",
        "model.layers.{i}.self_attn.q_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.q_proj.bias",
        "model.layers.{i}.self_attn.q_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.weight",
        "model.layers.{i}.self_attn.k_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.bias",
        "model.layers.{i}.self_attn.k_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.weight",
        "model.layers.{i}.self_attn.v_proj.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.bias",
        "model.layers.{i}.self_attn.v_proj.bias",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.weight",
        "model.layers.{i}.self_attn.o_proj.weight",
    ),
    // SwiGLU MLP, no biases.
    (
        "model.layers.{i}.mlp.gate_proj.weight",
        "model.layers.{i}.mlp.gate_proj.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.weight",
        "model.layers.{i}.mlp.up_proj.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.weight",
        "model.layers.{i}.mlp.down_proj.weight",
    ),
    // RMSNorm weights (AQN's default targets).
    (
        "model.layers.{i}.input_layernorm.weight",
        "model.layers.{i}.input_layernorm.weight",
    ),
    (
        "model.layers.{i}.post_attention_layernorm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
    ),
    ("model.norm.weight", "model.norm.weight"),
    // Untied lm_head [vocab, hidden].
    ("lm_head.weight", "lm_head.weight"),
    // LoRA factors (crate::lora), named as PEFT names them without its `base_model.model.`
    // prefix: A [r, in], B [out, r]. Not part of a base checkpoint.
    (
        "model.layers.{i}.self_attn.q_proj.lora.lora_a",
        "model.layers.{i}.self_attn.q_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.q_proj.lora.lora_b",
        "model.layers.{i}.self_attn.q_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.lora.lora_a",
        "model.layers.{i}.self_attn.k_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.k_proj.lora.lora_b",
        "model.layers.{i}.self_attn.k_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.lora.lora_a",
        "model.layers.{i}.self_attn.v_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.v_proj.lora.lora_b",
        "model.layers.{i}.self_attn.v_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.lora.lora_a",
        "model.layers.{i}.self_attn.o_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.self_attn.o_proj.lora.lora_b",
        "model.layers.{i}.self_attn.o_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.gate_proj.lora.lora_a",
        "model.layers.{i}.mlp.gate_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.gate_proj.lora.lora_b",
        "model.layers.{i}.mlp.gate_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.lora.lora_a",
        "model.layers.{i}.mlp.up_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.up_proj.lora.lora_b",
        "model.layers.{i}.mlp.up_proj.lora_B.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.lora.lora_a",
        "model.layers.{i}.mlp.down_proj.lora_A.weight",
    ),
    (
        "model.layers.{i}.mlp.down_proj.lora.lora_b",
        "model.layers.{i}.mlp.down_proj.lora_B.weight",
    ),
];

/// With tied embeddings the lm_head owns the shared matrix, which HF checkpoints store (once) as
/// the embedding.
pub const TIED_HEAD: (&str, &str) = ("lm_head.weight", "model.embed_tokens.weight");

/// Checkpoint tensors that are not parameters here: the RoPE frequencies some older exports store
/// (recomputed from `rope_theta`).
pub const IGNORED_TENSORS: &[&str] = &["model.layers.{i}.self_attn.rotary_emb.inv_freq"];

/// The HF name of a module path, or `None` if the table has no row for it.
pub fn hf_name(module_path: &str, tied: bool) -> Option<String> {
    if tied && module_path == TIED_HEAD.0 {
        return Some(TIED_HEAD.1.to_string());
    }
    let (pattern, index) = generalize(module_path);
    NAME_TABLE
        .iter()
        .find(|(path, _)| *path == pattern)
        .map(|(_, hf)| match index {
            Some(i) => hf.replace("{i}", i),
            None => hf.to_string(),
        })
}

/// `model.layers.3.x` -> (`model.layers.{i}.x`, Some("3")).
fn generalize(name: &str) -> (String, Option<&str>) {
    let mut index = None;
    let parts: Vec<&str> = name
        .split('.')
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                index = Some(p);
                "{i}"
            } else {
                p
            }
        })
        .collect();
    (parts.join("."), index)
}

pub(crate) fn is_ignored(name: &str) -> bool {
    let (pattern, _) = generalize(name);
    IGNORED_TENSORS.contains(&pattern.as_str())
}
