//! Why the catalogue refused a name or could not read one of its compiled-in documents. Every
//! message names the preset or profile.

use thiserror::Error;

use crate::named::UnknownName;
use crate::rin::RinError;
use crate::schedule::ScheduleError;

/// A refused name, or a compiled-in document the catalogue cannot read.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CatalogueError {
    /// A preset, profile or schedule-preset name that is not compiled in.
    #[error(transparent)]
    UnknownName(#[from] UnknownName),
    /// A compiled-in TOML document that does not parse, or lacks a key the catalogue reads.
    #[error("cannot read the compiled-in {document}")]
    Toml {
        /// `preset NAME` or `profile NAME`.
        document: String,
        /// The parser's message.
        #[source]
        source: toml::de::Error,
    },
    /// A preset without the `[aqn]` table a schedule preset reads.
    #[error("preset {preset} has no [aqn] table, so it has no noise schedule")]
    NoSchedule {
        /// The preset.
        preset: &'static str,
    },
    /// Neither the profile nor the preset states the generation batch.
    #[error("neither profile {profile} nor preset {preset} sets batch.gen_batch_size")]
    NoGenerationBatch {
        /// The profile.
        profile: &'static str,
        /// The preset.
        preset: &'static str,
    },
    /// The training prompts do not fill one generation batch, so an epoch has no step.
    #[error(
        "preset {preset}: {prompts} training prompts make no whole generation batch of {generation}"
    )]
    NoWholeBatch {
        /// The preset.
        preset: &'static str,
        /// The training prompts.
        prompts: u64,
        /// The generation batch.
        generation: u64,
    },
    /// A schedule preset whose RIN configuration does not follow from its TOML preset.
    #[error("schedule preset {row}: {problem}")]
    RinMismatch {
        /// The schedule preset.
        row: &'static str,
        /// What disagrees.
        problem: String,
    },
    /// The preset's schedule parameters are refused.
    #[error("the schedule of preset {preset}")]
    Schedule {
        /// The preset.
        preset: &'static str,
        /// Why.
        #[source]
        source: ScheduleError,
    },
    /// The preset's RIN policy is refused.
    #[error("the RIN policy of preset {preset}")]
    Rin {
        /// The preset.
        preset: &'static str,
        /// Why.
        #[source]
        source: RinError,
    },
}
