//! The hardware-error models of docs/spec.md section 6, on the output `y` of a matmul:
//!
//! | model | perturbed value |
//! |---|---|
//! | `relative-gaussian` | `y + N(0,1) |y| s` (the seed's E5 runs: s = 5% on every matmul) |
//! | `absolute-gaussian` | `y + N(0,1) s` |
//! | `systematic-bias` | `y + sign(y) s` (sign(0) = 0, as torch.sign) |
//! | `deadzone` | `y` where `|y| >= thr max|y|`, else 0 (max over the whole tensor) |
//!
//! [`HwErrorModel::perturbation`] computes the error term `delta(y)`; [`HwErrorModel::inject`]
//! adds it in the forward pass as a constant (`y + delta(y).detach()`), so the gradient through
//! the hardware error is exactly the identity, like the straight-through estimator; noise on the
//! gradient is a separate, explicit choice ([`super::grad_noise`]). The random models draw their
//! N(0,1) values from a [`NoiseKey`] (see [`super::key`]).

use core::fmt;
use core::str::FromStr;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{HwNoiseError, NoiseKey, NoiseSource};
use crate::named::named_enum;

named_enum! {
    /// The name of a hardware-error model.
    HwModelKind, "hardware-error model", HwNoiseError {
        /// `y + N(0,1) |y| s`.
        RelativeGaussian => "relative-gaussian" | "relative_gaussian" | "relative",
        /// `y + N(0,1) s`.
        AbsoluteGaussian => "absolute-gaussian" | "absolute_gaussian" | "absolute",
        /// `y + sign(y) s`.
        SystematicBias => "systematic-bias" | "systematic_bias" | "bias",
        /// Zero below `thr * max|y|`.
        Deadzone => "deadzone",
    }
}

/// A hardware-error model and its one parameter. Serialized tagged by `kind`:
/// `{ kind = "relative-gaussian", scale = 0.05 }`, `{ kind = "deadzone", threshold = 0.01 }`;
/// compact form `relative-gaussian=0.05`, `deadzone=0.01`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HwErrorModel {
    /// `y + N(0,1) |y| scale`, scale > 0.
    RelativeGaussian {
        /// The relative std (0.05 = 5%).
        scale: f64,
    },
    /// `y + N(0,1) scale`, scale > 0.
    AbsoluteGaussian {
        /// The std.
        scale: f64,
    },
    /// `y + sign(y) scale`, scale finite and non-zero (negative biases toward zero).
    SystematicBias {
        /// The bias magnitude.
        scale: f64,
    },
    /// `y` where `|y| >= threshold * max|y|`, else 0; threshold in (0, 1].
    Deadzone {
        /// The fraction of the largest magnitude below which values are lost.
        threshold: f64,
    },
}

impl HwErrorModel {
    /// The model's name.
    pub fn kind(&self) -> HwModelKind {
        match self {
            HwErrorModel::RelativeGaussian { .. } => HwModelKind::RelativeGaussian,
            HwErrorModel::AbsoluteGaussian { .. } => HwModelKind::AbsoluteGaussian,
            HwErrorModel::SystematicBias { .. } => HwModelKind::SystematicBias,
            HwErrorModel::Deadzone { .. } => HwModelKind::Deadzone,
        }
    }

    /// The model's one parameter.
    pub fn parameter(&self) -> f64 {
        match *self {
            HwErrorModel::RelativeGaussian { scale }
            | HwErrorModel::AbsoluteGaussian { scale }
            | HwErrorModel::SystematicBias { scale } => scale,
            HwErrorModel::Deadzone { threshold } => threshold,
        }
    }

    /// The model of `kind` with its parameter.
    pub fn new(kind: HwModelKind, parameter: f64) -> Result<Self, HwNoiseError> {
        let m = match kind {
            HwModelKind::RelativeGaussian => HwErrorModel::RelativeGaussian { scale: parameter },
            HwModelKind::AbsoluteGaussian => HwErrorModel::AbsoluteGaussian { scale: parameter },
            HwModelKind::SystematicBias => HwErrorModel::SystematicBias { scale: parameter },
            HwModelKind::Deadzone => HwErrorModel::Deadzone {
                threshold: parameter,
            },
        };
        m.validate()?;
        Ok(m)
    }

