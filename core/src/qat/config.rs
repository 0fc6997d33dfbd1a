//! The quantization configuration of a run: mode, formats, gradient, exclusions.
//!
//! TOML form (unknown fields refused; formats in the compact syntax of [`QuantSpec`]):
//! ```toml
//! [quant]
//! mode = "w4a4"            # bf16 (default) | w4a16 | w4a4
//! weights = "nvfp4"        # default nvfp4 (QeRL's format)
//! activations = "nvfp4"    # W4A4 only; default: the weight format
//! gradient = "ste"         # ste (default) | none (the seed's E13a-f ablation)
//! [quant.exclude]
//! modules = ["lm_head", "embed_tokens"]   # the default
//! layers = [0, 27]                        # e.g. the first and last decoder layers (the seed's W4A4)
//! patterns = ["*.down_proj"]
//! ```

use serde::{Deserialize, Serialize};

use super::{LinearQuant, QatError, QuantMode};
use crate::formats::{QuantFormat, QuantSpec};
use crate::name_pattern::NamePattern;
use crate::named::named_traits;
use crate::quant::QuantGradient;
use crate::site::{LinearKind, LinearSite};

/// A module that can be kept out of quantization: a projection (in every decoder layer, or the
/// LM head), named as the projection (`down_proj`), or the token embedding (`embed_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum QuantModule {
    /// The projections of this kind.
    Linear(LinearKind),
    /// The token embedding (a lookup table; quantized along the hidden axis when not excluded).
    EmbedTokens,
}

named_traits!(QuantModule, "quantization module", QatError);

impl QuantModule {
    /// Every module: the LM head and the embedding (the default exclusions), then the decoder
    /// projections.
    pub const ALL: &'static [QuantModule] = &{
        const N: usize = 2 + LinearKind::DECODER.len();
        let mut all = [QuantModule::EmbedTokens; N];
        all[0] = QuantModule::Linear(LinearKind::LmHead);
        let mut i = 2;
        while i < N {
            all[i] = QuantModule::Linear(LinearKind::DECODER[i - 2]);
            i += 1;
        }
        all
    };

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            QuantModule::Linear(kind) => kind.name(),
            QuantModule::EmbedTokens => "embed_tokens",
        }
    }

    /// The module of a lowercase name.
    fn from_name(name: &str) -> Option<Self> {
        let embedding = QuantModule::EmbedTokens;
        let linear = name.parse().map(QuantModule::Linear).ok();
        linear.or((name == embedding.name()).then_some(embedding))
    }
}

