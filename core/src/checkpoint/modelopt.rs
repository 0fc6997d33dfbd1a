//! NVIDIA ModelOpt's NVFP4 weight-only checkpoints (`W4A16_NVFP4`, written by
//! `export_hf_checkpoint`): `hf_quant_config.json` (or `quantization_config` with
//! `quant_method = "modelopt"` in `config.json`) and per projection `weight` (the packed codes),
//! `weight_scale` (E4M3 block scales) and `weight_scale_2` (aqn's `g` itself: ModelOpt decodes
//! `q * (s * g)`). Read through [`super::prequantized`].
//!
//! Refused by name: any other `quant_algo` (ModelOpt's `NVFP4` is W4A4 with a calibrated
//! `input_scale` per layer, which aqn's dynamic W4A4 would contradict; AWQ variants carry
//! `pre_quant_scale`; FP8 and INT4 are other formats), a group size other than 16, and KV-cache
//! quantization.

use serde_json::Value;

use super::prequantized::{PreQuantized, Producer, string_list};
use crate::formats::spec::NVFP4_BLOCK_SIZE;

/// ModelOpt's quantization file beside `config.json`.
pub const HF_QUANT_CONFIG: &str = "hf_quant_config.json";
/// `quantization_config.quant_method` of a ModelOpt checkpoint.
pub const QUANT_METHOD: &str = "modelopt";
/// The weight-only NVFP4 algorithm.
pub const W4A16_NVFP4: &str = "W4A16_NVFP4";

/// Checks the fields both of ModelOpt's descriptions share: `quant_algo`, `group_size`,
/// `kv_cache_quant_algo`, and the excluded modules under `exclude_key`.
fn read(fields: &Value, exclude_key: &str, source: &str) -> Result<PreQuantized, String> {
    let algo = fields
        .get("quant_algo")
        .and_then(Value::as_str)
        .unwrap_or("");
    if algo != W4A16_NVFP4 {
        return Err(format!(
            "{source}: quant_algo = {algo:?}: aqn reads ModelOpt's {W4A16_NVFP4} (NVFP4 weights) \
             only; \"NVFP4\" also quantizes activations with a calibrated input_scale per layer, \
             which aqn's dynamic W4A4 (quant.mode = \"w4a4\") would contradict"
        ));
    }
    let group = fields.get("group_size").cloned().unwrap_or(Value::Null);
    if !(group.is_null() || group == NVFP4_BLOCK_SIZE) {
        return Err(format!(
            "{source}: group_size = {group}; NVFP4 blocks hold {NVFP4_BLOCK_SIZE} elements"
        ));
    }
    let kv = fields
        .get("kv_cache_quant_algo")
        .cloned()
        .unwrap_or(Value::Null);
    if !kv.is_null() {
        return Err(format!(
            "{source}: kv_cache_quant_algo = {kv}; aqn does not quantize the KV cache"
        ));
    }
    let ignore = string_list(fields.get(exclude_key));
    Ok(PreQuantized::new(Producer::ModelOpt, ignore, None))
}

fn version(value: &Value) -> Option<String> {
    value
        .pointer("/producer/version")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The quantization `hf_quant_config.json` (named `source`) describes.
pub fn from_hf_quant_config(value: &Value, source: &str) -> Result<PreQuantized, String> {
    let fields = value
        .get("quantization")
        .ok_or_else(|| format!("{source}: no `quantization` section"))?;
    let mut pre = read(fields, "exclude_modules", source)?;
    pre.version = version(value);
    Ok(pre)
}

/// The quantization `config.json`'s `quantization_config` (ModelOpt's) describes.
pub fn from_quantization_config(q: &Value, source: &str) -> Result<PreQuantized, String> {
    let mut pre = read(q, "ignore", source)?;
    pre.version = version(q);
    Ok(pre)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weight_only_nvfp4_maps_and_the_rest_is_refused_by_name() {
        let good = json!({
            "producer": {"name": "modelopt", "version": "0.47.0"},
            "quantization": {"quant_algo": "W4A16_NVFP4", "kv_cache_quant_algo": null,
                "group_size": 16, "exclude_modules": ["lm_head", "model.embed_tokens"]}
        });
        let pre = from_hf_quant_config(&good, "q.json").unwrap();
        assert_eq!(pre.producer, Producer::ModelOpt);
        assert_eq!(pre.version.as_deref(), Some("0.47.0"));
        assert_eq!(pre.ignore, vec!["lm_head", "model.embed_tokens"]);
        for (pointer, value, needle) in [
            ("/quantization/quant_algo", json!("NVFP4"), "input_scale"),
            ("/quantization/quant_algo", json!("FP8"), "\"FP8\""),
            ("/quantization/group_size", json!(32), "group_size = 32"),
            (
                "/quantization/kv_cache_quant_algo",
                json!("FP8"),
                "KV cache",
            ),
        ] {
            let mut v = good.clone();
            *v.pointer_mut(pointer).unwrap() = value;
            let err = from_hf_quant_config(&v, "q.json").unwrap_err();
            assert!(err.starts_with("q.json") && err.contains(needle), "{err}");
        }
        let q =
            json!({"quant_method": "modelopt", "quant_algo": "W4A16_NVFP4", "ignore": ["lm_head"]});
        assert_eq!(
            from_quantization_config(&q, "c.json").unwrap().ignore,
            vec!["lm_head"]
        );
    }
}
