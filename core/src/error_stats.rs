//! Blocked error statistics: the docs/spec.md section 1 metrics, a histogram of the element errors and
//! the error of every block, reduced in the shape a GPU computes them. This is the plain reference
//! of `shaders/error_stats.wgsl`: both produce bit-identical [`BlockPartial`]s and histogram counts
//! (tested on Mesa lavapipe by `tests/shaders_bit_exact.rs` and in the browser by the playwright
//! test), and both paths of the playground finish them with the same [`ErrorStats::from_partials`].
//!
//! Two passes over the blocks of [`stats_grid`], elements in block order:
//! 1. per block, over the pairs where `x` and `q` are finite, with `d = q - x` and `e = |d|` in f32:
//!    `sum x^2`, `sum e^2`, `sum e`, `sum e / (|x| + 1e-10)` accumulated **in f32** in element
//!    order; `max e`, `max |q|`, the deadzone count (`x != 0`, `q == 0`) and the non-finite count;
//! 2. with the global `max |q|` and `max e` of pass 1: the saturation count per block
//!    (`|q| >= 0.99 max|q|`, the threshold rounded up to the next f32 so that the comparison is the
//!    f64 one of [`ErrorMetrics::compute`]) and the histogram of `d` on `[-max e, max e]`.
//!
//! Against [`ErrorMetrics::compute`] (f64 element by element): the counts, the deadzone and
//! saturation ratios are equal exactly; `max_abs_error` is equal whenever `q - x` is exact in f32
//! (always when `q` lies within a factor 2 of `x` or is 0, Sterbenz); the sums carry the f32
//! rounding of one block (at most `(B + 3) 2^-24` relative for a block of `B` elements: one rounding
//! per addition, at most three per term), so the sum-based metrics agree to that relative bound
//! ([`sum_relative_tolerance`]).

use crate::formats::{BlockGrid, FormatError, QuantFormat, QuantSpec};
use crate::quant_error::{ErrorMetrics, MetricSums, SATURATION_FRACTION};

/// Block length of the statistics for the per-tensor formats (FP8, BF16), which have no blocks.
pub const STATS_BLOCK: usize = 32;
/// The epsilon of the element relative error, in f32 (the f64 metric uses 1e-10 too).
pub const RELATIVE_ERROR_EPS_F32: f32 = 1e-10;
/// Default number of histogram bins.
pub const DEFAULT_HISTOGRAM_BINS: usize = 64;
/// Fewest and most histogram bins.
pub const MIN_HISTOGRAM_BINS: usize = 2;
/// See [`MIN_HISTOGRAM_BINS`].
pub const MAX_HISTOGRAM_BINS: usize = 1024;
/// u32 words of one [`BlockPartial`] in a GPU buffer.
pub const PARTIAL_WORDS: usize = 10;

/// Why a statistics request was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StatsError {
    /// The tensor cannot be cut into the blocks of its format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A histogram bin count outside the allowed range.
    #[error("the histogram needs {min} to {max} bins, not {bins}")]
    Bins {
        /// The requested count.
        bins: usize,
        /// The minimum.
        min: usize,
        /// The maximum.
        max: usize,
    },
    /// Buffers whose lengths do not fit the grid.
    #[error("statistics buffers do not fit the grid: {0}")]
    Length(String),
}

/// The blocks statistics are reduced over: the scaling blocks of MXFP4/NVFP4 (rows of 32/16, or
/// 16x16 tiles), rows cut into [`STATS_BLOCK`] elements for FP8 and BF16.
pub fn stats_grid(spec: &QuantSpec, len: usize, row_len: usize) -> Result<BlockGrid, StatsError> {
    spec.validate()?;
    let block = match spec.format {
        QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => spec.block_size(),
        QuantFormat::Fp8 | QuantFormat::Bf16 => STATS_BLOCK,
    };
    Ok(BlockGrid::new(len, row_len, block, spec.blocks)?)
}

