//! Rotary position embeddings (Su et al., "RoFormer: Enhanced Transformer with Rotary Position
//! Embedding", 2021) in HF's "rotate half" layout: dimension `i` pairs with `i + head_dim/2`
//! (not with its neighbour, as `burn::nn::RotaryEncoding` pairs them).
//!
//! Frequencies `inv_freq_i = 1 / theta^(2i / head_dim)` and angles `position * inv_freq_i` are
//! computed in f32 as HF computes them; the cos/sin tables are built on the host for the exact
//! positions of one forward pass (each sequence of a left-padded batch has its own), so there is no
//! `max_position_embeddings`-sized table.

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};

use crate::ops::RotaryTables;

/// Configuration of a [`RotaryEmbedding`].
#[derive(Config, Debug)]
pub struct RotaryEmbeddingConfig {
    /// Per-head width (even).
    pub head_dim: usize,
    /// The base `theta` (HF `rope_theta`).
    #[config(default = 10000.0)]
    pub theta: f64,
}

/// The frequencies of RoPE; cheap to clone, holds no tensor.
#[derive(Clone, Debug)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbeddingConfig {
    /// The frequencies.
    ///
    /// # Panics
    /// If `head_dim` is odd or 0, or `theta` is not positive (the model config is validated first).
    pub fn init(&self) -> RotaryEmbedding {
        assert!(
            self.head_dim > 0 && self.head_dim.is_multiple_of(2),
            "rotary head_dim must be even and positive, got {}",
            self.head_dim
        );
        assert!(self.theta > 0.0, "rotary theta must be positive");
        let base = self.theta as f32;
        let inv_freq = (0..self.head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / self.head_dim as f32))
            .collect();
        RotaryEmbedding { inv_freq }
    }
}

impl RotaryEmbedding {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// The tables for `positions`, row-major `[batch, seq]`.
    pub fn tables(
        &self,
        positions: &[usize],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> RotaryTables {
        assert_eq!(
            positions.len(),
            batch * seq,
            "positions must be [batch, seq]"
        );
        let d = self.head_dim();
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * d);
        let mut sin = Vec::with_capacity(positions.len() * d);
        for &p in positions {
            let start = cos.len();
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
            cos.extend_from_within(start..start + half);
            sin.extend_from_within(start..start + half);
        }
        let shape = [batch, 1, seq, d];
        RotaryTables {
            cos: Tensor::from_data(TensorData::new(cos.clone(), shape), device),
            sin: Tensor::from_data(TensorData::new(sin.clone(), shape), device),
            cos_host: std::sync::Arc::new(cos),
            sin_host: std::sync::Arc::new(sin),
        }
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;

    #[test]
    fn rotates_pairs_i_and_i_plus_half() {
        let device = Device::ndarray();
        let rope = RotaryEmbeddingConfig::new(4).with_theta(100.0).init();
        // inv_freq = [1, 1/10].
        let tables = rope.tables(&[0, 3], 1, 2, &device);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
                [1, 1, 2, 4],
            ),
            &device,
        );
        let y = tables.apply(x).into_data().to_vec::<f32>().unwrap();
        // Position 0 is the identity.
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        // Position 3: (x0, x2) rotated by 3 rad, (x1, x3) by 0.3 rad.
        let (c0, s0, c1, s1) = (3f32.cos(), 3f32.sin(), 0.3f32.cos(), 0.3f32.sin());
        let want = [
            1.0 * c0 - 3.0 * s0,
            2.0 * c1 - 4.0 * s1,
            3.0 * c0 + 1.0 * s0,
            4.0 * c1 + 2.0 * s1,
        ];
        for (a, b) in y[4..].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn rotation_preserves_norm_and_relative_angles() {
        // <R(p) q, R(p + k) v> depends only on k: the property RoPE is built on.
        let device = Device::ndarray();
        let rope = RotaryEmbeddingConfig::new(8).with_theta(50000.0).init();
        let q: Vec<f32> = (0..8).map(|i| (i as f32 * 0.7).sin()).collect();
        let v: Vec<f32> = (0..8).map(|i| (i as f32 * 1.3).cos()).collect();
        let dot = |p: usize, k: usize| {
            let t = rope.tables(&[p, p + k], 1, 2, &device);
            let x = Tensor::<4>::from_data(
                TensorData::new([q.clone(), v.clone()].concat(), [1, 1, 2, 8]),
                &device,
            );
            let y = t.apply(x).into_data().to_vec::<f32>().unwrap();
            y[..8].iter().zip(&y[8..]).map(|(a, b)| a * b).sum::<f32>()
        };
        assert!((dot(0, 5) - dot(17, 5)).abs() < 1e-4);
        assert!((dot(2, 1) - dot(40, 1)).abs() < 1e-4);
    }
}
