//! GGUF files of a Qwen2 model (what llama.cpp runs): version 3, the `qwen2` architecture's
//! metadata and tensor names as llama.cpp's `convert_hf_to_gguf.py` writes them, the tokenizer
//! (`gpt2` byte-level BPE with `qwen2` pre-tokenization: tokens, types, merges, special ids, chat
//! template) from the base's `tokenizer.json` / `tokenizer_config.json`.
//!
//! Tensors: 1-D ones (norms, biases) F32; dense matrices BF16 or F32; MXFP4 projections in
//! GGML's own `MXFP4` type (39), which holds exactly aqn's MXFP4: per block of 32 along a row,
//! one E8M0 byte `e` then 16 bytes whose low nibbles are elements 0..15 and high nibbles
//! elements 16..31, each an E2M1 code with the sign in bit 3 (GGML decodes code `q` as
//! `kvalues[q] * 2^(e - 128)` with `kvalues` the doubled E2M1 values: the same number as aqn's
//! `E2M1(q) * 2^(e - 127)`). Only the nibble order differs from aqn's packing.

use std::path::Path;

use serde_json::Value;

use crate::formats::e2m1::unpack_nibble;
use crate::formats::spec::MXFP4_BLOCK_SIZE;
use crate::formats::{PackedTensor, QuantFormat};
use crate::model::Qwen2Config;
use crate::tensor_file::FloatDtype;

/// The file's magic, "GGUF".
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The format version written.
pub const VERSION: u32 = 3;
/// The alignment of the data section and of every tensor in it (`general.alignment`'s default).
pub const ALIGNMENT: usize = 32;
/// GGML tensor types written.
pub const GGML_F32: u32 = 0;
/// BF16.
pub const GGML_BF16: u32 = 30;
/// MXFP4 (blocks of 32: an E8M0 byte and 16 bytes of E2M1 pairs).
pub const GGML_MXFP4: u32 = 39;
/// Bytes of one GGML MXFP4 block.
pub const MXFP4_BLOCK_BYTES: usize = 1 + MXFP4_BLOCK_SIZE / 2;
/// `general.file_type`: all BF16 but 1-D tensors.
const FILE_TYPE_BF16: u32 = 32;
/// `general.file_type`: MXFP4 (the only MXFP4 file type GGML names).
const FILE_TYPE_MXFP4: u32 = 38;
/// `tokenizer.ggml.token_type` values.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// A tensor to write: its GGUF name, `[rows, row_len]` (or `[len]`), and its data.
pub struct GgufTensor {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The shape, outermost first (written reversed, as GGML orders dimensions).
    pub shape: Vec<usize>,
    /// The GGML type.
    pub ggml_type: u32,
    /// The encoded data.
    pub data: Vec<u8>,
}

/// The GGUF name of an HF tensor name of Qwen2 (`None`: not a Qwen2 tensor).
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let parts = [
        ("input_layernorm.", "attn_norm."),
        ("post_attention_layernorm.", "ffn_norm."),
        ("self_attn.q_proj.", "attn_q."),
        ("self_attn.k_proj.", "attn_k."),
        ("self_attn.v_proj.", "attn_v."),
        ("self_attn.o_proj.", "attn_output."),
        ("mlp.gate_proj.", "ffn_gate."),
        ("mlp.up_proj.", "ffn_up."),
        ("mlp.down_proj.", "ffn_down."),
    ];
    let (from, to) = parts.iter().find(|(h, _)| rest.starts_with(h))?;
    Some(format!("blk.{layer}.{to}{}", &rest[from.len()..]))
}

/// A dense tensor: F32 when 1-D (llama.cpp keeps norms and biases in F32), else `dtype`.
pub fn dense(name: String, shape: Vec<usize>, values: &[f32], dtype: FloatDtype) -> GgufTensor {
    let (ggml_type, dtype) = match (shape.len(), dtype) {
        (1, _) | (_, FloatDtype::F32) => (GGML_F32, FloatDtype::F32),
        _ => (GGML_BF16, FloatDtype::Bf16),
    };
    GgufTensor {
        name,
        shape,
        ggml_type,
        data: dtype.encode(values),
    }
}