/// The first-pass sums and maxima of one block, and its saturation count from the second pass.
/// In a GPU buffer: [`PARTIAL_WORDS`] u32 words in field order, floats as their bits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockPartial {
    /// Finite pairs.
    pub count: u32,
    /// Pairs where `x` or `q` is NaN or infinite.
    pub non_finite: u32,
    /// `x != 0` and `q == 0`.
    pub deadzone: u32,
    /// `|q| >=` the saturation threshold (pass 2).
    pub saturated: u32,
    /// `max |q|`.
    pub max_abs_q: f32,
    /// `max |q - x|`.
    pub max_abs_err: f32,
    /// `sum x^2` (f32, element order).
    pub sum_x2: f32,
    /// `sum (q - x)^2`.
    pub sum_err2: f32,
    /// `sum |q - x|`.
    pub sum_abs_err: f32,
    /// `sum |q - x| / (|x| + 1e-10)`.
    pub sum_rel_err: f32,
}

impl BlockPartial {
    /// The GPU buffer words.
    pub fn to_words(&self) -> [u32; PARTIAL_WORDS] {
        [
            self.count,
            self.non_finite,
            self.deadzone,
            self.saturated,
            self.max_abs_q.to_bits(),
            self.max_abs_err.to_bits(),
            self.sum_x2.to_bits(),
            self.sum_err2.to_bits(),
            self.sum_abs_err.to_bits(),
            self.sum_rel_err.to_bits(),
        ]
    }

    /// Reads the GPU buffer words.
    pub fn from_words(w: &[u32; PARTIAL_WORDS]) -> Self {
        Self {
            count: w[0],
            non_finite: w[1],
            deadzone: w[2],
            saturated: w[3],
            max_abs_q: f32::from_bits(w[4]),
            max_abs_err: f32::from_bits(w[5]),
            sum_x2: f32::from_bits(w[6]),
            sum_err2: f32::from_bits(w[7]),
            sum_abs_err: f32::from_bits(w[8]),
            sum_rel_err: f32::from_bits(w[9]),
        }
    }

    /// A buffer of words (a multiple of [`PARTIAL_WORDS`]) as partials.
    pub fn from_word_slice(words: &[u32]) -> Result<Vec<Self>, StatsError> {
        if !words.len().is_multiple_of(PARTIAL_WORDS) {
            return Err(StatsError::Length(format!(
                "{} words is not a whole number of {PARTIAL_WORDS}-word partials",
                words.len()
            )));
        }
        Ok(words
            .chunks_exact(PARTIAL_WORDS)
            .map(|w| Self::from_words(w.try_into().expect("chunk of PARTIAL_WORDS")))
            .collect())
    }
}

/// Pass 1 over one block (elements in range order).
fn block_pass1(
    x: &[f32],
    q: &[f32],
    ranges: impl Iterator<Item = core::ops::Range<usize>>,
) -> BlockPartial {
    let mut p = BlockPartial::default();
    for r in ranges {
        for i in r {
            let (a, b) = (x[i], q[i]);
            if !(a.is_finite() && b.is_finite()) {
                p.non_finite += 1;
                continue;
            }
            let e = (b - a).abs();
            p.count += 1;
            p.sum_x2 += a * a;
            p.sum_err2 += e * e;
            p.sum_abs_err += e;
            p.sum_rel_err += e / (a.abs() + RELATIVE_ERROR_EPS_F32);
            p.max_abs_err = p.max_abs_err.max(e);
            p.max_abs_q = p.max_abs_q.max(b.abs());
            p.deadzone += u32::from(a != 0.0 && b == 0.0);
        }
    }
    p
}

/// The f32 saturation threshold: the smallest f32 `>= 0.99 * max_q` (computed in f64), so that
/// `|q| >= threshold` in f32 is exactly `|q| >= 0.99 max|q|` in f64; +Inf when `max_q == 0`
/// (nothing saturates, as in [`ErrorMetrics::compute`]).
pub fn saturation_threshold(max_q: f32) -> f32 {
    if max_q <= 0.0 {
        return f32::INFINITY;
    }
    let t = SATURATION_FRACTION * max_q as f64;
    let c = t as f32;
    if (c as f64) < t { c.next_up() } else { c }
}

