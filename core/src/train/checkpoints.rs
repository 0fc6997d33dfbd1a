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

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::config::FinetuneMode;
use super::data::DataStream;
use super::error::{Context, TrainError};
use crate::atomic_write::write_atomic;
use crate::checkpoint::loader::{CONFIG_FILE as MODEL_CONFIG, SINGLE_FILE};
use crate::checkpoint::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
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
/// The name of a checkpoint folder before its step.
const STEP_PREFIX: &str = "step_";
/// Largest safetensors header read to check a checkpoint's weights (safetensors' own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

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

/// The `checkpoints/step_N` folders of a run, by ascending step.
pub(super) fn step_folders(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(CHECKPOINT_DIR)) else {
        return Vec::new();
    };
    let mut saved: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let step = e
                .file_name()
                .to_string_lossy()
                .strip_prefix(STEP_PREFIX)?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    saved.sort_by_key(|(step, _)| *step);
    saved
}

/// The saved checkpoints of a run (folders `step_N` with a trainer state), by ascending step.
fn saved_checkpoints(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    step_folders(run_dir)
        .into_iter()
        .filter(|(_, path)| path.join(TRAINER_STATE).exists())
        .collect()
}

/// Why the checkpoint folder `path` of `step` is not a complete checkpoint (`None`: it is one):
/// its trainer state (written last) is missing, unparsable or of another step, its optimizer
/// state or weights (a PEFT adapter or an HF folder) are missing or empty, or the weights'
/// safetensors file is shorter or longer than its header says.
pub fn incomplete_checkpoint(path: &Path, step: u64) -> Option<String> {
    let state = path.join(TRAINER_STATE);
    let Ok(text) = std::fs::read_to_string(&state) else {
        return Some(format!("no readable {TRAINER_STATE} (an interrupted save)"));
    };
    match serde_json::from_str::<TrainerState>(&text) {
        Err(e) => return Some(format!("{TRAINER_STATE} cannot be parsed: {e}")),
        Ok(s) if s.step != step => {
            return Some(format!("{TRAINER_STATE} is of step {}", s.step));
        }
        Ok(_) => {}
    }
    let non_empty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    if !non_empty(&path.join(OPTIMIZER_FILE)) {
        return Some(format!("{OPTIMIZER_FILE} is missing or empty"));
    }
    let complete =
        |dir: &str, files: [&str; 2]| files.iter().all(|f| non_empty(&path.join(dir).join(f)));
    let adapter = complete(ADAPTER_DIR, [ADAPTER_WEIGHTS, ADAPTER_CONFIG]);
    let weights = complete(WEIGHTS_DIR, [SINGLE_FILE, MODEL_CONFIG]);
    let tensors = match (adapter, weights) {
        (true, _) => format!("{ADAPTER_DIR}/{ADAPTER_WEIGHTS}"),
        (false, true) => format!("{WEIGHTS_DIR}/{SINGLE_FILE}"),
        (false, false) => {
            return Some(format!(
                "neither {ADAPTER_DIR}/ ({ADAPTER_WEIGHTS}, {ADAPTER_CONFIG}) nor {WEIGHTS_DIR}/ ({SINGLE_FILE}, {MODEL_CONFIG}) is complete"
            ));
        }
    };
    truncated_safetensors(&path.join(&tensors)).map(|why| format!("{tensors}: {why}"))
}

