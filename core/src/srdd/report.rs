//! The SRDD report of docs/spec.md section 5, exactly as the original scanner
//! (`scripts/srdd_quant_scanner.py` of the fork) writes it:
//!
//! ```text
//! { config { model_path, quant_type, num_layers, thresholds { sqnr_db, deadzone, saturation, relative_error } },
//!   report { summary { total_layers, problematic_layers, healthy_layers, problematic_layer_ids },
//!            statistics { METRIC: { min, max, mean, std } },
//!            per_layer [ { layer_id, sqnr_db, deadzone_ratio, saturation_ratio, relative_error,
//!                          mean_abs_error, max_abs_error, output_norm, is_problematic, issues } ] },
//!   recommendations { strategy, details, aqn_layers, mixed_precision_layers },
//!   timestamp }
//! ```
//!
//! Reading is strict: every field is required and unknown fields are refused at every level, so a
//! renamed or misspelt field is an error rather than a silently missing value. The same types
//! write the report ([`SrddReport::from_layers`] computes the summary, statistics and
//! recommendations with the scanner's rules), so writer and reader cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SrddError;
pub use super::thresholds::SrddThresholds;
use crate::formats::QuantFormat;
use crate::named::{UnknownName, named_enum};
use crate::quant_error::ErrorMetrics;

/// Scanner rule: fewer problematic layers than this fraction -> `targeted_mitigation`.
pub const TARGETED_FRACTION: f64 = 0.1;
/// Scanner rule: fewer than this fraction (and at least the one above) -> `mixed_approach`.
pub const MIXED_FRACTION: f64 = 0.3;
/// Scanner rule: in `mixed_approach`, problematic layers below this SQNR go to mixed precision,
/// the others to AQN.
pub const MIXED_PRECISION_SQNR_DB: f64 = 15.0;

named_enum! {
    /// A per-layer metric of the report, by its JSON field name; RIN policies read one of them as
    /// the layer's "error". For `sqnr_db` higher is better, so variable/inverse policies read it
    /// the other way round from the error metrics.
    SrddMetric, "SRDD metric", UnknownName {
        /// `mean(|x - q| / (|x| + 1e-10))` (default).
        RelativeError => "relative_error" | "relative-error",
        /// `10 log10(mean x^2 / mean (x - q)^2)`.
        SqnrDb => "sqnr_db" | "sqnr-db" | "sqnr",
        /// Fraction of non-zero values quantized to zero.
        DeadzoneRatio => "deadzone_ratio" | "deadzone-ratio" | "deadzone",
        /// Fraction of values within 1% of the largest quantized magnitude.
        SaturationRatio => "saturation_ratio" | "saturation-ratio" | "saturation",
        /// `mean |x - q|`.
        MeanAbsError => "mean_abs_error" | "mean-abs-error",
        /// `max |x - q|`.
        MaxAbsError => "max_abs_error" | "max-abs-error",
        /// `||x||_2` of the captured layer output.
        OutputNorm => "output_norm" | "output-norm",
    }
}

named_enum! {
    /// The scanner's recommendation.
    SrddStrategy, "SRDD strategy", UnknownName {
        /// No layer is flagged.
        NoAction => "no_action",
        /// Under 10% of the layers are flagged: keep them in higher precision.
        TargetedMitigation => "targeted_mitigation",
        /// 10-30%: mixed precision for SQNR < 15 dB, AQN for the rest.
        MixedApproach => "mixed_approach",
        /// 30% or more: the format may not suit the model.
        ReconsiderQuantization => "reconsider_quantization",
    }
}

/// The whole report file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddReport {
    /// How the scan was run.
    pub config: SrddConfig,
    /// The measurements.
    pub report: SrddBody,
    /// What the scanner suggests.
    pub recommendations: SrddRecommendations,
    /// ISO 8601 time of the scan.
    pub timestamp: String,
}

/// `config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddConfig {
    /// The scanned checkpoint.
    pub model_path: String,
    /// The quantization format (a QuantSpec label such as `mxfp4`).
    pub quant_type: String,
    /// Decoder layers of the model.
    pub num_layers: usize,
    /// The flag thresholds.
    pub thresholds: SrddThresholds,
}

/// `report`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddBody {
    /// Counts of flagged layers.
    pub summary: SrddSummary,
    /// min/max/mean/std over layers of `sqnr_db`, `deadzone_ratio`, `saturation_ratio`,
    /// `relative_error` (the scanner writes these four).
    pub statistics: BTreeMap<String, MetricStatistics>,
    /// One entry per decoder layer.
    pub per_layer: Vec<SrddLayer>,
}