/// The histogram of `d = q - x` on `[-range, range]` in `bins` equal bins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistogramSpec {
    /// Number of bins.
    pub bins: u32,
    /// The half width of the histogram: the largest `|q - x|`.
    pub range: f32,
    /// `bins / (2 range)` in f32 (0 when `range` is 0): the bin index is
    /// `floor(d * scale + bins / 2)`, clamped to `[0, bins - 1]`, each operation in f32.
    pub scale: f32,
}

impl HistogramSpec {
    /// The histogram of `bins` bins over `[-range, range]`.
    pub fn new(bins: usize, range: f32) -> Result<Self, StatsError> {
        if !(MIN_HISTOGRAM_BINS..=MAX_HISTOGRAM_BINS).contains(&bins) {
            return Err(StatsError::Bins {
                bins,
                min: MIN_HISTOGRAM_BINS,
                max: MAX_HISTOGRAM_BINS,
            });
        }
        let scale = if range > 0.0 {
            bins as f32 / (2.0 * range)
        } else {
            0.0
        };
        Ok(Self {
            bins: bins as u32,
            range,
            scale: if scale.is_finite() { scale } else { 0.0 },
        })
    }

    /// The bin of an error `d` (finite).
    #[inline]
    pub fn bin(&self, d: f32) -> usize {
        let t = (d * self.scale + self.bins as f32 * 0.5).floor();
        if t <= 0.0 {
            0
        } else if t >= (self.bins - 1) as f32 {
            self.bins as usize - 1
        } else {
            t as usize
        }
    }

    /// The centre of bin `k`.
    pub fn bin_center(&self, k: usize) -> f64 {
        let width = 2.0 * self.range as f64 / self.bins as f64;
        -(self.range as f64) + (k as f64 + 0.5) * width
    }
}

/// Pass 2 over one block: returns its saturation count and adds its errors to `hist`.
fn block_pass2(
    x: &[f32],
    q: &[f32],
    ranges: impl Iterator<Item = core::ops::Range<usize>>,
    threshold: f32,
    spec: &HistogramSpec,
    hist: &mut [u32],
) -> u32 {
    let mut saturated = 0;
    for r in ranges {
        for i in r {
            let (a, b) = (x[i], q[i]);
            if !(a.is_finite() && b.is_finite()) {
                continue;
            }
            saturated += u32::from(b.abs() >= threshold);
            hist[spec.bin(b - a)] += 1;
        }
    }
    saturated
}

/// Both passes over `x` and its quantized `q` on the CPU: the block partials and the histogram
/// counts, bit-identical to what `shaders/error_stats.wgsl` writes.
pub fn reduce(
    grid: &BlockGrid,
    x: &[f32],
    q: &[f32],
    bins: usize,
) -> Result<(Vec<BlockPartial>, Vec<u32>), StatsError> {
    if x.len() != grid.len() || q.len() != grid.len() {
        return Err(StatsError::Length(format!(
            "x has {} and q {} elements, the grid {}",
            x.len(),
            q.len(),
            grid.len()
        )));
    }
    let mut partials = Vec::with_capacity(grid.num_blocks());
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            partials.push(block_pass1(x, q, grid.block_ranges(br, bc)));
        }
    }
    let (max_q, max_err) = pass1_maxima(&partials);
    let threshold = saturation_threshold(max_q);
    let spec = HistogramSpec::new(bins, max_err)?;
    let mut counts = vec![0u32; bins];
    let mut k = 0;
    for br in 0..grid.block_rows() {
        for bc in 0..grid.block_cols() {
            partials[k].saturated = block_pass2(
                x,
                q,
                grid.block_ranges(br, bc),
                threshold,
                &spec,
                &mut counts,
            );
            k += 1;
        }
    }
    Ok((partials, counts))
}

/// Everything the quantization lab shows about an error, from either path.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorStats {
    /// The docs/spec.md section 1 metrics.
    pub metrics: ErrorMetrics,
    /// The histogram's bins and range.
    pub histogram: HistogramSpec,
    /// Its counts.
    pub counts: Vec<u32>,
    /// The saturation threshold that was applied.
    pub saturation_threshold: f32,
    /// Block rows and columns of the grid (row-major `block_error`).
    pub block_rows: usize,
    /// See `block_rows`.
    pub block_cols: usize,
    /// Per block `sqrt(sum e^2 / sum x^2)` (0 for an all-zero block, NaN for a block without
    /// finite pairs).
    pub block_error: Vec<f32>,
}

