//! The presets and profiles compiled into the binary (`core/presets/*.toml`,
//! `core/profiles/*.toml`): their names and texts.

use super::ConfigError;

/// A compiled-in TOML document.
struct Builtin {
    name: &'static str,
    text: &'static str,
}

macro_rules! builtins {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(Builtin { name: $name, text: include_str!(concat!("../../../", $dir, "/", $name, ".toml")) }),+]
    };
}

/// Every preset: the rows of the seed's experiment tables, their 2-epoch and QeRL-style
/// variants, the W4A4 no-STE ablation and the default.
const PRESETS: &[Builtin] = builtins!("presets":
    "default", "baseline", "e5", "e5b", "e5c", "e9a", "e9a-high", "e9b",
    "e8a", "e3a", "e3b", "e4a", "e4b",
    "e7a", "e5a-lora", "e5b-lora", "e6a", "e6b", "e12", "e13g", "e13h", "e13a",
    "e6b-2ep", "e6a-2ep", "e7a-2ep", "e3a-2ep", "e3b-2ep", "e8a-2ep", "e12-2ep",
    "e6b-qerl", "e12-qerl",
);

/// Every profile.
const PROFILES: &[Builtin] = builtins!("profiles": "tiny", "qwen2.5-1.5b-gsm8k");

fn names(list: &[Builtin]) -> String {
    list.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

/// The names of the compiled-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|b| b.name).collect()
}

/// The names of the compiled-in profiles.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|b| b.name).collect()
}

/// The TOML text of a preset.
pub fn preset_text(name: &str) -> Result<&'static str, ConfigError> {
    let key = name.to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|b| b.name == key)
        .map(|b| b.text)
        .ok_or_else(|| ConfigError::UnknownPreset {
            name: name.to_string(),
            valid: names(PRESETS),
        })
}

/// The TOML text of a profile.
pub fn profile_text(name: &str) -> Result<&'static str, ConfigError> {
    let key = name.to_ascii_lowercase();
    PROFILES
        .iter()
        .find(|b| b.name == key)
        .map(|b| b.text)
        .ok_or_else(|| ConfigError::UnknownProfile {
            name: name.to_string(),
            valid: names(PROFILES),
        })
}
