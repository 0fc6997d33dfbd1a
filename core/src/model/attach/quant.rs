//! Applying a [`QuantConfig`] to a model: every projection records what it quantizes.

use crate::model::Qwen2ForCausalLM;
use crate::qat::{LinearQuant, QatError, QuantConfig};
use crate::site::LinearSite;

impl Qwen2ForCausalLM {
    /// The model with `config`'s mode set on every projection (and the embedding when included),
    /// replacing any earlier mode. BF16 mode clears every quantizer, which makes the model compute
    /// exactly what the plain model does.
    ///
    /// Refuses an invalid config, excluded layer indices the model does not have, and exclusion
    /// patterns that match no projection.
    pub fn with_quantization(self, config: &QuantConfig) -> Result<Self, QatError> {
        config.validate()?;
        let n = self.num_layers();
        if let Some(&layer) = config.exclude.layers.iter().find(|&&l| l >= n) {
            return Err(QatError::LayerOutOfRange {
                layer,
                num_layers: n,
            });
        }
        for p in &config.exclude.patterns {
            let mut hit = p.matches(crate::qat::config::EMBEDDING_PATH)
                || p.matches(crate::qat::config::EMBEDDING_WEIGHT);
            self.visit_linears(|site, _| hit |= crate::qat::config::pattern_matches(p, site));
            if !hit {
                return Err(QatError::PatternMatchesNothing {
                    pattern: p.to_string(),
                });
            }
        }
        let embed = config.quantizes_embedding().then_some(LinearQuant {
            weights: config.weights,
            activations: None,
            gradient: config.gradient,
        });
        let model = self.try_map_linears(|site, mut linear| {
            let quant = config.for_site(site);
            if let Some(packed) = &linear.packed {
                crate::model::linear::check_packed_spec(packed, quant.as_ref().map(|q| &q.weights))
                    .map_err(|source| QatError::Packed {
                        site: site.module_path(),
                        source,
                    })?;
            }
            linear.hooks.quant = crate::qat::WeightQuantState::new(quant);
            Ok::<_, QatError>(linear.refresh_quantized_weight())
        })?;
        model
            .with_embedding_quant(embed)
            .map_err(|source| QatError::Packed {
                site: crate::qat::config::EMBEDDING_PATH.into(),
                source,
            })
    }

    /// Recomputes every cached `Q(W)` from the current weights (see
    /// [`crate::qat::WeightQuantState`]); `for_phase` and AQN call it, so callers rarely need to.
    pub fn refresh_quantized_weights(self) -> Self {
        self.map_linears(|_, linear| linear.refresh_quantized_weight())
            .refresh_embedding_quant()
    }

    /// Every quantized projection with its quantizer, in module order (for logs and checks).
    pub fn quantized_sites(&self) -> Vec<(LinearSite, LinearQuant)> {
        let mut out = Vec::new();
        self.visit_linears(|site, linear| {
            if let Some(q) = linear.quantization() {
                out.push((*site, *q));
            }
        });
        out
    }
}
