//! The schedules panel: sigma curves of `aqn_core::schedule`, the seed's presets
//! (`aqn_core::catalogue`), and per-layer effective sigma from a RIN policy and an SRDD report
//! (`aqn_core::rin`).

use aqn_core::catalogue::SchedulePreset;
use aqn_core::rin::{RinConfig, RinPolicyKind, RinPreset};
use aqn_core::schedule::{MIN_STAGES, RunLength, ScheduleKind, SigmaSchedule};
use aqn_core::srdd::{SrddMetric, SrddReport};
use serde::Serialize;

/// The sample SRDD report (a synthetic 28-layer profile, tests/fixtures/srdd_sample.json).
pub const SAMPLE_SRDD_REPORT: &str = include_str!("../../tests/fixtures/srdd_sample.json");
/// Most step columns of the RIN heat map; longer runs are sampled at evenly spaced steps.
pub const MAX_HEATMAP_STEPS: usize = 400;

/// A schedule's parameters as the page holds them (all kinds share one form).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleForm<'a> {
    /// Kind name.
    pub kind: &'a str,
    /// s0 (the constant's sigma).
    pub sigma_start: f64,
    /// s1.
    pub sigma_end: f64,
    /// K.
    pub stages: u32,
    /// E (epoch-aware; 1 for the others).
    pub epochs: u64,
    /// S (epoch-aware), or T for the other kinds.
    pub steps_per_epoch: u64,
}

impl ScheduleForm<'_> {
    /// The validated schedule, or the core's error.
    pub fn build(&self) -> Result<SigmaSchedule, String> {
        let kind: ScheduleKind = self.kind.parse().map_err(|e| format!("{e}"))?;
        let run = RunLength::epochs(self.epochs, self.steps_per_epoch);
        SigmaSchedule::build(kind, self.sigma_start, self.sigma_end, self.stages, run)
            .map_err(|e| e.to_string())
    }
}

/// Every step 1..=T of a schedule: sigma, stage (-1 where the kind has none), epoch (-1 likewise).
#[derive(Debug, Default)]
pub struct Curve {
    /// One-line description.
    pub describe: String,
    /// sigma per step.
    pub sigma: Vec<f64>,
    /// Stage per step (0 = warm-up), -1 for kinds without stages.
    pub stage: Vec<f64>,
    /// Epoch per step (1-based), -1 for kinds without epochs.
    pub epoch: Vec<f64>,
}

/// The curve of a schedule form.
pub fn curve(form: &ScheduleForm) -> Result<Curve, String> {
    let schedule = form.build()?;
    let points = schedule.curve().map_err(|e| e.to_string())?;
    let opt = |v: Option<u64>| v.map_or(-1.0, |v| v as f64);
    Ok(Curve {
        describe: schedule.describe(),
        sigma: points.iter().map(|p| p.sigma).collect(),
        stage: points.iter().map(|p| opt(p.stage)).collect(),
        epoch: points.iter().map(|p| opt(p.epoch)).collect(),
    })
}

/// One preset, flattened for the page.
#[derive(Serialize)]
struct PresetView {
    name: &'static str,
    kind: &'static str,
    sigma_start: f64,
    sigma_end: f64,
    stages: u32,
    epochs: u64,
    steps_per_epoch: u64,
    rin: Option<String>,
    source: &'static str,
}