/// Serde of a [`QuantSpec`] as its compact text (`nvfp4`, `mxfp4:rceil`).
mod spec_text {
    use super::QuantSpec;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(spec: &QuantSpec, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&spec.label())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuantSpec, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde of an optional [`QuantSpec`] as its compact text.
mod opt_spec_text {
    use super::QuantSpec;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(spec: &Option<QuantSpec>, s: S) -> Result<S::Ok, S::Error> {
        match spec {
            Some(spec) => s.serialize_str(&spec.label()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<QuantSpec>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn default_weights() -> QuantSpec {
    QuantSpec::new(QuantFormat::Nvfp4)
}

fn default_modules() -> Vec<QuantModule> {
    vec![
        QuantModule::Linear(LinearKind::LmHead),
        QuantModule::EmbedTokens,
    ]
}

/// What is kept in full precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantExclude {
    /// Modules kept in f32 (default: lm_head and embed_tokens, docs/spec.md section 2).
    #[serde(default = "default_modules")]
    pub modules: Vec<QuantModule>,
    /// Decoder layers whose projections are kept in f32.
    #[serde(default)]
    pub layers: Vec<usize>,
    /// Projections (module path `model.layers.3.mlp.down_proj` or weight name
    /// `...down_proj.weight`) kept in f32; each must match at least one projection.
    #[serde(default)]
    pub patterns: Vec<NamePattern>,
}

impl Default for QuantExclude {
    fn default() -> Self {
        Self {
            modules: default_modules(),
            layers: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// Mode, formats, gradient and exclusions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantConfig {
    /// BF16 (no fake quantization), W4A16 or W4A4.
    #[serde(default)]
    pub mode: QuantMode,
    /// The weight format.
    #[serde(default = "default_weights", with = "spec_text")]
    pub weights: QuantSpec,
    /// The activation format in W4A4 (default: the weight format).
    #[serde(
        default,
        with = "opt_spec_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub activations: Option<QuantSpec>,
    /// The quantizers' gradient: the STE, or none (the no-STE ablation).
    #[serde(default)]
    pub gradient: QuantGradient,
    /// What stays in full precision.
    #[serde(default)]
    pub exclude: QuantExclude,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self::new(QuantMode::Bf16)
    }
}

impl QuantConfig {
    /// `mode` with NVFP4, the STE and the default exclusions.
    pub fn new(mode: QuantMode) -> Self {
        Self {
            mode,
            weights: default_weights(),
            activations: None,
            gradient: QuantGradient::Ste,
            exclude: QuantExclude::default(),
        }
    }

    /// Sets the weight format.
    pub fn with_weights(mut self, spec: QuantSpec) -> Self {
        self.weights = spec;
        self
    }

    /// Sets the activation format (W4A4).
    pub fn with_activations(mut self, spec: QuantSpec) -> Self {
        self.activations = Some(spec);
        self
    }

    /// Sets the quantizers' gradient.
    pub fn with_gradient(mut self, gradient: QuantGradient) -> Self {
        self.gradient = gradient;
        self
    }

    /// Sets the exclusions.
    pub fn with_exclude(mut self, exclude: QuantExclude) -> Self {
        self.exclude = exclude;
        self
    }

    /// The activation format in force: the explicit one, else the weight format.
    pub fn activation_spec(&self) -> QuantSpec {
        self.activations.unwrap_or(self.weights)
    }

    /// Refuses invalid format specs and an activation format outside W4A4 (it would do nothing).
    /// Layer indices and patterns are checked against the model by `with_quantization`.
    pub fn validate(&self) -> Result<(), QatError> {
        self.weights.validate().map_err(|source| QatError::Spec {
            field: "weights",
            source,
        })?;
        if let Some(a) = &self.activations {
            a.validate().map_err(|source| QatError::Spec {
                field: "activations",
                source,
            })?;
            if !self.mode.quantizes_activations() {
                return Err(QatError::Unused {
                    field: "activations",
                    mode: self.mode.name(),
                    hint: "only w4a4 quantizes activations; set mode = \"w4a4\" or remove it",
                });
            }
        }
        Ok(())
    }

    /// What the projection at `site` does under this config (`None`: full precision).
    pub fn for_site(&self, site: &LinearSite) -> Option<LinearQuant> {
        if !self.mode.quantizes_weights() || self.excludes(site) {
            return None;
        }
        Some(LinearQuant {
            weights: self.weights,
            activations: self
                .mode
                .quantizes_activations()
                .then(|| self.activation_spec()),
            gradient: self.gradient,
        })
    }

    /// Whether the exclusions keep `site` in full precision.
    pub fn excludes(&self, site: &LinearSite) -> bool {
        let ex = &self.exclude;
        ex.modules.contains(&QuantModule::Linear(site.kind))
            || site.layer.is_some_and(|l| ex.layers.contains(&l))
            || ex.patterns.iter().any(|p| pattern_matches(p, site))
    }

    /// Whether the token embedding is quantized (a quantized mode without `embed_tokens` in the
    /// excluded modules, nor a pattern matching `model.embed_tokens.weight`).
    pub fn quantizes_embedding(&self) -> bool {
        self.mode.quantizes_weights()
            && !self.exclude.modules.contains(&QuantModule::EmbedTokens)
            && !self
                .exclude
                .patterns
                .iter()
                .any(|p| p.matches(EMBEDDING_PATH) || p.matches(EMBEDDING_WEIGHT))
    }
}

/// The embedding's module path.
pub const EMBEDDING_PATH: &str = "model.embed_tokens";
/// The embedding's weight name.
pub const EMBEDDING_WEIGHT: &str = "model.embed_tokens.weight";

/// A pattern matches a projection by module path or weight name.
pub(crate) fn pattern_matches(p: &NamePattern, site: &LinearSite) -> bool {
    let path = site.module_path();
    p.matches(&path) || p.matches(&format!("{path}.weight"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_like_json_defaults_and_refusals() {
        let c: QuantConfig =
            serde_json::from_str(r#"{"mode":"w4a4","weights":"mxfp4:rceil"}"#).unwrap();
        assert_eq!(c.mode, QuantMode::W4A4);
        assert_eq!(c.activation_spec().label(), "mxfp4:rceil");
        assert_eq!(
            c.exclude.modules,
            vec![
                QuantModule::Linear(LinearKind::LmHead),
                QuantModule::EmbedTokens
            ]
        );
        assert_eq!(c.gradient, QuantGradient::Ste);
        let back: QuantConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        for (json, needle) in [
            (r#"{"mode":"w8a8"}"#, "`w8a8`"),
            (r#"{"mode":"w4a4","weights":"int4"}"#, "`int4`"),
            (r#"{"gradient":"stee"}"#, "`stee`"),
            (
                r#"{"exclude":{"module":["lm_head"]}}"#,
                "unknown field `module`",
            ),
            (r#"{"exclude":{"modules":["head"]}}"#, "embed_tokens"),
            (r#"{"exclude":{"patterns":[""]}}"#, "empty"),
            (
                r#"{"mode":"w4a16","wieghts":"nvfp4"}"#,
                "unknown field `wieghts`",
            ),
        ] {
            let err = serde_json::from_str::<QuantConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let c = QuantConfig::new(QuantMode::W4A16).with_activations("mxfp4".parse().unwrap());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("activations") && err.contains("w4a16"),
            "{err}"
        );
    }

    #[test]
    fn sites_and_exclusions() {
        let mut c = QuantConfig::new(QuantMode::W4A4);
        c.exclude.layers = vec![1];
        c.exclude.patterns = vec!["*.down_proj".parse().unwrap()];
        let q = c
            .for_site(&LinearSite::decoder(0, LinearKind::QProj))
            .unwrap();
        assert_eq!(q.activations, Some(c.weights));
        assert!(
            c.for_site(&LinearSite::decoder(1, LinearKind::QProj))
                .is_none()
        );
        assert!(
            c.for_site(&LinearSite::decoder(0, LinearKind::DownProj))
                .is_none()
        );
        assert!(c.for_site(&LinearSite::lm_head()).is_none());
        assert!(!c.quantizes_embedding());
        c.exclude.modules = vec![];
        assert!(c.for_site(&LinearSite::lm_head()).is_some());
        assert!(c.quantizes_embedding());
        let w = QuantConfig::new(QuantMode::W4A16);
        assert_eq!(
            w.for_site(&LinearSite::decoder(0, LinearKind::UpProj))
                .unwrap()
                .activations,
            None
        );
        assert!(
            QuantConfig::default()
                .for_site(&LinearSite::decoder(0, LinearKind::UpProj))
                .is_none()
        );
    }

    #[test]
    fn modules_are_the_head_the_embedding_then_the_decoder_projections_by_name() {
        assert_eq!(
            QuantModule::valid_names(),
            "lm_head, embed_tokens, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
        );
        for module in QuantModule::ALL {
            assert_eq!(module.name().parse::<QuantModule>().unwrap(), *module);
            let json = serde_json::to_string(module).unwrap();
            assert_eq!(json, format!("\"{}\"", module.name()));
        }
        assert_eq!(
            "EMBED_TOKENS ".parse::<QuantModule>().unwrap(),
            QuantModule::EmbedTokens
        );
        assert_eq!(
            "scores".parse::<QuantModule>().unwrap_err().to_string(),
            format!(
                "unknown quantization module `scores`; valid choices: {}",
                QuantModule::valid_names()
            )
        );
    }
}
