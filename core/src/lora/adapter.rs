//! One LoRA adapter: `delta(x) = scaling * dropout(x) A^T B^T`, added to a projection's output.
//!
//! As in PEFT: `A` is `[r, in]`, initialized Kaiming-uniform with `a = sqrt(5)` (that is,
//! `U(-1/sqrt(in), 1/sqrt(in))`), `B` is `[out, r]` and starts at zero (so a fresh adapter
//! changes nothing), the scaling is `alpha / r`, and dropout acts on the adapter's input only.
//! The adapter path is never quantized and reads the projection's **unquantized** input (docs/spec.md
//! section 2: LoRA is trained in high precision on a frozen quantized base).
//!
//! The initial values and the dropout masks come from the counter RNG of [`crate::rng`], keyed by
//! the seed and the projection's name (and for masks by the step and call), so a run is
//! reproducible on every backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::LoraConfig;
use crate::hw_noise::NoiseKey;
use crate::rng::{counter_hash, uniform_f32};

/// Domain tag hashed into the initialization stream (so it never coincides with a noise stream).
const INIT_DOMAIN: &str = "lora-init/";
/// Domain tag of the dropout-mask streams.
const DROPOUT_DOMAIN: &str = "lora-dropout/";

/// Which masks the dropout draws: the step and the call counter of the current phase model.
#[derive(Clone, Debug)]
pub struct DropoutKey {
    seed: u64,
    site: u64,
    step: u64,
    calls: Arc<AtomicU64>,
}

impl DropoutKey {
    fn new(seed: u64, site_name: &str) -> Self {
        Self {
            seed,
            site: NoiseKey::site_id(&format!("{DROPOUT_DOMAIN}{site_name}")),
            step: 0,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next_stream(&self) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        NoiseKey::new(self.seed, self.step, self.site, call).stream()
    }
}

/// The trainable low-rank pair of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `A`, `[r, in]`.
    pub lora_a: Param<Tensor<2>>,
    /// `B`, `[out, r]`.
    pub lora_b: Param<Tensor<2>>,
    /// alpha: the update is scaled by `alpha / r` (or `alpha / sqrt(r)` with `rslora`).
    pub alpha: f64,
    /// Rank-stabilized scaling (PEFT's `use_rslora`).
    pub rslora: bool,
    /// Dropout probability on the adapter's input while training.
    pub dropout: f64,
    #[module(skip)]
    dropout_key: DropoutKey,
}

impl LoraAdapter {
    /// PEFT's initialization for a projection `[out, in]` named `site_name`: `A ~ U(-1/sqrt(in),
    /// 1/sqrt(in))` from the counter RNG keyed by `config.seed` and the name, `B = 0`.
    pub fn init(
        d_input: usize,
        d_output: usize,
        config: &LoraConfig,
        site_name: &str,
        device: &Device,
    ) -> Self {
        let rank = config.rank;
        // kaiming_uniform_(a = sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in).
        let bound = (1.0 / d_input as f64).sqrt() as f32;
        let stream = counter_hash(
            config.seed,
            NoiseKey::site_id(&format!("{INIT_DOMAIN}{site_name}")),
        );
        let a: Vec<f32> = (0..(rank * d_input) as u64)
            .map(|i| (2.0 * uniform_f32(stream, i) - 1.0) * bound)
            .collect();
        Self::from_parts(
            Tensor::from_data(TensorData::new(a, [rank, d_input]), device),
            Tensor::zeros([d_output, rank], device),
            config,
            site_name,
        )
    }

