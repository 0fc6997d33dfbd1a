//! A quantized tensor in its storage form: codes, block scales and the per-tensor scale.

use super::bf16::bf16_bits_to_f32;
use super::blocks::BlockGrid;
use super::e2m1::{e2m1_to_f32, unpack_nibble};
use super::e4m3::e4m3_to_f32;
use super::e8m0::e8m0_to_f32;
use super::error::FormatError;
use super::spec::{QuantFormat, QuantSpec};
use serde::{Deserialize, Serialize};

/// The packed form of a tensor (layout in docs/formats.md, "Packed layout").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackedTensor {
    /// The quantizer that produced it.
    pub spec: QuantSpec,
    /// Rows of the `[rows, row_len]` view.
    pub rows: usize,
    /// Elements per row (the quantization axis).
    pub row_len: usize,
    /// FP4: two codes per byte, low nibble first. FP8: one byte each. BF16: two bytes each (LE).
    pub codes: Vec<u8>,
    /// One scale byte per block (E8M0 for MXFP4, E4M3 for NVFP4); empty for FP8 and BF16.
    pub scales: Vec<u8>,
    /// NVFP4 two-level `g`, the FP8 scale, 1.0 otherwise.
    pub tensor_scale: f32,
}

impl PackedTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.row_len
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block grid of this tensor.
    pub fn grid(&self) -> Result<BlockGrid, FormatError> {
        BlockGrid::new(
            self.len(),
            self.row_len,
            self.spec.block_size(),
            self.spec.blocks,
        )
    }

    /// Checks that the buffers have the sizes the description implies.
    pub fn check(&self) -> Result<(), FormatError> {
        let n = self.len();
        let (codes, scales) = match self.spec.format {
            QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => (n.div_ceil(2), self.grid()?.num_blocks()),
            QuantFormat::Fp8 => (n, 0),
            QuantFormat::Bf16 => (2 * n, 0),
        };
        if self.codes.len() != codes || self.scales.len() != scales {
            return Err(FormatError::BadPacked(format!(
                "{} elements of {} need {codes} code bytes and {scales} scale bytes, found {} and {}",
                n,
                self.spec.label(),
                self.codes.len(),
                self.scales.len()
            )));
        }
        Ok(())
    }

    /// The dequantized values, bit-identical to the fake-quantized output of the same input.
    pub fn dequantize(&self) -> Result<Vec<f32>, FormatError> {
        self.check()?;
        let n = self.len();
        let mut out = vec![0.0f32; n];
        match self.spec.format {
            QuantFormat::Fp8 => {
                for (o, &c) in out.iter_mut().zip(&self.codes) {
                    *o = e4m3_to_f32(c) * self.tensor_scale;
                }
            }
            QuantFormat::Bf16 => {
                for (o, b) in out.iter_mut().zip(self.codes.chunks_exact(2)) {
                    *o = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => {
                let grid = self.grid()?;
                let mut block = 0;
                for br in 0..grid.block_rows() {
                    for bc in 0..grid.block_cols() {
                        let byte = self.scales[block];
                        block += 1;
                        for r in grid.block_ranges(br, bc) {
                            for i in r {
                                let p = e2m1_to_f32(unpack_nibble(&self.codes, i));
                                out[i] = if self.spec.format == QuantFormat::Mxfp4 {
                                    p * e8m0_to_f32(byte)
                                } else {
                                    (p * e4m3_to_f32(byte)) * self.tensor_scale
                                };
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