/// `report.summary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddSummary {
    /// Layers scanned.
    pub total_layers: usize,
    /// Layers with at least one flag.
    pub problematic_layers: usize,
    /// Layers without a flag.
    pub healthy_layers: usize,
    /// The flagged layer ids, ascending.
    pub problematic_layer_ids: Vec<usize>,
}

/// `report.statistics.METRIC` (`std` is the population standard deviation, numpy's default).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricStatistics {
    /// Minimum over layers.
    pub min: f64,
    /// Maximum over layers.
    pub max: f64,
    /// Mean over layers.
    pub mean: f64,
    /// Population standard deviation over layers.
    pub std: f64,
}

impl MetricStatistics {
    /// The statistics of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Self {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean,
            std: var.sqrt(),
        }
    }
}

/// `report.per_layer[i]`: the section 1 metrics of one decoder layer's output, averaged over
/// the calibration prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddLayer {
    /// 0-based decoder layer index.
    pub layer_id: usize,
    /// SQNR in dB.
    pub sqnr_db: f64,
    /// Deadzone ratio.
    pub deadzone_ratio: f64,
    /// Saturation ratio.
    pub saturation_ratio: f64,
    /// Mean element relative error.
    pub relative_error: f64,
    /// Mean absolute error.
    pub mean_abs_error: f64,
    /// Maximum absolute error.
    pub max_abs_error: f64,
    /// L2 norm of the layer output.
    pub output_norm: f64,
    /// Whether any threshold is crossed.
    pub is_problematic: bool,
    /// The crossed thresholds, in the scanner's wording (`low_sqnr=17.2dB`, `high_deadzone=22.9%`,
    /// `high_saturation=1.5%`, `high_rel_error=36.4%`).
    pub issues: Vec<String>,
}

impl SrddLayer {
    /// A layer entry from its metrics, flagged against `thresholds` with the scanner's rules.
    pub fn new(layer_id: usize, metrics: LayerMetrics, thresholds: &SrddThresholds) -> Self {
        let mut issues = Vec::new();
        if metrics.sqnr_db < thresholds.sqnr_db {
            issues.push(format!("low_sqnr={:.1}dB", metrics.sqnr_db));
        }
        if metrics.deadzone_ratio > thresholds.deadzone {
            issues.push(format!(
                "high_deadzone={:.1}%",
                metrics.deadzone_ratio * 100.0
            ));
        }
        if metrics.saturation_ratio > thresholds.saturation {
            issues.push(format!(
                "high_saturation={:.1}%",
                metrics.saturation_ratio * 100.0
            ));
        }
        if metrics.relative_error > thresholds.relative_error {
            issues.push(format!(
                "high_rel_error={:.1}%",
                metrics.relative_error * 100.0
            ));
        }
        Self {
            layer_id,
            sqnr_db: metrics.sqnr_db,
            deadzone_ratio: metrics.deadzone_ratio,
            saturation_ratio: metrics.saturation_ratio,
            relative_error: metrics.relative_error,
            mean_abs_error: metrics.mean_abs_error,
            max_abs_error: metrics.max_abs_error,
            output_norm: metrics.output_norm,
            is_problematic: !issues.is_empty(),
            issues,
        }
    }

    /// The value of one metric.
    pub fn metric(&self, metric: SrddMetric) -> f64 {
        match metric {
            SrddMetric::RelativeError => self.relative_error,
            SrddMetric::SqnrDb => self.sqnr_db,
            SrddMetric::DeadzoneRatio => self.deadzone_ratio,
            SrddMetric::SaturationRatio => self.saturation_ratio,
            SrddMetric::MeanAbsError => self.mean_abs_error,
            SrddMetric::MaxAbsError => self.max_abs_error,
            SrddMetric::OutputNorm => self.output_norm,
        }
    }
}

/// The seven measured numbers of one layer (averaged over prompts by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMetrics {
    /// SQNR in dB.
    pub sqnr_db: f64,
    /// Deadzone ratio.
    pub deadzone_ratio: f64,
    /// Saturation ratio.
    pub saturation_ratio: f64,
    /// Mean element relative error.
    pub relative_error: f64,
    /// Mean absolute error.
    pub mean_abs_error: f64,
    /// Maximum absolute error.
    pub max_abs_error: f64,
    /// L2 norm of the layer output.
    pub output_norm: f64,
}

