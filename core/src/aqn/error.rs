//! Why an AQN configuration or step was refused. Every message names the value.

use thiserror::Error;

use crate::checkpoint::LoadError;
use crate::name_pattern::NamePatternError;
use crate::rin::RinError;
use crate::schedule::ScheduleError;
use crate::srdd::SrddError;

/// A refused AQN input.
#[derive(Debug, Error)]
pub enum AqnError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
    /// The targets select no tensor of the model: noise would silently do nothing.
    #[error(
        "AQN targets {targets} match no parameter of the model, so sigma > 0 would add no noise \
         (parameters are named like `model.layers.0.input_layernorm.weight`)"
    )]
    NoTarget {
        /// The target selection as configured.
        targets: String,
    },
    /// A setting outside its range.
    #[error("AQN {field} = {value} is refused: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// A per-layer vector whose length is not the model's number of decoder layers.
    #[error("{what} has {found} layers but the model has {expected} decoder layers")]
    LayerCount {
        /// The vector (e.g. the SRDD report, the RIN multipliers).
        what: String,
        /// Its length.
        found: usize,
        /// The model's layers.
        expected: usize,
    },
    /// A RIN policy that reads per-layer errors without an SRDD report.
    #[error(
        "RIN policy `{policy}` reads per-layer errors: give an SRDD report (`rin.report`, from \
         `aqn-native srdd --output`); only uniform, zones and targeted:layers=... work without one"
    )]
    RinNeedsReport {
        /// The policy.
        policy: String,
    },
    /// Every targeted tensor gets multiplier 0 at a step where sigma > 0.
    #[error(
        "at step {step} sigma = {sigma} but the RIN multipliers of every targeted tensor are 0 \
         (multipliers {multipliers:?}): no noise would be applied"
    )]
    AllMultipliersZero {
        /// The step.
        step: u64,
        /// The schedule's sigma.
        sigma: f64,
        /// The multipliers in force.
        multipliers: Vec<f64>,
    },
    /// The schedule refused its parameters or the step.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The RIN policy refused its inputs.
    #[error(transparent)]
    Rin(#[from] RinError),
    /// A bad target pattern.
    #[error(transparent)]
    Pattern(#[from] NamePatternError),
    /// The SRDD report file could not be read.
    #[error("cannot read the SRDD report {path}")]
    ReportFile {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The SRDD report file is not a valid report.
    #[error("cannot read the SRDD report {path}")]
    ReportInvalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: SrddError,
    },
    /// The base model to scan for the RIN policy's report could not be loaded.
    #[error("loading {path} for the SRDD scan of the RIN policy")]
    ScanLoad {
        /// The model folder.
        path: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// The SRDD scan of the base model (or building its report) failed.
    #[error("the SRDD {stage} of {path} for the RIN policy")]
    Scan {
        /// `scan` or `report`.
        stage: &'static str,
        /// The model folder.
        path: String,
        /// Why.
        #[source]
        source: SrddError,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading `{name}` from the device: {reason}")]
    Read {
        /// The parameter.
        name: String,
        /// Why.
        reason: String,
    },
}
