//! Models by Hub id from the local Hugging Face cache, offline, as `huggingface_hub` lays the
//! cache out and transformers reads it with `HF_HUB_OFFLINE=1`: `model.path = "Qwen/Qwen2.5-1.5B"`
//! (or `org/name@revision`) is the folder `<cache>/models--Qwen--Qwen2.5-1.5B/snapshots/<commit>`,
//! where `<commit>` is the content of `refs/<revision>` (default `main`) or the revision itself
//! when it is a commit hash.
//!
//! The cache folder is `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`
//! (`huggingface_hub.constants`). Nothing is downloaded.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The revision a bare id means.
pub const DEFAULT_REVISION: &str = "main";

/// Why a Hub id did not resolve.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HfCacheError {
    /// No folder of the repository, revision or snapshot.
    #[error(
        "`{id}` is not in the local Hugging Face cache: {missing} does not exist (cache folder {cache}, from {source_var}); download it with `huggingface-cli download {repo}` or give a local folder"
    )]
    NotCached {
        /// The id as given.
        id: String,
        /// `org/name`.
        repo: String,
        /// The first path that is missing.
        missing: String,
        /// The cache folder searched.
        cache: String,
        /// Which variable (or default) named it.
        source_var: String,
    },
    /// A snapshot without `config.json`.
    #[error("`{id}` resolves to {snapshot}, which has no config.json (an incomplete download?)")]
    Incomplete {
        /// The id as given.
        id: String,
        /// The snapshot folder.
        snapshot: String,
    },
}

/// The environment the cache folder comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheEnv {
    /// `HF_HUB_CACHE`.
    pub hf_hub_cache: Option<String>,
    /// `HUGGINGFACE_HUB_CACHE` (legacy).
    pub huggingface_hub_cache: Option<String>,
    /// `HF_HOME`.
    pub hf_home: Option<String>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<String>,
    /// `HOME`.
    pub home: Option<String>,
}

impl CacheEnv {
    /// This process's variables (empty values count as unset).
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            hf_hub_cache: var("HF_HUB_CACHE"),
            huggingface_hub_cache: var("HUGGINGFACE_HUB_CACHE"),
            hf_home: var("HF_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
        }
    }

    /// The cache folder and the variable that chose it.
    pub fn cache_dir(&self) -> (PathBuf, &'static str) {
        if let Some(d) = &self.hf_hub_cache {
            return (PathBuf::from(d), "HF_HUB_CACHE");
        }
        if let Some(d) = &self.huggingface_hub_cache {
            return (PathBuf::from(d), "HUGGINGFACE_HUB_CACHE");
        }
        if let Some(d) = &self.hf_home {
            return (Path::new(d).join("hub"), "HF_HOME");
        }
        if let Some(d) = &self.xdg_cache_home {
            return (Path::new(d).join("huggingface/hub"), "XDG_CACHE_HOME");
        }
        let home = self.home.clone().unwrap_or_else(|| "~".into());
        (
            Path::new(&home).join(".cache/huggingface/hub"),
            "the default ~/.cache/huggingface/hub",
        )
    }
}

/// `org/name` or `org/name@revision` when `text` has that shape (each part letters, digits,
/// `-`, `_`, `.`; not `.` or `..`): `(repo, revision)`.
pub fn parse_repo_id(text: &str) -> Option<(&str, &str)> {
    let (repo, revision) = match text.split_once('@') {
        Some((r, rev)) if !rev.is_empty() => (r, rev),
        Some(_) => return None,
        None => (text, DEFAULT_REVISION),
    };
    let (org, name) = repo.split_once('/')?;
    let part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (part(org) && part(name) && !revision.contains(['/', '\\'])).then_some((repo, revision))
}

/// The snapshot folder of `id` (`org/name[@revision]`) in the cache `env` names.
pub fn resolve(id: &str, env: &CacheEnv) -> Result<PathBuf, HfCacheError> {
    let (repo, revision) = parse_repo_id(id).unwrap_or((id, DEFAULT_REVISION));
    let (cache, source_var) = env.cache_dir();
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let missing = |path: &Path| HfCacheError::NotCached {
        id: id.to_string(),
        repo: repo.to_string(),
        missing: path.display().to_string(),
        cache: cache.display().to_string(),
        source_var: source_var.to_string(),
    };
    if !repo_dir.is_dir() {
        return Err(missing(&repo_dir));
    }
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        let reference = repo_dir.join("refs").join(revision);
        std::fs::read_to_string(&reference)
            .map_err(|_| missing(&reference))?
            .trim()
            .to_string()
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(missing(&snapshot));
    }
    if !snapshot.join("config.json").exists() {
        return Err(HfCacheError::Incomplete {
            id: id.to_string(),
            snapshot: snapshot.display().to_string(),
        });
    }
    Ok(snapshot)
}

/// The Hub id of a snapshot folder of the cache (`.../models--org--name/snapshots/<commit>`),
/// for the names a checkpoint records (PEFT's `base_model_name_or_path`).
pub fn repo_id_of(dir: &Path) -> Option<String> {
    let parent = dir.parent()?;
    if parent.file_name()? != "snapshots" {
        return None;
    }
    let repo = parent
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("models--")?;
    let (org, name) = repo.split_once("--")?;
    Some(format!("{org}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions_parse() {
        assert_eq!(
            parse_repo_id("Qwen/Qwen2.5-1.5B-Instruct"),
            Some(("Qwen/Qwen2.5-1.5B-Instruct", "main"))
        );
        assert_eq!(parse_repo_id("org/m@v1.0"), Some(("org/m", "v1.0")));
        for bad in [
            "model",
            "/abs/path",
            "a/b/c",
            "./x",
            "../x",
            "org/",
            "a/b@",
            "a b/c",
        ] {
            assert_eq!(parse_repo_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cache_folder_follows_huggingface_hubs_order() {
        let mut env = CacheEnv {
            home: Some("/home/u".into()),
            ..CacheEnv::default()
        };
        assert_eq!(
            env.cache_dir().0,
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        env.xdg_cache_home = Some("/xdg".into());
        assert_eq!(env.cache_dir().0, PathBuf::from("/xdg/huggingface/hub"));
        env.hf_home = Some("/hf".into());
        assert_eq!(env.cache_dir(), (PathBuf::from("/hf/hub"), "HF_HOME"));
        env.huggingface_hub_cache = Some("/legacy".into());
        assert_eq!(env.cache_dir().0, PathBuf::from("/legacy"));
        env.hf_hub_cache = Some("/c".into());
        assert_eq!(env.cache_dir(), (PathBuf::from("/c"), "HF_HUB_CACHE"));
    }

    #[test]
    fn snapshot_folders_name_their_repo() {
        let d = Path::new("/c/models--Qwen--Qwen2.5-1.5B/snapshots/abc");
        assert_eq!(repo_id_of(d).as_deref(), Some("Qwen/Qwen2.5-1.5B"));
        assert_eq!(repo_id_of(Path::new("/models/qwen")), None);
    }
}
