//! SRDD (Static Relative Deadzone Detection, SPEC.md section 5) on a Qwen2 model: capture,
//! per-layer metrics and the report that RIN reads (`crate::rin::SrddReport`).
//!
//! | file | concept |
//! |---|---|
//! | [`scan`] | [`scan()`] (capture + metrics), [`build_report`], [`SrddCapture`] |
//! | [`recorder`] | [`InputRecorder`]: a projection's input, for `linear-inputs` |
//! | [`prompts`] | the built-in calibration prompts and prompt files |
//! | [`error`] | [`SrddError`] |
//!
//! The command line is `aqn-native srdd` (native/src/cmd/srdd.rs).

pub mod error;
pub mod prompts;
pub mod recorder;
pub mod scan;

pub use error::SrddError;
pub use prompts::{DEFAULT_PROMPTS, read_prompts};
pub use recorder::{InputRecorder, RecordedInput};
pub use scan::{EXACT_SQNR_DB, SrddCapture, build_report, iso8601, mean_metrics, scan};