/// The global maxima of pass 1 (`max |q|`, `max |q - x|`).
pub fn pass1_maxima(partials: &[BlockPartial]) -> (f32, f32) {
    partials.iter().fold((0.0f32, 0.0f32), |(mq, me), p| {
        (mq.max(p.max_abs_q), me.max(p.max_abs_err))
    })
}

impl ErrorStats {
    /// The CPU path: [`reduce`], then [`ErrorStats::from_partials`].
    pub fn compute(
        grid: &BlockGrid,
        x: &[f32],
        q: &[f32],
        bins: usize,
    ) -> Result<Self, StatsError> {
        let (partials, counts) = reduce(grid, x, q, bins)?;
        Self::from_partials(grid, &partials, counts)
    }

    /// Finishes both passes (from the CPU or a GPU): sums the block partials in f64, in block
    /// order, into the metrics; `counts` is the pass-2 histogram.
    pub fn from_partials(
        grid: &BlockGrid,
        partials: &[BlockPartial],
        counts: Vec<u32>,
    ) -> Result<Self, StatsError> {
        if partials.len() != grid.num_blocks() {
            return Err(StatsError::Length(format!(
                "{} partials for {} blocks",
                partials.len(),
                grid.num_blocks()
            )));
        }
        let (max_q, max_err) = pass1_maxima(partials);
        let histogram = HistogramSpec::new(counts.len(), max_err)?;
        let mut sums = MetricSums::default();
        let mut block_error = Vec::with_capacity(partials.len());
        for p in partials {
            sums.count += p.count as usize;
            sums.non_finite += p.non_finite as usize;
            sums.deadzone += p.deadzone as usize;
            sums.saturated += p.saturated as usize;
            sums.sum_x2 += p.sum_x2 as f64;
            sums.sum_err2 += p.sum_err2 as f64;
            sums.sum_abs_err += p.sum_abs_err as f64;
            sums.sum_rel_err += p.sum_rel_err as f64;
            sums.max_abs_err = sums.max_abs_err.max(p.max_abs_err as f64);
            block_error.push(if p.count == 0 {
                f32::NAN
            } else if p.sum_x2 > 0.0 {
                (p.sum_err2 as f64 / p.sum_x2 as f64).sqrt() as f32
            } else {
                0.0
            });
        }
        Ok(Self {
            metrics: sums.finish(),
            histogram,
            counts,
            saturation_threshold: saturation_threshold(max_q),
            block_rows: grid.block_rows(),
            block_cols: grid.block_cols(),
            block_error,
        })
    }
}

