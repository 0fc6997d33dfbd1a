//! SRDD (docs/spec.md section 5): run the high-precision model on calibration prompts, capture every
//! decoder layer's output (or its linear inputs, or its weights), fake-quantize each captured
//! tensor on its own (no error propagates between layers), and average the section 1 metrics.
//!
//! Captured tensors are quantized along their last axis (the hidden axis of the residual stream,
//! the reduction axis of weights `[out, in]` and of linear inputs `[rows, in]`), as the format
//! would quantize them in the model. Per layer:
//! - `outputs`: the residual stream after the layer, metrics averaged over prompts;
//! - `linear-inputs`: the four distinct inputs of the layer's projections (attention input, the
//!   attention context entering o_proj, MLP input, the gated hidden entering down_proj; q/k/v
//!   and gate/up share theirs), metrics averaged over those tensors and the prompts;
//! - `weights`: the seven projection weights, metrics averaged over them (no prompts needed).

use std::time::{SystemTime, UNIX_EPOCH};

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

use super::SrddError;
use crate::formats::QuantSpec;
use crate::model::InputRecorder;
use crate::model::{Padding, Qwen2ForCausalLM};
use crate::named::named_enum;
use crate::non_finite::NonFiniteCounts;
use crate::quant_error::ErrorMetrics;
use crate::site::LinearKind;
use crate::srdd::{LayerMetrics, SrddLayer, SrddReport, SrddThresholds};

/// The SQNR reported for a tensor the format represents exactly (`q == x`): the true value is
/// infinite, which JSON cannot hold. The SQNR of f32 rounding itself is about 150 dB, so this
/// only ever means "exact".
pub const EXACT_SQNR_DB: f64 = 300.0;

named_enum! {
    /// What SRDD captures per decoder layer.
    #[derive(Default)]
    SrddCapture, "SRDD capture", SrddError {
        /// The layer's output, the residual stream (the SPEC's default).
        #[default]
        Outputs => "outputs" | "output",
        /// The layer's projection weights.
        Weights => "weights",
        /// The inputs of the layer's projections.
        LinearInputs => "linear-inputs" | "linear_inputs" | "inputs",
    }
}

/// The projections whose inputs are distinct: q/k/v share the attention input, gate/up the MLP's.
const DISTINCT_INPUTS: [LinearKind; 4] = [
    LinearKind::QProj,
    LinearKind::OProj,
    LinearKind::GateProj,
    LinearKind::DownProj,
];

/// The metrics of `x` fake-quantized along its last axis; a tensor with NaN or infinite values
/// is refused ([`SrddError::NonFinite`], naming it by `what()`).
fn metrics_of(
    values: &[f32],
    shape: &[usize],
    spec: &QuantSpec,
    kind: &'static str,
    what: impl FnOnce() -> String,
) -> Result<LayerMetrics, SrddError> {
    let counts = NonFiniteCounts::of(values);
    if !counts.is_clean() {
        return Err(SrddError::NonFinite {
            what: what(),
            kind,
            elements: values.len(),
            counts,
        });
    }
    let q = spec.fake_quantize_along(values, shape, shape.len() - 1)?;
    let mut m = LayerMetrics::from(&ErrorMetrics::compute(values, &q));
    if m.sqnr_db.is_infinite() {
        m.sqnr_db = EXACT_SQNR_DB;
    }
    Ok(m)
}

/// The mean of each metric.
pub fn mean_metrics(all: &[LayerMetrics]) -> LayerMetrics {
    let n = all.len().max(1) as f64;
    let mean = |f: fn(&LayerMetrics) -> f64| all.iter().map(f).sum::<f64>() / n;
    LayerMetrics {
        sqnr_db: mean(|m| m.sqnr_db),
        deadzone_ratio: mean(|m| m.deadzone_ratio),
        saturation_ratio: mean(|m| m.saturation_ratio),
        relative_error: mean(|m| m.relative_error),
        mean_abs_error: mean(|m| m.mean_abs_error),
        max_abs_error: mean(|m| m.max_abs_error),
        output_norm: mean(|m| m.output_norm),
    }
}

/// A tensor's shape and values on the host.
type HostValues = (Vec<usize>, Vec<f32>);

fn host<const D: usize>(t: Tensor<D>) -> HostValues {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a float tensor converts to f32");
    (shape, values)
}

/// The per-layer metrics of `capture` on `model` (run as an inference copy), averaged as the
/// module docs say. `prompts` are token ids (ignored for weights; at least one otherwise);
/// `on_prompt` is called after each prompt (for progress bars).
pub fn scan(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<u32>],
    capture: SrddCapture,
    spec: &QuantSpec,
    mut on_prompt: impl FnMut(usize),
) -> Result<Vec<LayerMetrics>, SrddError> {
    spec.validate()?;
    let model = model.valid();
    let n = model.num_layers();
    let mut per_layer: Vec<Vec<LayerMetrics>> = vec![Vec::new(); n];
    if capture == SrddCapture::Weights {
        return scan_weights(&model, spec);
    }
    if prompts.is_empty() {
        return Err(SrddError::BadPrompt {
            index: 0,
            reason: "no calibration prompts".into(),
        });
    }
    let device = model.device();
    let vocab = model.config().vocab_size;
    let max_len = model.config().max_position_embeddings;
    // Recorders on the projections with distinct inputs.
    let mut recorders: Vec<(usize, InputRecorder)> = Vec::new();
    let model = if capture == SrddCapture::LinearInputs {
        model.map_linears(|site, mut lin| {
            if let Some(l) = site.layer
                && DISTINCT_INPUTS.contains(&site.kind)
            {
                let r = InputRecorder::new();
                recorders.push((l, r.clone()));
                lin.hooks.recorder = Some(r);
            }
            lin
        })
    } else {
        model
    };
    for (p, ids) in prompts.iter().enumerate() {
        let index = p + 1;
        check_prompt(ids, index, vocab, max_len)?;
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]),
            &device,
        );
        let (_, hidden) = model.forward_with_hidden_states(input, &Padding::none(1), None);
        match capture {
            SrddCapture::Outputs => {
                for (l, h) in hidden.into_iter().enumerate() {
                    let (shape, values) = host(h);
                    let what = || format!("layer {l} output on prompt {index}");
                    per_layer[l].push(metrics_of(&values, &shape, spec, "outputs", what)?);
                }
            }
            SrddCapture::LinearInputs => {
                for (l, r) in &recorders {
                    for rec in r.take() {
                        let what = || format!("a layer {l} projection input on prompt {index}");
                        let m = metrics_of(&rec.values, &rec.shape, spec, "activations", what)?;
                        per_layer[*l].push(m);
                    }
                }
            }
            SrddCapture::Weights => unreachable!("handled above"),
        }
        on_prompt(index);
    }
    Ok(per_layer.iter().map(|m| mean_metrics(m)).collect())
}

