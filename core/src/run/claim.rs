//! Who may write a run folder (docs/run_format.md, "Ownership"): the folder's **mark** says aqn
//! created it, and its **lock** says a run holds it now.
//!
//! - The mark is the file [`MARK_FILE`] (`.aqn-run`), a small JSON object ([`RunMark`]) written
//!   when a run takes a new or empty folder. aqn writes, replaces or removes files only in a
//!   folder that carries it, and there only its own entries ([`AQN_ENTRIES`]): a user's file
//!   beside them is never touched, and a non-empty folder without the mark is refused.
//! - The lock is an exclusive OS lock (`flock` on Unix, `LockFileEx` on Windows) on the file
//!   [`LOCK_FILE`] (`.aqn-lock`) inside the folder, held for the life of the run by the returned
//!   [`RunClaim`]. The OS releases it when the process exits or dies, so a crashed run never
//!   leaves a stale lock; a second run on the folder is refused while the first holds it.
//!
//! [`claim`] checks the folder, takes the lock, clears aqn's entries for [`ClaimMode::Overwrite`]
//! and writes the mark, in that order: nothing is removed before the lock is held.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic_write::{temp_path, write_atomic};
use crate::run::dir::{
    AUDIT_FILE, CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, SRDD_FILE, SUMMARY_FILE, TB_DIR,
};

/// The mark of a run folder aqn created.
pub const MARK_FILE: &str = ".aqn-run";
/// The file whose OS lock a run holds while it writes the folder.
pub const LOCK_FILE: &str = ".aqn-lock";
/// The `tool` of every mark aqn writes.
pub const MARK_TOOL: &str = "aqn";
/// What a run writes into its folder besides the mark and the lock: all that `--overwrite`
/// removes (nothing else in the folder is touched).
pub const RUN_ENTRIES: &[&str] = &[
    CONFIG_FILE,
    METRICS_FILE,
    AUDIT_FILE,
    TB_DIR,
    CHECKPOINT_DIR,
    SRDD_FILE,
    SUMMARY_FILE,
];
/// Every entry aqn writes into a run folder.
pub const AQN_ENTRIES: &[&str] = &[
    CONFIG_FILE,
    METRICS_FILE,
    AUDIT_FILE,
    TB_DIR,
    CHECKPOINT_DIR,
    SRDD_FILE,
    SUMMARY_FILE,
    MARK_FILE,
    LOCK_FILE,
];
/// How many entries of a foreign folder an error names.
const SHOWN_ENTRIES: usize = 5;

/// The content of [`MARK_FILE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMark {
    /// Always [`MARK_TOOL`].
    pub tool: String,
    /// The version of aqn that created the folder.
    pub version: String,
    /// When it was created, in seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// `true` when the folder was a run of an aqn without marks, marked when resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

impl RunMark {
    /// A mark of this aqn, now.
    fn now(adopted: bool) -> Self {
        Self {
            tool: MARK_TOOL.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            adopted,
        }
    }

    /// The mark of `dir`, if it carries one aqn wrote.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(MARK_FILE)).ok()?;
        serde_json::from_str::<Self>(&text)
            .ok()
            .filter(|m| m.tool == MARK_TOOL)
    }
}

/// What a run does with its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimMode {
    /// A new run: the folder is new, empty, or marked and free of a run.
    New,
    /// A new run replacing the run of a marked folder (`--overwrite`).
    Overwrite,
    /// Continuing the run in the folder (`--resume`).
    Resume,
}

