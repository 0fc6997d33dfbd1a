//! Generated test tensors: the distributions of `aqn-native quant-error` and of the browser
//! playground's quantization lab, drawn from the counter RNG of [`crate::rng`] so that the same
//! `(distribution, seed, index)` gives the same f32 on every platform (natively and in wasm32).
//!
//! A distribution is written `KIND[:PARAM=VALUE]...`, e.g. `normal`, `normal:std=2`,
//! `laplace:b=0.5`, `uniform:a=1`, `weight-like:std=0.02:outliers=0.01:factor=10`.

use core::fmt;
use core::str::FromStr;

use thiserror::Error;

use crate::rng::{counter_hash, normal_f64, uniform_f32, uniform_open_f64};

/// Standard deviation of the default weight-like tensor (a typical LLM linear weight).
pub const WEIGHT_LIKE_STD: f64 = 0.02;
/// Fraction of weight-like elements that are outliers.
pub const WEIGHT_LIKE_OUTLIER_FRACTION: f64 = 0.01;
/// Factor applied to the outliers of the weight-like tensor.
pub const WEIGHT_LIKE_OUTLIER_FACTOR: f64 = 10.0;
/// XORed into the weight-like stream seed to get the independent outlier-selection stream.
pub const OUTLIER_STREAM_XOR: u64 = 0xA5A5;
/// Largest tensor the generators produce (64M elements, 256 MiB of f32).
pub const MAX_SAMPLE_LEN: usize = 1 << 26;
/// 2^-53: the weight of one unit of a 53-bit uniform.
const UNIT_53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Why a distribution spec or a sample request was refused.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SampleError {
    /// A distribution name that is not known.
    #[error("unknown distribution `{value}`; valid choices: {valid}")]
    UnknownKind {
        /// The rejected text.
        value: String,
        /// The accepted names.
        valid: &'static str,
    },
    /// A parameter the distribution does not have, or one not written `NAME=VALUE`.
    #[error("unknown parameter `{value}` for {kind}; valid parameters: {valid}")]
    UnknownParam {
        /// The distribution.
        kind: &'static str,
        /// The rejected text.
        value: String,
        /// The accepted parameter names.
        valid: &'static str,
    },
    /// A parameter value outside its range.
    #[error("{kind} parameter {name} = {value} is invalid: it must be {rule}")]
    BadValue {
        /// The distribution.
        kind: &'static str,
        /// The parameter.
        name: &'static str,
        /// The value as written.
        value: String,
        /// The valid range.
        rule: &'static str,
    },
    /// A tensor length outside `1..=MAX_SAMPLE_LEN`.
    #[error("a generated tensor must have 1 to {max} elements, not {len}")]
    BadLength {
        /// The requested length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// A distribution of generated tensor elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// `N(0, std^2)` by Box-Muller ([`normal_f64`]).
    Normal {
        /// Standard deviation (> 0).
        std: f64,
    },
    /// Laplace with location 0 and scale `b`: a random sign times an exponential of mean `b`.
    Laplace {
        /// Scale (> 0); the standard deviation is `b * sqrt(2)`.
        scale: f64,
    },
    /// Uniform on `[-a, a)`.
    Uniform {
        /// Half width (> 0).
        half_width: f64,
    },
    /// `N(0, std^2)` where a random `outlier_fraction` of the elements is multiplied by
    /// `outlier_factor`: the heavy tails of real LLM weights.
    WeightLike {
        /// Standard deviation of the bulk (> 0).
        std: f64,
        /// Fraction of outliers, in `[0, 1]`.
        outlier_fraction: f64,
        /// Outlier multiplier (> 0).
        outlier_factor: f64,
    },
}

/// The distribution names, in the order the playground lists them.
pub const DISTRIBUTION_NAMES: &str = "normal, laplace, uniform, weight-like";

impl Distribution {
    /// `N(0, 1)`.
    pub const STANDARD_NORMAL: Distribution = Distribution::Normal { std: 1.0 };
    /// The default weight-like tensor: `N(0, 0.02^2)` with 1% of the elements times 10.
    pub const WEIGHT_LIKE: Distribution = Distribution::WeightLike {
        std: WEIGHT_LIKE_STD,
        outlier_fraction: WEIGHT_LIKE_OUTLIER_FRACTION,
        outlier_factor: WEIGHT_LIKE_OUTLIER_FACTOR,
    };

    /// The kind's canonical name.
    pub fn kind(&self) -> &'static str {
        match self {
            Distribution::Normal { .. } => "normal",
            Distribution::Laplace { .. } => "laplace",
            Distribution::Uniform { .. } => "uniform",
            Distribution::WeightLike { .. } => "weight-like",
        }
    }

    /// The kind with its default parameters.
    pub fn default_of(kind: &str) -> Result<Self, SampleError> {
        match kind.trim().to_ascii_lowercase().as_str() {
            "normal" | "gaussian" => Ok(Self::STANDARD_NORMAL),
            "laplace" => Ok(Distribution::Laplace { scale: 1.0 }),
            "uniform" => Ok(Distribution::Uniform { half_width: 1.0 }),
            "weight-like" | "weight_like" | "weights" => Ok(Self::WEIGHT_LIKE),
            _ => Err(SampleError::UnknownKind {
                value: kind.to_string(),
                valid: DISTRIBUTION_NAMES,
            }),
        }
    }

    /// Every distribution draws from its own stream of a seed (`seed + offset`), so the tensors
    /// generated from one seed are independent of each other.
    pub fn stream_offset(&self) -> u64 {
        match self {
            Distribution::Normal { .. } => 0,
            Distribution::WeightLike { .. } => 1,
            Distribution::Laplace { .. } => 2,
            Distribution::Uniform { .. } => 3,
        }
    }

    /// A short human label, e.g. `normal(0,1)`, `weight-like(0.02,1%x10)` (the tensor names of
    /// `aqn-native quant-error`).
    pub fn label(&self) -> String {
        match *self {
            Distribution::Normal { std } => format!("normal(0,{std})"),
            Distribution::Laplace { scale } => format!("laplace(0,{scale})"),
            Distribution::Uniform { half_width } => format!("uniform(-{half_width},{half_width})"),
            Distribution::WeightLike {
                std,
                outlier_fraction,
                outlier_factor,
            } => format!(
                "weight-like({std},{}%x{outlier_factor})",
                outlier_fraction * 100.0
            ),
        }
    }

    /// The element `index` of the tensor of seed `seed` (independent of the tensor's length).
    #[inline]
    pub fn sample(&self, seed: u64, index: u64) -> f32 {
        let s = seed.wrapping_add(self.stream_offset());
        match *self {
            Distribution::Normal { std } => (normal_f64(s, index) * std) as f32,
            Distribution::Laplace { scale } => {
                let u = uniform_open_f64(s, index.wrapping_mul(2));
                let negative = counter_hash(s, index.wrapping_mul(2).wrapping_add(1)) >> 63 == 1;
                let magnitude = -scale * libm::log(u);
                (if negative { -magnitude } else { magnitude }) as f32
            }
            Distribution::Uniform { half_width } => {
                let u = (counter_hash(s, index) >> 11) as f64 * UNIT_53;
                (half_width * (2.0 * u - 1.0)) as f32
            }
            Distribution::WeightLike {
                std,
                outlier_fraction,
                outlier_factor,
            } => {
                let z = normal_f64(s, index) * std;
                let outlier =
                    f64::from(uniform_f32(s ^ OUTLIER_STREAM_XOR, index)) < outlier_fraction;
                (if outlier { z * outlier_factor } else { z }) as f32
            }
        }
    }

    /// A tensor of `len` elements drawn with `seed`.
    pub fn generate(&self, len: usize, seed: u64) -> Result<Vec<f32>, SampleError> {
        if len == 0 || len > MAX_SAMPLE_LEN {
            return Err(SampleError::BadLength {
                len,
                max: MAX_SAMPLE_LEN,
            });
        }
        Ok((0..len as u64).map(|i| self.sample(seed, i)).collect())
    }

    /// The parameter names of the kind (for error messages).
    fn param_names(&self) -> &'static str {
        match self {
            Distribution::Normal { .. } => "std",
            Distribution::Laplace { .. } => "b",
            Distribution::Uniform { .. } => "a",
            Distribution::WeightLike { .. } => "std, outliers, factor",
        }
    }

    /// Sets one parameter from its text.
    fn set_param(&mut self, name: &str, text: &str) -> Result<(), SampleError> {
        let kind = self.kind();
        let positive = |pname: &'static str| -> Result<f64, SampleError> {
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(SampleError::BadValue {
                    kind,
                    name: pname,
                    value: text.to_string(),
                    rule: "a finite number > 0",
                }),
            }
        };
        let unknown = SampleError::UnknownParam {
            kind,
            value: name.to_string(),
            valid: self.param_names(),
        };
        match (self, name) {
            (Distribution::Normal { std }, "std") => *std = positive("std")?,
            (Distribution::Laplace { scale }, "b" | "scale") => *scale = positive("b")?,
            (Distribution::Uniform { half_width }, "a" | "half-width") => {
                *half_width = positive("a")?
            }
            (Distribution::WeightLike { std, .. }, "std") => *std = positive("std")?,
            (
                Distribution::WeightLike {
                    outlier_fraction, ..
                },
                "outliers",
            ) => {
                *outlier_fraction = match text.trim().parse::<f64>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => v,
                    _ => {
                        return Err(SampleError::BadValue {
                            kind,
                            name: "outliers",
                            value: text.to_string(),
                            rule: "a fraction in [0, 1]",
                        });
                    }
                }
            }
            (Distribution::WeightLike { outlier_factor, .. }, "factor") => {
                *outlier_factor = positive("factor")?
            }
            _ => return Err(unknown),
        }
        Ok(())
    }
}

