//! The built-in tiny model (`builtin:tiny`), compiled into the binary so the main job needs no
//! files: `assets/tiny`, made by `aqn-native pretrain` (see assets/tiny/README.md).

use std::path::PathBuf;

/// The files of `assets/tiny`, by name.
const FILES: &[(&str, &[u8])] = &[
    (
        "config.json",
        include_bytes!("../../../assets/tiny/config.json"),
    ),
    (
        "generation_config.json",
        include_bytes!("../../../assets/tiny/generation_config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../../assets/tiny/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../../assets/tiny/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_bytes!("../../../assets/tiny/tokenizer_config.json"),
    ),
];

/// The name of the built-in tiny model in configurations (`model.path`) and in the files aqn
/// writes about it (a PEFT adapter's `base_model_name_or_path`).
pub const TINY_NAME: &str = "builtin:tiny";

/// The content hash that names the built-in model's cache folder.
fn tiny_hash() -> u64 {
    let mut hash = 0u64;
    for (name, bytes) in FILES {
        hash = crate::rng::mix64(hash ^ crate::task::synthetic::question_hash(name));
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            hash = crate::rng::mix64(hash ^ u64::from_le_bytes(w));
        }
    }
    hash
}

/// The cache folder [`materialize_tiny`] unpacks the built-in model into.
fn tiny_dir() -> PathBuf {
    std::env::temp_dir().join(format!("aqn-builtin-tiny-{:016x}", tiny_hash()))
}

/// The public identity of a model folder: [`TINY_NAME`] for the built-in model's cache folder
/// (a temporary path that means nothing outside this machine and run), else the path itself.
pub fn model_identity(dir: &std::path::Path) -> String {
    if crate::atomic_write::same_file(dir, &tiny_dir()) {
        TINY_NAME.to_string()
    } else if let Some(id) = super::hf_cache::repo_id_of(dir) {
        id
    } else {
        dir.display().to_string()
    }
}

/// Writes the built-in model into a cache folder named after its content (once) and returns
/// the folder, so it loads through the same code as any HF checkpoint.
pub fn materialize_tiny() -> std::io::Result<PathBuf> {
    let hash = tiny_hash();
    let dir = tiny_dir();
    if !dir.join(FILES[FILES.len() - 1].0).exists() {
        // Write into a fresh folder and rename it into place, so concurrent runs never read a
        // half-written model.
        let tmp = std::env::temp_dir().join(format!(
            "aqn-builtin-tiny-{hash:016x}.{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&tmp)?;
        for (name, bytes) in FILES {
            std::fs::write(tmp.join(name), bytes)?;
        }
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another process won the race; its copy is identical.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unpacked_folder_is_named_builtin_tiny() {
        let dir = materialize_tiny().unwrap();
        assert_eq!(model_identity(&dir), TINY_NAME);
        assert_eq!(model_identity(&dir.join(".")), TINY_NAME);
        let other = std::env::temp_dir();
        assert_eq!(model_identity(&other), other.display().to_string());
    }
}