impl From<&ErrorMetrics> for LayerMetrics {
    fn from(m: &ErrorMetrics) -> Self {
        Self {
            sqnr_db: m.sqnr_db,
            deadzone_ratio: m.deadzone_ratio,
            saturation_ratio: m.saturation_ratio,
            relative_error: m.mean_relative_error,
            mean_abs_error: m.mean_abs_error,
            max_abs_error: m.max_abs_error,
            output_norm: m.norm,
        }
    }
}

/// `recommendations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddRecommendations {
    /// The strategy (`null` only in reports that never decided one).
    pub strategy: Option<SrddStrategy>,
    /// Human-readable reasons.
    pub details: Vec<String>,
    /// Layers suggested for AQN.
    pub aqn_layers: Vec<usize>,
    /// Layers suggested for higher precision.
    pub mixed_precision_layers: Vec<usize>,
}

impl SrddRecommendations {
    /// The scanner's rule: by the fraction of flagged layers (< 10%, < 30%, else) and, in the
    /// middle band, by SQNR (< 15 dB -> mixed precision, else AQN). The details are the
    /// scanner's sentences with the format name in place of "MXFP4" and its advice restated in
    /// what aqn offers: `quant.exclude.layers` for higher precision, and only aqn's own formats
    /// (never MXFP8, which aqn does not implement).
    pub fn from_layers(layers: &[SrddLayer], quant_type: &str) -> Self {
        let flagged: Vec<usize> = layers
            .iter()
            .filter(|l| l.is_problematic)
            .map(|l| l.layer_id)
            .collect();
        let mut r = Self {
            strategy: None,
            details: Vec::new(),
            aqn_layers: Vec::new(),
            mixed_precision_layers: Vec::new(),
        };
        if flagged.is_empty() {
            r.strategy = Some(SrddStrategy::NoAction);
            r.details.push(format!(
                "No problematic layers detected. {quant_type} quantization appears safe for this model."
            ));
            return r;
        }
        let fraction = flagged.len() as f64 / layers.len() as f64;
        let head = format!(
            "{} layers ({:.1}%) are problematic.",
            flagged.len(),
            fraction * 100.0
        );
        if fraction < TARGETED_FRACTION {
            r.strategy = Some(SrddStrategy::TargetedMitigation);
            r.details.push(format!("Only {head}"));
            r.details.push(format!(
                "Recommend: Keep the problematic layers unquantized (quant.exclude.layers = {flagged:?})."
            ));
            r.mixed_precision_layers = flagged;
        } else if fraction < MIXED_FRACTION {
            r.strategy = Some(SrddStrategy::MixedApproach);
            r.details.push(head);
            r.details.push(
                "Recommend: Keep the critical layers (SQNR below 15 dB) unquantized \
                 (quant.exclude.layers) and put AQN on the moderate ones."
                    .into(),
            );
            for l in layers.iter().filter(|l| l.is_problematic) {
                if l.sqnr_db < MIXED_PRECISION_SQNR_DB {
                    r.mixed_precision_layers.push(l.layer_id);
                } else {
                    r.aqn_layers.push(l.layer_id);
                }
            }
        } else {
            r.strategy = Some(SrddStrategy::ReconsiderQuantization);
            r.details.push(head);
            r.details.push(format!(
                "Warning: {quant_type} may not be suitable for this model."
            ));
            r.details.push(higher_precision_advice(quant_type));
            r.mixed_precision_layers = flagged;
        }
        r
    }
}

/// The formats aqn offers with more precision than `format`, most compact first.
pub fn more_precise_formats(format: QuantFormat) -> &'static [QuantFormat] {
    match format {
        QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => &[QuantFormat::Fp8, QuantFormat::Bf16],
        QuantFormat::Fp8 => &[QuantFormat::Bf16],
        QuantFormat::Bf16 => &[],
    }
}

/// The format of a report's `quant_type` (`mxfp4:floor (weights)` -> MXFP4), if it names one.
pub fn format_of(quant_type: &str) -> Option<QuantFormat> {
    quant_type
        .split([':', ' '])
        .next()
        .and_then(|f| f.parse().ok())
}