/// Kinds, presets, RIN policies, RIN presets and SRDD metrics, as JSON.
pub fn catalog() -> String {
    let presets: Vec<PresetView> = SchedulePreset::ALL
        .iter()
        .map(|&p| {
            let s = p.spec();
            PresetView {
                name: p.name(),
                kind: s.kind.name(),
                sigma_start: s.sigma_start,
                sigma_end: s.sigma_end,
                stages: s.stages,
                epochs: s.run.epochs,
                steps_per_epoch: s.run.steps_per_epoch,
                rin: s.rin.map(|r| r.name().to_string()),
                source: s.source,
            }
        })
        .collect();
    serde_json::json!({
        "kinds": ScheduleKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "min_stages": MIN_STAGES,
        "presets": presets,
        "rin_policies": RinPolicyKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "rin_presets": RinPreset::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "srdd_metrics": SrddMetric::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Effective sigma per layer and step: `sigma(step) * m_l` (`RinConfig::effective_sigmas`).
#[derive(Debug, Default)]
pub struct Heat {
    /// Layers (rows).
    pub layers: usize,
    /// The steps of the columns.
    pub steps: Vec<f64>,
    /// Row-major `[layer][column]`.
    pub data: Vec<f64>,
    /// The RIN configuration's canonical label.
    pub label: String,
    /// The report's per-layer error (the configuration's metric).
    pub errors: Vec<f64>,
}

/// The heat map of a schedule, a RIN configuration (`RinConfig` compact form, e.g. `e9b`,
/// `variable`, `targeted:top-k=4`) and an SRDD report (JSON; empty for the sample report).
pub fn heat(form: &ScheduleForm, rin: &str, report_json: &str) -> Result<Heat, String> {
    let schedule = form.build()?;
    let config: RinConfig = rin.trim().parse().map_err(|e| format!("{e}"))?;
    let text = if report_json.trim().is_empty() {
        SAMPLE_SRDD_REPORT
    } else {
        report_json
    };
    let report = SrddReport::from_json(text).map_err(|e| e.to_string())?;
    let errors = report.layer_values(config.metric);
    let t = schedule.total_steps();
    let cols = (t as usize).min(MAX_HEATMAP_STEPS);
    let steps: Vec<u64> = (0..cols)
        .map(|c| 1 + (c as u64 * (t - 1)) / (cols as u64 - 1).max(1))
        .collect();
    let mut data = vec![0.0; errors.len() * cols];
    for (c, &step) in steps.iter().enumerate() {
        let sig = config
            .effective_sigmas(&schedule, &errors, step)
            .map_err(|e| e.to_string())?;
        for (l, s) in sig.into_iter().enumerate() {
            data[l * cols + c] = s;
        }
    }
    Ok(Heat {
        layers: errors.len(),
        steps: steps.iter().map(|&s| s as f64).collect(),
        data,
        label: config.label(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, stages: u32) -> ScheduleForm<'_> {
        ScheduleForm {
            kind,
            sigma_start: 1e-2,
            sigma_end: 1e-4,
            stages,
            epochs: 1,
            steps_per_epoch: 100,
        }
    }

    #[test]
    fn curves_come_from_the_core() {
        let c = curve(&form("geometric", 5)).unwrap();
        let s = SigmaSchedule::geometric(1e-2, 1e-4, 5, 100).unwrap();
        assert_eq!(c.sigma.len(), 100);
        for (k, v) in c.sigma.iter().enumerate() {
            assert_eq!(*v, s.sigma(k as u64 + 1).unwrap());
        }
        let err = curve(&form("geometric", 2)).unwrap_err();
        assert!(err.contains('2') && err.contains('3'), "{err}");
        let err = curve(&ScheduleForm {
            sigma_start: -1.0,
            ..form("linear", 5)
        })
        .unwrap_err();
        assert!(err.contains("-1"), "{err}");
        assert!(curve(&form("cosine", 5)).unwrap_err().contains("cosine"));
    }

    #[test]
    fn heat_map_of_the_sample_report() {
        let h = heat(&form("geometric", 5), "e9b", "").unwrap();
        assert_eq!(h.layers, 28);
        assert_eq!(h.steps.len(), 100);
        let s = SigmaSchedule::geometric(1e-2, 1e-4, 5, 100).unwrap();
        let config: RinConfig = "e9b".parse().unwrap();
        let report = SrddReport::from_json(SAMPLE_SRDD_REPORT).unwrap();
        let want = config
            .effective_sigmas(&s, &report.layer_values(config.metric), 60)
            .unwrap();
        for (l, w) in want.iter().enumerate() {
            assert_eq!(h.data[l * 100 + 59], *w);
        }
        assert!(heat(&form("geometric", 5), "e9b", "{not json").is_err());
        assert!(
            heat(&form("geometric", 5), "sideways", "")
                .unwrap_err()
                .contains("sideways")
        );
    }

    #[test]
    fn catalog_lists_presets() {
        let c: serde_json::Value = serde_json::from_str(&catalog()).unwrap();
        assert!(c["presets"].as_array().unwrap().len() >= 5);
        assert_eq!(c["min_stages"], 3);
    }
}
