//! `trainer.max_actor_ckpt_to_keep` (verl's name): after each checkpoint is written, the oldest
//! complete checkpoints beyond the newest N are removed. Only `checkpoints/step_N` folders of
//! the run folder (which aqn marked as its own) that are complete checkpoints are removed; an
//! incomplete one (a run interrupted while saving) is left for the user, and a resumed run
//! passes over it as before.

use std::path::{Path, PathBuf};

use super::checkpoints::{incomplete_checkpoint, step_folders};
use super::error::{Context, TrainError};

/// Removes the complete checkpoints of `run_dir` older than the newest `keep`; returns the
/// removed folders, oldest first.
pub(super) fn prune_checkpoints(run_dir: &Path, keep: u64) -> Result<Vec<PathBuf>, TrainError> {
    let complete: Vec<PathBuf> = step_folders(run_dir)
        .into_iter()
        .filter(|(step, path)| incomplete_checkpoint(path, *step).is_none())
        .map(|(_, path)| path)
        .collect();
    let surplus = complete.len().saturating_sub(keep as usize);
    let removed: Vec<PathBuf> = complete.into_iter().take(surplus).collect();
    for path in &removed {
        std::fs::remove_dir_all(path).context(format!(
            "removing {} (trainer.max_actor_ckpt_to_keep)",
            path.display()
        ))?;
    }
    Ok(removed)
}
