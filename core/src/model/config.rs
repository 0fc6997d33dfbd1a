//! The Qwen2 architecture as HF `config.json` states it.
//!
//! Field names are HF's, so a checkpoint's `config.json` deserializes directly. Both layouts in use are
//! read: the released Qwen2.5 checkpoints (`rope_theta` at the top level, `rope_scaling: null`) and
//! transformers 5 (`rope_parameters: {rope_type, rope_theta}`). Every field that changes the math is
//! either implemented or refused by [`Qwen2Config::validate`]: sliding-window attention, RoPE scaling,
//! attention dropout and activations other than SiLU are refused with an error naming the value.

use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// HF's default `rope_theta` for Qwen2 when a config states none.
pub const DEFAULT_ROPE_THETA: f64 = 10_000.0;
/// HF's default `rms_norm_eps` for Qwen2.
pub const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
/// HF's default `initializer_range` (std of the normal initialization of weights).
pub const DEFAULT_INITIALIZER_RANGE: f64 = 0.02;
/// HF's default `max_position_embeddings` for Qwen2.
pub const DEFAULT_MAX_POSITION_EMBEDDINGS: usize = 32_768;
/// The only activation Qwen2 uses (`hidden_act`).
pub const SUPPORTED_HIDDEN_ACT: &str = "silu";
/// The only RoPE type implemented (`rope_parameters.rope_type`).
pub const SUPPORTED_ROPE_TYPE: &str = "default";
/// The only attention kind implemented (`layer_types`).
pub const SUPPORTED_LAYER_TYPE: &str = "full_attention";
/// The fields a config.json must state (the sizes; every other field has HF's default).
pub const REQUIRED_FIELDS: [&str; 5] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
];

/// Why a config was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not JSON, or a field of the wrong type.
    #[error("{source_name} is not a valid Qwen2 config.json: {reason}")]
    Parse {
        /// Where the text came from.
        source_name: String,
        /// serde's message.
        reason: String,
    },
    /// A field every Qwen2 config.json must state is absent (or null).
    #[error(
        "{source_name} has no `{field}`; a Qwen2 config.json must state {}",
        REQUIRED_FIELDS.join(", ")
    )]
    MissingField {
        /// Where the text came from.
        source_name: String,
        /// The HF field name.
        field: &'static str,
    },
    /// A field whose JSON type is not the one HF writes.
    #[error("{source_name}: `{field}` = {value} is not {expected}")]
    WrongType {
        /// Where the text came from.
        source_name: String,
        /// The HF field name.
        field: String,
        /// Its value as written.
        value: String,
        /// What HF writes there.
        expected: String,
    },
    /// A field with a value this implementation refuses.
    #[error("config field `{field}` = {value}: {reason}")]
    Invalid {
        /// The HF field name.
        field: &'static str,
        /// Its value as written.
        value: String,
        /// Why, and what is accepted.
        reason: String,
    },
}

/// `eos_token_id` is an integer or a list of integers in HF files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// transformers 5's `rope_parameters` (and the legacy `rope_scaling`, whose `type` is `rope_type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    /// `default` is the only implemented kind (no YaRN, dynamic or linear scaling).
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    /// The RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

fn default_rope_type() -> String {
    SUPPORTED_ROPE_TYPE.to_string()
}
fn default_rope_theta_opt() -> Option<f64> {
    None
}
fn default_eps() -> f64 {
    DEFAULT_RMS_NORM_EPS
}
fn default_init_range() -> f64 {
    DEFAULT_INITIALIZER_RANGE
}
fn default_max_pos() -> usize {
    DEFAULT_MAX_POSITION_EMBEDDINGS
}
fn default_act() -> String {
    SUPPORTED_HIDDEN_ACT.to_string()
}

