//! Number formats of docs/spec.md section 1: E2M1, E8M0, E4M3 and BF16 codecs; MXFP4, NVFP4 and FP8
//! quantizers over `[rows, row_len]` f32 buffers. Edge-case rules: docs/formats.md.
//!
//! The slice API lives on [`QuantSpec`]:
//! - [`QuantSpec::fake_quantize`]: quantize and dequantize in one pass (f32 in, f32 out);
//! - [`QuantSpec::quantize`]: codes + scales ([`PackedTensor`]), undone by
//!   [`PackedTensor::dequantize`], bit-identical to the fake-quantized values;
//! - [`QuantSpec::fake_quantize_along`]: any axis of an N-D row-major tensor.

pub mod bf16;
pub mod blocks;
pub mod e2m1;
pub mod e4m3;
pub mod e8m0;
pub mod error;
pub mod fp8;
pub mod mxfp4;
pub mod nvfp4;
pub mod packed;
pub mod spec;

pub use blocks::BlockGrid;
pub use error::FormatError;
pub use packed::PackedTensor;
pub use spec::{
    BlockLayout, MXFP4_BLOCK_SIZE, MxScaleMode, NVFP4_BLOCK_SIZE, NvScaling, QuantFormat,
    QuantSpec, Rounding,
};

impl QuantSpec {
    /// The block grid of `len` elements in rows of `row_len`, after validating the spec.
    pub fn grid(&self, len: usize, row_len: usize) -> Result<BlockGrid, FormatError> {
        self.validate()?;
        BlockGrid::new(len, row_len, self.block_size(), self.blocks)
    }

