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
//! A frozen weight that stays unquantized can be held here too, as plain f32 values
//! ([`PackedWeight::f32`]): it then goes through the same tiled products, which never copy the
//! whole matrix (a dense matmul on the CPU makes a contiguous copy of a transposed operand, 1 GB
//! for Qwen2.5-1.5B's tied lm_head).
//!
//! Decoding a block is a table lookup: the 16 E2M1 codes of one block scale have 16 values,
//! computed once per block with the same operations as [`PackedTensor::dequantize`]
//! (MXFP4 `p * 2^e`; NVFP4 `(p * s) * g`), so the per-element work is a nibble and a load.

use std::any::Any;
use std::sync::{Arc, Mutex};

use crate::formats::bf16::bf16_bits_to_f32;
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
    F32 {
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    },
}

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
        let lut = match packed.spec.format {
            QuantFormat::Fp8 => (0..=255u8)
                .map(|c| e4m3_to_f32(c) * packed.tensor_scale)
                .collect(),
            f @ (QuantFormat::Mxfp4 | QuantFormat::Nvfp4) => (0..=255u8)
                .flat_map(|byte| fp4_table(f, byte, packed.tensor_scale).unwrap_or([f32::NAN; 16]))
                .collect(),
            QuantFormat::Bf16 => Vec::new(),
        };
        Ok(Self::new(Storage::Codes(packed), lut))
    }

    /// An unquantized frozen weight (`[out, in]` row-major values).
    pub fn f32(values: Vec<f32>, out: usize, inp: usize) -> Result<Self, FormatError> {
        if values.len() != out * inp || inp == 0 || out == 0 {
            return Err(FormatError::BadShape {
                len: values.len(),
                row_len: inp,
            });
        }
        Ok(Self::new(
            Storage::F32 {
                rows: out,
                cols: inp,
                values,
            },
            Vec::new(),
        ))
    }

    fn new(storage: Storage, lut: Vec<f32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                lut,
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                copies: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The encoded tensor (`None` for f32 storage).
    pub fn packed(&self) -> Option<&PackedTensor> {
        match &self.inner.storage {
            Storage::Codes(p) => Some(p),
            Storage::F32 { .. } => None,
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
            Storage::F32 { rows, cols, .. } => [*rows, *cols],
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
            Storage::F32 { values, .. } => std::mem::size_of_val(values.as_slice()),
        }
    }

    /// Every value, decoded (`[out, in]` row-major): [`PackedTensor::dequantize`]'s bits.
    pub fn dequantize(&self) -> Vec<f32> {
        let [o, i] = self.dims();
        let mut out = vec![0.0; o * i];
        self.decode_rows(0, o, &mut out);
        out
    }

    /// Rows `r0..r1` (all columns) into `out` (`(r1 - r0) * in` values, row-major).
    ///
    /// # Panics
    /// If the range is outside the weight or `out` has another length.
    pub fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let [rows, cols] = self.dims();
        assert!(r0 <= r1 && r1 <= rows, "rows {r0}..{r1} of {rows}");
        assert_eq!(out.len(), (r1 - r0) * cols, "decode_rows output length");
        for (r, dst) in (r0..r1).zip(out.chunks_exact_mut(cols)) {
            self.decode_segment(r, 0, cols, dst);
        }
    }

    /// Columns `c0..c1` of every row into `out` (`out * (c1 - c0)` values, row-major).
    ///
    /// # Panics
    /// If the range is outside the weight or `out` has another length.
    pub fn decode_cols(&self, c0: usize, c1: usize, out: &mut [f32]) {
        let [rows, cols] = self.dims();
        assert!(c0 <= c1 && c1 <= cols, "columns {c0}..{c1} of {cols}");
        let w = c1 - c0;
        assert_eq!(out.len(), rows * w, "decode_cols output length");
        if w == 0 {
            return;
        }
        for (r, dst) in out.chunks_exact_mut(w).enumerate() {
            self.decode_segment(r, c0, c1, dst);
        }
    }

    /// Columns `c0..c1` of row `row` into `out` (`c1 - c0` values).
    #[inline]
    pub fn decode_segment(&self, row: usize, c0: usize, c1: usize, out: &mut [f32]) {
        debug_assert_eq!(out.len(), c1 - c0);
        let p = match &self.inner.storage {
            Storage::Codes(p) => p,
            Storage::F32 { cols, values, .. } => {
                out.copy_from_slice(&values[row * cols + c0..row * cols + c1]);
                return;
            }
        };
        let cols = p.row_len;
        let base = row * cols;
        match p.spec.format {
            QuantFormat::Fp8 => {
                let lut = &self.inner.lut;
                for (o, &c) in out.iter_mut().zip(&p.codes[base + c0..base + c1]) {
                    *o = lut[c as usize];
                }
            }
            QuantFormat::Bf16 => {
                let bytes = &p.codes[2 * (base + c0)..2 * (base + c1)];
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => {
                let block = p.spec.block_size();
                let block_cols = cols.div_ceil(block);
                let block_row = match p.spec.blocks {
                    BlockLayout::Row => row,
                    BlockLayout::Tile16x16 => row / block,
                };
                let mut c = c0;
                while c < c1 {
                    let bc = c / block;
                    let end = ((bc + 1) * block).min(c1);
                    let byte = p.scales[block_row * block_cols + bc] as usize;
                    let table: &[f32; 16] = self.inner.lut[16 * byte..16 * byte + 16]
                        .try_into()
                        .expect("16 values per scale byte");
                    decode_nibbles(&p.codes, base + c, table, &mut out[c - c0..end - c0]);
                    c = end;
                }
            }
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
            Storage::F32 { values, .. } => RawLayout::F32 { values },
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

/// Decodes `out.len()` nibble-packed codes starting at element `first` through `table`.
#[inline]
fn decode_nibbles(codes: &[u8], first: usize, table: &[f32; 16], out: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    if first % 2 == 1 && n > 0 {
        out[0] = table[(codes[first / 2] >> 4) as usize];
        i = 1;
    }
    // Whole bytes: two codes each, low nibble first.
    let start_byte = (first + i) / 2;
    let pairs = (n - i) / 2;
    for (k, &b) in codes[start_byte..start_byte + pairs].iter().enumerate() {
        out[i + 2 * k] = table[(b & 0xF) as usize];
        out[i + 2 * k + 1] = table[(b >> 4) as usize];
    }
    i += 2 * pairs;
    if i < n {
        out[i] = table[(codes[(first + i) / 2] & 0xF) as usize];
    }
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
    }
}
