//! compressed-tensors' `nvfp4-pack-quantized` and `mxfp4-pack-quantized` checkpoints (what
//! llm-compressor writes for its `NVFP4A16` and `MXFP4A16` schemes and vLLM serves): the `quantization_config` of `config.json`, checked
//! against what maps onto aqn's NVFP4, and the tensor names; read through
//! [`super::prequantized`]. Per projection: `weight_packed` (codes), `weight_scale` (E4M3
//! block scales) and `weight_global_scale` `G`, which compressed-tensors decodes as
//! `q * (s / G)`, so aqn's `g = 1 / G`; aqn decodes `(q * s) * g`, which can differ from
//! compressed-tensors' own decode in the last bit of a value (never more than 1 ulp of f32).
//!
//! Refused by name: another `format`, activation quantization (`input_activations`: its
//! calibrated `input_global_scale` has no counterpart in aqn's dynamic W4A4), asymmetric or
//! non-float weights, another group size or strategy, a checkpoint that is not in the
//! `compressed` state, sparsity, transforms and KV-cache quantization.

use serde_json::Value;

use super::prequantized::{PreQuantized, Producer, string_list};
use crate::formats::spec::{MXFP4_BLOCK_SIZE, NVFP4_BLOCK_SIZE};

/// `quantization_config.quant_method` of a compressed-tensors checkpoint.
pub const QUANT_METHOD: &str = "compressed-tensors";
/// The packed NVFP4 format of compressed-tensors.
pub const NVFP4_PACK_FORMAT: &str = "nvfp4-pack-quantized";
/// The packed MXFP4 format of compressed-tensors (E8M0 scales as u8, no per-tensor scale).
pub const MXFP4_PACK_FORMAT: &str = "mxfp4-pack-quantized";

/// What a format's weight arguments must be: strategy, group size, scale dtype.
fn expected_args(format: &str) -> (&'static str, usize, &'static str) {
    if format == MXFP4_PACK_FORMAT {
        ("group", MXFP4_BLOCK_SIZE, "torch.uint8")
    } else {
        ("tensor_group", NVFP4_BLOCK_SIZE, "torch.float8_e4m3fn")
    }
}
/// The status of a checkpoint whose weights are stored compressed.
pub const COMPRESSED_STATUS: &str = "compressed";

fn refuse(source_name: &str, reason: impl Into<String>) -> String {
    format!("{source_name}: {}", reason.into())
}

/// The weight arguments of one config group, checked against what maps onto aqn's format
/// `format` (the checkpoint's).
fn check_group(name: &str, group: &Value, format: &str, source: &str) -> Result<(), String> {
    let field = |key: &str| group.get(key).filter(|v| !v.is_null());
    if let Some(own) = field("format").and_then(Value::as_str)
        && own != format
    {
        return Err(refuse(
            source,
            format!("config group `{name}` has format `{own}`; the checkpoint's is `{format}`"),
        ));
    }
    for key in ["input_activations", "output_activations"] {
        if field(key).is_some() {
            return Err(refuse(
                source,
                format!(
                    "config group `{name}` quantizes {key}: aqn reads weight-only checkpoints \
                     (llm-compressor's NVFP4A16, MXFP4A16); W4A4 is aqn's own quant.mode = \"w4a4\" with \
                     dynamic activation scales, which a calibrated checkpoint would contradict"
                ),
            ));
        }
    }
    let weights = field("weights").ok_or_else(|| {
        refuse(
            source,
            format!("config group `{name}` has no `weights` arguments"),
        )
    })?;
    let arg = |key: &str| weights.get(key).cloned().unwrap_or(Value::Null);
    let (strategy, group_size, scale) = expected_args(format);
    let expected: [(&str, Value); 6] = [
        ("num_bits", Value::from(4)),
        ("type", Value::from("float")),
        ("strategy", Value::from(strategy)),
        ("group_size", Value::from(group_size)),
        ("symmetric", Value::from(true)),
        ("dynamic", Value::from(false)),
    ];
    for (key, want) in expected {
        let got = arg(key);
        if got != want {
            return Err(refuse(
                source,
                format!(
                    "config group `{name}` has weights.{key} = {got}; {format} as aqn reads it needs {want}"
                ),
            ));
        }
    }
    let scale_dtype = arg("scale_dtype");
    if !(scale_dtype.is_null() || scale_dtype == scale) {
        return Err(refuse(
            source,
            format!(
                "config group `{name}` has weights.scale_dtype = {scale_dtype}; {format} block scales are {scale}"
            ),
        ));
    }
    Ok(())
}

