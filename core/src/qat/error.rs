//! Why a quantization configuration was refused. Every message names the value.

use thiserror::Error;

use crate::formats::FormatError;
use crate::name_pattern::NamePatternError;

/// A refused quantization setting.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QatError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// A format spec the formats refuse.
    #[error("quantization `{field}`: {source}")]
    Spec {
        /// `weights` or `activations`.
        field: &'static str,
        /// The format's refusal.
        source: FormatError,
    },
    /// A projection (or the embedding) holds packed codes the mode cannot use.
    #[error("{site}: {source}")]
    Packed {
        /// The module path.
        site: String,
        /// Why the codes do not serve the mode.
        source: FormatError,
    },
    /// A name pattern that does not parse.
    #[error(transparent)]
    Pattern(#[from] NamePatternError),
    /// A setting that would have no effect in the chosen mode.
    #[error("quantization `{field}` is set but mode {mode} does not use it: {hint}")]
    Unused {
        /// The setting.
        field: &'static str,
        /// The mode.
        mode: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// An excluded layer index the model does not have.
    #[error("quantization exclude.layers lists layer {layer}, but the model has {num_layers} decoder layers (0..={last})", last = .num_layers.saturating_sub(1))]
    LayerOutOfRange {
        /// The index.
        layer: usize,
        /// The model's layers.
        num_layers: usize,
    },
    /// An exclusion pattern that matches no projection (a typo would otherwise quantize
    /// everything it meant to keep).
    #[error(
        "quantization exclude pattern `{pattern}` matches no projection of the model (projections \
         are named like `model.layers.0.mlp.down_proj` and `lm_head`, weights add `.weight`)"
    )]
    PatternMatchesNothing {
        /// The pattern.
        pattern: String,
    },
}
