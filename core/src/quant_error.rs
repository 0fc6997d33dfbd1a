//! Quantization error metrics of docs/spec.md section 1, computed in one function.

use serde::{Deserialize, Serialize};

/// Added to |x| in the element relative error so that zeros do not divide by zero.
pub const RELATIVE_ERROR_EPS: f64 = 1e-10;
/// An element saturates when |q| >= this fraction of max |q|.
pub const SATURATION_FRACTION: f64 = 0.99;

/// Every error metric of a tensor `x` and its quantized version `q`.
///
/// Pairs where `x` or `q` is not finite are left out of every average and counted in
/// `non_finite` (a NaN block would otherwise turn every metric into NaN).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ErrorMetrics {
    /// Elements that entered the averages.
    pub count: usize,
    /// Pairs left out because `x` or `q` is NaN or infinite.
    pub non_finite: usize,
    /// `||x - q||_2 / ||x||_2`.
    pub norm_relative_error: f64,
    /// `mean(|x - q| / (|x| + 1e-10))`: the "~21% for MXFP4" metric.
    pub mean_relative_error: f64,
    /// `10 log10(mean x^2 / mean (x - q)^2)` (infinite when q == x).
    pub sqnr_db: f64,
    /// Fraction of elements with `x != 0` and `q == 0`.
    pub deadzone_ratio: f64,
    /// Fraction of elements with `|q| >= 0.99 max|q|`.
    pub saturation_ratio: f64,
    /// `mean |x - q|`.
    pub mean_abs_error: f64,
    /// `max |x - q|`.
    pub max_abs_error: f64,
    /// `||x||_2`.
    pub norm: f64,
}

impl ErrorMetrics {
    /// Computes all metrics. Panics if the lengths differ (a programming error, not user input).
    pub fn compute(x: &[f32], q: &[f32]) -> Self {
        assert_eq!(
            x.len(),
            q.len(),
            "ErrorMetrics::compute: x and q differ in length"
        );
        let finite = |a: f32, b: f32| a.is_finite() && b.is_finite();
        let max_q = x
            .iter()
            .zip(q)
            .filter(|&(&a, &b)| finite(a, b))
            .fold(0.0f64, |m, (_, &b)| m.max((b as f64).abs()));
        let mut sums = MetricSums::default();
        for (&a, &b) in x.iter().zip(q) {
            if !finite(a, b) {
                sums.non_finite += 1;
                continue;
            }
            let (a, b) = (a as f64, b as f64);
            let err = (a - b).abs();
            sums.count += 1;
            sums.sum_x2 += a * a;
            sums.sum_err2 += err * err;
            sums.sum_rel_err += err / (a.abs() + RELATIVE_ERROR_EPS);
            sums.sum_abs_err += err;
            sums.max_abs_err = sums.max_abs_err.max(err);
            sums.deadzone += usize::from(a != 0.0 && b == 0.0);
            sums.saturated += usize::from(max_q > 0.0 && b.abs() >= SATURATION_FRACTION * max_q);
        }
        sums.finish()
    }
}

/// The sums and counts every metric is made of; [`MetricSums::finish`] turns them into
/// [`ErrorMetrics`]. Filled element by element by [`ErrorMetrics::compute`], or from per-block
/// partials by [`crate::error_stats`] (the GPU-shaped reduction).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct MetricSums {
    /// Finite pairs.
    pub count: usize,
    /// Pairs where `x` or `q` is not finite.
    pub non_finite: usize,
    /// `sum x^2`.
    pub sum_x2: f64,
    /// `sum (x - q)^2`.
    pub sum_err2: f64,
    /// `sum |x - q| / (|x| + eps)`.
    pub sum_rel_err: f64,
    /// `sum |x - q|`.
    pub sum_abs_err: f64,
    /// `max |x - q|`.
    pub max_abs_err: f64,
    /// Elements with `x != 0` and `q == 0`.
    pub deadzone: usize,
    /// Elements with `|q| >= 0.99 max|q|`.
    pub saturated: usize,
}

impl MetricSums {
    /// The metrics of docs/spec.md section 1 from the sums.
    pub fn finish(&self) -> ErrorMetrics {
        let n = self.count;
        let mean = |s: f64| if n == 0 { 0.0 } else { s / n as f64 };
        ErrorMetrics {
            count: n,
            non_finite: self.non_finite,
            norm_relative_error: if self.sum_x2 > 0.0 {
                (self.sum_err2 / self.sum_x2).sqrt()
            } else {
                0.0
            },
            mean_relative_error: mean(self.sum_rel_err),
            sqnr_db: if self.sum_err2 > 0.0 {
                10.0 * (self.sum_x2 / self.sum_err2).log10()
            } else {
                f64::INFINITY
            },
            deadzone_ratio: mean(self.deadzone as f64),
            saturation_ratio: mean(self.saturated as f64),
            mean_abs_error: mean(self.sum_abs_err),
            max_abs_error: self.max_abs_err,
            norm: self.sum_x2.sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let x = [1.0f32, -2.0, 0.5, 4.0];
        let q = [1.0f32, -2.0, 0.0, 3.0];
        let m = ErrorMetrics::compute(&x, &q);
        assert_eq!(m.count, 4);
        let se2: f64 = 0.25 + 1.0;
        let sx2: f64 = 1.0 + 4.0 + 0.25 + 16.0;
        assert!((m.norm_relative_error - (se2 / sx2).sqrt()).abs() < 1e-12);
        assert!((m.mean_relative_error - (0.5 / 0.5 + 1.0 / 4.0) / 4.0).abs() < 1e-9);
        assert!((m.sqnr_db - 10.0 * (sx2 / se2).log10()).abs() < 1e-12);
        assert_eq!(m.deadzone_ratio, 0.25);
        assert_eq!(m.saturation_ratio, 0.25); // only |q| = 3 >= 0.99 * 3
        assert_eq!(m.max_abs_error, 1.0);
        assert_eq!(m.mean_abs_error, 1.5 / 4.0);
    }

    #[test]
    fn non_finite_pairs_are_counted_not_averaged() {
        let m = ErrorMetrics::compute(&[1.0, f32::NAN, 2.0], &[1.0, f32::NAN, 2.0]);
        assert_eq!((m.count, m.non_finite), (2, 1));
        assert_eq!(m.norm_relative_error, 0.0);
        assert!(m.sqnr_db.is_infinite());
    }
}