    /// An adapter with the given factors (`a`: `[r, in]`, `b`: `[out, r]`, r = `config.rank`),
    /// e.g. loaded from a file; alpha, rslora, dropout and seed from `config`.
    pub fn from_parts(a: Tensor<2>, b: Tensor<2>, config: &LoraConfig, site_name: &str) -> Self {
        Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            alpha: config.alpha,
            rslora: config.rslora,
            dropout: config.dropout,
            dropout_key: DropoutKey::new(config.seed, site_name),
        }
    }

    /// The multiplier of `B A`: `alpha / r`, or `alpha / sqrt(r)` with `rslora`.
    pub fn scaling(&self) -> f64 {
        let r = self.rank() as f64;
        if self.rslora {
            self.alpha / r.sqrt()
        } else {
            self.alpha / r
        }
    }

    /// The seed of the initialization and dropout streams.
    pub fn seed(&self) -> u64 {
        self.dropout_key.seed
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.lora_a.lazy_shape().dims::<2>()[0]
    }

    /// The same adapter drawing the dropout masks of `step`, its call counter restarted.
    pub fn for_step(&self, step: u64) -> Self {
        let mut a = self.clone();
        a.dropout_key = DropoutKey {
            step,
            calls: Arc::new(AtomicU64::new(0)),
            ..self.dropout_key.clone()
        };
        a
    }

    /// Whether dropout acts: a positive probability while the factors are being trained (their
    /// tensors require gradients; rollouts and evaluation run on copies that do not).
    pub fn dropout_active(&self) -> bool {
        self.dropout > 0.0 && self.lora_a.is_require_grad()
    }

    /// `scaling * dropout(x) A^T B^T`.
    ///
    /// # Shapes
    /// - `x`: `[rows, in]` (the projection's unquantized input)
    /// - output: `[rows, out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = if self.dropout_active() {
            let [rows, d_in] = x.dims();
            let stream = self.dropout_key.next_stream();
            let keep = 1.0 - self.dropout;
            let scale = (1.0 / keep) as f32;
            let p = self.dropout as f32;
            let mask: Vec<f32> = (0..(rows * d_in) as u64)
                .map(|i| {
                    if uniform_f32(stream, i) < p {
                        0.0
                    } else {
                        scale
                    }
                })
                .collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, d_in]), &x.device());
            x * mask
        } else {
            x
        };
        let (a, b) = (self.lora_a.val(), self.lora_b.val());
        let h = if crate::ops::fused(&x) {
            // The CPU's strided, multi-threaded GEMMs (the same products).
            crate::ops::linear(crate::ops::linear(x, a), b)
        } else {
            x.matmul(a.transpose()).matmul(b.transpose())
        };
        h.mul_scalar(self.scaling())
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: the CPU backend of the tests
mod tests {
    use super::*;

    #[test]
    fn peft_initialization() {
        let device = Device::ndarray();
        let config = LoraConfig {
            rank: 8,
            alpha: 16.0,
            seed: 5,
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init(400, 30, &config, "model.layers.0.mlp.up_proj", &device);
        assert_eq!(a.rank(), 8);
        assert_eq!(a.scaling(), 2.0);
        let va = a.lora_a.val().into_data().to_vec::<f32>().unwrap();
        let bound = 1.0 / 20.0;
        assert!(va.iter().all(|v| v.abs() <= bound));
        // U(-b, b) has std b / sqrt(3).
        let n = va.len() as f64;
        let std = (va.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            (std / (bound as f64 / 3f64.sqrt()) - 1.0).abs() < 0.03,
            "{std}"
        );
        let vb = a.lora_b.val().into_data().to_vec::<f32>().unwrap();
        assert_eq!(vb.len(), 30 * 8);
        assert!(vb.iter().all(|&v| v == 0.0));
        // Reproducible per seed and site; different elsewhere.
        let again = LoraAdapter::init(400, 30, &config, "model.layers.0.mlp.up_proj", &device);
        assert_eq!(va, again.lora_a.val().into_data().to_vec::<f32>().unwrap());
        let other = LoraAdapter::init(400, 30, &config, "model.layers.1.mlp.up_proj", &device);
        assert_ne!(va, other.lora_a.val().into_data().to_vec::<f32>().unwrap());
    }

    #[test]
    fn dropout_only_while_training_and_rescaled() {
        let device = Device::ndarray().autodiff();
        let (d_in, rows) = (64, 500);
        let a = Tensor::<2>::eye(d_in, &device);
        let b = Tensor::<2>::eye(d_in, &device);
        let config = LoraConfig {
            rank: d_in,
            alpha: d_in as f64,
            dropout: 0.25,
            seed: 3,
            ..LoraConfig::default()
        };
        let adapter = LoraAdapter::from_parts(a, b, &config, "x").for_step(2);
        assert_eq!(adapter.scaling(), 1.0);
        assert!(adapter.dropout_active());
        let x = Tensor::<2>::ones([rows, d_in], &device);
        let y = adapter
            .forward(x.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.25).abs() < 0.01, "{dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // The next call draws another mask; the same step replayed draws the same masks.
        let y2 = adapter
            .forward(x.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_ne!(y, y2);
        let replay = adapter
            .for_step(2)
            .forward(x.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(y, replay);
        // An inference copy has no dropout.
        let valid = adapter.valid();
        assert!(!valid.dropout_active());
        let x = Tensor::<2>::ones([rows, d_in], &Device::ndarray());
        let y = valid.forward(x).into_data().to_vec::<f32>().unwrap();
        assert!(y.iter().all(|&v| v == 1.0));
    }
}