/// What to use instead of a format that does not suit the model: the more precise formats aqn
/// offers, or no quantization.
fn higher_precision_advice(quant_type: &str) -> String {
    let formats = format_of(quant_type).map(more_precise_formats);
    match formats {
        Some([]) => "Recommend: Keep this model unquantized (quant.mode = \"bf16\") or quantize \
                     only the healthy layers."
            .into(),
        Some(list) => format!(
            "Recommend: Consider a more precise format aqn offers: {} (quant.weights).",
            list.iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        None => "Recommend: Consider a more precise format (aqn offers fp8 and bf16 above the \
                 FP4 formats)."
            .into(),
    }
}

/// The metrics the scanner summarizes in `report.statistics`.
pub const SUMMARIZED_METRICS: [SrddMetric; 4] = [
    SrddMetric::SqnrDb,
    SrddMetric::DeadzoneRatio,
    SrddMetric::SaturationRatio,
    SrddMetric::RelativeError,
];

impl SrddReport {
    /// A complete report from per-layer entries (layer ids `0..n` in order): summary,
    /// statistics and recommendations are derived with the scanner's rules.
    pub fn from_layers(
        model_path: impl Into<String>,
        quant_type: impl Into<String>,
        thresholds: SrddThresholds,
        per_layer: Vec<SrddLayer>,
        timestamp: impl Into<String>,
    ) -> Result<Self, SrddError> {
        let quant_type = quant_type.into();
        let flagged: Vec<usize> = per_layer
            .iter()
            .filter(|l| l.is_problematic)
            .map(|l| l.layer_id)
            .collect();
        let statistics = SUMMARIZED_METRICS
            .iter()
            .map(|&m| {
                let v: Vec<f64> = per_layer.iter().map(|l| l.metric(m)).collect();
                (m.name().to_string(), MetricStatistics::of(&v))
            })
            .collect();
        let report = Self {
            config: SrddConfig {
                model_path: model_path.into(),
                quant_type: quant_type.clone(),
                num_layers: per_layer.len(),
                thresholds,
            },
            report: SrddBody {
                summary: SrddSummary {
                    total_layers: per_layer.len(),
                    problematic_layers: flagged.len(),
                    healthy_layers: per_layer.len() - flagged.len(),
                    problematic_layer_ids: flagged,
                },
                statistics,
                per_layer,
            },
            recommendations: SrddRecommendations {
                strategy: None,
                details: Vec::new(),
                aqn_layers: Vec::new(),
                mixed_precision_layers: Vec::new(),
            },
            timestamp: timestamp.into(),
        };
        report.validate()?;
        let recommendations =
            SrddRecommendations::from_layers(&report.report.per_layer, &quant_type);
        Ok(Self {
            recommendations,
            ..report
        })
    }

    /// Parses a report (strict schema) and checks that it is consistent.
    pub fn from_json(text: &str) -> Result<Self, SrddError> {
        let report: Self =
            serde_json::from_str(text).map_err(|e| SrddError::Report(e.to_string()))?;
        report.validate()?;
        Ok(report)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an SRDD report always serializes")
    }

    /// Refuses a report without layers, whose `per_layer` ids are not exactly `0..num_layers`
    /// in order, or whose summary disagrees with the per-layer flags.
    pub fn validate(&self) -> Result<(), SrddError> {
        let n = self.config.num_layers;
        let layers = &self.report.per_layer;
        if n == 0 || layers.is_empty() {
            return Err(SrddError::Report(
                "it has no layers (num_layers = 0)".into(),
            ));
        }
        if layers.len() != n {
            return Err(SrddError::Report(format!(
                "config.num_layers = {n} but report.per_layer has {} entries",
                layers.len()
            )));
        }
        for (i, l) in layers.iter().enumerate() {
            if l.layer_id != i {
                return Err(SrddError::Report(format!(
                    "report.per_layer[{i}] has layer_id {}; entries must be layers 0..{n} in order",
                    l.layer_id
                )));
            }
        }
        let s = &self.report.summary;
        let flagged: Vec<usize> = layers
            .iter()
            .filter(|l| l.is_problematic)
            .map(|l| l.layer_id)
            .collect();
        if s.total_layers != n
            || s.problematic_layer_ids != flagged
            || s.problematic_layers != flagged.len()
            || s.healthy_layers != n - flagged.len()
        {
            return Err(SrddError::Report(format!(
                "report.summary (total {}, problematic {:?}) disagrees with per_layer \
                 ({n} layers, problematic {flagged:?})",
                s.total_layers, s.problematic_layer_ids
            )));
        }
        Ok(())
    }

    /// One metric per layer, in layer order (the input of the RIN policies).
    pub fn layer_values(&self, metric: SrddMetric) -> Vec<f64> {
        self.report
            .per_layer
            .iter()
            .map(|l| l.metric(metric))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: usize, rel: f64, sqnr: f64) -> SrddLayer {
        SrddLayer::new(
            id,
            LayerMetrics {
                sqnr_db: sqnr,
                deadzone_ratio: 0.02,
                saturation_ratio: 0.001,
                relative_error: rel,
                mean_abs_error: 0.01,
                max_abs_error: 0.2,
                output_norm: 50.0,
            },
            &SrddThresholds::default(),
        )
    }

    #[test]
    fn flags_and_issue_wording() {
        let l = layer(3, 0.364, 17.24);
        assert!(l.is_problematic);
        assert_eq!(l.issues, vec!["low_sqnr=17.2dB", "high_rel_error=36.4%"]);
        let ok = layer(0, 0.05, 25.0);
        assert!(!ok.is_problematic && ok.issues.is_empty());
    }

    #[test]
    fn strategy_by_fraction() {
        let mk = |bad: usize| -> Vec<SrddLayer> {
            (0..20)
                .map(|i| {
                    if i < bad {
                        layer(i, 0.3, if i == 0 { 12.0 } else { 17.0 })
                    } else {
                        layer(i, 0.05, 30.0)
                    }
                })
                .collect()
        };
        let r = SrddRecommendations::from_layers(&mk(0), "mxfp4");
        assert_eq!(r.strategy, Some(SrddStrategy::NoAction));
        let r = SrddRecommendations::from_layers(&mk(1), "mxfp4");
        assert_eq!(r.strategy, Some(SrddStrategy::TargetedMitigation));
        assert_eq!(r.mixed_precision_layers, vec![0]);
        let r = SrddRecommendations::from_layers(&mk(4), "mxfp4");
        assert_eq!(r.strategy, Some(SrddStrategy::MixedApproach));
        assert_eq!(r.mixed_precision_layers, vec![0]);
        assert_eq!(r.aqn_layers, vec![1, 2, 3]);
        let r = SrddRecommendations::from_layers(&mk(6), "mxfp4");
        assert_eq!(r.strategy, Some(SrddStrategy::ReconsiderQuantization));
        assert_eq!(r.details[0], "6 layers (30.0%) are problematic.");
        assert_eq!(
            r.details[2],
            "Recommend: Consider a more precise format aqn offers: fp8 or bf16 (quant.weights)."
        );
        // Every recommendation names only formats aqn offers.
        for quant_type in [
            "mxfp4:floor (weights)",
            "nvfp4:two-level",
            "fp8",
            "bf16",
            "?",
        ] {
            let r = SrddRecommendations::from_layers(&mk(20), quant_type);
            let text = r.details.join(" ");
            assert!(!text.contains("MXFP8"), "{text}");
            if let Some(f) = format_of(quant_type) {
                for g in more_precise_formats(f) {
                    assert!(text.contains(g.name()), "{quant_type}: {text}");
                }
            }
        }
        let r = SrddRecommendations::from_layers(&mk(1), "mxfp4");
        assert!(
            r.details[1].contains("quant.exclude.layers = [0]"),
            "{:?}",
            r.details
        );
    }

    #[test]
    fn round_trip_and_strict_reading() {
        let layers: Vec<SrddLayer> = (0..4).map(|i| layer(i, 0.1 * i as f64, 18.0)).collect();
        let r =
            SrddReport::from_layers("m", "mxfp4", SrddThresholds::default(), layers, "t").unwrap();
        assert_eq!(r.report.statistics.len(), 4);
        let st = r.report.statistics["relative_error"];
        assert!((st.mean - 0.15).abs() < 1e-15 && (st.max - 0.3).abs() < 1e-15);
        assert!((st.std - 0.0125f64.sqrt()).abs() < 1e-15);
        let json = r.to_json();
        let back = SrddReport::from_json(&json).unwrap();
        // serde_json parses floats to within an ulp, not always bit-exactly.
        for &m in SrddMetric::ALL {
            for (a, b) in back.layer_values(m).iter().zip(r.layer_values(m)) {
                assert!((a - b).abs() <= 1e-15 * b.abs(), "{m}: {a} vs {b}");
            }
        }
        assert_eq!(back.report.summary, r.report.summary);
        assert_eq!(back.recommendations, r.recommendations);
        assert_eq!(back.config, r.config);
        assert_eq!(r.layer_values(SrddMetric::SqnrDb), vec![18.0; 4]);

        let extra = json.replacen("\"timestamp\"", "\"note\": \"x\",\n  \"timestamp\"", 1);
        let err = SrddReport::from_json(&extra).unwrap_err().to_string();
        assert!(err.contains("unknown field `note`"), "{err}");
        let missing = json.replace("\"output_norm\": 50.0,", "");
        let err = SrddReport::from_json(&missing).unwrap_err().to_string();
        assert!(err.contains("output_norm"), "{err}");
        let wrong_n = json.replace("\"num_layers\": 4", "\"num_layers\": 5");
        let err = SrddReport::from_json(&wrong_n).unwrap_err().to_string();
        assert!(err.contains("num_layers = 5"), "{err}");
    }
}