/// An MXFP4 matrix in GGML's block layout (its rows whole blocks of 32; checked by the caller).
pub fn mxfp4(name: String, t: &PackedTensor) -> GgufTensor {
    debug_assert!(
        t.spec.format == QuantFormat::Mxfp4 && t.row_len.is_multiple_of(MXFP4_BLOCK_SIZE)
    );
    let blocks = t.rows * t.row_len / MXFP4_BLOCK_SIZE;
    let mut data = Vec::with_capacity(blocks * MXFP4_BLOCK_BYTES);
    let half = MXFP4_BLOCK_SIZE / 2;
    for (b, &scale) in t.scales.iter().enumerate().take(blocks) {
        data.push(scale);
        let first = b * MXFP4_BLOCK_SIZE;
        for j in 0..half {
            let lo = unpack_nibble(&t.codes, first + j);
            let hi = unpack_nibble(&t.codes, first + j + half);
            data.push(lo | (hi << 4));
        }
    }
    GgufTensor {
        name,
        shape: vec![t.rows, t.row_len],
        ggml_type: GGML_MXFP4,
        data,
    }
}

/// A metadata value.
enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_meta(out: &mut Vec<u8>, key: &str, value: &Meta) {
    const UINT32: u32 = 4;
    const INT32: u32 = 5;
    const FLOAT32: u32 = 6;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    put_str(out, key);
    match value {
        Meta::U32(v) => {
            out.extend_from_slice(&UINT32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::F32(v) => {
            out.extend_from_slice(&FLOAT32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::Str(s) => {
            out.extend_from_slice(&STRING.to_le_bytes());
            put_str(out, s);
        }
        Meta::Strs(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                put_str(out, s);
            }
        }
        Meta::I32s(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&INT32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for v in items {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// The tokenizer metadata from `base_dir`'s `tokenizer.json` (a byte-level BPE) and
/// `tokenizer_config.json` / `chat_template.jinja`, with the vocabulary padded to `vocab_size`
/// as llama.cpp pads it (`[PAD{i}]`, unused).
fn tokenizer_meta(base_dir: &Path, vocab_size: usize) -> Result<Vec<(String, Meta)>, String> {
    let path = base_dir.join("tokenizer.json");
    let tok = read_json(&path)?;
    let bad = |what: &str| format!("{}: {what}", path.display());
    if tok.pointer("/model/type").and_then(Value::as_str) != Some("BPE") {
        return Err(bad("GGUF's gpt2 tokenizer needs a BPE model"));
    }
    let vocab = tok
        .pointer("/model/vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no model.vocab"))?;
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![TOKEN_UNUSED; vocab_size];
    let mut place = |id: u64, text: &str, kind: i32| -> Result<(), String> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            bad(&format!(
                "token id {id} ({text:?}) is beyond the model's vocab_size {vocab_size}"
            ))
        })?;
        *slot = Some(text.to_string());
        types[id as usize] = kind;
        Ok(())
    };
    for (text, id) in vocab {
        place(
            id.as_u64().ok_or_else(|| bad("a non-integer id"))?,
            text,
            TOKEN_NORMAL,
        )?;
    }
    for added in tok
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = added["id"]
            .as_u64()
            .ok_or_else(|| bad("an added token without an id"))?;
        let text = added["content"].as_str().unwrap_or_default();
        let kind = if added["special"].as_bool() == Some(true) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        place(id, text, kind)?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let merges: Vec<String> = tok
        .pointer("/model/merges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => Some(format!(
                "{} {}",
                pair.first()?.as_str()?,
                pair.get(1)?.as_str()?
            )),
            _ => None,
        })
        .collect();
    let mut meta = vec![
        ("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Meta::Str("qwen2".into())),
        ("tokenizer.ggml.tokens".into(), Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32s(types)),
        ("tokenizer.ggml.merges".into(), Meta::Strs(merges)),
    ];
    let config = read_json(&base_dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let template = std::fs::read_to_string(base_dir.join("chat_template.jinja"))
        .ok()
        .or_else(|| config["chat_template"].as_str().map(str::to_string));
    if let Some(t) = template {
        meta.push(("tokenizer.chat_template".into(), Meta::Str(t)));
    }
    Ok(meta)
}

/// The model metadata of `config` (the `qwen2` architecture's keys).
fn model_meta(config: &Qwen2Config, name: &str, mxfp4: bool) -> Vec<(String, Meta)> {
    let arch = "qwen2";
    let key = |k: &str| format!("{arch}.{k}");
    let mut meta = vec![
        ("general.architecture".to_string(), Meta::Str(arch.into())),
        ("general.name".into(), Meta::Str(name.into())),
        (
            "general.file_type".into(),
            Meta::U32(if mxfp4 {
                FILE_TYPE_MXFP4
            } else {
                FILE_TYPE_BF16
            }),
        ),
        (
            key("block_count"),
            Meta::U32(config.num_hidden_layers as u32),
        ),
        (
            key("context_length"),
            Meta::U32(config.max_position_embeddings as u32),
        ),
        (
            key("embedding_length"),
            Meta::U32(config.hidden_size as u32),
        ),
        (
            key("feed_forward_length"),
            Meta::U32(config.intermediate_size as u32),
        ),
        (
            key("attention.head_count"),
            Meta::U32(config.num_attention_heads as u32),
        ),
        (
            key("attention.head_count_kv"),
            Meta::U32(config.num_kv_heads() as u32),
        ),
        (key("rope.freq_base"), Meta::F32(config.rope_theta() as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Meta::F32(config.rms_norm_eps as f32),
        ),
    ];
    if let Some(eos) = config.eos_token_ids().first() {
        meta.push(("tokenizer.ggml.eos_token_id".into(), Meta::U32(*eos)));
    }
    if let Some(pad) = config.pad_token_id {
        meta.push(("tokenizer.ggml.padding_token_id".into(), Meta::U32(pad)));
    }
    meta
}

/// The bytes of a GGUF file holding `tensors` (in this order) for a Qwen2 model of `config`,
/// named `name`, with the tokenizer of `base_dir`.
pub fn encode(
    config: &Qwen2Config,
    name: &str,
    base_dir: &Path,
    tensors: &[GgufTensor],
) -> Result<Vec<u8>, String> {
    let mxfp4 = tensors.iter().any(|t| t.ggml_type == GGML_MXFP4);
    let mut meta = model_meta(config, name, mxfp4);
    meta.extend(tokenizer_meta(base_dir, config.vocab_size)?);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (key, value) in &meta {
        put_meta(&mut out, key, value);
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += t.data.len().next_multiple_of(ALIGNMENT);
    }
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    for t in tensors {
        out.extend_from_slice(&t.data);
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::QuantSpec;

    #[test]
    fn names_follow_llama_cpp() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"),
            (
                "model.layers.0.mlp.down_proj.weight",
                "blk.0.ffn_down.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(gguf_name("model.layers.0.mlp.lora_A.weight"), None);
    }

    #[test]
    fn mxfp4_blocks_decode_as_ggml_decodes_them() {
        // GGML: kvalues[q] * 2^(e - 128), kvalues the doubled E2M1 values.
        const KVALUES: [f32; 16] = [
            0., 1., 2., 3., 4., 6., 8., 12., 0., -1., -2., -3., -4., -6., -8., -12.,
        ];
        let values: Vec<f32> = (0..2 * 64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let spec: QuantSpec = "mxfp4".parse().unwrap();
        let packed = spec.quantize(&values, 64).unwrap();
        let want = packed.dequantize().unwrap();
        let t = mxfp4("w".into(), &packed);
        assert_eq!(t.data.len(), 4 * MXFP4_BLOCK_BYTES);
        for (b, block) in t.data.chunks(MXFP4_BLOCK_BYTES).enumerate() {
            let e = block[0] as i32;
            for j in 0..32 {
                let byte = block[1 + j % 16];
                let q = if j < 16 { byte & 0xF } else { byte >> 4 };
                let got = KVALUES[q as usize] * 2f32.powi(e - 128);
                // Equal values (GGML's code 8 is +0 where aqn keeps the sign of a -0).
                assert_eq!(got, want[b * 32 + j], "block {b} element {j}");
            }
        }
    }
}
