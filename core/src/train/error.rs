//! Why a run failed. Every variant but [`TrainError::Setup`] keeps the error that caused it as
//! its `source` and says what the run was doing, so the CLI's `caused by:` chain reads from the
//! step down to the file, tensor or setting at fault.
//!
//! Inside the trainer a typed error gets its context with [`Context::context`]
//! (`load(...).context(format!("loading {}", dir.display()))?`). The sources are boxed, so a
//! `Result<_, TrainError>` stays small whatever the largest source error is.

use crate::aqn::AqnError;
use crate::checkpoint::LoadError;
use crate::checkpoint::save::SaveError;
use crate::formats::FormatError;
use crate::generation::{GenerateError, SamplingError};
use crate::hw_noise::HwNoiseError;
use crate::lora::LoraError;
use crate::qat::QatError;
use crate::rl::RlError;
use crate::run::RunDirError;
use crate::task::TaskError;
use crate::tokenizer::TokenizerError;

use super::config::ConfigError;
use super::evaluate::EvalError;
use super::finite_weights::NonFiniteWeight;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration, in a way only the run could detect (an empty data set, a prompt
    /// longer than allowed, ...): the message names the setting.
    #[error("{0}")]
    Setup(String),
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An update left a trained tensor with a NaN or an infinity: the run stops at that step,
    /// before any checkpoint is written from these weights.
    #[error(
        "step {step}: after the optimizer update, trained tensor `{}` holds {} of its {} values ({} trained tensors affected); the run stops here and saves nothing from these weights. Lower optim.lr (now {lr:e}), or clip gradients (optim.grad_clip, now {grad_clip}; with clipping a non-finite gradient skips its update)",
        weight.tensor, weight.counts, weight.elements, weight.tensors
    )]
    NonFiniteWeights {
        /// The step.
        step: u64,
        /// The first tensor at fault.
        weight: Box<NonFiniteWeight>,
        /// `optim.lr`.
        lr: f64,
        /// `optim.grad_clip`.
        grad_clip: f64,
    },
    /// A file of the run folder.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// Evaluation.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// AQN (its schedule, targets, RIN policy or SRDD report).
    #[error(transparent)]
    Aqn(#[from] AqnError),
    /// A file or folder outside the run folder's logs (a checkpoint, the built-in model).
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: Box<std::io::Error>,
    },
    /// A JSON document (a checkpoint's trainer state).
    #[error("{context}")]
    Json {
        /// What was being done.
        context: String,
        /// The parser's error.
        #[source]
        source: Box<serde_json::Error>,
    },
    /// Loading a checkpoint's weights.
    #[error("{context}")]
    Load {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// Saving a checkpoint's weights.
    #[error("{context}")]
    Save {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<SaveError>,
    },
    /// Reading or writing the optimizer's state.
    #[error("{context}")]
    Record {
        /// What was being done.
        context: String,
        /// Burn's error.
        #[source]
        source: Box<burn::store::RecordError>,
    },
    /// The tokenizer.
    #[error("{context}")]
    Tokenizer {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<TokenizerError>,
    },
    /// The problems.
    #[error("{context}")]
    Data {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<TaskError>,
    },
    /// Generation.
    #[error("{context}")]
    Generate {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<GenerateError>,
    },
    /// Rollout sampling settings.
    #[error("{context}")]
    Sampling {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<SamplingError>,
    },
    /// Fake quantization.
    #[error("{context}")]
    Quant {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<QatError>,
    },
    /// Packing weights into codes.
    #[error("{context}")]
    Format {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<FormatError>,
    },
    /// LoRA adapters or full fine-tuning.
    #[error("{context}")]
    Lora {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<LoraError>,
    },
    /// Hardware-error injection.
    #[error("{context}")]
    HwNoise {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<HwNoiseError>,
    },
    /// The RL algorithm (dynamic sampling, advantages, losses, clipping, optimizer settings).
    #[error("{context}")]
    Rl {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<RlError>,
    },
}

/// An error the trainer wraps with what it was doing.
pub(crate) trait Source {
    /// The [`TrainError`] of this error in `context`.
    fn in_context(self, context: String) -> TrainError;
}

macro_rules! sources {
    ($($variant:ident: $error:ty),+ $(,)?) => {
        $(impl Source for $error {
            fn in_context(self, context: String) -> TrainError {
                TrainError::$variant {
                    context,
                    source: Box::new(self),
                }
            }
        })+
    };
}

sources! {
    Io: std::io::Error,
    Json: serde_json::Error,
    Load: LoadError,
    Save: SaveError,
    Record: burn::store::RecordError,
    Tokenizer: TokenizerError,
    Data: TaskError,
    Generate: GenerateError,
    Sampling: SamplingError,
    Quant: QatError,
    Format: FormatError,
    Lora: LoraError,
    HwNoise: HwNoiseError,
    Rl: RlError,
}

/// Adds what the run was doing to a typed error.
pub(crate) trait Context<T> {
    /// The error, if any, as a [`TrainError`] saying `context`.
    fn context(self, context: impl Into<String>) -> Result<T, TrainError>;
}

impl<T, E: Source> Context<T> for Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T, TrainError> {
        self.map_err(|e| e.in_context(context.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn context_keeps_the_source_in_the_chain() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        let e = r.context("reading checkpoints/step_3").unwrap_err();
        assert_eq!(e.to_string(), "reading checkpoints/step_3");
        assert_eq!(e.source().unwrap().to_string(), "no such file");
    }
}