    /// Refuses parameters for which the model would do nothing or something undefined: a
    /// Gaussian scale that is not a positive finite number, a zero or non-finite bias, a
    /// deadzone threshold outside (0, 1].
    pub fn validate(&self) -> Result<(), HwNoiseError> {
        let v = self.parameter();
        let (ok, name, expected) = match self {
            HwErrorModel::RelativeGaussian { .. } | HwErrorModel::AbsoluteGaussian { .. } => (
                v.is_finite() && v > 0.0,
                "scale",
                "it must be a finite number > 0",
            ),
            HwErrorModel::SystematicBias { .. } => (
                v.is_finite() && v != 0.0,
                "scale",
                "it must be a finite non-zero number",
            ),
            HwErrorModel::Deadzone { .. } => (
                v > 0.0 && v <= 1.0,
                "threshold",
                "it must lie in (0, 1] (a fraction of max|y|)",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(HwNoiseError::BadParameter {
                model: self.kind().name(),
                name,
                value: v.to_string(),
                expected,
            })
        }
    }

    /// The error term `delta(y)` (the perturbed value is `y + delta`), computed with tensor
    /// operations on `y`'s device. The Gaussian models draw `N(0,1)` for `key` from `source`,
    /// element i of the row-major flattened tensor getting draw i. Does not validate.
    ///
    /// # Shapes
    /// Any rank; the result has the shape of `y`.
    pub fn perturbation<const D: usize>(
        &self,
        y: Tensor<D>,
        key: &NoiseKey,
        source: NoiseSource,
    ) -> Tensor<D> {
        let dims = y.dims();
        let n: usize = dims.iter().product();
        if n == 0 {
            return y.zeros_like();
        }
        let normal = || -> Tensor<D> { source.standard_normal(n, key, &y.device()).reshape(dims) };
        match *self {
            HwErrorModel::RelativeGaussian { scale } => (normal() * y.abs()).mul_scalar(scale),
            HwErrorModel::AbsoluteGaussian { scale } => normal().mul_scalar(scale),
            HwErrorModel::SystematicBias { scale } => y.sign().mul_scalar(scale),
            HwErrorModel::Deadzone { threshold } => {
                let abs = y.clone().abs();
                let cutoff: Tensor<D> = abs
                    .clone()
                    .max()
                    .mul_scalar(threshold)
                    .reshape([1; D])
                    .expand(dims);
                let lost = abs.lower(cutoff);
                y.clone().zeros_like().mask_where(lost, y.neg())
            }
        }
    }

    /// The forward pass of the model on a matmul output: `y + delta(y)`, with `delta` a constant
    /// to autodiff (the gradient to `y` is exactly the incoming gradient).
    ///
    /// # Shapes
    /// Any rank; the result has the shape of `y`.
    pub fn inject<const D: usize>(
        &self,
        y: Tensor<D>,
        key: &NoiseKey,
        source: NoiseSource,
    ) -> Result<Tensor<D>, HwNoiseError> {
        self.validate()?;
        let delta = self.perturbation(y.clone().detach(), key, source).detach();
        Ok(y + delta)
    }
}

impl FromStr for HwErrorModel {
    type Err = HwNoiseError;
    /// `KIND=VALUE`, e.g. `relative-gaussian=0.05`, `deadzone=0.01`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s
            .split_once('=')
            .ok_or_else(|| HwNoiseError::BadParameter {
                model: "hardware-error model",
                name: "spec",
                value: s.to_string(),
                expected: "write KIND=VALUE, e.g. relative-gaussian=0.05 or deadzone=0.01",
            })?;
        let kind: HwModelKind = kind.parse()?;
        let value = value
            .trim()
            .parse::<f64>()
            .map_err(|_| HwNoiseError::BadParameter {
                model: kind.name(),
                name: "parameter",
                value: value.to_string(),
                expected: "it must be a number",
            })?;
        HwErrorModel::new(kind, value)
    }
}

impl fmt::Display for HwErrorModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind(), self.parameter())
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: the CPU backend of the tests
mod tests {
    use super::*;
    use crate::rng::normal_f64;
    use burn::tensor::{Device, TensorData};

    const N: usize = 1 << 20;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// 1M matmul-output-like values: N(0, 3), none exactly zero.
    fn outputs() -> Vec<f32> {
        (0..N as u64)
            .map(|i| {
                let v = (normal_f64(99, i) * 3.0) as f32;
                if v == 0.0 { 1.0 } else { v }
            })
            .collect()
    }

    fn key() -> NoiseKey {
        NoiseKey::new(5, 17, NoiseKey::site_id("layers.7.mlp.down_proj"), 2)
    }

    fn std_of(v: &[f64]) -> (f64, f64) {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    }

    fn inject(model: HwErrorModel, y: &[f32], shape: [usize; 2]) -> Vec<f32> {
        let device = Device::ndarray();
        let t = Tensor::<2>::from_data(TensorData::new(y.to_vec(), shape), &device);
        values(model.inject(t, &key(), NoiseSource::Counter).unwrap())
    }

    #[test]
    fn relative_gaussian_std_within_2_percent() {
        let y = outputs();
        let out = inject(
            HwErrorModel::RelativeGaussian { scale: 0.05 },
            &y,
            [1024, 1024],
        );
        let rel: Vec<f64> = out
            .iter()
            .zip(&y)
            .map(|(&o, &x)| f64::from(o - x) / f64::from(x.abs()))
            .collect();
        let (mean, std) = std_of(&rel);
        assert!((std / 0.05 - 1.0).abs() < 0.02, "std {std}");
        assert!(mean.abs() < 5e-4, "mean {mean}");
        // Bit for bit the counter-RNG reference: y + (z |y|) s in f32.
        let stream = key().stream();
        for i in (0..N).step_by(9973) {
            let z = normal_f64(stream, i as u64) as f32;
            let want = y[i] + ((z * y[i].abs()) * 0.05f64 as f32);
            assert_eq!(out[i].to_bits(), want.to_bits(), "element {i}");
        }
    }

