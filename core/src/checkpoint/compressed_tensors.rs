//! Pre-quantized checkpoints in compressed-tensors' `nvfp4-pack-quantized` format (what
//! llm-compressor writes for its `NVFP4A16` scheme and vLLM serves), read straight into the
//! packed base: codes and block scales as stored, no dequantize-requantize.
//!
//! The mapping onto aqn's NVFP4 two-level definition (docs/formats.md, "Pre-quantized
//! checkpoints"):
//! - `weight_packed` (u8 `[out, in/2]`): two E2M1 codes per byte, the even column in the low
//!   nibble, rows in order: byte for byte aqn's packed codes.
//! - `weight_scale` (F8_E4M3 `[out, in/16]`): one E4M3 scale per 16 consecutive inputs of a row
//!   (the reduction axis), in row-major block order: byte for byte aqn's block scales.
//! - `weight_global_scale` (f32 `[1]`) `G`: compressed-tensors decodes `q * (s / G)`, so aqn's
//!   per-tensor decode scale is `g = 1 / G`. aqn decodes `(q * s) * g`, which can differ from
//!   compressed-tensors' own decode in the last bit of a value (never more than 1 ulp of f32).
//!
//! What does not map is refused by name: another `quant_method` or `format`, activation
//! quantization (`input_activations`: its calibrated `input_global_scale` has no counterpart in
//! aqn's dynamic W4A4), asymmetric or non-float weights, another group size or strategy, a
//! checkpoint that is not in the `compressed` state, and ModelOpt's `hf_quant_config.json`.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

use crate::formats::e4m3::E4M3_NAN;
use crate::formats::spec::NVFP4_BLOCK_SIZE;
use crate::formats::{PackedTensor, QuantFormat, QuantSpec};

/// `quantization_config.quant_method` of a compressed-tensors checkpoint.
pub const QUANT_METHOD: &str = "compressed-tensors";
/// The packed NVFP4 format of compressed-tensors.
pub const NVFP4_PACK_FORMAT: &str = "nvfp4-pack-quantized";
/// The status of a checkpoint whose weights are stored compressed.
pub const COMPRESSED_STATUS: &str = "compressed";
/// Suffix of a projection's packed codes (after the module path).
pub const PACKED_SUFFIX: &str = "weight_packed";
/// Suffix of its block scales.
pub const SCALE_SUFFIX: &str = "weight_scale";
/// Suffix of its per-tensor scale.
pub const GLOBAL_SCALE_SUFFIX: &str = "weight_global_scale";
/// The `quant.weights` text of the spec the codes were made with.
pub const SPEC_TEXT: &str = "nvfp4";
/// ModelOpt's quantization file, which aqn does not read yet.
pub const MODELOPT_CONFIG: &str = "hf_quant_config.json";

/// A checkpoint's quantization as read from its `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct PreQuantized {
    /// The weight format the codes were made with (aqn's spec of it).
    pub spec: QuantSpec,
    /// The modules compressed-tensors left unquantized (`ignore`), as written.
    pub ignore: Vec<String>,
    /// The compressed-tensors version that wrote it, if recorded.
    pub version: Option<String>,
}

impl PreQuantized {
    /// One line for the run's plan.
    pub fn describe(&self) -> String {
        format!(
            "{} codes and scales read from the checkpoint ({QUANT_METHOD} {NVFP4_PACK_FORMAT}{})",
            self.spec.label(),
            self.version
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        )
    }
}

impl PreQuantized {
    /// Whether a plan that quantizes the stored projection `module` as `spec` (`None`: full
    /// precision) can hold its codes: only the very spec they were made with can.
    pub fn check_plan(&self, module: &str, spec: Option<&QuantSpec>) -> Result<(), String> {
        let stored =
            format!("`{module}` is stored as NVFP4 codes ({QUANT_METHOD} {NVFP4_PACK_FORMAT})");
        let needs = format!(
            "a pre-quantized checkpoint needs quant.mode = \"w4a16\" (or \"w4a4\") and \
             quant.weights = \"{SPEC_TEXT}\" (round to nearest, 1-D blocks of 16, two-level \
             scales: {}), with this projection out of quant.exclude",
            self.spec.label()
        );
        match spec {
            Some(s) if *s == self.spec => Ok(()),
            Some(s) => Err(format!(
                "{stored}, but [quant] quantizes it as {}: {needs}",
                s.label()
            )),
            None => Err(format!(
                "{stored}, but [quant] holds it in full precision: {needs}"
            )),
        }
    }
}

fn refuse(source_name: &str, reason: impl Into<String>) -> String {
    format!("{source_name}: {}", reason.into())
}

