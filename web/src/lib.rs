//! `aqn-web`: aqn-core for JavaScript (wasm-bindgen). The playground in `www/` computes with the
//! very same Rust code as the trainer and the CLI: formats, error statistics, generated tensors,
//! tensor files, schedules and RIN policies. Nothing here re-implements their math; every function
//! parses its input, calls aqn-core and returns the result (or the core's error message, which the
//! page shows inline).
//!
//! The plain-Rust halves live in [`lab`] (tested on the host); this file only converts types.

pub mod lab;
pub mod runs;
pub mod schedules;

use aqn_core::distributions::DISTRIBUTION_NAMES;
use aqn_core::error_stats::ErrorStats;
use aqn_core::formats::{MxScaleMode, NvScaling, QuantFormat, QuantSpec};
use aqn_shaders::KernelPlan;
use wasm_bindgen::prelude::*;

fn js_err(e: String) -> JsError {
    JsError::new(&e)
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The choices the page offers, as JSON: formats with their options, distributions.
#[wasm_bindgen]
pub fn catalog() -> String {
    let names = |v: &[&'static str]| v.to_vec();
    serde_json::json!({
        "formats": names(&QuantFormat::ALL.iter().map(|f| f.name()).collect::<Vec<_>>()),
        "mx_scale_modes": names(&MxScaleMode::ALL.iter().map(|m| m.name()).collect::<Vec<_>>()),
        "nv_scalings": names(&NvScaling::ALL.iter().map(|m| m.name()).collect::<Vec<_>>()),
        "distributions": DISTRIBUTION_NAMES.split(", ").collect::<Vec<_>>(),
        "max_elements": aqn_core::distributions::MAX_SAMPLE_LEN,
        "max_gpu_elements": aqn_shaders::kernel::MAX_GPU_ELEMENTS,
    })
    .to_string()
}

/// The canonical label of a format spec (`mxfp4` -> `mxfp4:floor`), or the parse error.
#[wasm_bindgen]
pub fn format_label(spec: &str) -> Result<String, JsError> {
    spec.parse::<QuantSpec>()
        .map(|s| s.label())
        .map_err(|e| js_err(e.to_string()))
}

/// A generated tensor (`normal`, `laplace:b=0.5`, ...), identical to `aqn-native quant-error
/// --generate DIST --seed SEED --elements LEN`.
#[wasm_bindgen]
pub fn generate(dist: &str, len: usize, seed: &str) -> Result<Vec<f32>, JsError> {
    lab::generate(dist, len, seed).map_err(js_err)
}

/// The CLI's tensor name of a distribution spec.
#[wasm_bindgen]
pub fn distribution_label(dist: &str) -> Result<String, JsError> {
    lab::distribution_label(dist).map_err(js_err)
}

/// The tensors of an uploaded `.safetensors` or `.npy` file, as JSON
/// `[{name, shape, dtype, readable}]`.
#[wasm_bindgen]
pub fn list_tensors(bytes: &[u8], file_name: &str) -> Result<String, JsError> {
    let list = lab::list_tensors(bytes, file_name).map_err(js_err)?;
    serde_json::to_string(&list).map_err(|e| js_err(e.to_string()))
}

/// One tensor of an uploaded file.
#[wasm_bindgen]
pub struct Tensor {
    data: Vec<f32>,
    shape: Vec<usize>,
}

#[wasm_bindgen]
impl Tensor {
    /// Its values (row-major).
    pub fn data(&self) -> Vec<f32> {
        self.data.clone()
    }
    /// Its shape.
    pub fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    /// Its last dimension: the quantization axis.
    pub fn row_len(&self) -> usize {
        lab::row_len_of(&self.shape)
    }
}

/// Reads a tensor of an uploaded file.
#[wasm_bindgen]
pub fn read_tensor(bytes: &[u8], file_name: &str, tensor: &str) -> Result<Tensor, JsError> {
    let t = lab::read_tensor(bytes, file_name, tensor).map_err(js_err)?;
    Ok(Tensor {
        data: t.data,
        shape: t.shape,
    })
}

/// Error statistics of one run, from either path.
#[wasm_bindgen]
pub struct Stats {
    inner: ErrorStats,
}

#[wasm_bindgen]
impl Stats {
    /// The docs/spec.md section 1 metrics as JSON (the field names of `aqn-native quant-error --json`).
    pub fn metrics_json(&self) -> String {
        serde_json::to_string(&self.inner.metrics).unwrap_or_default()
    }
    /// Histogram counts of `q - x`.
    pub fn counts(&self) -> Vec<u32> {
        self.inner.counts.clone()
    }
    /// The histogram's half width (max |q - x|).
    pub fn hist_range(&self) -> f32 {
        self.inner.histogram.range
    }
    /// Per-block `||q - x|| / ||x||`, row-major over `block_rows x block_cols`.
    pub fn block_error(&self) -> Vec<f32> {
        self.inner.block_error.clone()
    }
    /// Block rows of the grid.
    pub fn block_rows(&self) -> usize {
        self.inner.block_rows
    }
    /// Block columns of the grid.
    pub fn block_cols(&self) -> usize {
        self.inner.block_cols
    }
    /// The saturation threshold applied (f32).
    pub fn saturation_threshold(&self) -> f32 {
        self.inner.saturation_threshold
    }
}

/// The CPU path's result.
#[wasm_bindgen]
pub struct CpuRun {
    q: Vec<f32>,
    stats: Option<ErrorStats>,
}

#[wasm_bindgen]
impl CpuRun {
    /// The fake-quantized tensor.
    pub fn q(&self) -> Vec<f32> {
        self.q.clone()
    }
    /// Its statistics (once: the object hands them over).
    pub fn take_stats(&mut self) -> Option<Stats> {
        self.stats.take().map(|inner| Stats { inner })
    }
}

/// Fake-quantizes `x` (rows of `row_len`) with `spec` and reduces its statistics in wasm.
#[wasm_bindgen]
pub fn cpu_run(spec: &str, x: &[f32], row_len: usize, bins: usize) -> Result<CpuRun, JsError> {
    let (q, stats) = lab::cpu_run(spec, x, row_len, bins).map_err(js_err)?;
    Ok(CpuRun {
        q,
        stats: Some(stats),
    })
}

/// The WGSL module (shaders/wgsl, concatenated): the page compiles exactly this.
#[wasm_bindgen]
pub fn wgsl_source() -> String {
    aqn_shaders::WGSL.to_string()
}

/// The kernel plan of one tensor for `www/gpu.js` (the sequence of `aqn_shaders::kernel`).
#[wasm_bindgen]
pub struct GpuPlan {
    inner: KernelPlan,
}

#[wasm_bindgen]
impl GpuPlan {
    /// The `Params` uniform words.
    pub fn params(&self) -> Vec<u32> {
        self.inner.params.to_vec()
    }
    /// Workgroups along x.
    pub fn groups_x(&self) -> u32 {
        self.inner.groups().0
    }
    /// Workgroups along y.
    pub fn groups_y(&self) -> u32 {
        self.inner.groups().1
    }
    /// Whether the tensor-amax pass runs first.
    pub fn needs_tensor_amax(&self) -> bool {
        self.inner.needs_tensor_amax
    }
    /// u32 words of the partials buffer.
    pub fn partial_words(&self) -> usize {
        self.inner.partial_words()
    }
    /// Histogram bins.
    pub fn bins(&self) -> usize {
        self.inner.bins
    }
    /// Sets the pass-2 uniforms from the pass-1 maxima (f32 bits).
    pub fn set_pass2(&mut self, max_q_bits: u32, max_err_bits: u32) -> Result<(), JsError> {
        self.inner
            .set_pass2(max_q_bits, max_err_bits)
            .map_err(|e| js_err(e.to_string()))
    }
    /// Finishes the statistics from the GPU's partials and histogram.
    pub fn finish(&self, partials: &[u32], counts: Vec<u32>) -> Result<Stats, JsError> {
        lab::gpu_finish(&self.inner, partials, counts)
            .map(|inner| Stats { inner })
            .map_err(js_err)
    }
}

/// The plan for `len` elements in rows of `row_len`, or why this spec or size runs on the CPU.
#[wasm_bindgen]
pub fn gpu_plan(spec: &str, len: usize, row_len: usize, bins: usize) -> Result<GpuPlan, JsError> {
    lab::gpu_plan(spec, len, row_len, bins)
        .map(|inner| GpuPlan { inner })
        .map_err(js_err)
}

/// The entry points in dispatch order and the binding kinds, as JSON.
#[wasm_bindgen]
pub fn kernel_layout() -> String {
    use aqn_shaders::kernel::{BINDINGS, BindingKind, ENTRY_POINTS, GLOBAL_WORDS};
    serde_json::json!({
        "entry_points": ENTRY_POINTS,
        "global_words": GLOBAL_WORDS,
        "bindings": BINDINGS.iter().map(|(name, kind)| serde_json::json!({
            "name": name,
            "kind": match kind {
                BindingKind::Uniform => "uniform",
                BindingKind::ReadOnlyStorage => "read-only-storage",
                BindingKind::Storage => "storage",
            },
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// FNV-1a digest of a tensor's bits (NaNs canonical): equal digests, identical tensors.
#[wasm_bindgen]
pub fn digest(q: &[f32]) -> String {
    lab::digest(q)
}

/// Parses a run's `metrics.jsonl` into JSON columns `{steps, series: {name: [value|null]},
/// validation_accuracy: [name]}` (one row per step: lines of the same step are merged).
#[wasm_bindgen]
pub fn parse_metrics_jsonl(text: &str, file_name: &str) -> Result<String, JsError> {
    let log = runs::metrics(text, file_name).map_err(js_err)?;
    serde_json::to_string(&log).map_err(|e| js_err(e.to_string()))
}

/// Parses a run's `noise_audit.jsonl` into JSON columns `{steps, sigma, targets: [{name, sigma,
/// realized_std, ratio}]}`.
#[wasm_bindgen]
pub fn parse_audit_jsonl(text: &str, file_name: &str) -> Result<String, JsError> {
    let cols = runs::audit(text, file_name).map_err(js_err)?;
    serde_json::to_string(&cols).map_err(|e| js_err(e.to_string()))
}

/// Most steps the page draws (a longer run would allocate a curve of that many points).
pub const MAX_PAGE_STEPS: f64 = 1e7;

/// A whole count typed into the page: refuses fractions, negatives and absurd sizes (0 goes on to
/// the core, which names its own rule).
fn count(name: &str, v: f64) -> Result<u64, JsError> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_PAGE_STEPS {
        Ok(v as u64)
    } else {
        Err(js_err(format!(
            "{name} must be a whole number from 0 to {MAX_PAGE_STEPS:e}, not {v}"
        )))
    }
}

fn schedule_form(
    kind: &str,
    sigma_start: f64,
    sigma_end: f64,
    stages: f64,
    epochs: f64,
    steps_per_epoch: f64,
) -> Result<schedules::ScheduleForm<'_>, JsError> {
    let (epochs, steps_per_epoch) = (
        count("epochs", epochs)?,
        count("steps per epoch", steps_per_epoch)?,
    );
    if (epochs * steps_per_epoch) as f64 > MAX_PAGE_STEPS {
        return Err(js_err(format!(
            "the page draws runs of at most {MAX_PAGE_STEPS:e} steps, not {epochs} x {steps_per_epoch}"
        )));
    }
    Ok(schedules::ScheduleForm {
        kind,
        sigma_start,
        sigma_end,
        stages: count("K (stages)", stages)? as u32,
        epochs,
        steps_per_epoch,
    })
}

/// Schedule kinds, the seed's presets, RIN policies and presets, SRDD metrics (JSON).
#[wasm_bindgen]
pub fn schedule_catalog() -> String {
    schedules::catalog()
}

/// sigma at every step 1..=T of a schedule.
#[wasm_bindgen]
pub struct ScheduleCurve {
    inner: schedules::Curve,
}

#[wasm_bindgen]
impl ScheduleCurve {
    /// The core's one-line description.
    pub fn describe(&self) -> String {
        self.inner.describe.clone()
    }
    /// sigma per step.
    pub fn sigma(&self) -> Vec<f64> {
        self.inner.sigma.clone()
    }
    /// Stage per step (0 = warm-up; -1 for kinds without stages).
    pub fn stage(&self) -> Vec<f64> {
        self.inner.stage.clone()
    }
    /// Epoch per step (-1 for kinds without epochs).
    pub fn epoch(&self) -> Vec<f64> {
        self.inner.epoch.clone()
    }
}

/// The curve of a schedule: `kind` (constant, linear, geometric, geometric-paper, epoch-aware),
/// s0, s1, K, and the run (E epochs of S steps; the kinds other than epoch-aware take T = E * S).
#[wasm_bindgen]
pub fn schedule_curve(
    kind: &str,
    sigma_start: f64,
    sigma_end: f64,
    stages: f64,
    epochs: f64,
    steps_per_epoch: f64,
) -> Result<ScheduleCurve, JsError> {
    let form = schedule_form(
        kind,
        sigma_start,
        sigma_end,
        stages,
        epochs,
        steps_per_epoch,
    )?;
    schedules::curve(&form)
        .map(|inner| ScheduleCurve { inner })
        .map_err(js_err)
}

/// Effective per-layer sigma over the run.
#[wasm_bindgen]
pub struct RinHeat {
    inner: schedules::Heat,
}

#[wasm_bindgen]
impl RinHeat {
    /// Layers (rows).
    pub fn layers(&self) -> usize {
        self.inner.layers
    }
    /// The step of each column.
    pub fn steps(&self) -> Vec<f64> {
        self.inner.steps.clone()
    }
    /// Row-major `[layer][column]` effective sigma.
    pub fn data(&self) -> Vec<f64> {
        self.inner.data.clone()
    }
    /// The RIN configuration's canonical label.
    pub fn label(&self) -> String {
        self.inner.label.clone()
    }
    /// The per-layer error the policy read.
    pub fn errors(&self) -> Vec<f64> {
        self.inner.errors.clone()
    }
}

/// Effective sigma `sigma(step) * m_l` per layer and step, from a schedule, a RIN configuration
/// (`e9b`, `variable`, `targeted:top-k=4`, ...) and an SRDD report (JSON; empty: the sample).
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen]
pub fn rin_heat(
    kind: &str,
    sigma_start: f64,
    sigma_end: f64,
    stages: f64,
    epochs: f64,
    steps_per_epoch: f64,
    rin: &str,
    report_json: &str,
) -> Result<RinHeat, JsError> {
    let form = schedule_form(
        kind,
        sigma_start,
        sigma_end,
        stages,
        epochs,
        steps_per_epoch,
    )?;
    schedules::heat(&form, rin, report_json)
        .map(|inner| RinHeat { inner })
        .map_err(js_err)
}

/// The sample SRDD report (JSON).
#[wasm_bindgen]
pub fn sample_srdd_report() -> String {
    schedules::SAMPLE_SRDD_REPORT.to_string()
}
