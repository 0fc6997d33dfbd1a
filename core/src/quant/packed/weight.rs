//! [`PackedWeight`]: a frozen weight `[out, in]` held in its storage form (codes + scales, docs/spec.md
//! section 1: MXFP4 4-bit codes + one E8M0 byte per 32; NVFP4 codes + one E4M3 byte per 16 + the
//! f32 tensor scale; FP8 one E4M3 byte + the tensor scale; BF16 two bytes), and its decoding, row
//! segment by row segment, into f32.
//!
//! Decoding is exact: every decoded value is bit for bit what [`PackedTensor::dequantize`]
//! returns, which is bit for bit the fake-quantized value of the same input (tested in
//! `crate::formats` and again here). The projections of a packed base never hold the whole f32
//! `Q(W)`: they decode the tile they multiply (`super::matmul`).
//!
//! A frozen weight that stays unquantized can be held here too ([`PackedWeight::f32`]): as f32
//! values, or, when every value is exactly a bf16 (a bf16 checkpoint's embedding table and LM
//! head), as their two-byte bf16 patterns, which decode to the same f32 bits. It then goes
//! through the same tiled products, which never copy the whole matrix (a dense matmul on the CPU
//! makes a contiguous copy of a transposed operand, 1 GB for Qwen2.5-1.5B's tied lm_head).
//!
//! Decoding a block is a table lookup: the 16 E2M1 codes of one block scale have 16 values,
//! computed once per block with the same operations as [`PackedTensor::dequantize`]
//! (MXFP4 `p * 2^e`; NVFP4 `(p * s) * g`), so the per-element work is a nibble and a load
//! (`super::row_decode`, eight or sixteen codes per instruction where the CPU has AVX2).

use std::any::Any;
use std::sync::{Arc, Mutex};

use super::row_decode;
use super::view::{Fp4View, View};
use crate::formats::e2m1::E2M1_VALUES;
use crate::formats::e4m3::e4m3_to_f32;
use crate::formats::e8m0::e8m0_to_f32;
use crate::formats::{BlockLayout, FormatError, PackedTensor, QuantFormat, QuantSpec};

/// A frozen `[out, in]` weight in packed form; cloning shares the storage.
#[derive(Clone)]
pub struct PackedWeight {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    /// The decode table: FP8, the value of each of the 256 codes (`e4m3(c) * scale`); FP4, for
    /// each of the 256 scale bytes the 16 values of its block's codes ([`fp4_table`], NaN for a
    /// NaN scale), so decoding is a lookup per code; empty otherwise.
    lut: Vec<f32>,
    /// FP4: the value of each of the 256 scale bytes (E8M0 for MXFP4, E4M3 for NVFP4; NaN for
    /// a NaN byte), for decoders that scale codes lane by lane; empty otherwise.
    scale_values: Vec<f32>,
    /// Identifies the storage (shared by clones).
    id: u64,
    /// Copies of the storage kept elsewhere (the codes in device memory, one per device), owned
    /// here so that they live exactly as long as the storage: see [`PackedWeight::with_copy`].
    copies: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [o, i] = self.dims();
        write!(
            f,
            "PackedWeight({} [{o}, {i}], {} bytes)",
            self.label(),
            self.storage_bytes()
        )
    }
}

enum Storage {
    /// Codes + scales.
    Codes(PackedTensor),
    /// Unquantized values `[rows, cols]`.
    Dense {
        rows: usize,
        cols: usize,
        values: Dense,
    },
}

/// The values of an unquantized weight.
enum Dense {
    /// f32 values.
    F32(Vec<f32>),
    /// Values that are all exactly bf16, as their little-endian bf16 bit patterns (the top 16
    /// bits of each f32; the low 16 were zero).
    Bf16(Vec<u8>),
}

/// The mask of the f32 bits a bf16 drops: a value is exactly a bf16 when they are zero.
const BF16_DROPPED_BITS: u32 = 0xFFFF;