/// The quantization a compressed-tensors `quantization_config` object `q` (of the file named
/// `source`) describes, or an error naming what aqn cannot read.
pub fn from_config(q: &Value, source: &str) -> Result<PreQuantized, String> {
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    if method != QUANT_METHOD {
        return Err(refuse(
            source,
            format!(
                "quantization_config.quant_method = {method:?}: aqn reads unquantized checkpoints \
                 and `{QUANT_METHOD}` ({NVFP4_PACK_FORMAT}, {MXFP4_PACK_FORMAT}) ones"
            ),
        ));
    }
    let format = q.get("format").and_then(Value::as_str).unwrap_or("");
    let producer = match format {
        NVFP4_PACK_FORMAT => Producer::CompressedTensors,
        MXFP4_PACK_FORMAT => Producer::CompressedTensorsMxfp4,
        _ => {
            return Err(refuse(
                source,
                format!(
                    "quantization_config.format = {format:?}: aqn reads `{NVFP4_PACK_FORMAT}` and `{MXFP4_PACK_FORMAT}` only"
                ),
            ));
        }
    };
    let status = q.get("quantization_status").and_then(Value::as_str);
    if status != Some(COMPRESSED_STATUS) {
        return Err(refuse(
            source,
            format!(
                "quantization_config.quantization_status = {status:?}: only a `{COMPRESSED_STATUS}` checkpoint stores packed codes"
            ),
        ));
    }
    for key in ["sparsity_config", "transform_config", "kv_cache_scheme"] {
        let v = q.get(key).cloned().unwrap_or(Value::Null);
        let empty = v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
        if !empty {
            return Err(refuse(
                source,
                format!(
                    "quantization_config.{key} is set; aqn reads neither sparsity, transforms nor KV-cache quantization"
                ),
            ));
        }
    }
    let groups = q
        .get("config_groups")
        .and_then(Value::as_object)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| refuse(source, "quantization_config has no config_groups"))?;
    for (name, group) in groups {
        check_group(name, group, format, source)?;
    }
    let ignore = string_list(q.get("ignore"));
    let version = q.get("version").and_then(Value::as_str).map(str::to_string);
    Ok(PreQuantized::new(producer, ignore, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nvfp4a16() -> Value {
        json!({
            "quant_method": "compressed-tensors",
            "format": "nvfp4-pack-quantized",
            "quantization_status": "compressed",
            "config_groups": { "group_0": {
                "format": "nvfp4-pack-quantized", "input_activations": null, "targets": ["Linear"],
                "weights": { "num_bits": 4, "type": "float", "strategy": "tensor_group",
                    "group_size": 16, "symmetric": true, "dynamic": false,
                    "scale_dtype": "torch.float8_e4m3fn" } } },
            "ignore": ["lm_head"], "sparsity_config": {}, "transform_config": {},
            "kv_cache_scheme": null, "version": "0.19.0"
        })
    }

    #[test]
    fn nvfp4a16_maps_and_everything_else_is_refused_by_name() {
        let got = from_config(&nvfp4a16(), "c.json").unwrap();
        assert_eq!(got.producer, Producer::CompressedTensors);
        assert_eq!(got.spec, "nvfp4".parse().unwrap());
        assert_eq!(got.ignore, vec!["lm_head".to_string()]);
        let mut mx = nvfp4a16();
        for (pointer, value) in [
            ("/format", json!("mxfp4-pack-quantized")),
            (
                "/config_groups/group_0/format",
                json!("mxfp4-pack-quantized"),
            ),
            ("/config_groups/group_0/weights/strategy", json!("group")),
            ("/config_groups/group_0/weights/group_size", json!(32)),
            (
                "/config_groups/group_0/weights/scale_dtype",
                json!("torch.uint8"),
            ),
        ] {
            *mx.pointer_mut(pointer).unwrap() = value;
        }
        let got = from_config(&mx, "c.json").unwrap();
        assert_eq!(got.producer, Producer::CompressedTensorsMxfp4);
        assert_eq!(got.spec, "mxfp4".parse().unwrap());
        let cases: [(&str, Value, &str); 9] = [
            ("/quant_method", json!("gptq"), "\"gptq\""),
            ("/format", json!("pack-quantized"), "\"pack-quantized\""),
            ("/quantization_status", json!("frozen"), "\"frozen\""),
            (
                "/config_groups/group_0/input_activations",
                json!({"num_bits": 4}),
                "input_activations",
            ),
            (
                "/config_groups/group_0/weights/group_size",
                json!(32),
                "weights.group_size = 32",
            ),
            (
                "/config_groups/group_0/weights/symmetric",
                json!(false),
                "weights.symmetric = false",
            ),
            (
                "/config_groups/group_0/weights/type",
                json!("int"),
                "weights.type = \"int\"",
            ),
            ("/sparsity_config", json!({"format": "dense"}), "sparsity"),
            (
                "/kv_cache_scheme",
                json!({"num_bits": 8}),
                "kv_cache_scheme",
            ),
        ];
        for (pointer, value, needle) in cases {
            let mut q = nvfp4a16();
            *q.pointer_mut(pointer).unwrap() = value;
            let err = from_config(&q, "c.json").unwrap_err();
            assert!(
                err.contains(needle) && err.starts_with("c.json"),
                "{pointer}: {err}"
            );
        }
    }
}
