//! A checkpoint folder's quantization ([`detect`]): ModelOpt's `hf_quant_config.json`, or the
//! `quantization_config` of `config.json` (compressed-tensors or ModelOpt), read by the
//! producer's module into a [`PreQuantized`]; any other quantization is refused by name.

use std::path::Path;

use serde_json::Value;

use super::prequantized::PreQuantized;
use super::{compressed_tensors, modelopt};

/// The quantization of the checkpoint folder `dir`: `None` without a `config.json` or for an
/// unquantized checkpoint; an error naming what aqn cannot read.
pub fn detect(dir: &Path) -> Result<Option<PreQuantized>, String> {
    let modelopt_file = dir.join(modelopt::HF_QUANT_CONFIG);
    if modelopt_file.exists() {
        let source = modelopt_file.display().to_string();
        let text = std::fs::read_to_string(&modelopt_file).map_err(|e| format!("{source}: {e}"))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON: {e}"))?;
        return modelopt::from_hf_quant_config(&value, &source).map(Some);
    }
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let source = path.display().to_string();
    let config: Value =
        serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON: {e}"))?;
    let Some(q) = config.get("quantization_config").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match q.get("quant_method").and_then(Value::as_str).unwrap_or("") {
        compressed_tensors::QUANT_METHOD => compressed_tensors::from_config(q, &source).map(Some),
        modelopt::QUANT_METHOD => modelopt::from_quantization_config(q, &source).map(Some),
        other => Err(format!(
            "{source}: quantization_config.quant_method = {other:?}: aqn reads unquantized \
             checkpoints and NVFP4 ones from `{}` ({}) or `{}` ({})",
            compressed_tensors::QUANT_METHOD,
            compressed_tensors::NVFP4_PACK_FORMAT,
            modelopt::QUANT_METHOD,
            modelopt::W4A16_NVFP4
        )),
    }
}