/// Values decoded per parallel task of [`PackedWeight::decode_rows`] / `decode_cols` (64 KiB of
/// f32: a task amortizes its scheduling, a tile of `super::matmul` splits into several).
const DECODE_TASK_VALUES: usize = 1 << 14;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl PackedWeight {
    /// Quantizes `values` (`[out, in]` row-major, quantized along `in`) into packed form.
    pub fn quantize(
        values: &[f32],
        out: usize,
        inp: usize,
        spec: &QuantSpec,
    ) -> Result<Self, FormatError> {
        if values.len() != out * inp || inp == 0 {
            return Err(FormatError::BadShape {
                len: values.len(),
                row_len: inp,
            });
        }
        Self::from_packed(spec.quantize(values, inp)?)
    }

    /// Wraps an encoded tensor (checked).
    pub fn from_packed(packed: PackedTensor) -> Result<Self, FormatError> {
        packed.check()?;
        if packed.row_len == 0 || packed.rows == 0 {
            return Err(FormatError::BadPacked(format!(
                "a packed weight needs rows and columns, got [{}, {}]",
                packed.rows, packed.row_len
            )));
        }
        let (lut, scale_values) = match packed.spec.format {
            QuantFormat::Fp8 => (
                (0..=255u8)
                    .map(|c| e4m3_to_f32(c) * packed.tensor_scale)
                    .collect(),
                Vec::new(),
            ),
            f @ (QuantFormat::Mxfp4 | QuantFormat::Nvfp4) => (
                (0..=255u8)
                    .flat_map(|byte| {
                        fp4_table(f, byte, packed.tensor_scale).unwrap_or([f32::NAN; 16])
                    })
                    .collect(),
                (0..=255u8)
                    .map(|byte| match f {
                        QuantFormat::Mxfp4 => e8m0_to_f32(byte),
                        _ => e4m3_to_f32(byte),
                    })
                    .collect(),
            ),
            QuantFormat::Bf16 => (Vec::new(), Vec::new()),
        };
        Ok(Self::new(Storage::Codes(packed), lut, scale_values))
    }

    /// An unquantized frozen weight (`[out, in]` row-major values). When every value is exactly
    /// a bf16 (a bf16 checkpoint's), it is held as its two-byte bf16 patterns, which decode to
    /// the same f32 bits (half the memory, half the bytes a product reads); otherwise as f32.
    pub fn f32(values: Vec<f32>, out: usize, inp: usize) -> Result<Self, FormatError> {
        if values.len() != out * inp || inp == 0 || out == 0 {
            return Err(FormatError::BadShape {
                len: values.len(),
                row_len: inp,
            });
        }
        let values = if values.iter().all(|v| v.to_bits() & BF16_DROPPED_BITS == 0) {
            Dense::Bf16(
                values
                    .iter()
                    .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            )
        } else {
            Dense::F32(values)
        };
        Ok(Self::new(
            Storage::Dense {
                rows: out,
                cols: inp,
                values,
            },
            Vec::new(),
            Vec::new(),
        ))
    }

    fn new(storage: Storage, lut: Vec<f32>, scale_values: Vec<f32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                lut,
                scale_values,
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                copies: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The encoded tensor (`None` for f32 storage).
    pub fn packed(&self) -> Option<&PackedTensor> {
        match &self.inner.storage {
            Storage::Codes(p) => Some(p),
            Storage::Dense { .. } => None,
        }
    }

    /// The quantizer that produced the codes (`None`: unquantized f32 values).
    pub fn spec(&self) -> Option<&QuantSpec> {
        self.packed().map(|p| &p.spec)
    }

    /// The storage format: the spec's label, or `f32`.
    pub fn label(&self) -> String {
        self.spec()
            .map_or_else(|| "f32".to_string(), QuantSpec::label)
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        match &self.inner.storage {
            Storage::Codes(p) => [p.rows, p.row_len],
            Storage::Dense { rows, cols, .. } => [*rows, *cols],
        }
    }

    /// A process-unique id of this storage (shared by clones).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Runs `f` on the copy of this storage of type `T` for which `matches` holds, made by `make`
    /// on first use and kept with the storage: the device decoder keeps the codes it uploaded
    /// here, one copy per device, and they are dropped with the last clone of the weight.
    pub fn with_copy<T: Any + Send + Sync, R>(
        &self,
        matches: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        // A panic while the lock was held leaves at worst a missing copy: remake it.
        let mut copies = self
            .inner
            .copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = copies
            .iter()
            .position(|c| c.downcast_ref::<T>().is_some_and(&matches));
        let index = match found {
            Some(i) => i,
            None => {
                copies.push(Box::new(make()));
                copies.len() - 1
            }
        };
        f(copies[index]
            .downcast_ref::<T>()
            .expect("the copy at `index` is a T"))
    }

    /// Bytes of codes, scales and the tensor scale: what the weight costs in memory.
    pub fn storage_bytes(&self) -> usize {
        match &self.inner.storage {
            Storage::Codes(p) => p.codes.len() + p.scales.len() + std::mem::size_of::<f32>(),
            Storage::Dense { values, .. } => match values {
                Dense::F32(v) => std::mem::size_of_val(v.as_slice()),
                Dense::Bf16(b) => b.len(),
            },
        }
    }

    /// Every value, decoded (`[out, in]` row-major): [`PackedTensor::dequantize`]'s bits.
    pub fn dequantize(&self) -> Vec<f32> {
        let [o, i] = self.dims();
        let mut out = vec![0.0; o * i];
        self.decode_rows(0, o, &mut out);
        out
    }

    /// Rows `r0..r1` (all columns) into `out` (`(r1 - r0) * in` values, row-major), over
    /// Rayon's threads when the rows are many.
    ///
    /// # Panics
    /// If the range is outside the weight or `out` has another length.
    pub fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let [rows, cols] = self.dims();
        assert!(r0 <= r1 && r1 <= rows, "rows {r0}..{r1} of {rows}");
        assert_eq!(out.len(), (r1 - r0) * cols, "decode_rows output length");
        self.decode_each_row(r0, 0, cols, out);
    }

    /// Columns `c0..c1` of every row into `out` (`out * (c1 - c0)` values, row-major), over
    /// Rayon's threads when the rows are many.
    ///
    /// # Panics
    /// If the range is outside the weight or `out` has another length.
    pub fn decode_cols(&self, c0: usize, c1: usize, out: &mut [f32]) {
        let [rows, cols] = self.dims();
        assert!(c0 <= c1 && c1 <= cols, "columns {c0}..{c1} of {cols}");
        assert_eq!(out.len(), rows * (c1 - c0), "decode_cols output length");
        self.decode_each_row(0, c0, c1, out);
    }

    /// Columns `c0..c1` of rows `r0..` into the rows of `out` (`c1 - c0` values each), in
    /// parallel tasks of [`DECODE_TASK_VALUES`] values when there are several.
    fn decode_each_row(&self, r0: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let w = c1 - c0;
        if w == 0 || out.is_empty() {
            return;
        }
        let rows_per_task = (DECODE_TASK_VALUES / w).max(1);
        let run = |t: usize, part: &mut [f32]| {
            for (i, dst) in part.chunks_exact_mut(w).enumerate() {
                self.decode_segment(r0 + t * rows_per_task + i, c0, c1, dst);
            }
        };
        if crate::cpu::host::parallel(out.len()) && out.len() > rows_per_task * w {
            use rayon::prelude::*;
            out.par_chunks_mut(rows_per_task * w)
                .enumerate()
                .for_each(|(t, part)| run(t, part));
        } else {
            run(0, out);
        }
    }

    /// Columns `c0..c1` of row `row` into `out` (`c1 - c0` values).
    #[inline]
    pub fn decode_segment(&self, row: usize, c0: usize, c1: usize, out: &mut [f32]) {
        debug_assert_eq!(out.len(), c1 - c0);
        let cols = self.dims()[1];
        let (first, last) = (row * cols + c0, row * cols + c1);
        match self.view() {
            View::F32 { values } => out.copy_from_slice(&values[first..last]),
            View::Bf16 { bytes } => row_decode::bf16(&bytes[2 * first..2 * last], out),
            View::Fp8 { codes, lut } => {
                for (o, &c) in out.iter_mut().zip(&codes[first..last]) {
                    *o = lut[c as usize];
                }
            }
            View::Fp4(v) => row_decode::fp4(&v, row, c0, out),
        }
    }

    /// The storage as this module's decoders read it.
    pub(super) fn view(&self) -> View<'_> {
        let inner = &*self.inner;
        match &inner.storage {
            Storage::Dense { values, .. } => match values {
                Dense::F32(values) => View::F32 { values },
                Dense::Bf16(bytes) => View::Bf16 { bytes },
            },
            Storage::Codes(p) => match p.spec.format {
                QuantFormat::Fp8 => View::Fp8 {
                    codes: &p.codes,
                    lut: &inner.lut,
                },
                QuantFormat::Bf16 => View::Bf16 { bytes: &p.codes },
                f @ (QuantFormat::Mxfp4 | QuantFormat::Nvfp4) => {
                    let block = p.spec.block_size();
                    View::Fp4(Fp4View {
                        codes: &p.codes,
                        scales: &p.scales,
                        lut: &inner.lut,
                        scale_values: &inner.scale_values,
                        cols: p.row_len,
                        block,
                        block_cols: p.row_len.div_ceil(block),
                        tile_rows: match p.spec.blocks {
                            BlockLayout::Row => 1,
                            BlockLayout::Tile16x16 => block,
                        },
                        g: (f == QuantFormat::Nvfp4).then_some(p.tensor_scale),
                    })
                }
            },
        }
    }
}

