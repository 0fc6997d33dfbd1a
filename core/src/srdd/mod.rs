//! SRDD (Static Relative Deadzone Detection, docs/spec.md section 5): the per-layer quantization error
//! of a model, and the report that RIN reads ([`SrddReport`]).
//!
//! | file | concept |
//! |---|---|
//! | [`report`] | [`SrddReport`]: the exact JSON schema of the original scanner, thresholds, metrics (pure; wasm32 too) |
//! | [`scan`] | [`scan()`] (capture + metrics), [`build_report`], [`SrddCapture`] |
//! | [`thresholds`] | [`SrddThresholds`]: when a layer is flagged, the default per format |
//! | [`prompts`] | the built-in calibration prompts and prompt files (with their size limits) |
//! | [`error`] | [`SrddError`] |
//!
//! The capture hook of a projection's input is `crate::model::InputRecorder`. The command line
//! is `aqn-native srdd` (native/src/cmd/srdd.rs).

pub mod error;
pub mod prompts;
pub mod report;
#[cfg(feature = "burn")]
pub mod scan;
pub mod thresholds;

pub use error::SrddError;
pub use prompts::{DEFAULT_PROMPTS, read_prompts};
pub use report::{
    LayerMetrics, MetricStatistics, SrddBody, SrddConfig, SrddLayer, SrddMetric,
    SrddRecommendations, SrddReport, SrddStrategy, SrddSummary,
};
#[cfg(feature = "burn")]
pub use scan::{EXACT_SQNR_DB, SrddCapture, build_report, iso8601, mean_metrics, scan};
pub use thresholds::SrddThresholds;