/// The weight capture: every layer's projection weights against their quantized values.
fn scan_weights(
    model: &Qwen2ForCausalLM,
    spec: &QuantSpec,
) -> Result<Vec<LayerMetrics>, SrddError> {
    let mut per_layer: Vec<Vec<LayerMetrics>> = vec![Vec::new(); model.num_layers()];
    let mut weights: Vec<(usize, String, HostValues)> = Vec::new();
    let mut packed = None;
    model.visit_linears(|site, linear| {
        if let Some(l) = site.layer {
            match &linear.weight {
                Some(w) => weights.push((l, site.module_path(), host(w.val()))),
                None => {
                    packed.get_or_insert_with(|| site.module_path());
                }
            }
        }
    });
    if let Some(site) = packed {
        return Err(SrddError::BadPrompt {
            index: 0,
            reason: format!(
                "the weight scan needs the high-precision weights, and {site} is held packed"
            ),
        });
    }
    for (l, path, (shape, values)) in weights {
        let what = || format!("layer {l} weight {path}.weight");
        per_layer[l].push(metrics_of(&values, &shape, spec, "weights", what)?);
    }
    Ok(per_layer.iter().map(|m| mean_metrics(m)).collect())
}

/// A calibration prompt (1-based `index`) the model can run: tokens, within its positions and
/// vocabulary.
fn check_prompt(ids: &[u32], index: usize, vocab: usize, max_len: usize) -> Result<(), SrddError> {
    if ids.is_empty() {
        return Err(SrddError::BadPrompt {
            index,
            reason: "it has no tokens".into(),
        });
    }
    if ids.len() > max_len {
        return Err(SrddError::BadPrompt {
            index,
            reason: format!(
                "{} tokens exceed the model's max_position_embeddings ({max_len})",
                ids.len()
            ),
        });
    }
    if let Some(&t) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(SrddError::BadPrompt {
            index,
            reason: format!("token {t} is outside the vocabulary of {vocab}"),
        });
    }
    Ok(())
}

/// The report of docs/spec.md section 5 from per-layer metrics: each layer flagged against
/// `thresholds`, summary, statistics and recommendations derived with the scanner's rules.
/// `quant_type` is the format's label, followed by ` (weights)` or ` (linear-inputs)` for those
/// captures so a report always says what it measured.
pub fn build_report(
    model_path: &str,
    spec: &QuantSpec,
    capture: SrddCapture,
    thresholds: SrddThresholds,
    metrics: &[LayerMetrics],
) -> Result<SrddReport, SrddError> {
    let quant_type = match capture {
        SrddCapture::Outputs => spec.label(),
        other => format!("{} ({other})", spec.label()),
    };
    let layers = metrics
        .iter()
        .enumerate()
        .map(|(l, m)| SrddLayer::new(l, *m, &thresholds))
        .collect();
    SrddReport::from_layers(model_path, quant_type, thresholds, layers, iso8601_now())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS` (the scanner's `datetime.now().isoformat()`
/// without fractions).
pub fn iso8601_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso8601(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS` (UTC), by Howard Hinnant's
/// days-to-civil algorithm.
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(iso8601(1_767_225_599), "2025-12-31T23:59:59");
        assert_eq!(iso8601(1_709_251_199 + 1), "2024-03-01T00:00:00");
    }

    #[test]
    fn exact_formats_report_a_finite_sqnr() {
        let x = [1.0f32, -2.0, 0.5, 4.0];
        let what = || "t".to_string();
        let m = metrics_of(&x, &[1, 4], &"bf16".parse().unwrap(), "outputs", what).unwrap();
        assert_eq!(m.sqnr_db, EXACT_SQNR_DB);
        let mx: QuantSpec = "mxfp4".parse().unwrap();
        let m = metrics_of(&[1.0, 1.1, 1.2, 7.9], &[1, 4], &mx, "outputs", what).unwrap();
        assert!(m.sqnr_db < 40.0 && m.relative_error > 0.0);
    }

    #[test]
    fn non_finite_captures_are_refused_not_measured() {
        let x = [1.0, f32::NAN, f32::NAN, f32::INFINITY];
        let what = || "layer 2 output on prompt 1".to_string();
        let e = metrics_of(&x, &[1, 4], &"mxfp4".parse().unwrap(), "outputs", what)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("layer 2 output on prompt 1 holds 2 NaN, 1 +inf among its 4 values"),
            "{e}"
        );
    }
}