    /// Quantizes and dequantizes `x` (rows of `row_len` along the quantization axis) into `out`.
    /// Returns the per-tensor scale (NVFP4 `g`, the FP8 scale, 1.0 otherwise).
    pub fn fake_quantize(
        &self,
        x: &[f32],
        row_len: usize,
        out: &mut [f32],
    ) -> Result<f32, FormatError> {
        let grid = self.grid(x.len(), row_len)?;
        if out.len() != x.len() {
            return Err(FormatError::OutputLength {
                out: out.len(),
                input: x.len(),
            });
        }
        Ok(match self.format {
            QuantFormat::Mxfp4 => {
                mxfp4::fake_quantize(&grid, x, out, self.scale_mode, self.rounding);
                1.0
            }
            QuantFormat::Nvfp4 => {
                nvfp4::fake_quantize(&grid, x, out, self.nv_scaling, self.rounding)
            }
            QuantFormat::Fp8 => fp8::fake_quantize(x, out),
            QuantFormat::Bf16 => {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = bf16::round_to_bf16(v);
                }
                1.0
            }
        })
    }

    /// [`QuantSpec::fake_quantize`] into a new vector.
    pub fn fake_quantize_vec(&self, x: &[f32], row_len: usize) -> Result<Vec<f32>, FormatError> {
        let mut out = vec![0.0; x.len()];
        self.fake_quantize(x, row_len, &mut out)?;
        Ok(out)
    }

    /// Encodes `x` into its packed form.
    pub fn quantize(&self, x: &[f32], row_len: usize) -> Result<PackedTensor, FormatError> {
        let grid = self.grid(x.len(), row_len)?;
        let (codes, scales, tensor_scale) = match self.format {
            QuantFormat::Mxfp4 => {
                let (codes, scales) = mxfp4::encode(&grid, x, self.scale_mode, self.rounding);
                (e2m1::pack_nibbles(&codes), scales, 1.0)
            }
            QuantFormat::Nvfp4 => {
                let (codes, scales, g) = nvfp4::encode(&grid, x, self.nv_scaling, self.rounding);
                (e2m1::pack_nibbles(&codes), scales, g)
            }
            QuantFormat::Fp8 => {
                let (codes, scale) = fp8::encode(x);
                (codes, Vec::new(), scale)
            }
            QuantFormat::Bf16 => (
                x.iter()
                    .flat_map(|&v| bf16::f32_to_bf16_bits(v).to_le_bytes())
                    .collect(),
                Vec::new(),
                1.0,
            ),
        };
        Ok(PackedTensor {
            spec: *self,
            rows: grid.rows,
            row_len: grid.row_len,
            codes,
            scales,
            tensor_scale,
        })
    }

    /// Fake-quantizes a row-major tensor of `shape` along `axis`: the axis is moved last, the
    /// rows quantized, and the result moved back. Stochastic-rounding indices refer to the
    /// moved layout.
    pub fn fake_quantize_along(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
    ) -> Result<Vec<f32>, FormatError> {
        if axis >= shape.len() {
            return Err(FormatError::BadAxis {
                axis,
                rank: shape.len(),
            });
        }
        let len: usize = shape.iter().product();
        if len != x.len() {
            return Err(FormatError::BadShape {
                len: x.len(),
                row_len: shape[axis],
            });
        }
        let outer: usize = shape[..axis].iter().product();
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        if inner == 1 {
            return self.fake_quantize_vec(x, n);
        }
        // [outer, n, inner] -> [outer, inner, n]
        let mut moved = vec![0.0f32; len];
        for o in 0..outer {
            for k in 0..n {
                for i in 0..inner {
                    moved[(o * inner + i) * n + k] = x[(o * n + k) * inner + i];
                }
            }
        }
        let q = self.fake_quantize_vec(&moved, n)?;
        let mut out = vec![0.0f32; len];
        for o in 0..outer {
            for k in 0..n {
                for i in 0..inner {
                    out[(o * n + k) * inner + i] = q[(o * inner + i) * n + k];
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<QuantSpec> {
        let mut v = Vec::new();
        for &m in MxScaleMode::ALL {
            v.push(QuantSpec::new(QuantFormat::Mxfp4).with_scale_mode(m));
        }
        for &s in NvScaling::ALL {
            v.push(QuantSpec::new(QuantFormat::Nvfp4).with_nv_scaling(s));
            v.push(
                QuantSpec::new(QuantFormat::Nvfp4)
                    .with_nv_scaling(s)
                    .with_blocks(BlockLayout::Tile16x16),
            );
        }
        v.push(QuantSpec::new(QuantFormat::Nvfp4).with_rounding(Rounding::Stochastic { seed: 9 }));
        v.push(QuantSpec::new(QuantFormat::Mxfp4).with_rounding(Rounding::Stochastic { seed: 9 }));
        v.push(QuantSpec::new(QuantFormat::Fp8));
        v.push(QuantSpec::new(QuantFormat::Bf16));
        v
    }

    fn sample(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (crate::rng::normal_f64(5, i as u64) * 3.0) as f32)
            .collect()
    }

    #[test]
    fn fake_equals_dequantized_packed_for_every_shape() {
        for spec in specs() {
            for (rows, row_len) in [
                (1, 32),
                (4, 64),
                (3, 100),
                (17, 33),
                (1, 1),
                (2, 15),
                (0, 8),
            ] {
                let mut x = sample(rows * row_len);
                if x.len() > 40 {
                    x[37] = f32::NAN;
                }
                let fake = spec.fake_quantize_vec(&x, row_len).unwrap();
                let packed = spec.quantize(&x, row_len).unwrap();
                let deq = packed.dequantize().unwrap();
                for (i, (a, b)) in fake.iter().zip(&deq).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{} [{rows},{row_len}] #{i}: {a} vs {b}",
                        spec.label()
                    );
                }
            }
        }
    }

    #[test]
    fn fast_path_equals_general_path() {
        // Same data with rows of 64 (fast path) and as one ragged-free grid viewed per block.
        let x = sample(64 * 8);
        for spec in [
            QuantSpec::new(QuantFormat::Mxfp4),
            QuantSpec::new(QuantFormat::Nvfp4),
        ] {
            let fast = spec.fake_quantize_vec(&x, 64).unwrap();
            let packed = spec.quantize(&x, 64).unwrap().dequantize().unwrap();
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                packed.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn along_axis_matches_manual_transpose() {
        let shape = [3, 40, 5];
        let x = sample(600);
        let spec = QuantSpec::new(QuantFormat::Mxfp4);
        let q = spec.fake_quantize_along(&x, &shape, 1).unwrap();
        // Column (o, :, i) quantized on its own equals the slice.
        for o in 0..3 {
            for i in 0..5 {
                let col: Vec<f32> = (0..40).map(|k| x[(o * 40 + k) * 5 + i]).collect();
                let qc = spec.fake_quantize_vec(&col, 40).unwrap();
                for k in 0..40 {
                    assert_eq!(q[(o * 40 + k) * 5 + i].to_bits(), qc[k].to_bits());
                }
            }
        }
        assert!(matches!(
            spec.fake_quantize_along(&x, &shape, 3),
            Err(FormatError::BadAxis { .. })
        ));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let spec = QuantSpec::new(QuantFormat::Mxfp4);
        let err = spec.fake_quantize_vec(&[1.0; 10], 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a tensor of 10 elements cannot be split into rows of 3"
        );
        let mut out = [0.0; 2];
        assert!(matches!(
            spec.fake_quantize(&[1.0; 4], 4, &mut out),
            Err(FormatError::OutputLength { .. })
        ));
    }
}