/// The storage of a [`PackedWeight`] as its raw parts, for kernels that decode it elsewhere
/// (the device decoder of `crate::quant::fused`); decoding element `(r, c)` of `[rows, cols]`:
#[derive(Clone, Copy, Debug)]
pub enum RawLayout<'a> {
    /// FP4 codes, two per byte (element `e = r * cols + c` in byte `e / 2`, low nibble first),
    /// and one scale byte per block (block row `r` (row blocks) or `r / 16` (16x16 tiles), block
    /// column `c / block`, `block_cols` per block row); the value is `lut[16 * scale + code]`.
    Fp4 {
        codes: &'a [u8],
        scales: &'a [u8],
        lut: &'a [f32],
        block: usize,
        block_cols: usize,
        tile_rows: usize,
    },
    /// One code per byte; the value is `lut[code]`.
    Fp8 { codes: &'a [u8], lut: &'a [f32] },
    /// Little-endian bf16 bit patterns, two bytes per element.
    Bf16 { codes: &'a [u8] },
    /// The values themselves.
    F32 { values: &'a [f32] },
}

impl PackedWeight {
    /// The raw parts of the storage (see [`RawLayout`]).
    pub fn raw_layout(&self) -> RawLayout<'_> {
        let lut = self.inner.lut.as_slice();
        match &self.inner.storage {
            Storage::Dense { values, .. } => match values {
                Dense::F32(values) => RawLayout::F32 { values },
                Dense::Bf16(codes) => RawLayout::Bf16 { codes },
            },
            Storage::Codes(p) => match p.spec.format {
                QuantFormat::Fp8 => RawLayout::Fp8 {
                    codes: &p.codes,
                    lut,
                },
                QuantFormat::Bf16 => RawLayout::Bf16 { codes: &p.codes },
                QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => {
                    let block = p.spec.block_size();
                    RawLayout::Fp4 {
                        codes: &p.codes,
                        scales: &p.scales,
                        lut,
                        block,
                        block_cols: p.row_len.div_ceil(block),
                        tile_rows: match p.spec.blocks {
                            BlockLayout::Row => 1,
                            BlockLayout::Tile16x16 => block,
                        },
                    }
                }
            },
        }
    }
}

