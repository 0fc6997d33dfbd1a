//! Configuration files: TOML documents, `--set` overrides, presets and profiles.

pub mod file_settings;
pub mod overrides;

pub use file_settings::{ConfigFile, ConfigFileError, FileSetting};
pub use overrides::{OverrideError, apply_override, merge};
