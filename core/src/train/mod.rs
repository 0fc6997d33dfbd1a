//! Training: the GRPO/DAPO trainer and its configuration, the teacher-forced sequence layout and
//! log-probs, evaluation, the run folder, and supervised pretraining of the built-in tiny model.
//!
//! The trainer ([`trainer`]) is its steps, one file each: the run's [`setup`], [`rollout`] (with
//! each sample's [`group_id`]), [`log_probs`], rewards and [`advantages`], the [`update`] over
//! [`mini_batches`] of [`micro_batch`]es (with the rollout-training [`mismatch`] and its
//! correction), [`validation`], [`checkpoints`] (kept as [`retention`] says) and [`progress`]
//! events; [`error`] says why a run failed.

mod advantages;
pub mod checkpoints;
pub mod collective;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod finite_weights;
pub mod group_id;
mod log_probs;
pub mod memory;
pub mod micro_batch;
mod mini_batches;
mod mismatch;
pub mod pretrain;
mod problem_checks;
pub mod progress;
mod retention;
mod rollout;
pub mod sequence;
pub mod setup;
pub mod summary;
pub mod trainer;
mod update;
mod validation;

pub use checkpoints::{checkpoint_steps, find_checkpoint, latest_checkpoint};
pub use collective::{Collective, SingleProcess};
pub use config::{ConfigSources, TrainConfig};
pub use error::TrainError;
pub use group_id::GroupId;
pub use progress::{Event, RunPlan, describe};
pub use setup::{load_eval_model, resolve_model_dir};
pub use summary::RunSummary;
pub use trainer::{TrainOptions, train};
