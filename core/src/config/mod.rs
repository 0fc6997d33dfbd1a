//! Configuration files: TOML documents, `--set` overrides, presets and profiles.

pub mod overrides;

pub use overrides::{OverrideError, apply_override, merge};