/// Why a run may not take a folder.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A non-empty folder aqn did not create.
    #[error(
        "{dir} is not empty and is not an aqn run folder (no {MARK_FILE} mark): it holds {entries}; aqn never writes into or deletes from a folder it did not create, so choose another --run-dir (a new or empty folder)"
    )]
    Foreign {
        /// The folder.
        dir: String,
        /// Its first entries, listed.
        entries: String,
    },
    /// A marked folder that already holds a run, without `--overwrite`.
    #[error(
        "{dir} already holds a run ({entry}); continue it with `--resume {dir}`, choose another --run-dir, or replace it with --overwrite (which removes only what aqn wrote there)"
    )]
    HoldsRun {
        /// The folder.
        dir: String,
        /// The first of the run's entries found.
        entry: String,
    },
    /// A folder `--resume` cannot continue.
    #[error(
        "{dir} is not an aqn run folder to resume: it has no {MARK_FILE} mark, nor the {CONFIG_FILE} and {CHECKPOINT_DIR}/ of a run by an older aqn; give the folder a run was trained in"
    )]
    NotARun {
        /// The folder.
        dir: String,
    },
    /// Another process holds the folder's lock.
    #[error(
        "{dir} is held by another aqn-native train{holder} (lock on {lock}); wait for it to finish, stop it, or choose another --run-dir"
    )]
    Held {
        /// The folder.
        dir: String,
        /// The lock file.
        lock: String,
        /// ` (pid N)` when the holder wrote its process id.
        holder: String,
    },
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, ClaimError> {
    r.map_err(|source| ClaimError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A run's hold on its folder: the open lock file, locked until dropped (or the process ends).
#[derive(Debug)]
pub struct RunClaim {
    _lock: File,
    /// The folder was a run of an aqn without marks and got its mark now (`--resume` only).
    pub adopted: bool,
}

/// What a folder holds, as [`claim`] sees it.
#[derive(Debug, PartialEq, Eq)]
enum Contents {
    /// Nothing (or only a lock file).
    Empty,
    /// The mark; the first of the run's entries, if any.
    Marked(Option<String>),
    /// No mark: the entries (sorted).
    Unmarked(Vec<String>),
}

/// The entries of `dir` (sorted by name), without the lock file and the temporary file of an
/// interrupted write of the mark.
fn entries(dir: &Path) -> Result<Vec<String>, ClaimError> {
    let mark_temp = temp_path(&dir.join(MARK_FILE));
    let mark_temp = mark_temp
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The temporary file's name ends with the writer's process id.
    let mark_temp = mark_temp.trim_end_matches(|c: char| c.is_ascii_digit());
    let mut names = Vec::new();
    for entry in io(dir, std::fs::read_dir(dir))? {
        let name = io(dir, entry)?.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE && !name.starts_with(mark_temp) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn contents(dir: &Path) -> Result<Contents, ClaimError> {
    let names = entries(dir)?;
    if RunMark::read(dir).is_some() {
        let run = RUN_ENTRIES.iter().find(|e| names.iter().any(|n| n == *e));
        Ok(Contents::Marked(run.map(|e| e.to_string())))
    } else if names.is_empty() {
        Ok(Contents::Empty)
    } else {
        Ok(Contents::Unmarked(names))
    }
}

/// The first entries of a listing, for an error.
fn listed(names: &[String]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(SHOWN_ENTRIES)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(SHOWN_ENTRIES);
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{} and {more} more", shown.join(", "))
    }
}

/// Takes the OS lock on `dir`'s lock file, writing this process's id into it.
fn lock(dir: &Path) -> Result<File, ClaimError> {
    let path = dir.join(LOCK_FILE);
    let mut file = io(
        &path,
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path),
    )?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(ClaimError::Held {
                dir: dir.display().to_string(),
                lock: path.display().to_string(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => io(&path, Err(e))?,
    }
    io(&path, file.set_len(0))?;
    io(&path, file.rewind())?;
    io(&path, write!(file, "{}", std::process::id()))?;
    io(&path, file.flush())?;
    Ok(file)
}

/// Removes the run's entries (never anything else) from the marked folder `dir`.
fn clear_run(dir: &Path) -> Result<(), ClaimError> {
    for name in RUN_ENTRIES {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(meta) if meta.is_dir() => io(&path, std::fs::remove_dir_all(&path))?,
            Ok(_) => io(&path, std::fs::remove_file(&path))?,
        }
    }
    Ok(())
}

fn write_mark(dir: &Path, adopted: bool) -> Result<(), ClaimError> {
    let path = dir.join(MARK_FILE);
    let text = serde_json::to_string_pretty(&RunMark::now(adopted)).expect("the mark serializes");
    write_atomic(&path, format!("{text}\n").as_bytes()).map_err(|e| ClaimError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })
}

/// Whether `dir` is a run of an aqn without marks: its configuration and checkpoints, no mark.
fn unmarked_run(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && dir.join(CHECKPOINT_DIR).is_dir()
}

/// Refuses a folder `--resume` cannot continue: one without the mark that is not a run of an
/// aqn without marks (which [`claim`] marks). Reads only; the lock is [`claim`]'s.
pub fn check_resumable(dir: &Path) -> Result<(), ClaimError> {
    if dir.is_dir() && (RunMark::read(dir).is_some() || unmarked_run(dir)) {
        Ok(())
    } else {
        Err(ClaimError::NotARun {
            dir: dir.display().to_string(),
        })
    }
}

/// Takes the run folder `dir` for a run in `mode`: refuses a folder that is not aqn's or that
/// another run holds, locks it, and (for a new run) removes the previous run's entries and marks
/// it. The lock lasts as long as the returned claim.
pub fn claim(dir: &Path, mode: ClaimMode) -> Result<RunClaim, ClaimError> {
    let shown = dir.display().to_string();
    if mode == ClaimMode::Resume {
        check_resumable(dir)?;
    } else if !dir.exists() {
        io(dir, std::fs::create_dir_all(dir))?;
    }
    // Checked before the lock file is created (never in a folder that is not aqn's), and again
    // under the lock (another run may have changed the folder in between).
    let before = contents(dir)?;
    let adopt = match (&before, mode) {
        (Contents::Unmarked(_), ClaimMode::Resume) => true,
        (Contents::Unmarked(names), _) => {
            return Err(ClaimError::Foreign {
                dir: shown,
                entries: listed(names),
            });
        }
        _ => false,
    };
    let file = lock(dir)?;
    match (contents(dir)?, mode) {
        (Contents::Marked(Some(entry)), ClaimMode::New) => {
            return Err(ClaimError::HoldsRun { dir: shown, entry });
        }
        (Contents::Marked(_), ClaimMode::Overwrite) => clear_run(dir)?,
        (Contents::Unmarked(names), ClaimMode::New | ClaimMode::Overwrite) => {
            return Err(ClaimError::Foreign {
                dir: shown,
                entries: listed(&names),
            });
        }
        _ => {}
    }
    if adopt || mode != ClaimMode::Resume {
        write_mark(dir, adopt)?;
    }
    Ok(RunClaim {
        _lock: file,
        adopted: adopt,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aqn-claim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), "x").unwrap();
    }

    #[test]
    fn a_new_folder_is_created_marked_and_locked() {
        let dir = temp_dir("new");
        let held = claim(&dir, ClaimMode::New).unwrap();
        let mark = RunMark::read(&dir).unwrap();
        assert_eq!(mark.tool, MARK_TOOL);
        assert!(!mark.adopted && !held.adopted);
        let e = claim(&dir, ClaimMode::New).unwrap_err();
        assert!(matches!(e, ClaimError::Held { .. }), "{e}");
        assert!(e.to_string().contains("held by another aqn-native train"));
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
        let e = claim(&dir, ClaimMode::Resume).unwrap_err();
        assert!(matches!(e, ClaimError::Held { .. }), "{e}");
        drop(held);
        // Free again, and (without a run's entries) free to reuse.
        drop(claim(&dir, ClaimMode::New).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_folder_is_refused_and_untouched() {
        let dir = temp_dir("foreign");
        write(&dir, "notes.txt");
        write(&dir, CONFIG_FILE);
        for mode in [ClaimMode::New, ClaimMode::Overwrite] {
            let e = claim(&dir, mode).unwrap_err().to_string();
            assert!(e.contains("not an aqn run folder"), "{e}");
            assert!(e.contains("config.toml, notes.txt"), "{e}");
        }
        let e = claim(&dir, ClaimMode::Resume).unwrap_err();
        assert!(matches!(e, ClaimError::NotARun { .. }), "{e}");
        assert_eq!(entries(&dir).unwrap(), vec![CONFIG_FILE, "notes.txt"]);
        assert!(!dir.join(LOCK_FILE).exists());
        // What an interrupted first run leaves (its lock file, a half-written mark) is aqn's.
        let left = temp_dir("left");
        write(&left, LOCK_FILE);
        let half_written = temp_path(&left.join(MARK_FILE));
        write(&left, half_written.file_name().unwrap().to_str().unwrap());
        assert!(entries(&left).unwrap().is_empty());
        drop(claim(&left, ClaimMode::New).unwrap());
        std::fs::remove_dir_all(&left).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overwrite_removes_only_aqns_entries() {
        let dir = temp_dir("overwrite");
        drop(claim(&dir, ClaimMode::New).unwrap());
        for name in [CONFIG_FILE, METRICS_FILE, "notes.txt"] {
            write(&dir, name);
        }
        write(&dir.join(CHECKPOINT_DIR).join("step_1"), "optimizer.bin");
        let e = claim(&dir, ClaimMode::New).unwrap_err().to_string();
        assert!(e.contains("already holds a run (config.toml)"), "{e}");
        drop(claim(&dir, ClaimMode::Overwrite).unwrap());
        assert_eq!(entries(&dir).unwrap(), vec![MARK_FILE, "notes.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_folder_is_taken_and_an_old_run_adopted_on_resume() {
        let dir = temp_dir("empty");
        std::fs::create_dir_all(&dir).unwrap();
        drop(claim(&dir, ClaimMode::New).unwrap());
        assert!(RunMark::read(&dir).is_some());
        let old = temp_dir("old");
        write(&old, CONFIG_FILE);
        std::fs::create_dir_all(old.join(CHECKPOINT_DIR)).unwrap();
        let held = claim(&old, ClaimMode::Resume).unwrap();
        assert!(held.adopted);
        assert!(RunMark::read(&old).unwrap().adopted);
        drop(held);
        assert!(!claim(&old, ClaimMode::Resume).unwrap().adopted);
        let e = claim(&temp_dir("missing"), ClaimMode::Resume).unwrap_err();
        assert!(e.to_string().contains(".aqn-run"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&old).unwrap();
    }
}
