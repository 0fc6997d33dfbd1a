//! The files the commands write (`quantize --output`, `srdd --output/--plot`, `schedule --plot`,
//! `report`, `random-model --out`, `bench --json`), under one policy:
//!
//! - never over one of the command's own inputs (the same path, a symlink or a hard link to it);
//! - an existing file is replaced only when aqn-native wrote it (recognized by its content: the
//!   `aqn.` metadata of a safetensors file, the schema of an SRDD report or of a JSON report, the
//!   [`MARK`] comment of a chart or a Markdown report) or when the user passes `--overwrite`;
//! - always through a temporary file renamed into place, so an interrupted write never leaves a
//!   truncated file (`aqn_core::atomic_write`).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use aqn_core::atomic_write::{same_file, write_atomic};
use aqn_core::srdd::SrddReport;

/// The first line of every SVG chart and Markdown report aqn-native writes (an XML/HTML comment,
/// invisible when rendered), by which it recognizes its own files.
pub const MARK: &str = "<!-- written by aqn-native";
/// The `__metadata__` key of every safetensors file aqn-native writes: the command that wrote it.
pub const WRITER_KEY: &str = "aqn.writer";
/// Largest header of a safetensors file read to recognize it (safetensors' own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Largest SRDD report read to recognize it.
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// What an output file holds, which says how aqn-native recognizes one it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// A safetensors file with `aqn.*` header metadata.
    Safetensors,
    /// An SRDD report (the strict JSON schema RIN reads).
    SrddReport,
    /// An SVG chart or a Markdown report starting with [`MARK`].
    Marked,
    /// A JSON object with all of these keys (a `bench --json` report).
    Json(&'static [&'static str]),
}

impl OutputKind {
    /// Whether the existing file at `path` is one aqn-native wrote.
    fn is_ours(self, path: &Path) -> bool {
        match self {
            OutputKind::Safetensors => safetensors_has_aqn_metadata(path),
            OutputKind::SrddReport => read_limited(path, MAX_REPORT_BYTES)
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|t| SrddReport::from_json(&t).is_ok()),
            OutputKind::Marked => read_limited(path, MARK.len() as u64)
                .is_some_and(|b| b.starts_with(MARK.as_bytes())),
            OutputKind::Json(keys) => read_limited(path, MAX_REPORT_BYTES)
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| keys.iter().all(|k| v.get(k).is_some())),
        }
    }
}

/// Up to `limit` bytes of the file (all of it if shorter); `None` if it cannot be read or is
/// longer than `limit` for a whole-file kind.
fn read_limited(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Whether a safetensors file's header metadata has a key starting with `aqn.`.
fn safetensors_has_aqn_metadata(path: &Path) -> bool {
    let Some(len) = read_limited(path, 8) else {
        return false;
    };
    let Ok(len) = <[u8; 8]>::try_from(len.as_slice()).map(u64::from_le_bytes) else {
        return false;
    };
    if len > MAX_HEADER_BYTES {
        return false;
    }
    let Some(head) = read_limited(path, 8 + len) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&head[8.min(head.len())..]) else {
        return false;
    };
    header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .is_some_and(|m| m.keys().any(|k| k.starts_with("aqn.")))
}

/// Refuses to write `path` (given as `flag`, e.g. `--output`) when it is one of `inputs`, or an
/// existing file aqn-native did not write and `overwrite` is off.
pub fn check_target(
    flag: &str,
    path: &Path,
    kind: OutputKind,
    inputs: &[(&str, &Path)],
    overwrite: bool,
) -> Result<()> {
    for (input_flag, input) in inputs {
        if same_file(path, input) {
            bail!(
                "{flag} {} is the same file as {input_flag} {}: writing it would destroy the input; choose another output path",
                path.display(),
                input.display()
            );
        }
    }
    if path.is_dir() {
        bail!("{flag} {} is a folder; give a file path", path.display());
    }
    if path.exists() && !overwrite && !kind.is_ours(path) {
        bail!(
            "{flag} {} already exists and was not written by aqn-native; refusing to replace it (pass --overwrite to replace it, or choose another path)",
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (after [`check_target`]).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `text` (an SVG document or Markdown) with the [`MARK`] line of `command` in front.
pub fn marked(command: &str, text: &str) -> String {
    format!("{MARK} {command} -->\n{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_its_own_files_and_refuses_others() {
        let dir = std::env::temp_dir().join(format!("aqn-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("a.svg");
        write(&svg, marked("schedule", "<svg></svg>").as_bytes()).unwrap();
        check_target("--plot", &svg, OutputKind::Marked, &[], false).unwrap();
        let foreign = dir.join("logo.svg");
        std::fs::write(&foreign, "<svg></svg>").unwrap();
        let e = check_target("--plot", &foreign, OutputKind::Marked, &[], false).unwrap_err();
        assert!(e.to_string().contains("--overwrite"), "{e}");
        check_target("--plot", &foreign, OutputKind::Marked, &[], true).unwrap();
        let e = check_target(
            "--output",
            &svg,
            OutputKind::Marked,
            &[("--input", &svg)],
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("same file as --input"), "{e}");
        let st = dir.join("q.safetensors");
        let meta = [(WRITER_KEY.to_string(), "test".to_string())].into();
        let bytes = aqn_core::tensor_file::serialize(&[], Some(meta)).unwrap();
        std::fs::write(&st, bytes).unwrap();
        assert!(OutputKind::Safetensors.is_ours(&st));
        let bytes = aqn_core::tensor_file::serialize(&[], None).unwrap();
        std::fs::write(&st, bytes).unwrap();
        assert!(!OutputKind::Safetensors.is_ours(&st));
        std::fs::write(&st, b"\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
        assert!(!OutputKind::Safetensors.is_ours(&st));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