/// Why the safetensors file `path` is unreadable or truncated (`None`: its header parses and the
/// file is as long as the header's tensors say), reading the header only.
fn truncated_safetensors(path: &Path) -> Option<String> {
    let check = || -> Result<Option<String>, std::io::Error> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut size = [0u8; 8];
        file.read_exact(&mut size)?;
        let header_len = u64::from_le_bytes(size);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > len {
            return Ok(Some(format!(
                "a header of {header_len} bytes in a file of {len}"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)?;
        let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice(&header) else {
            return Ok(Some("the header is not a JSON object".into()));
        };
        let end = tensors
            .values()
            .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
            .max()
            .unwrap_or(0);
        let expected = 8 + header_len + end;
        Ok((expected != len).then(|| format!("{len} bytes where the header needs {expected}")))
    };
    check().unwrap_or_else(|e| Some(e.to_string()))
}

/// A checkpoint folder passed over because it is not complete.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedCheckpoint {
    /// The folder.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The latest complete checkpoint of a run, and the later folders passed over (latest first).
fn latest_complete(run_dir: &Path) -> (Option<(u64, PathBuf)>, Vec<SkippedCheckpoint>) {
    let mut skipped = Vec::new();
    for (step, path) in step_folders(run_dir).into_iter().rev() {
        match incomplete_checkpoint(&path, step) {
            None => return (Some((step, path)), skipped),
            Some(reason) => skipped.push(SkippedCheckpoint { path, reason }),
        }
    }
    (None, skipped)
}

/// The steps of a run's saved checkpoints, ascending.
pub fn checkpoint_steps(run_dir: &Path) -> Vec<u64> {
    saved_checkpoints(run_dir)
        .into_iter()
        .map(|(step, _)| step)
        .collect()
}

/// The latest complete `checkpoints/step_N` folder of a run.
pub fn latest_checkpoint(run_dir: &Path) -> Option<(u64, PathBuf)> {
    latest_complete(run_dir).0
}

/// `what` holds no complete checkpoint: an error listing the folders passed over.
fn no_checkpoint(what: String, skipped: &[SkippedCheckpoint]) -> TrainError {
    let listed: Vec<String> = skipped
        .iter()
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect();
    TrainError::Setup(if listed.is_empty() {
        format!("{what} holds no checkpoint (checkpoints/step_N with {TRAINER_STATE})")
    } else {
        format!("{what} holds no complete checkpoint: {}", listed.join("; "))
    })
}

/// The checkpoint `checkpoints/step_{step}` of a run (`None`: the latest complete one), with its
/// step.
pub fn find_checkpoint(run_dir: &Path, step: Option<u64>) -> Result<(u64, PathBuf), TrainError> {
    match step {
        None => {
            let (found, skipped) = latest_complete(run_dir);
            found.ok_or_else(|| no_checkpoint(run_dir.display().to_string(), &skipped))
        }
        Some(step) => {
            let path = run_dir
                .join(CHECKPOINT_DIR)
                .join(format!("{STEP_PREFIX}{step}"));
            if path.join(TRAINER_STATE).exists() {
                match incomplete_checkpoint(&path, step) {
                    None => Ok((step, path)),
                    Some(reason) => Err(TrainError::Setup(format!(
                        "the checkpoint {} is not complete: {reason}",
                        path.display()
                    ))),
                }
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

/// The checkpoint a resumed run continues from: the latest complete one of `run_dir`.
pub(super) struct ResumePoint {
    /// Its step.
    pub step: u64,
    /// Its folder.
    pub path: PathBuf,
    /// The later folders passed over, latest first (the run reports them).
    pub skipped: Vec<SkippedCheckpoint>,
}

/// The checkpoint a resumed run continues from: the latest complete one of `run_dir`; an error
/// naming every folder passed over when none is complete.
pub(super) fn resume_point(run_dir: &Path) -> Result<ResumePoint, TrainError> {
    match latest_complete(run_dir) {
        (Some((step, path)), skipped) => Ok(ResumePoint {
            step,
            path,
            skipped,
        }),
        (None, skipped) => Err(no_checkpoint(
            format!("--resume: {}", run_dir.display()),
            &skipped,
        )),
    }
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
    // A folder of the same step from before a resume is incomplete until its state is rewritten.
    let state = path.join(TRAINER_STATE);
    if state.exists() {
        std::fs::remove_file(&state).context(format!("removing {}", state.display()))?;
    }
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
    write_atomic(
        &state,
        serde_json::to_string_pretty(&snapshot.state)
            .expect("the trainer state serializes")
            .as_bytes(),
    )
    .map_err(|e| TrainError::Setup(e.to_string()))?;
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

    /// A checkpoint folder `name` of `step`, complete or interrupted (no trainer state).
    fn checkpoint(run: &Path, name: &str, step: u64, complete: bool) -> PathBuf {
        let path = run.join(CHECKPOINT_DIR).join(name);
        std::fs::create_dir_all(path.join(ADAPTER_DIR)).unwrap();
        let tensor = crate::tensor_file::OutTensor::bytes("w", vec![4], vec![1; 4]);
        let weights = crate::tensor_file::serialize(&[tensor], None).unwrap();
        std::fs::write(path.join(ADAPTER_DIR).join(ADAPTER_WEIGHTS), weights).unwrap();
        std::fs::write(path.join(ADAPTER_DIR).join(ADAPTER_CONFIG), "{}").unwrap();
        std::fs::write(path.join(OPTIMIZER_FILE), "x").unwrap();
        if complete {
            let state = TrainerState {
                step,
                stream: DataStream::new(7, 10, 4),
                eval_history: Vec::new(),
            };
            std::fs::write(
                path.join(TRAINER_STATE),
                serde_json::to_string(&state).unwrap(),
            )
            .unwrap();
        }
        path
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
                .err()
                .unwrap()
                .to_string()
                .contains("--resume")
        );
        for (name, step, complete) in [
            ("step_2", 2, true),
            ("step_10", 10, true),
            ("step_1", 1, true),
            ("step_12", 12, false),
            ("notes", 0, true),
        ] {
            checkpoint(&run, name, step, complete);
        }
        assert_eq!(checkpoint_steps(&run), vec![1, 2, 10]);
        let latest = run.join(CHECKPOINT_DIR).join("step_10");
        assert_eq!(latest_checkpoint(&run), Some((10, latest.clone())));
        assert_eq!(find_checkpoint(&run, None).unwrap(), (10, latest.clone()));
        let point = resume_point(&run).unwrap();
        assert_eq!((point.step, point.path), (10, latest));
        assert_eq!(point.skipped.len(), 1);
        assert!(point.skipped[0].reason.contains("interrupted save"));
        let (step, path) = find_checkpoint(&run, Some(2)).unwrap();
        assert_eq!((step, path.file_name().unwrap()), (2, "step_2".as_ref()));
        let e = find_checkpoint(&run, Some(12)).unwrap_err().to_string();
        assert!(e.contains("saved steps: 1, 2, 10"), "{e}");
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn resume_falls_back_past_corrupt_checkpoints_to_the_last_complete_one() {
        let run = temp_dir("fallback");
        checkpoint(&run, "step_1", 1, true);
        let bad_state = checkpoint(&run, "step_2", 2, true);
        std::fs::write(bad_state.join(TRAINER_STATE), "{\"step\": 2,").unwrap();
        let no_optim = checkpoint(&run, "step_3", 3, true);
        std::fs::remove_file(no_optim.join(OPTIMIZER_FILE)).unwrap();
        let no_weights = checkpoint(&run, "step_4", 4, true);
        std::fs::write(no_weights.join(ADAPTER_DIR).join(ADAPTER_WEIGHTS), "").unwrap();
        let wrong_step = checkpoint(&run, "step_5", 4, true);
        let truncated = checkpoint(&run, "step_6", 6, true);
        let weights = truncated.join(ADAPTER_DIR).join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() - 1]).unwrap();
        let point = resume_point(&run).unwrap();
        assert_eq!(point.step, 1);
        let first = point.skipped.first().unwrap();
        assert_eq!(first.path, truncated);
        assert!(first.reason.contains("where the header needs"), "{first:?}");
        let point = ResumePoint {
            skipped: point.skipped[1..].to_vec(),
            ..point
        };
        let reasons: Vec<(&Path, &str)> = point
            .skipped
            .iter()
            .map(|s| (s.path.as_path(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[0].0, wrong_step);
        assert!(reasons[0].1.contains("is of step 4"), "{reasons:?}");
        assert!(reasons[1].1.contains("adapter/"), "{reasons:?}");
        assert!(reasons[2].1.contains(OPTIMIZER_FILE), "{reasons:?}");
        assert!(reasons[3].1.contains("cannot be parsed"), "{reasons:?}");
        let e = find_checkpoint(&run, Some(3)).unwrap_err().to_string();
        assert!(
            e.contains("not complete") && e.contains(OPTIMIZER_FILE),
            "{e}"
        );
        // None complete: the error names every folder and why.
        std::fs::remove_file(run.join(CHECKPOINT_DIR).join("step_1").join(OPTIMIZER_FILE)).unwrap();
        let e = resume_point(&run).err().unwrap().to_string();
        assert!(e.contains("holds no complete checkpoint"), "{e}");
        assert!(e.contains("step_1") && e.contains("step_6"), "{e}");
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