/// The 16 decoded values of the codes of one FP4 block with scale byte `byte`, computed as
/// [`PackedTensor::dequantize`] does (MXFP4 `p * 2^e`, NVFP4 `(p * s) * g`); `None` for a NaN
/// scale (the block decodes to NaN).
#[inline]
pub fn fp4_table(format: QuantFormat, byte: u8, tensor_scale: f32) -> Option<[f32; 16]> {
    let mut t = [0.0f32; 16];
    match format {
        QuantFormat::Mxfp4 => {
            let s = e8m0_to_f32(byte);
            if s.is_nan() {
                return None;
            }
            for (v, &p) in t.iter_mut().zip(&E2M1_VALUES) {
                *v = p * s;
            }
        }
        _ => {
            let s = e4m3_to_f32(byte);
            if s.is_nan() {
                return None;
            }
            for (v, &p) in t.iter_mut().zip(&E2M1_VALUES) {
                *v = (p * s) * tensor_scale;
            }
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::normal_f64;

    fn sample(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| (normal_f64(seed, i) * 0.02) as f32)
            .collect()
    }

    #[test]
    fn decoding_is_the_dequantized_and_the_fake_quantized_value() {
        // Odd widths put row starts on odd nibbles; 40 rows give a partial 16x16 tile row.
        for (rows, cols) in [(40usize, 96usize), (17, 33), (3, 7)] {
            let mut x = sample(rows * cols, rows as u64);
            x[5] = f32::NAN; // one NaN block
            x[cols + 1] = 0.5; // an outlier
            for spec in [
                "mxfp4",
                "mxfp4:ceil",
                "mxfp4:even",
                "mxfp4:rceil",
                "nvfp4",
                "nvfp4:single-level",
                "nvfp4:tile16x16",
                "nvfp4:sr=3",
                "fp8",
                "bf16",
            ] {
                let spec: QuantSpec = spec.parse().unwrap();
                let w = PackedWeight::quantize(&x, rows, cols, &spec).unwrap();
                let want = spec.fake_quantize_vec(&x, cols).unwrap();
                let got = w.dequantize();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let nan = |v: &[f32]| v.iter().map(|f| f.is_nan()).collect::<Vec<_>>();
                assert_eq!(nan(&got), nan(&want), "{}", spec.label());
                let clean = |v: &[f32]| {
                    v.iter()
                        .map(|f| if f.is_nan() { 0.0 } else { *f })
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    bits(&clean(&got)),
                    bits(&clean(&want)),
                    "{} [{rows}, {cols}]",
                    spec.label()
                );
                assert_eq!(
                    bits(&clean(&got)),
                    bits(&clean(&w.packed().unwrap().dequantize().unwrap()))
                );
                // Column slabs and row ranges are the same values.
                let (c0, c1) = (cols / 3, cols - 1);
                let mut slab = vec![0.0; rows * (c1 - c0)];
                w.decode_cols(c0, c1, &mut slab);
                for r in 0..rows {
                    for c in c0..c1 {
                        let (a, b) = (slab[r * (c1 - c0) + c - c0], got[r * cols + c]);
                        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    }
                }
                let mut part = vec![0.0; 2 * cols];
                w.decode_rows(1, 3, &mut part);
                assert_eq!(bits(&clean(&part)), bits(&clean(&got[cols..3 * cols])));
            }
        }
    }

    #[test]
    fn storage_is_the_format_size() {
        let x = sample(64 * 128, 1);
        let bytes = |s: &str| {
            PackedWeight::quantize(&x, 64, 128, &s.parse().unwrap())
                .unwrap()
                .storage_bytes()
        };
        let n = 64 * 128;
        assert_eq!(bytes("mxfp4"), n / 2 + n / 32 + 4);
        assert_eq!(bytes("nvfp4"), n / 2 + n / 16 + 4);
        assert_eq!(bytes("fp8"), n + 4);
        assert_eq!(bytes("bf16"), 2 * n + 4);
        assert!(PackedWeight::quantize(&x, 64, 100, &"fp8".parse().unwrap()).is_err());
        let dense = PackedWeight::f32(x.clone(), 64, 128).unwrap();
        assert_eq!(dense.storage_bytes(), 4 * n);
        assert_eq!(dense.dequantize(), x);
        assert!(dense.spec().is_none());
        // Values that are all bf16 (a bf16 checkpoint's) take two bytes and decode to the same
        // bits, -0 and NaN included.
        let mut exact: Vec<f32> = x
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000))
            .collect();
        exact[0] = -0.0;
        exact[1] = f32::from_bits(0xFFC1_0000);
        let held = PackedWeight::f32(exact.clone(), 64, 128).unwrap();
        assert_eq!(held.storage_bytes(), 2 * n);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&held.dequantize()), bits(&exact));
        assert!(held.spec().is_none() && held.label() == "f32");
        assert!(matches!(held.raw_layout(), RawLayout::Bf16 { .. }));
        let mut row = vec![0.0; 50];
        held.decode_segment(3, 70, 120, &mut row);
        assert_eq!(bits(&row), bits(&exact[3 * 128 + 70..3 * 128 + 120]));
    }
}