/// The weight arguments of one config group, checked against what maps onto aqn's NVFP4.
fn check_group(name: &str, group: &Value, source: &str) -> Result<(), String> {
    let field = |key: &str| group.get(key).filter(|v| !v.is_null());
    if let Some(format) = field("format").and_then(Value::as_str)
        && format != NVFP4_PACK_FORMAT
    {
        return Err(refuse(
            source,
            format!(
                "config group `{name}` has format `{format}`; aqn reads `{NVFP4_PACK_FORMAT}` only"
            ),
        ));
    }
    for key in ["input_activations", "output_activations"] {
        if field(key).is_some() {
            return Err(refuse(
                source,
                format!(
                    "config group `{name}` quantizes {key}: aqn reads weight-only checkpoints \
                     (llm-compressor's NVFP4A16); W4A4 is aqn's own quant.mode = \"w4a4\" with \
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
    let expected: [(&str, Value); 6] = [
        ("num_bits", Value::from(4)),
        ("type", Value::from("float")),
        ("strategy", Value::from("tensor_group")),
        ("group_size", Value::from(NVFP4_BLOCK_SIZE)),
        ("symmetric", Value::from(true)),
        ("dynamic", Value::from(false)),
    ];
    for (key, want) in expected {
        let got = arg(key);
        if got != want {
            return Err(refuse(
                source,
                format!(
                    "config group `{name}` has weights.{key} = {got}; NVFP4 as aqn defines it needs {want}"
                ),
            ));
        }
    }
    let scale_dtype = arg("scale_dtype");
    if !(scale_dtype.is_null() || scale_dtype == "torch.float8_e4m3fn") {
        return Err(refuse(
            source,
            format!(
                "config group `{name}` has weights.scale_dtype = {scale_dtype}; NVFP4 block scales are torch.float8_e4m3fn"
            ),
        ));
    }
    Ok(())
}

/// The checkpoint quantization described by `config` (the parsed `config.json` named
/// `source`): `None` for an unquantized checkpoint, an error naming what aqn cannot read.
pub fn from_config(config: &Value, source: &str) -> Result<Option<PreQuantized>, String> {
    let Some(q) = config.get("quantization_config").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    if method != QUANT_METHOD {
        return Err(refuse(
            source,
            format!(
                "quantization_config.quant_method = {method:?}: aqn reads unquantized checkpoints \
                 and `{QUANT_METHOD}` ({NVFP4_PACK_FORMAT}) ones"
            ),
        ));
    }
    let format = q.get("format").and_then(Value::as_str).unwrap_or("");
    if format != NVFP4_PACK_FORMAT {
        return Err(refuse(
            source,
            format!(
                "quantization_config.format = {format:?}: aqn reads `{NVFP4_PACK_FORMAT}` only"
            ),
        ));
    }
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
        check_group(name, group, source)?;
    }
    let ignore = q
        .get("ignore")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(PreQuantized {
        spec: QuantSpec::new(QuantFormat::Nvfp4),
        ignore,
        version: q.get("version").and_then(Value::as_str).map(str::to_string),
    }))
}

/// The quantization of the checkpoint folder `dir` (its `config.json`; `None` without one or
/// for an unquantized checkpoint). A ModelOpt folder is refused by name.
pub fn detect(dir: &Path) -> Result<Option<PreQuantized>, String> {
    if dir.join(MODELOPT_CONFIG).exists() {
        return Err(format!(
            "{}: a ModelOpt checkpoint ({MODELOPT_CONFIG}); aqn reads unquantized and \
             {QUANT_METHOD} {NVFP4_PACK_FORMAT} checkpoints only",
            dir.display()
        ));
    }
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let source = path.display().to_string();
    let config: Value =
        serde_json::from_str(&text).map_err(|e| refuse(&source, format!("not JSON: {e}")))?;
    from_config(&config, &source)
}

/// The names of a projection's three tensors, from its weight name `….weight`.
pub fn tensor_names(weight_name: &str) -> Option<[String; 3]> {
    let module = weight_name.strip_suffix(".weight")?;
    Some([PACKED_SUFFIX, SCALE_SUFFIX, GLOBAL_SCALE_SUFFIX].map(|s| format!("{module}.{s}")))
}

fn expect(
    view: &TensorView<'_>,
    name: &str,
    dtype: Dtype,
    shapes: &[&[usize]],
) -> Result<(), String> {
    if view.dtype() != dtype {
        return Err(format!(
            "`{name}` has dtype {:?}; {QUANT_METHOD} {NVFP4_PACK_FORMAT} stores {dtype:?}",
            view.dtype()
        ));
    }
    if !shapes.contains(&view.shape()) {
        return Err(format!(
            "`{name}` has shape {:?}; the projection needs {:?}",
            view.shape(),
            shapes[0]
        ));
    }
    Ok(())
}

/// The packed NVFP4 tensor of a `[out, inp]` projection from its three stored tensors (named
/// as [`tensor_names`] gives them), checked: dtypes, shapes, block scales that are neither NaN
/// nor negative, a finite positive global scale.
pub fn nvfp4_tensor(
    names: &[String; 3],
    [packed, scale, global]: [&TensorView<'_>; 3],
    [out, inp]: [usize; 2],
) -> Result<PackedTensor, String> {
    if !inp.is_multiple_of(NVFP4_BLOCK_SIZE) {
        return Err(format!(
            "`{}`: {inp} inputs are not whole NVFP4 blocks of {NVFP4_BLOCK_SIZE}",
            names[0]
        ));
    }
    expect(packed, &names[0], Dtype::U8, &[&[out, inp / 2]])?;
    expect(
        scale,
        &names[1],
        Dtype::F8_E4M3,
        &[&[out, inp / NVFP4_BLOCK_SIZE]],
    )?;
    expect(global, &names[2], Dtype::F32, &[&[1], &[]])?;
    if let Some(i) = scale
        .data()
        .iter()
        .position(|&b| b & 0x7F == E4M3_NAN || (b & 0x80 != 0 && b != 0x80))
    {
        return Err(format!(
            "`{}` holds a NaN or negative block scale (byte {:#04x} at block {i})",
            names[1],
            scale.data()[i]
        ));
    }
    let bytes: [u8; 4] = global.data().try_into().map_err(|_| {
        format!(
            "`{}` holds {} bytes, not one f32",
            names[2],
            global.data().len()
        )
    })?;
    let big_g = f32::from_le_bytes(bytes);
    let g = 1.0 / big_g;
    if !(big_g.is_finite() && big_g > 0.0 && g.is_finite()) {
        return Err(format!(
            "`{}` = {big_g}: the global scale must be a finite positive number with a finite inverse",
            names[2]
        ));
    }
    Ok(PackedTensor {
        spec: QuantSpec::new(QuantFormat::Nvfp4),
        rows: out,
        row_len: inp,
        codes: packed.data().to_vec(),
        scales: scale.data().to_vec(),
        tensor_scale: g,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(q: Value) -> Value {
        json!({ "quantization_config": q })
    }

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
        let got = from_config(&config(nvfp4a16()), "c.json").unwrap().unwrap();
        assert_eq!(got.spec, QuantSpec::new(QuantFormat::Nvfp4));
        assert_eq!(got.ignore, vec!["lm_head".to_string()]);
        assert!(from_config(&json!({}), "c.json").unwrap().is_none());
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
            let err = from_config(&config(q), "c.json").unwrap_err();
            assert!(
                err.contains(needle) && err.starts_with("c.json"),
                "{pointer}: {err}"
            );
        }
    }

    #[test]
    fn tensors_are_taken_as_stored_and_bad_ones_refused() {
        let names = tensor_names("model.layers.0.mlp.up_proj.weight").unwrap();
        assert_eq!(names[0], "model.layers.0.mlp.up_proj.weight_packed");
        let codes: Vec<u8> = (0..2 * 16).map(|i| i as u8).collect();
        let scales = vec![0x38u8, 0x40, 0x00, 0x80];
        let g = 2688.0f32.to_le_bytes();
        let view = |dtype, shape: Vec<usize>, data: &'static [u8]| {
            TensorView::new(dtype, shape, data).unwrap()
        };
        let codes: &'static [u8] = codes.leak();
        let scales: &'static [u8] = scales.leak();
        let g: &'static [u8] = Vec::from(g).leak();
        let p = view(Dtype::U8, vec![2, 16], codes);
        let s = view(Dtype::F8_E4M3, vec![2, 2], scales);
        let gv = view(Dtype::F32, vec![1], g);
        let t = nvfp4_tensor(&names, [&p, &s, &gv], [2, 32]).unwrap();
        assert_eq!((t.codes.as_slice(), t.scales.as_slice()), (codes, scales));
        assert_eq!(t.tensor_scale, 1.0 / 2688.0);
        t.check().unwrap();
        let bad_scale: &'static [u8] = vec![0x38u8, 0x7F, 0, 0].leak();
        let err = nvfp4_tensor(
            &names,
            [&p, &view(Dtype::F8_E4M3, vec![2, 2], bad_scale), &gv],
            [2, 32],
        )
        .unwrap_err();
        assert!(
            err.contains("weight_scale") && err.contains("0x7f"),
            "{err}"
        );
        let zero: &'static [u8] = Vec::from(0.0f32.to_le_bytes()).leak();
        let err =
            nvfp4_tensor(&names, [&p, &s, &view(Dtype::F32, vec![1], zero)], [2, 32]).unwrap_err();
        assert!(err.contains("weight_global_scale` = 0"), "{err}");
        let err = nvfp4_tensor(&names, [&p, &s, &gv], [2, 64]).unwrap_err();
        assert!(err.contains("shape [2, 16]"), "{err}");
        let f32_scales: &'static [u8] = vec![0u8; 16].leak();
        let err = nvfp4_tensor(
            &names,
            [&p, &view(Dtype::F32, vec![2, 2], f32_scales), &gv],
            [2, 32],
        )
        .unwrap_err();
        assert!(err.contains("dtype F32"), "{err}");
    }
}
