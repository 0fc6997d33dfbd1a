//! A run's checkpoints: `checkpoints/step_N/` of the run folder holds the trained weights (the
//! LoRA adapter in PEFT's format, or the whole model as an HF folder), the optimizer's state and
//! the trainer's state (the data stream's position and the evaluation history), which is written
//! last: a folder without it is an interrupted save and is not a checkpoint.
//!
//! A full fine-tuning checkpoint is a complete HF folder, so the tokenizer files the base model
//! has are copied beside the weights: `tokenizer.json` always (the run loaded its tokenizer from
//! it), `tokenizer_config.json` and `chat_template.jinja` when the base has them (both are
//! optional in an HF folder, and the tokenizer reads them only when present). A file that exists
//! but cannot be copied is an error naming it.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::config::FinetuneMode;
use super::data::DataStream;
use super::error::{Context, TrainError};
use crate::generation::GenerationConfig;
use crate::model::Qwen2ForCausalLM;
use crate::run::RunDir;
use crate::run::dir::CHECKPOINT_DIR;
use crate::tokenizer::qwen2_tokenizer::{
    CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};

/// The trainer's state in a checkpoint folder (written last).
pub(super) const TRAINER_STATE: &str = "trainer_state.json";
/// The optimizer's state in a checkpoint folder.
pub(super) const OPTIMIZER_FILE: &str = "optimizer.bin";
/// The PEFT adapter folder of a LoRA run's checkpoint.
pub(super) const ADAPTER_DIR: &str = "adapter";
/// The HF model folder of a full fine-tuning run's checkpoint.
pub(super) const WEIGHTS_DIR: &str = "model";

/// What a checkpoint holds besides the weights and the optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct TrainerState {
    /// The last step done.
    pub step: u64,
    /// The position in the stream of training prompts.
    pub stream: DataStream,
    /// `(step, val/accuracy)` of every evaluation so far.
    pub eval_history: Vec<(u64, f64)>,
}

impl TrainerState {
    /// Reads the trainer state of the checkpoint folder `path`.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let file = path.join(TRAINER_STATE);
        let text = std::fs::read_to_string(&file).context(format!("reading {}", file.display()))?;
        serde_json::from_str(&text).context(format!("parsing {}", file.display()))
    }
}

/// The saved checkpoints of a run (folders `step_N` with a trainer state), by ascending step.
fn saved_checkpoints(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(CHECKPOINT_DIR)) else {
        return Vec::new();
    };
    let mut saved: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(TRAINER_STATE).exists())
        .filter_map(|e| {
            let step = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("step_")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    saved.sort_by_key(|(step, _)| *step);
    saved
}

/// The steps of a run's saved checkpoints, ascending.
pub fn checkpoint_steps(run_dir: &Path) -> Vec<u64> {
    saved_checkpoints(run_dir)
        .into_iter()
        .map(|(step, _)| step)
        .collect()
}

/// The latest `checkpoints/step_N` folder of a run.
pub fn latest_checkpoint(run_dir: &Path) -> Option<(u64, PathBuf)> {
    saved_checkpoints(run_dir).pop()
}

/// The checkpoint `checkpoints/step_{step}` of a run (`None`: the latest), with its step.
pub fn find_checkpoint(run_dir: &Path, step: Option<u64>) -> Result<(u64, PathBuf), TrainError> {
    match step {
        None => latest_checkpoint(run_dir).ok_or_else(|| {
            TrainError::Setup(format!(
                "{} holds no checkpoint (checkpoints/step_N with {TRAINER_STATE})",
                run_dir.display()
            ))
        }),
        Some(step) => {
            let path = run_dir.join(CHECKPOINT_DIR).join(format!("step_{step}"));
            if path.join(TRAINER_STATE).exists() {
                Ok((step, path))
            } else {
                let saved: Vec<String> = checkpoint_steps(run_dir)
                    .iter()
                    .map(u64::to_string)
                    .collect();
                Err(TrainError::Setup(format!(
                    "{} has no checkpoint of step {step}; saved steps: {}",
                    run_dir.display(),
                    if saved.is_empty() {
                        "none".into()
                    } else {
                        saved.join(", ")
                    }
                )))
            }
        }
    }
}

/// The checkpoint a resumed run continues from: the latest one of `run_dir`.
pub(super) fn resume_point(run_dir: &Path) -> Result<(u64, PathBuf), TrainError> {
    latest_checkpoint(run_dir).ok_or_else(|| {
        TrainError::Setup(format!(
            "--resume: {} holds no checkpoint (checkpoints/step_N with {TRAINER_STATE})",
            run_dir.display()
        ))
    })
}

/// What a checkpoint saves.
pub(super) struct Snapshot<'a> {
    /// The trained model.
    pub policy: &'a Qwen2ForCausalLM,
    /// The optimizer.
    pub optim: &'a ModuleOptimizer,
    /// The trainer's state after the step.
    pub state: TrainerState,
}

/// Where a run's model comes from: what a checkpoint records beside the trained weights.
pub(super) struct Origin<'a> {
    /// LoRA (the adapter is saved) or full fine-tuning (the whole model).
    pub mode: FinetuneMode,
    /// The base model's folder (named in the adapter's config; its tokenizer files are copied).
    pub model_dir: &'a Path,
    /// The EOS and padding tokens of a saved model's config.
    pub generation: &'a GenerationConfig,
}