/// The relative bound within which a sum-based metric of [`ErrorStats`] agrees with
/// [`ErrorMetrics::compute`]: `(B + 3) 2^-24` for blocks of `B` elements (see the module docs).
pub fn sum_relative_tolerance(grid: &BlockGrid) -> f64 {
    let block_elems = match grid.layout {
        crate::formats::BlockLayout::Row => grid.block,
        crate::formats::BlockLayout::Tile16x16 => grid.block * grid.block,
    };
    (block_elems as f64 + 3.0) * f64::from(f32::EPSILON) * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::Distribution;
    use crate::formats::{MxScaleMode, NvScaling};

    fn specs() -> Vec<QuantSpec> {
        let mut v: Vec<QuantSpec> = MxScaleMode::ALL
            .iter()
            .map(|&m| QuantSpec::new(QuantFormat::Mxfp4).with_scale_mode(m))
            .collect();
        for &s in NvScaling::ALL {
            v.push(QuantSpec::new(QuantFormat::Nvfp4).with_nv_scaling(s));
        }
        v.push("nvfp4:tile16x16".parse().unwrap());
        v.push(QuantSpec::new(QuantFormat::Fp8));
        v.push(QuantSpec::new(QuantFormat::Bf16));
        v
    }

    #[test]
    fn agrees_with_elementwise_metrics_within_the_stated_bound() {
        for dist in [Distribution::STANDARD_NORMAL, Distribution::WEIGHT_LIKE] {
            let mut x = dist.generate(96 * 80, 3).unwrap();
            x[5] = f32::NAN;
            x[700] = 0.0;
            for spec in specs() {
                let q = spec.fake_quantize_vec(&x, 96).unwrap();
                let grid = stats_grid(&spec, x.len(), 96).unwrap();
                let s = ErrorStats::compute(&grid, &x, &q, 64).unwrap();
                let r = ErrorMetrics::compute(&x, &q);
                let m = s.metrics;
                let label = spec.label();
                assert_eq!((m.count, m.non_finite), (r.count, r.non_finite), "{label}");
                assert_eq!(m.deadzone_ratio, r.deadzone_ratio, "{label}");
                assert_eq!(m.saturation_ratio, r.saturation_ratio, "{label}");
                assert_eq!(m.max_abs_error, r.max_abs_error, "{label}");
                let tol = sum_relative_tolerance(&grid);
                for (name, a, b) in [
                    ("norm_rel", m.norm_relative_error, r.norm_relative_error),
                    ("mean_rel", m.mean_relative_error, r.mean_relative_error),
                    ("mean_abs", m.mean_abs_error, r.mean_abs_error),
                    ("norm", m.norm, r.norm),
                ] {
                    assert!(
                        (a - b).abs() <= tol * b.abs(),
                        "{label} {name}: {a} vs {b}, rel {:e} > {tol:e}",
                        (a - b).abs() / b
                    );
                }
                // 10 log10 of a ratio of two sums, each within tol.
                let db_tol = 10.0 / core::f64::consts::LN_10 * 2.0 * tol;
                assert!((m.sqnr_db - r.sqnr_db).abs() <= db_tol, "{label} sqnr");
                assert_eq!(s.counts.iter().sum::<u32>() as usize, m.count, "{label}");
                assert_eq!(s.block_error.len(), grid.num_blocks());
            }
        }
    }

    #[test]
    fn saturation_threshold_is_the_f64_comparison() {
        for bits in [
            0x3f80_0000u32,
            0x40c0_0000,
            0x0000_0003,
            0x7f7f_ffff,
            0x3e4c_cccd,
        ] {
            let max_q = f32::from_bits(bits);
            let t = saturation_threshold(max_q);
            let t64 = SATURATION_FRACTION * max_q as f64;
            assert!(t as f64 >= t64);
            assert!((t.next_down() as f64) < t64);
        }
        assert_eq!(saturation_threshold(0.0), f32::INFINITY);
    }

    #[test]
    fn histogram_bins_cover_the_range() {
        let h = HistogramSpec::new(8, 2.0).unwrap();
        assert_eq!(h.bin(-2.0), 0);
        assert_eq!(h.bin(2.0), 7);
        assert_eq!(h.bin(0.0), 4);
        assert_eq!(h.bin(-0.01), 3);
        assert_eq!(h.bin(-1e-30), 4); // 4 - 2e-30 rounds to 4 in f32, as on the GPU
        assert_eq!(h.bin(0.49), 4);
        assert_eq!(h.bin(0.5), 5);
        assert!((h.bin_center(0) + 1.75).abs() < 1e-12);
        assert_eq!(HistogramSpec::new(8, 0.0).unwrap().bin(0.0), 4);
        let err = HistogramSpec::new(1, 1.0).unwrap_err().to_string();
        assert_eq!(err, "the histogram needs 2 to 1024 bins, not 1");
    }

    #[test]
    fn partial_words_round_trip() {
        let p = BlockPartial {
            count: 3,
            non_finite: 1,
            deadzone: 2,
            saturated: 1,
            max_abs_q: 6.0,
            max_abs_err: 0.5,
            sum_x2: 1.5,
            sum_err2: 0.25,
            sum_abs_err: 0.75,
            sum_rel_err: 0.125,
        };
        assert_eq!(BlockPartial::from_words(&p.to_words()), p);
        assert!(BlockPartial::from_word_slice(&[0; 11]).is_err());
    }
}