/// A Qwen2 `config.json` (HF field names). Build one from a file with [`Qwen2Config::from_file`]
/// (which validates), or in code with [`Qwen2Config::new`] and the `with_*` setters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    /// Rows of the embedding and of the lm_head.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); HF defaults it to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; HF defaults it to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Longest sequence the model is meant for; generation refuses to go beyond it.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base (legacy layout).
    #[serde(default = "default_rope_theta_opt")]
    pub rope_theta: Option<f64>,
    /// RoPE parameters (transformers 5 layout).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// RoPE scaling (legacy layout); only `null` or `default` is accepted.
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Whether the lm_head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Activation of the MLP gate; only `silu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Sliding-window attention is not implemented; `true` is refused.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Attention kind per layer (transformers 5); only `full_attention`.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Dropout on attention weights during training; only 0 (there is no dropout here).
    #[serde(default)]
    pub attention_dropout: f64,
    /// Std of the normal initialization of weights (used by [`Qwen2Config::init`]).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Beginning-of-sequence token (informational; Qwen2 adds none).
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// `qwen2` when present.
    #[serde(default)]
    pub model_type: Option<String>,
}

impl Qwen2Config {
    /// A config with HF's defaults for everything but the sizes.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            max_position_embeddings: DEFAULT_MAX_POSITION_EMBEDDINGS,
            rms_norm_eps: DEFAULT_RMS_NORM_EPS,
            rope_theta: Some(DEFAULT_ROPE_THETA),
            rope_parameters: None,
            rope_scaling: None,
            tie_word_embeddings: false,
            hidden_act: SUPPORTED_HIDDEN_ACT.to_string(),
            use_sliding_window: false,
            layer_types: None,
            attention_dropout: 0.0,
            initializer_range: DEFAULT_INITIALIZER_RANGE,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            model_type: Some("qwen2".to_string()),
        }
    }

    /// Sets the RoPE base.
    pub fn with_rope_theta(mut self, theta: f64) -> Self {
        self.rope_theta = Some(theta);
        self.rope_parameters = None;
        self
    }

    /// Ties (or unties) the lm_head to the embedding.
    pub fn with_tie_word_embeddings(mut self, tie: bool) -> Self {
        self.tie_word_embeddings = tie;
        self
    }

    /// Sets the longest supported sequence.
    pub fn with_max_position_embeddings(mut self, n: usize) -> Self {
        self.max_position_embeddings = n;
        self
    }

    /// Sets the EOS token.
    pub fn with_eos_token_id(mut self, id: u32) -> Self {
        self.eos_token_id = Some(TokenIds::One(id));
        self
    }

    /// Parses and validates `config.json` text. A missing size field, or a field of the wrong
    /// JSON type, is named with the file.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let parse = |reason: String| ConfigError::Parse {
            source_name: source_name.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| parse(format!("not JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| {
            parse(format!(
                "not a JSON object (it holds {})",
                json_kind(&value)
            ))
        })?;
        for field in REQUIRED_FIELDS {
            if object.get(field).is_none_or(serde_json::Value::is_null) {
                return Err(ConfigError::MissingField {
                    source_name: source_name.to_string(),
                    field,
                });
            }
        }
        // Each field on its own first, so a type error names its field.
        let template =
            serde_json::to_value(Self::new(1, 1, 1, 1, 1, 1)).expect("a config serializes");
        for (field, v) in object {
            if v.is_null() || !template.as_object().is_some_and(|t| t.contains_key(field)) {
                continue;
            }
            let mut probe = template.clone();
            probe[field.as_str()] = v.clone();
            if let Err(e) = serde_json::from_value::<Self>(probe) {
                return Err(ConfigError::WrongType {
                    source_name: source_name.to_string(),
                    field: field.clone(),
                    value: v.to_string(),
                    expected: expected_of(&e.to_string()),
                });
            }
        }
        let config: Self = serde_json::from_value(value).map_err(|e| parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Key/value heads.
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The RoPE base, from whichever layout the file used.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(DEFAULT_ROPE_THETA)
    }

    /// The EOS ids (empty if the config names none).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Checks every invariant the model relies on; the error names the field, its value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sizes()?;
        self.validate_numerics()?;
        self.validate_features()?;
        self.validate_token_ids()
    }

    /// The sizes: positive, heads dividing each other, an even head dimension.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(invalid(field, "0".into(), "must be positive"));
            }
        }
        let kv = self.num_kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return Err(invalid(
                "num_key_value_heads",
                kv.to_string(),
                &format!(
                    "must be positive and divide num_attention_heads ({})",
                    self.num_attention_heads
                ),
            ));
        }
        match self.head_dim {
            None if !self.hidden_size.is_multiple_of(self.num_attention_heads) => {
                return Err(invalid(
                    "hidden_size",
                    self.hidden_size.to_string(),
                    &format!(
                        "must be a multiple of num_attention_heads ({}) when head_dim is not given",
                        self.num_attention_heads
                    ),
                ));
            }
            Some(0) => return Err(invalid("head_dim", "0".into(), "must be positive")),
            _ => {}
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(invalid(
                "head_dim",
                self.head_dim().to_string(),
                "must be even (rotary embeddings rotate pairs of dimensions)",
            ));
        }
        Ok(())
    }

    /// `rms_norm_eps`, `rope_theta` (and where it is given), `rope_type`.
    fn validate_numerics(&self) -> Result<(), ConfigError> {
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(invalid(
                "rms_norm_eps",
                self.rms_norm_eps.to_string(),
                "must be positive and finite",
            ));
        }
        if let (Some(a), Some(b)) = (
            self.rope_theta,
            self.rope_parameters.as_ref().and_then(|p| p.rope_theta),
        ) && a != b
        {
            return Err(invalid(
                "rope_theta",
                a.to_string(),
                &format!("disagrees with rope_parameters.rope_theta ({b})"),
            ));
        }
        let theta = self.rope_theta();
        if !(theta > 0.0 && theta.is_finite()) {
            return Err(invalid(
                "rope_theta",
                theta.to_string(),
                "must be positive and finite",
            ));
        }
        for (field, p) in [
            ("rope_parameters", &self.rope_parameters),
            ("rope_scaling", &self.rope_scaling),
        ] {
            if let Some(p) = p
                && p.rope_type != SUPPORTED_ROPE_TYPE
            {
                return Err(invalid(
                    field,
                    format!("{{rope_type: {}}}", p.rope_type),
                    "RoPE scaling is not implemented; valid rope_type: default",
                ));
            }
        }
        Ok(())
    }

    /// The architecture's options aqn implements (activation, attention kind, layer types,
    /// dropout, initializer, model type).
    fn validate_features(&self) -> Result<(), ConfigError> {
        if self.hidden_act != SUPPORTED_HIDDEN_ACT {
            return Err(invalid(
                "hidden_act",
                self.hidden_act.clone(),
                "valid choices: silu",
            ));
        }
        if self.use_sliding_window {
            return Err(invalid(
                "use_sliding_window",
                "true".into(),
                "sliding-window attention is not implemented; valid: false",
            ));
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Err(invalid(
                    "layer_types",
                    format!("{} entries", types.len()),
                    &format!(
                        "must have num_hidden_layers ({}) entries",
                        self.num_hidden_layers
                    ),
                ));
            }
            if let Some(t) = types.iter().find(|t| *t != SUPPORTED_LAYER_TYPE) {
                return Err(invalid(
                    "layer_types",
                    t.clone(),
                    "valid choices: full_attention",
                ));
            }
        }
        if self.attention_dropout != 0.0 {
            return Err(invalid(
                "attention_dropout",
                self.attention_dropout.to_string(),
                "attention dropout is not implemented; valid: 0.0",
            ));
        }
        if !(self.initializer_range >= 0.0 && self.initializer_range.is_finite()) {
            return Err(invalid(
                "initializer_range",
                self.initializer_range.to_string(),
                "must be non-negative and finite",
            ));
        }
        if let Some(t) = &self.model_type
            && t != "qwen2"
        {
            return Err(invalid("model_type", t.clone(), "valid choices: qwen2"));
        }
        Ok(())
    }

    /// The special token ids fall inside the vocabulary.
    fn validate_token_ids(&self) -> Result<(), ConfigError> {
        let specials = self
            .eos_token_ids()
            .into_iter()
            .map(|id| ("eos_token_id", id));
        for (field, id) in specials.chain(self.pad_token_id.map(|id| ("pad_token_id", id))) {
            if id as usize >= self.vocab_size {
                return Err(invalid(
                    field,
                    id.to_string(),
                    &format!("must be below vocab_size ({})", self.vocab_size),
                ));
            }
        }
        Ok(())
    }
}

/// The JSON type of a value, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What serde expected, from its `invalid type: X, expected Y` message.
fn expected_of(message: &str) -> String {
    message
        .split_once("expected ")
        .map(|(_, e)| e.split(" at line").next().unwrap_or(e).to_string())
        .unwrap_or_else(|| message.to_string())
}

/// A refused field of `config.json`: its name, value and why.
fn invalid(field: &'static str, value: String, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 1000000.0, "rope_scaling": null,
        "tie_word_embeddings": true, "eos_token_id": 151643, "bos_token_id": 151643,
        "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
        "rms_norm_eps": 1e-06, "sliding_window": 32768, "use_sliding_window": false,
        "hidden_act": "silu", "attention_dropout": 0.0, "torch_dtype": "bfloat16"}"#;

    #[test]
    fn reads_qwen25_legacy_layout() {
        let c = Qwen2Config::from_json_str(LEGACY, "qwen2.5-0.5b").unwrap();
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.num_kv_heads(), 2);
        assert_eq!(c.rope_theta(), 1e6);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids(), vec![151643]);
    }

    #[test]
    fn reads_transformers5_layout() {
        let text = r#"{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 384,
            "rope_parameters": {"rope_theta": 50000.0, "rope_type": "default"},
            "layer_types": ["full_attention", "full_attention"], "eos_token_id": [3, 4]}"#;
        let c = Qwen2Config::from_json_str(text, "t5").unwrap();
        assert_eq!(c.rope_theta(), 50000.0);
        assert_eq!(c.eos_token_ids(), vec![3, 4]);
        assert_eq!(c.head_dim(), 16);
    }

    fn refused(edit: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(LEGACY).unwrap();
        let patch: serde_json::Value = serde_json::from_str(edit).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        Qwen2Config::from_json_str(&v.to_string(), "edited")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let e = refused(r#"{"num_key_value_heads": 3}"#);
        assert!(
            e.contains("num_key_value_heads") && e.contains("divide"),
            "{e}"
        );
        let e = refused(r#"{"hidden_act": "gelu"}"#);
        assert!(
            e.contains("`hidden_act` = gelu") && e.contains("silu"),
            "{e}"
        );
        let e = refused(r#"{"use_sliding_window": true}"#);
        assert!(e.contains("use_sliding_window"), "{e}");
        let e = refused(r#"{"rope_scaling": {"type": "yarn", "factor": 4.0}}"#);
        assert!(e.contains("rope_scaling") && e.contains("yarn"), "{e}");
        let e = refused(r#"{"attention_dropout": 0.1}"#);
        assert!(e.contains("attention_dropout"), "{e}");
        let e = refused(r#"{"hidden_size": 900}"#);
        assert!(e.contains("hidden_size") && e.contains("multiple"), "{e}");
        let e = refused(r#"{"head_dim": 63}"#);
        assert!(e.contains("head_dim") && e.contains("even"), "{e}");
        let e = refused(r#"{"rope_parameters": {"rope_theta": 5.0}}"#);
        assert!(e.contains("disagrees"), "{e}");
        let e = refused(r#"{"hidden_size": "big"}"#);
        assert_eq!(e, "edited: `hidden_size` = \"big\" is not usize");
        let e = refused(r#"{"eos_token_id": "end"}"#);
        assert!(
            e.starts_with("edited: `eos_token_id` = \"end\" is not"),
            "{e}"
        );
    }

    #[test]
    fn missing_sizes_and_non_objects_are_named() {
        let mut v: serde_json::Value = serde_json::from_str(LEGACY).unwrap();
        v.as_object_mut().unwrap().remove("num_hidden_layers");
        let e = Qwen2Config::from_json_str(&v.to_string(), "m/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m/config.json has no `num_hidden_layers`; a Qwen2 config.json must state vocab_size"),
            "{e}"
        );
        v["num_hidden_layers"] = serde_json::Value::Null;
        let e = Qwen2Config::from_json_str(&v.to_string(), "c").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::MissingField {
                field: "num_hidden_layers",
                ..
            }
        ));
        let e = Qwen2Config::from_json_str("4", "c")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c is not a valid Qwen2 config.json: not a JSON object (it holds a number)"
        );
        let e = Qwen2Config::from_json_str("{", "c")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c is not a valid Qwen2 config.json: not JSON"),
            "{e}"
        );
    }
}