/// Writes `checkpoints/step_N` of the snapshot's step and returns its path (only the worker that
/// writes the run folder writes it: every worker holds the same state).
pub(super) fn save_checkpoint(
    origin: &Origin,
    dir: &RunDir,
    snapshot: Snapshot,
) -> Result<PathBuf, TrainError> {
    let path = dir.checkpoint(snapshot.state.step);
    if !dir.writes() {
        return Ok(path);
    }
    std::fs::create_dir_all(&path).context(format!("creating {}", path.display()))?;
    let model = snapshot.policy.valid();
    match origin.mode {
        FinetuneMode::Lora => crate::checkpoint::save_lora_adapter(
            &model,
            &path.join(ADAPTER_DIR),
            &origin.model_dir.display().to_string(),
        )
        .context("saving the adapter")?,
        FinetuneMode::Full => {
            let generation = origin.generation;
            let eos = generation
                .eos_token_ids
                .first()
                .copied()
                .unwrap_or(generation.pad_token_id);
            let weights = path.join(WEIGHTS_DIR);
            crate::checkpoint::save::save_qwen2(
                &model,
                &weights,
                crate::tensor_file::FloatDtype::F32,
                eos,
                generation.pad_token_id,
            )
            .context("saving the weights")?;
            copy_tokenizer_files(origin.model_dir, &weights)?;
        }
    }
    let optimizer = path.join(OPTIMIZER_FILE);
    snapshot
        .optim
        .save(&optimizer)
        .context(format!("saving the optimizer to {}", optimizer.display()))?;
    let state = path.join(TRAINER_STATE);
    std::fs::write(
        &state,
        serde_json::to_string_pretty(&snapshot.state).expect("the trainer state serializes"),
    )
    .context(format!("writing {}", state.display()))?;
    Ok(path)
}

/// Copies the base model's tokenizer files into the checkpoint's HF folder `to` (see the module
/// docs for which are required).
fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<(), TrainError> {
    for (name, required) in [
        (TOKENIZER_FILE, true),
        (TOKENIZER_CONFIG_FILE, false),
        (CHAT_TEMPLATE_FILE, false),
    ] {
        let source = from.join(name);
        if !required && !source.exists() {
            continue;
        }
        std::fs::copy(&source, to.join(name)).context(format!(
            "copying the tokenizer file {} into the checkpoint {}",
            source.display(),
            to.display()
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("aqn-checkpoints-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A checkpoint folder of `step`, complete (with its trainer state) or interrupted.
    fn checkpoint(run: &Path, name: &str, complete: bool) {
        let path = run.join(CHECKPOINT_DIR).join(name);
        std::fs::create_dir_all(&path).unwrap();
        if complete {
            std::fs::write(path.join(TRAINER_STATE), "{}").unwrap();
        }
    }

    #[test]
    fn checkpoints_are_found_by_step_and_latest_ignoring_interrupted_saves() {
        let run = temp_dir("find");
        assert!(checkpoint_steps(&run).is_empty());
        assert!(latest_checkpoint(&run).is_none());
        let e = find_checkpoint(&run, None).unwrap_err().to_string();
        assert!(e.contains("holds no checkpoint"), "{e}");
        assert!(
            resume_point(&run)
                .unwrap_err()
                .to_string()
                .contains("--resume")
        );
        for (name, complete) in [
            ("step_2", true),
            ("step_10", true),
            ("step_1", true),
            ("step_12", false),
            ("notes", true),
        ] {
            checkpoint(&run, name, complete);
        }
        assert_eq!(checkpoint_steps(&run), vec![1, 2, 10]);
        let latest = run.join(CHECKPOINT_DIR).join("step_10");
        assert_eq!(latest_checkpoint(&run), Some((10, latest.clone())));
        assert_eq!(find_checkpoint(&run, None).unwrap(), (10, latest.clone()));
        assert_eq!(resume_point(&run).unwrap(), (10, latest));
        let (step, path) = find_checkpoint(&run, Some(2)).unwrap();
        assert_eq!((step, path.file_name().unwrap()), (2, "step_2".as_ref()));
        let e = find_checkpoint(&run, Some(12)).unwrap_err().to_string();
        assert!(e.contains("saved steps: 1, 2, 10"), "{e}");
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn trainer_state_round_trips_and_a_bad_one_names_the_file() {
        let dir = temp_dir("state");
        let state = TrainerState {
            step: 3,
            stream: DataStream::new(7, 10, 4),
            eval_history: vec![(0, 0.25), (3, 0.5)],
        };
        std::fs::write(
            dir.join(TRAINER_STATE),
            serde_json::to_string_pretty(&state).unwrap(),
        )
        .unwrap();
        assert_eq!(TrainerState::read(&dir).unwrap(), state);
        std::fs::write(dir.join(TRAINER_STATE), "{").unwrap();
        let e = TrainerState::read(&dir).unwrap_err();
        assert!(e.to_string().contains("parsing"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokenizer_files_are_copied_the_optional_ones_when_present() {
        let from = temp_dir("tok-from");
        let to = temp_dir("tok-to");
        let e = copy_tokenizer_files(&from, &to).unwrap_err();
        assert!(e.to_string().contains(TOKENIZER_FILE), "{e}");
        std::fs::write(from.join(TOKENIZER_FILE), "{}").unwrap();
        copy_tokenizer_files(&from, &to).unwrap();
        assert!(to.join(TOKENIZER_FILE).exists());
        assert!(!to.join(TOKENIZER_CONFIG_FILE).exists());
        std::fs::write(from.join(TOKENIZER_CONFIG_FILE), "{}").unwrap();
        copy_tokenizer_files(&from, &to).unwrap();
        assert!(to.join(TOKENIZER_CONFIG_FILE).exists());
        std::fs::remove_dir_all(&from).unwrap();
        std::fs::remove_dir_all(&to).unwrap();
    }
}
