//! Training: the GRPO/DAPO trainer and its configuration, the teacher-forced sequence layout and
//! log-probs, evaluation, the run folder, and supervised pretraining of the built-in tiny model.

pub mod collective;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod micro_batch;
pub mod pretrain;
pub mod sequence;
pub mod summary;
pub mod trainer;

pub use collective::{Collective, SingleProcess};
pub use config::{ConfigSources, TrainConfig};
pub use summary::RunSummary;
pub use trainer::{Event, RunPlan, TrainError, TrainOptions, train};