/// Parses `KIND[:PARAM=VALUE]...`; parameters left out keep their defaults.
impl FromStr for Distribution {
    type Err = SampleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let mut d = Distribution::default_of(parts.next().unwrap_or_default())?;
        for part in parts {
            let Some((name, value)) = part.split_once('=') else {
                return Err(SampleError::UnknownParam {
                    kind: d.kind(),
                    value: part.to_string(),
                    valid: d.param_names(),
                });
            };
            d.set_param(&name.trim().to_ascii_lowercase(), value)?;
        }
        Ok(d)
    }
}

/// The spec string that parses back to the same distribution.
impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Distribution::Normal { std } => write!(f, "normal:std={std}"),
            Distribution::Laplace { scale } => write!(f, "laplace:b={scale}"),
            Distribution::Uniform { half_width } => write!(f, "uniform:a={half_width}"),
            Distribution::WeightLike {
                std,
                outlier_fraction,
                outlier_factor,
            } => write!(
                f,
                "weight-like:std={std}:outliers={outlier_fraction}:factor={outlier_factor}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(x: &[f32]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn moments_match_the_parameters() {
        let n = 200_000;
        let (m, s) = moments(
            &"normal:std=2"
                .parse::<Distribution>()
                .unwrap()
                .generate(n, 4)
                .unwrap(),
        );
        assert!(m.abs() < 0.02 && (s - 2.0).abs() < 0.02, "normal {m} {s}");
        let (m, s) = moments(
            &"laplace:b=0.5"
                .parse::<Distribution>()
                .unwrap()
                .generate(n, 4)
                .unwrap(),
        );
        assert!(
            m.abs() < 0.01 && (s - 0.5 * 2f64.sqrt()).abs() < 0.01,
            "laplace {m} {s}"
        );
        let u = "uniform:a=3"
            .parse::<Distribution>()
            .unwrap()
            .generate(n, 4)
            .unwrap();
        assert!(u.iter().all(|&v| (-3.0..3.0).contains(&v)));
        let (m, s) = moments(&u);
        assert!(
            m.abs() < 0.02 && (s - 3.0 / 3f64.sqrt()).abs() < 0.01,
            "uniform {m} {s}"
        );
        let w = Distribution::WEIGHT_LIKE.generate(n, 4).unwrap();
        let big = w.iter().filter(|v| v.abs() > 0.1).count() as f64 / n as f64;
        // |z| > 5 sigma never happens in the bulk; an outlier (sigma 0.2) exceeds 0.1 with p ~ 0.62.
        assert!((big - 0.01 * 0.617).abs() < 0.001, "outlier share {big}");
    }

    #[test]
    fn default_tensors_are_the_cli_formula() {
        // The formula quant-error used before it moved here; its output must not change.
        for seed in [0u64, 7] {
            let normal = Distribution::STANDARD_NORMAL.generate(4096, seed).unwrap();
            let weights = Distribution::WEIGHT_LIKE.generate(4096, seed).unwrap();
            for i in 0..4096u64 {
                assert_eq!(normal[i as usize], normal_f64(seed, i) as f32);
                let ws = seed + 1;
                let z = normal_f64(ws, i) * 0.02;
                let out = f64::from(uniform_f32(ws ^ 0xA5A5, i)) < 0.01;
                assert_eq!(weights[i as usize], (if out { z * 10.0 } else { z }) as f32);
            }
        }
        assert_eq!(Distribution::STANDARD_NORMAL.label(), "normal(0,1)");
        assert_eq!(Distribution::WEIGHT_LIKE.label(), "weight-like(0.02,1%x10)");
    }

    #[test]
    fn spec_round_trip_and_errors() {
        for text in [
            "normal:std=1",
            "laplace:b=0.25",
            "uniform:a=2",
            "weight-like:std=0.01:outliers=0.05:factor=20",
        ] {
            let d: Distribution = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(
            "weight-like".parse::<Distribution>().unwrap(),
            Distribution::WEIGHT_LIKE
        );
        let err = "cauchy".parse::<Distribution>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown distribution `cauchy`; valid choices: normal, laplace, uniform, weight-like"
        );
        let err = "normal:std=-1"
            .parse::<Distribution>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "normal parameter std = -1 is invalid: it must be a finite number > 0"
        );
        let err = "laplace:std=1"
            .parse::<Distribution>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown parameter `std` for laplace; valid parameters: b"),
            "{err}"
        );
        let err = "weight-like:outliers=2"
            .parse::<Distribution>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("a fraction in [0, 1]"), "{err}");
        let err = Distribution::STANDARD_NORMAL
            .generate(0, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 67108864 elements, not 0"), "{err}");
    }

    #[test]
    fn streams_are_independent_and_prefix_stable() {
        let a = Distribution::STANDARD_NORMAL.generate(1000, 3).unwrap();
        let b = Distribution::STANDARD_NORMAL.generate(10, 3).unwrap();
        assert_eq!(&a[..10], &b[..]);
        let c = Distribution::STANDARD_NORMAL.generate(10, 4).unwrap();
        assert_ne!(b, c);
    }
}
