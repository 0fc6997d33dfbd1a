//! The compiled-in TOML documents: the presets (`core/presets/*.toml`, an experiment's
//! semantics: algorithm, fine-tuning mode, quantization, AQN schedule and RIN, HW noise, epochs)
//! and the profiles (`core/profiles/*.toml`, the scale: model, data, batch sizes, lengths,
//! learning rates). The trainer merges one of each (`aqn-native train --profile P --preset X`);
//! the catalogue reads them too ([`super::Experiment`]). Names are matched case-insensitively.

use super::CatalogueError;
use crate::named::UnknownName;

/// A compiled-in TOML document: its name (the file stem) and its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Document {
    /// The file stem, e.g. `e9b`.
    pub name: &'static str,
    /// The TOML text.
    pub text: &'static str,
}

macro_rules! documents {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(Document {
            name: $name,
            text: include_str!(concat!("../../", $dir, "/", $name, ".toml")),
        }),+]
    };
}

/// Every preset: the rows of the seed's experiment tables, their 2-epoch and QeRL-style
/// variants, the W4A4 no-STE ablation and the default.
pub const PRESETS: &[Document] = documents!("presets":
    "default", "baseline", "e5", "e5b", "e5c", "e9a", "e9a-high", "e9b",
    "e8a", "e3a", "e3b", "e4a", "e4b",
    "e7a", "e5a-lora", "e5b-lora", "e6a", "e6b", "e12", "e13g", "e13h", "e13a",
    "e6b-2ep", "e6a-2ep", "e7a-2ep", "e3a-2ep", "e3b-2ep", "e8a-2ep", "e12-2ep",
    "e6b-qerl", "e12-qerl",
    "e6b-tis", "e12-tis", "e13g-tis",
);

/// Every profile.
pub const PROFILES: &[Document] = documents!("profiles": "tiny", "qwen2.5-1.5b-gsm8k");

fn names(list: &[Document]) -> Vec<&'static str> {
    list.iter().map(|d| d.name).collect()
}

fn find(list: &[Document], what: &'static str, name: &str) -> Result<Document, CatalogueError> {
    let key = name.trim().to_ascii_lowercase();
    list.iter()
        .find(|d| d.name == key)
        .copied()
        .ok_or_else(|| UnknownName::new(what, name, names(list).join(", ")).into())
}

/// The names of the compiled-in presets.
pub fn preset_names() -> Vec<&'static str> {
    names(PRESETS)
}

/// The names of the compiled-in profiles.
pub fn profile_names() -> Vec<&'static str> {
    names(PROFILES)
}

/// The compiled-in preset `name`; an unknown name is refused with the valid ones.
pub fn preset(name: &str) -> Result<Document, CatalogueError> {
    find(PRESETS, "preset", name)
}

/// The compiled-in profile `name`; an unknown name is refused with the valid ones.
pub fn profile(name: &str) -> Result<Document, CatalogueError> {
    find(PROFILES, "profile", name)
}

/// The TOML text of a preset.
pub fn preset_text(name: &str) -> Result<&'static str, CatalogueError> {
    Ok(preset(name)?.text)
}

/// The TOML text of a profile.
pub fn profile_text(name: &str) -> Result<&'static str, CatalogueError> {
    Ok(profile(name)?.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file stems of a folder of `core/`.
    fn files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut stems: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        stems.sort();
        stems
    }

    fn sorted(mut v: Vec<&'static str>) -> Vec<&'static str> {
        v.sort();
        v
    }

    #[test]
    fn every_file_is_compiled_in_once() {
        assert_eq!(sorted(preset_names()), files("presets"));
        assert_eq!(sorted(profile_names()), files("profiles"));
    }

    #[test]
    fn lookups_and_refusals() {
        assert!(preset_text("E9B").unwrap().contains("policy = \"e9b\""));
        assert!(profile_text(" tiny ").unwrap().contains("builtin:tiny"));
        assert_eq!(preset("e12").unwrap().name, "e12");
        let err = preset_text("e99").unwrap_err().to_string();
        assert!(
            err.contains("unknown preset `e99`") && err.contains("e12, e13g"),
            "{err}"
        );
        let err = profile_text("huge").unwrap_err().to_string();
        assert!(
            err.contains("unknown profile `huge`") && err.contains("tiny, qwen2.5-1.5b-gsm8k"),
            "{err}"
        );
        assert!(matches!(
            preset("e99"),
            Err(CatalogueError::UnknownName(UnknownName {
                what: "preset",
                ..
            }))
        ));
    }
}
