//! The run folder and what reads it: the folder a training run writes ([`dir`]), who may write
//! it ([`claim`]: the mark of aqn's folders and the lock of the run that holds one), the keys of its
//! metrics ([`metric_keys`]), its TensorBoard event files ([`tensorboard`]), and the parser of its
//! logs for the report and the run viewer ([`log`]). docs/run_format.md is the schema.

pub mod claim;
pub mod dir;
pub mod log;
pub mod metric_keys;
pub mod tensorboard;

pub use dir::{RunDir, RunDirError, StepMetrics};
