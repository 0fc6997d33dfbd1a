//! The experiment catalogue: the seed's experiments, once.
//!
//! The TOML files are the source. `core/presets/*.toml` holds one preset per row of the seed's
//! experiment tables (plus 2-epoch and QeRL-style variants, an ablation and the default run), and
//! `core/profiles/*.toml` the scales they run at; both are compiled in ([`embedded`]). Everything
//! else in the catalogue is read from them:
//!
//! - [`embedded`]: the preset and profile texts and names (the files themselves);
//! - [`Experiment`]: one preset's category, epochs, AQN schedule and RIN policy, and its run at
//!   the seed's scale (the preset and the seed's profile, merged as the trainer merges them);
//! - [`SchedulePreset`]: the schedules of `aqn-native schedule --preset` and the playground
//!   (each an [`Experiment`], plus the provenance of its numbers).
//!
//! The RIN presets ([`crate::rin::RinPreset`]) stay in `rin`, whose compact policy syntax parses
//! their names; a TOML preset refers to one by name (`rin = { policy = "e9b" }`). Those without a
//! TOML preset (the E13 study: `e13i-*`, `e13l`, `e13m`, `e13n`) are RIN-only presets.
//!
//! Dependencies run one way: the catalogue reads `schedule` and `rin`; neither reads the
//! catalogue. Pure (no `burn` feature), so it builds for wasm32.

pub mod embedded;
pub mod error;
pub mod experiment;
pub mod schedule_preset;

pub use embedded::{preset_names, preset_text, profile_names, profile_text};
pub use error::CatalogueError;
pub use experiment::{Experiment, GSM8K_TRAIN_PROMPTS, SEED_PROFILE};
pub use schedule_preset::{PresetSpec, SchedulePreset};
