//! Writing a file so that an interrupted write never leaves a truncated one: the bytes go to a
//! temporary file beside the target (same folder, so the same filesystem), which is flushed to
//! disk and then renamed over the target in one step. A crash, a `kill -9` or a full disk leaves
//! either the old file or the new one, plus at worst a stray `.NAME.aqn-tmp-PID` file, never a
//! half-written `NAME`.
//!
//! [`same_file`] tells whether two paths name one file (the same path, a symlink to it, or a hard
//! link), so a command can refuse to write its output over its own input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a file could not be written.
#[derive(Debug, Error)]
pub enum AtomicWriteError {
    /// Creating, writing, flushing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The target file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The content could not be produced (the caller's writer failed for another reason).
    #[error("cannot write {path}: {reason}")]
    Content {
        /// The target file.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// The temporary file `path` is written to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.aqn-tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic_with(path, |w| w.write_all(bytes).map_err(WriteFailure::Io))
}

/// What a streaming writer can fail with: an I/O error, or a reason of its own.
#[derive(Debug)]
pub enum WriteFailure {
    /// The OS refused a write.
    Io(std::io::Error),
    /// The content could not be produced.
    Content(String),
}

/// Streams the file's content into `fill` (a buffered writer on the temporary file), then flushes,
/// syncs and renames it over `path`. On any failure the temporary file is removed and `path` is
/// left as it was.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), WriteFailure>,
) -> Result<(), AtomicWriteError> {
    let tmp = temp_path(path);
    let io = |source| AtomicWriteError::Io {
        path: path.display().to_string(),
        source,
    };
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp).map_err(io)?);
        fill(&mut out).map_err(|e| match e {
            WriteFailure::Io(source) => io(source),
            WriteFailure::Content(reason) => AtomicWriteError::Content {
                path: path.display().to_string(),
                reason,
            },
        })?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `a` and `b` name the same existing file: equal canonical paths (symlinks resolved),
/// or, on Unix, the same device and inode (hard links). `false` when either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
            return true;
        }
    }
    let _ = (ma, mb);
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aqn-atomic-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_in_one_step_and_cleans_up_on_failure() {
        let d = dir("replace");
        let p = d.join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new content").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        // A writer that fails halfway leaves the old file and no temporary file.
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial").map_err(WriteFailure::Io)?;
            Err(WriteFailure::Content(
                "tensor `x` was given 3 values".into(),
            ))
        })
        .unwrap_err();
        assert!(err.to_string().contains("tensor `x`"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        assert!(!temp_path(&p).exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // A folder that does not exist: the error names the target.
        let err = write_atomic(&d.join("no/such/out.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/out.bin"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn same_file_sees_paths_symlinks_and_hard_links() {
        let d = dir("same");
        let a = d.join("a.txt");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(d.join("b.txt"), b"x").unwrap();
        assert!(same_file(&a, &a));
        assert!(same_file(&a, &d.join(".").join("a.txt")));
        assert!(!same_file(&a, &d.join("b.txt")));
        assert!(!same_file(&a, &d.join("missing.txt")));
        std::fs::hard_link(&a, d.join("hard.txt")).unwrap();
        assert!(same_file(&a, &d.join("hard.txt")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&a, d.join("sym.txt")).unwrap();
            assert!(same_file(&d.join("sym.txt"), &a));
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
