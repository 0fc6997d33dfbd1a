//! A schedule's parameters without its run length: what a configuration file or a preset states
//! (`[aqn] schedule = { kind = "epoch-aware", sigma_start = 0.05, sigma_end = 5e-4, stages = 5 }`),
//! completed by the run length when the run starts. Missing keys take QeRL's defaults
//! (docs/spec.md section 8: 1e-2 -> 1e-4 over K = 10, the geometric kind).

use serde::{Deserialize, Serialize};

use super::{RunLength, ScheduleError, ScheduleKind, SigmaSchedule};

/// QeRL's default s0 (its `noise_scheduler.py`; docs/spec.md section 8).
pub const QERL_SIGMA_START: f64 = 1e-2;
/// QeRL's default s1.
pub const QERL_SIGMA_END: f64 = 1e-4;
/// QeRL's default K (`num_stages`).
pub const QERL_STAGES: u32 = 10;

fn default_kind() -> ScheduleKind {
    ScheduleKind::Geometric
}
fn default_sigma_start() -> f64 {
    QERL_SIGMA_START
}
fn default_sigma_end() -> f64 {
    QERL_SIGMA_END
}
fn default_stages() -> u32 {
    QERL_STAGES
}

/// The schedule's kind, sigmas and K; the run length is supplied when the run starts
/// ([`ScheduleParams::build`]). Defaults: QeRL's geometric 1e-2 -> 1e-4 over K = 10. Unknown
/// keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleParams {
    /// The schedule kind.
    #[serde(default = "default_kind")]
    pub kind: ScheduleKind,
    /// s0.
    #[serde(default = "default_sigma_start")]
    pub sigma_start: f64,
    /// s1.
    #[serde(default = "default_sigma_end")]
    pub sigma_end: f64,
    /// K.
    #[serde(default = "default_stages")]
    pub stages: u32,
}

impl Default for ScheduleParams {
    fn default() -> Self {
        Self {
            kind: default_kind(),
            sigma_start: default_sigma_start(),
            sigma_end: default_sigma_end(),
            stages: default_stages(),
        }
    }
}

impl ScheduleParams {
    /// The validated schedule over `run` ([`SigmaSchedule::build`]).
    pub fn build(&self, run: RunLength) -> Result<SigmaSchedule, ScheduleError> {
        SigmaSchedule::build(
            self.kind,
            self.sigma_start,
            self.sigma_end,
            self.stages,
            run,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_unknown_keys_and_build() {
        let p: ScheduleParams = toml::from_str("kind = \"linear\"\nsigma_start = 0.05").unwrap();
        assert_eq!(p.sigma_end, QERL_SIGMA_END);
        assert_eq!(p.stages, QERL_STAGES);
        assert_eq!(
            p.build(RunLength::steps(29)).unwrap(),
            SigmaSchedule::linear(0.05, 1e-4, 29).unwrap()
        );
        let p: ScheduleParams = toml::from_str("").unwrap();
        assert_eq!(p, ScheduleParams::default());
        assert_eq!(p.kind, ScheduleKind::Geometric);
        let err = toml::from_str::<ScheduleParams>("sigma = 0.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sigma`"), "{err}");
        let err = toml::from_str::<ScheduleParams>("kind = \"cosine\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`cosine`"), "{err}");
        let err = ScheduleParams {
            stages: 2,
            ..ScheduleParams::default()
        }
        .build(RunLength::steps(29))
        .unwrap_err()
        .to_string();
        assert!(err.contains("K = 2"), "{err}");
    }
}
