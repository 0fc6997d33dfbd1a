//! Standard-normal noise tensors for a [`NoiseKey`].

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::{HwNoiseError, NoiseKey};
use crate::named::named_enum;
use crate::rng::normal_f64;

named_enum! {
    /// How the N(0, 1) draws are made.
    #[derive(Default)]
    NoiseSource, "noise source", HwNoiseError {
        /// The counter hash of [`crate::rng`] on the host, uploaded to the device: the same
        /// numbers on every backend and platform, bit for bit (default; the reference).
        #[default]
        Counter => "counter",
        /// The device's own generator, seeded with the key's stream before the draw: no host
        /// work or upload (for GPU runs), reproducible per backend in a single-threaded program,
        /// but the numbers differ between backends, and Burn's seed is global to the backend,
        /// so concurrent draws from several threads interleave.
        DeviceRng => "device-rng" | "device",
    }
}

impl NoiseSource {
    /// `n` standard-normal values for `key`, as f32, on `device`.
    pub fn standard_normal(self, n: usize, key: &NoiseKey, device: &Device) -> Tensor<1> {
        let stream = key.stream();
        match self {
            NoiseSource::Counter => {
                let z: Vec<f32> = (0..n as u64)
                    .map(|i| normal_f64(stream, i) as f32)
                    .collect();
                Tensor::from_data(TensorData::new(z, [n]), device)
            }
            NoiseSource::DeviceRng => {
                device.seed(stream);
                Tensor::random([n], Distribution::Normal(0.0, 1.0), device)
            }
        }
    }
}
