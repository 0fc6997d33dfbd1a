//! Counts of the values of a tensor that are not finite numbers (NaN, +inf, -inf).
//!
//! Every tool that reads tensors reports these counts rather than averaging over them: a metric
//! computed over a tensor that holds NaN or infinities is meaningless (a mean relative error of
//! 0 and an SQNR of "inf" for an all-NaN tensor), and a weight that is not finite makes every
//! output of a model NaN. The checkpoint loader refuses such tensors
//! ([`crate::tensor_file::TensorFile::read_finite`]); `quant-error`, `quantize` and `srdd` report
//! them per tensor or layer.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The exponent bits of an f32: all ones for NaN and the infinities.
const EXPONENT_MASK: u32 = 0x7f80_0000;
/// Values tested together before counting (a cache-sized chunk).
const NON_FINITE_CHUNK: usize = 4096;

/// How many values of a tensor are NaN, +inf and -inf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NonFiniteCounts {
    /// NaN values (any payload, either sign).
    pub nan: usize,
    /// `+inf` values.
    pub pos_inf: usize,
    /// `-inf` values.
    pub neg_inf: usize,
}

impl NonFiniteCounts {
    /// The counts of `values`.
    pub fn of(values: &[f32]) -> Self {
        let mut c = Self::default();
        // A clean tensor (nearly always) costs one pass of bit tests that vectorizes; only a
        // chunk holding an all-ones exponent (NaN or infinity) is counted value by value.
        for chunk in values.chunks(NON_FINITE_CHUNK) {
            let any = chunk.iter().fold(false, |a, v| {
                a | (v.to_bits() & EXPONENT_MASK == EXPONENT_MASK)
            });
            if any {
                for &v in chunk {
                    c.count(v);
                }
            }
        }
        c
    }

    /// Adds one value to the counts (nothing for a finite one).
    #[inline]
    pub fn count(&mut self, v: f32) {
        if v.is_finite() {
            return;
        }
        if v.is_nan() {
            self.nan += 1;
        } else if v > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }

    /// Adds another tensor's counts.
    pub fn add(&mut self, other: &Self) {
        self.nan += other.nan;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
    }

    /// All values that are not finite.
    pub fn total(&self) -> usize {
        self.nan + self.pos_inf + self.neg_inf
    }

    /// Whether every value was finite.
    pub fn is_clean(&self) -> bool {
        self.total() == 0
    }
}

impl fmt::Display for NonFiniteCounts {
    /// `3 NaN, 1 +inf` (only the non-zero counts; `no non-finite value` when clean).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("no non-finite value");
        }
        let parts: Vec<String> = [
            (self.nan, "NaN"),
            (self.pos_inf, "+inf"),
            (self.neg_inf, "-inf"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind() {
        let v = [
            1.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -0.0,
            f32::from_bits(1),
        ];
        let c = NonFiniteCounts::of(&v);
        assert_eq!(
            c,
            NonFiniteCounts {
                nan: 2,
                pos_inf: 1,
                neg_inf: 2
            }
        );
        assert_eq!(c.total(), 5);
        assert_eq!(c.to_string(), "2 NaN, 1 +inf, 2 -inf");
        let mut d = NonFiniteCounts::of(&[f32::NAN]);
        d.add(&c);
        assert_eq!(d.nan, 3);
        assert!(NonFiniteCounts::of(&[0.0, 1e38, f32::MIN_POSITIVE]).is_clean());
        assert_eq!(
            NonFiniteCounts::default().to_string(),
            "no non-finite value"
        );
        assert_eq!(NonFiniteCounts::of(&[f32::INFINITY]).to_string(), "1 +inf");
    }
}