    #[test]
    fn absolute_gaussian_std_within_2_percent() {
        let y = outputs();
        let out = inject(
            HwErrorModel::AbsoluteGaussian { scale: 0.01 },
            &y,
            [512, 2048],
        );
        let d: Vec<f64> = out
            .iter()
            .zip(&y)
            .map(|(&o, &x)| f64::from(o) - f64::from(x))
            .collect();
        let (mean, std) = std_of(&d);
        assert!((std / 0.01 - 1.0).abs() < 0.02, "std {std}");
        assert!(mean.abs() < 5e-5, "mean {mean}");
    }

    #[test]
    fn systematic_bias_is_exact() {
        let y = vec![1.5f32, -2.0, 0.0, -0.0, 3.25, -0.125];
        let out = inject(HwErrorModel::SystematicBias { scale: 0.25 }, &y, [2, 3]);
        assert_eq!(out, vec![1.75, -2.25, 0.0, 0.0, 3.5, -0.375]);
    }

    #[test]
    fn deadzone_zeroes_exactly_the_elements_below_the_threshold() {
        let y = outputs();
        let thr = 0.1;
        let out = inject(HwErrorModel::Deadzone { threshold: thr }, &y, [1024, 1024]);
        let max = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let cutoff = max * thr as f32;
        let mut zeroed = 0;
        for (i, (&o, &x)) in out.iter().zip(&y).enumerate() {
            if x.abs() < cutoff {
                assert_eq!(o, 0.0, "element {i} = {x} below {cutoff} kept");
                zeroed += 1;
            } else {
                assert_eq!(o.to_bits(), x.to_bits(), "element {i} = {x} changed");
            }
        }
        // N(0, 3) with max|y| near 5 sigma: the cutoff is about 0.5 sigma, ~38% of the elements.
        assert!(zeroed > N * 3 / 10 && zeroed < N / 2, "{zeroed}");
    }

    #[test]
    fn same_key_same_noise_other_key_other_noise() {
        let y = vec![1.0f32; 4096];
        let model = HwErrorModel::RelativeGaussian { scale: 0.1 };
        let device = Device::ndarray();
        let t = Tensor::<1>::from_data(TensorData::new(y, [4096]), &device);
        let a = values(
            model
                .inject(t.clone(), &key(), NoiseSource::Counter)
                .unwrap(),
        );
        let b = values(
            model
                .inject(t.clone(), &key(), NoiseSource::Counter)
                .unwrap(),
        );
        assert_eq!(a, b);
        let other = NoiseKey { call: 3, ..key() };
        let c = values(
            model
                .inject(t.clone(), &other, NoiseSource::Counter)
                .unwrap(),
        );
        assert_ne!(a, c);
        // The device generator is reproducible for a key as well (single-threaded use).
        let d1 = values(
            model
                .inject(t.clone(), &key(), NoiseSource::DeviceRng)
                .unwrap(),
        );
        let d2 = values(model.inject(t, &key(), NoiseSource::DeviceRng).unwrap());
        assert_eq!(d1, d2);
        assert_ne!(d1, a);
    }

    #[test]
    fn forward_error_passes_the_gradient_through() {
        let device = Device::ndarray().autodiff();
        let x0 = vec![0.5f32, -1.0, 2.0, -0.01, 3.0, 0.2];
        for model in [
            HwErrorModel::RelativeGaussian { scale: 0.3 },
            HwErrorModel::Deadzone { threshold: 0.5 },
        ] {
            let x =
                Tensor::<1>::from_data(TensorData::new(x0.clone(), [6]), &device).require_grad();
            let out = model
                .inject(x.clone(), &key(), NoiseSource::Counter)
                .unwrap();
            let w = Tensor::<1>::from_data(
                TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [6]),
                &device,
            );
            let grads = (out * w).sum().backward();
            assert_eq!(
                values(x.grad(&grads).unwrap()),
                vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            );
        }
    }

    #[test]
    fn refusals_name_the_value() {
        for (text, needle) in [
            ("relative-gaussian=0", "scale = 0"),
            ("absolute-gaussian=-1", "scale = -1"),
            ("relative-gaussian=NaN", "scale = NaN"),
            ("systematic-bias=0", "scale = 0"),
            ("deadzone=0", "threshold = 0"),
            ("deadzone=1.5", "threshold = 1.5"),
            ("deadzone=x", "parameter = x"),
            ("gaussian=0.1", "`gaussian`"),
            ("relative-gaussian", "KIND=VALUE"),
        ] {
            let err = text.parse::<HwErrorModel>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = "gaussian=0.1"
            .parse::<HwErrorModel>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative-gaussian, absolute-gaussian, systematic-bias, deadzone"));
        let m: HwErrorModel = "relative=0.05".parse().unwrap();
        assert_eq!(m.to_string(), "relative-gaussian=0.05");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"kind":"relative-gaussian","scale":0.05}"#);
        assert_eq!(serde_json::from_str::<HwErrorModel>(&json).unwrap(), m);
        let err = serde_json::from_str::<HwErrorModel>(r#"{"kind":"deadzone","scale":0.1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scale"), "{err}");
    }
}
