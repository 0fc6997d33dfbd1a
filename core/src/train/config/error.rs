//! Why a configuration was refused. Every message names the key or the value; a section refused
//! by the module that owns it keeps that module's error as its source.

use thiserror::Error;

use crate::catalogue::CatalogueError;
use crate::config::OverrideError;
use crate::hw_noise::HwNoiseError;
use crate::lora::LoraError;
use crate::qat::QatError;
use crate::rl::RlError;
use crate::task::TaskError;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A preset or profile name that is not compiled in (the catalogue's refusal, with the valid
    /// names).
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A TOML file or string that does not parse.
    #[error("{source_name} is not valid TOML")]
    Parse {
        /// Where it came from.
        source_name: String,
        /// The parser's error (with the line and column).
        #[source]
        source: toml::de::Error,
    },
    /// The built-in defaults do not serialize (a bug: every default is a TOML value).
    #[error("the default configuration does not serialize to TOML")]
    Defaults(#[source] toml::ser::Error),
    /// A malformed `--set`.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// The merged document does not fit the schema (unknown key, wrong type, bad enum name):
    /// the deserializer's message, naming the `--set` that broke it when one did.
    #[error("invalid configuration: {0}")]
    Schema(String),
    /// A section refused by the checks of the module that owns it.
    #[error("invalid [{section}]")]
    Section {
        /// The section's dotted key (`actor`, `algorithm.kl`, ...).
        section: &'static str,
        /// The owning module's error, naming the setting.
        #[source]
        source: SectionError,
    },
    /// A value out of range.
    #[error("invalid setting {name} = {value}: {requirement}")]
    Invalid {
        /// The dotted key.
        name: String,
        /// Its value.
        value: String,
        /// What it must be.
        requirement: String,
    },
    /// A chosen key that cannot take effect under the rest of the configuration.
    #[error("{key} = {value} would have no effect: {why}")]
    NoEffect {
        /// The dotted key.
        key: String,
        /// Its value.
        value: String,
        /// The setting (or fact of the run) that prevents it.
        why: String,
    },
    /// An `--unset` of a key that is not there.
    #[error("--unset {0}: there is no such key in the configuration")]
    UnsetMissing(String),
    /// A name that is not one of an enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
}

/// The error of the module that owns a refused section.
#[derive(Debug, Error)]
pub enum SectionError {
    /// `[actor]`, `[algorithm.kl]`, `[algorithm.filter_groups]`, `[optim.adamw]`.
    #[error(transparent)]
    Rl(#[from] RlError),
    /// `[algorithm.reward]`, `[data.synthetic]`.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// `[quant]`.
    #[error(transparent)]
    Quant(#[from] QatError),
    /// `[finetune.lora]`.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// `[hw_noise]`.
    #[error(transparent)]
    HwNoise(#[from] HwNoiseError),
}

impl ConfigError {
    /// The error of `section`'s own checks, as a [`ConfigError::Section`].
    pub fn section<E: Into<SectionError>>(section: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Section {
            section,
            source: e.into(),
        }
    }
}
