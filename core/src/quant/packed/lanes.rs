//! Decoding eight weight rows at once into *output lanes*: `dst[kk * stride + j]` is the value
//! of row `o0 + j`, column `k0 + kk`, so that one AVX2 register holds one column of eight
//! output rows (the layout the few-row kernel of [`super::gemm`] multiplies with, one lane per
//! output column of `y = x Q(W)^T`).
//!
//! FP4 (the hot case): the 64 codes of each of the eight rows are 32 bytes; an 8x8 transpose of
//! their 32-bit words puts word `t` of row `j` in lane `j` of register `t` (eight codes per
//! lane), so each code of the span is one shift away from every lane. A code becomes its E2M1
//! value by an 8-entry table permute (the magnitude code) and a select on its sign bit, then is
//! multiplied by its lane's block scale, and for NVFP4 by the tensor scale: `(p * s) * g`, the
//! operations and the order of [`super::weight::fp4_table`] and `PackedTensor::dequantize`, so
//! the values are exact (bit for bit those of the row decoder; tested). bf16 patterns are
//! widened by a shift and f32 values copied, each with an 8x8 transpose. Other storage, partial
//! spans and rows past the end take [`decode_lanes_reference`] (row decoding, then a scalar
//! transpose), which is also the reference of the tests.

use super::view::{Fp4View, View};
use super::weight::PackedWeight;

/// Rows decoded together: the f32 lanes of an AVX2 register.
pub const LANES: usize = 8;
/// Columns of the FP4 fast path: 32 code bytes per row (one 256-bit load).
pub const FP4_SPAN: usize = 64;
/// How far ahead of a span its row's codes are prefetched (four spans: two cache lines).
const PREFETCH_BYTES: usize = 128;

/// Rows `o0..o0 + 8` (rows past the weight decode as 0), columns `k0..k0 + len`, into
/// `dst[kk * stride + j]` (`kk < len`, `j < 8`), one row and column at a time through
/// [`PackedWeight::decode_segment`].
pub fn decode_lanes_reference(
    w: &PackedWeight,
    o0: usize,
    k0: usize,
    len: usize,
    dst: &mut [f32],
    stride: usize,
) {
    let rows = w.dims()[0];
    let mut row = vec![0.0f32; len];
    for j in 0..LANES {
        if o0 + j < rows {
            w.decode_segment(o0 + j, k0, k0 + len, &mut row);
        } else {
            row.fill(0.0);
        }
        for (kk, &v) in row.iter().enumerate() {
            dst[kk * stride + j] = v;
        }
    }
}

/// A weight prepared for [`Lanes::decode`]: its storage view and shape, taken once per product.
pub struct Lanes<'a> {
    w: &'a PackedWeight,
    view: View<'a>,
    rows: usize,
    cols: usize,
}

impl<'a> Lanes<'a> {
    /// The decoder of `w`.
    pub fn new(w: &'a PackedWeight) -> Self {
        let [rows, cols] = w.dims();
        Self {
            w,
            view: w.view(),
            rows,
            cols,
        }
    }

    /// [`decode_lanes_reference`]'s values for `groups` consecutive groups of eight rows
    /// (group `g`: rows `o0 + 8g..`, into `dst[.. + 8g]`), with the vector decoders where the
    /// storage and span allow (`o0` a multiple of 8 and a group's rows inside the weight; FP4
    /// spans of 64 columns starting on a multiple of 64 in rows of an even length; bf16 and f32
    /// spans of a multiple of 8 columns).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    ///
    /// # Panics
    /// If `dst` holds fewer than `(len - 1) * stride + 8 * groups` values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn decode(
        &self,
        o0: usize,
        k0: usize,
        len: usize,
        groups: usize,
        dst: &mut [f32],
        stride: usize,
    ) {
        let cols = self.cols;
        assert!(
            len == 0 || dst.len() >= (len - 1) * stride + LANES * groups,
            "lanes buffer too small"
        );
        // The groups whose eight rows all lie inside the weight: a prefix.
        let full = if o0.is_multiple_of(LANES) && k0 + len <= cols {
            (self.rows.saturating_sub(o0) / LANES).min(groups)
        } else {
            0
        };
        // SAFETY (each arm): the rows of the first `full` groups and the columns k0..k0 + len
        // lie inside the weight, `dst` is large enough (checked), and the CPU has AVX2 (the
        // caller).
        let done = match self.view {
            View::Fp4(v)
                if len == FP4_SPAN && cols.is_multiple_of(2) && k0.is_multiple_of(FP4_SPAN) =>
            unsafe {
                fp4_span(&v, o0, k0, full, dst, stride);
                full
            },
            View::Bf16 { bytes } if len.is_multiple_of(LANES) => unsafe {
                for g in 0..full {
                    for c in (0..len).step_by(LANES) {
                        let first = (o0 + LANES * g) * cols + k0 + c;
                        bf16_square(bytes, first, cols, dst, c * stride + LANES * g, stride);
                    }
                }
                full
            },
            View::F32 { values } if len.is_multiple_of(LANES) => unsafe {
                for g in 0..full {
                    for c in (0..len).step_by(LANES) {
                        let first = (o0 + LANES * g) * cols + k0 + c;
                        f32_square(values, first, cols, dst, c * stride + LANES * g, stride);
                    }
                }
                full
            },
            _ => 0,
        };
        for g in done..groups {
            let o = o0 + LANES * g;
            decode_lanes_reference(self.w, o, k0, len, &mut dst[LANES * g..], stride);
        }
    }
}

/// Transposes eight registers of eight 32-bit lanes: `out[t]` lane `j` = `rows[j]` lane `t`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(rows: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    let (u0, u1) = (
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
    );
    let (u2, u3) = (
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    );
    let (u4, u5) = (
        _mm256_shuffle_ps::<0x44>(t4, t6),
        _mm256_shuffle_ps::<0xEE>(t4, t6),
    );
    let (u6, u7) = (
        _mm256_shuffle_ps::<0x44>(t5, t7),
        _mm256_shuffle_ps::<0xEE>(t5, t7),
    );
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Eight f32 values of eight rows (`values[first + j * cols ..][..8]`) into
/// `dst[at + kk * stride + j]`.
///
/// # Safety
/// Every index read and written must be in bounds; AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn f32_square(
    values: &[f32],
    first: usize,
    cols: usize,
    dst: &mut [f32],
    at: usize,
    stride: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(first + 7 * cols + LANES <= values.len());
    // SAFETY: in bounds (the caller).
    unsafe {
        let p = values.as_ptr().add(first);
        let rows = std::array::from_fn(|j| {
            // As for FP4 codes: eight streams; a prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(
                p.wrapping_add(j * cols)
                    .wrapping_byte_add(PREFETCH_BYTES)
                    .cast(),
            );
            _mm256_loadu_ps(p.add(j * cols))
        });
        for (kk, v) in transpose8(rows).into_iter().enumerate() {
            _mm256_storeu_ps(dst.as_mut_ptr().add(at + kk * stride), v);
        }
    }
}

/// [`f32_square`] for bf16 patterns (`bytes` little-endian, two per value).
///
/// # Safety
/// As [`f32_square`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bf16_square(
    bytes: &[u8],
    first: usize,
    cols: usize,
    dst: &mut [f32],
    at: usize,
    stride: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(2 * (first + 7 * cols + LANES) <= bytes.len());
    // SAFETY: in bounds (the caller).
    unsafe {
        let p = bytes.as_ptr().add(2 * first);
        let rows = std::array::from_fn(|j| {
            // As for FP4 codes: eight streams; a prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2 * j * cols + PREFETCH_BYTES).cast());
            let h = _mm_loadu_si128(p.add(2 * j * cols).cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        });
        for (kk, v) in transpose8(rows).into_iter().enumerate() {
            _mm256_storeu_ps(dst.as_mut_ptr().add(at + kk * stride), v);
        }
    }
}

/// The FP4 fast path: `groups` groups of eight rows from `o0`, columns `k0..k0 + 64` (`k0` a
/// multiple of 64, so the span holds whole blocks of 16 or 32 and starts on a byte of every row:
/// `cols` is even), for the block size and format of `v` (constant in the loops below).
///
/// # Safety
/// The rows and columns must lie inside the weight and `dst` hold `63 * stride + 8 * groups`
/// values; AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fp4_span(
    v: &Fp4View,
    o0: usize,
    k0: usize,
    groups: usize,
    dst: &mut [f32],
    stride: usize,
) {
    use crate::formats::spec::{MXFP4_BLOCK_SIZE, NVFP4_BLOCK_SIZE};
    // SAFETY: forwarded; the block size is the storage's.
    unsafe {
        match (v.block, v.g.is_some()) {
            (NVFP4_BLOCK_SIZE, true) => {
                fp4_span_of::<NVFP4_BLOCK_SIZE, true>(v, o0, k0, groups, dst, stride)
            }
            (MXFP4_BLOCK_SIZE, false) => {
                fp4_span_of::<MXFP4_BLOCK_SIZE, false>(v, o0, k0, groups, dst, stride)
            }
            (NVFP4_BLOCK_SIZE, false) => {
                fp4_span_of::<NVFP4_BLOCK_SIZE, false>(v, o0, k0, groups, dst, stride)
            }
            (MXFP4_BLOCK_SIZE, true) => {
                fp4_span_of::<MXFP4_BLOCK_SIZE, true>(v, o0, k0, groups, dst, stride)
            }
            _ => unreachable!("FP4 blocks are {NVFP4_BLOCK_SIZE} or {MXFP4_BLOCK_SIZE} wide"),
        }
    }
}

/// [`fp4_span`] for blocks of `BLOCK` values, times the tensor scale when `TENSOR_SCALE`.
///
/// # Safety
/// As [`fp4_span`], with `v.block == BLOCK` and `v.g.is_some() == TENSOR_SCALE`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fp4_span_of<const BLOCK: usize, const TENSOR_SCALE: bool>(
    v: &Fp4View,
    o0: usize,
    k0: usize,
    groups: usize,
    dst: &mut [f32],
    stride: usize,
) {
    use crate::formats::e2m1::E2M1_VALUES;
    use std::arch::x86_64::*;
    // Eight codes per 32-bit word, eight words per row in the span.
    const CODES: usize = 8;
    let blocks = FP4_SPAN / BLOCK;
    // SAFETY: row `o` of group `gr` has its 32 code bytes of the span at `(o * cols + k0) / 2`
    // (in bounds: the caller); `dst` indices stay below `63 * stride + 8 * groups`.
    unsafe {
        let positive = _mm256_loadu_ps(E2M1_VALUES.as_ptr());
        let negative = _mm256_loadu_ps(E2M1_VALUES.as_ptr().add(8));
        let g = _mm256_set1_ps(v.g.unwrap_or(1.0));
        let table = v.scale_values.as_ptr();
        let byte_mask = _mm256_set1_epi32(0xFF);
        for gr in 0..groups {
            let o = o0 + LANES * gr;
            // The span's scale bytes of each lane: `blocks` consecutive bytes from
            // `at + j * step` (a row of scales per weight row; one row shared by the eight rows
            // of a 16x16 tile, which `o % 8 == 0` keeps inside one tile).
            let at = (o / v.tile_rows) * v.block_cols + k0 / BLOCK;
            let step = if v.tile_rows == 1 { v.block_cols } else { 0 };
            debug_assert!(at + 7 * step + blocks <= v.scales.len());
            let words: [__m256; 8] = std::array::from_fn(|j| {
                let p = v.codes.as_ptr().add(((o + j) * v.cols + k0) / 2);
                // The row's codes a few spans ahead: the rows of a task (32) are as many
                // streams, more than the hardware prefetchers follow. A prefetch never faults.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES).cast());
                _mm256_castsi256_ps(_mm256_loadu_si256(p.cast()))
            });
            // Lane j of words[t]: the codes of columns k0 + 8t .. k0 + 8t + 8 of row o + j,
            // code n in bits 4n .. 4n + 4.
            let words = transpose8(words);
            // Lane j: the span's scale bytes of row o + j (4 for blocks of 16, 2 for 32), in
            // bounds (the debug assertion above); then block b's scale values by a gather from
            // the 256-entry table (a byte indexes it).
            let bytes = _mm256_set_epi32(
                scale_bytes::<BLOCK>(v.scales, at + 7 * step),
                scale_bytes::<BLOCK>(v.scales, at + 6 * step),
                scale_bytes::<BLOCK>(v.scales, at + 5 * step),
                scale_bytes::<BLOCK>(v.scales, at + 4 * step),
                scale_bytes::<BLOCK>(v.scales, at + 3 * step),
                scale_bytes::<BLOCK>(v.scales, at + 2 * step),
                scale_bytes::<BLOCK>(v.scales, at + step),
                scale_bytes::<BLOCK>(v.scales, at),
            );
            let scales: [__m256; FP4_SPAN / 16] = std::array::from_fn(|b| {
                let index = _mm256_and_si256(
                    _mm256_srlv_epi32(bytes, _mm256_set1_epi32(8 * b as i32)),
                    byte_mask,
                );
                _mm256_i32gather_ps::<4>(table, index)
            });
            let out = dst.as_mut_ptr().add(LANES * gr);
            for (t, word) in words.into_iter().enumerate() {
                let s = scales[CODES * t / BLOCK];
                let mut w = _mm256_castps_si256(word);
                for n in 0..CODES {
                    // The permutes read the low 3 bits of each lane (the magnitude code); the
                    // sign bit (bit 3), moved to bit 31, picks the table half: p, the code's
                    // E2M1 value.
                    let p = _mm256_blendv_ps(
                        _mm256_permutevar8x32_ps(positive, w),
                        _mm256_permutevar8x32_ps(negative, w),
                        _mm256_castsi256_ps(_mm256_slli_epi32::<28>(w)),
                    );
                    // (p * s) * g, as the table was computed.
                    let mut value = _mm256_mul_ps(p, s);
                    if TENSOR_SCALE {
                        value = _mm256_mul_ps(value, g);
                    }
                    _mm256_storeu_ps(out.add((CODES * t + n) * stride), value);
                    w = _mm256_srli_epi32::<4>(w);
                }
            }
        }
    }
}

/// The span's `64 / BLOCK` scale bytes starting at `scales[at]`, little-endian in an `i32`.
///
/// # Safety
/// `at + 64 / BLOCK <= scales.len()`.
#[inline(always)]
unsafe fn scale_bytes<const BLOCK: usize>(scales: &[u8], at: usize) -> i32 {
    let p = scales.as_ptr();
    // SAFETY: the bytes are in bounds (the caller).
    unsafe {
        match FP4_SPAN / BLOCK {
            4 => p.add(at).cast::<i32>().read_unaligned(),
            _ => i32::from(p.add(at).cast::<u16>().read_unaligned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::QuantSpec;
    use crate::rng::normal_f64;

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn vector_lanes_are_the_reference_lanes() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        // 20 rows: two full groups of 8 and a partial one; 200 columns: three 64-spans and a
        // tail; a NaN block, a negative zero, a subnormal-scale block, an outlier.
        let (rows, cols) = (20usize, 200usize);
        let mut x: Vec<f32> = (0..rows * cols)
            .map(|i| (normal_f64(3, i as u64) * 0.02) as f32)
            .collect();
        x[cols + 70] = f32::NAN;
        x[3] = -0.0;
        x[2 * cols + 64..2 * cols + 96].fill(1e-39);
        x[5 * cols + 9] = 4.0;
        let bf16_exact: Vec<f32> = x
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000))
            .collect();
        let mut weights: Vec<(String, PackedWeight)> = [
            "nvfp4",
            "nvfp4:single-level",
            "nvfp4:tile16x16",
            "mxfp4",
            "mxfp4:rceil",
            "fp8",
            "bf16",
        ]
        .iter()
        .map(|s| {
            let spec: QuantSpec = s.parse().unwrap();
            (
                spec.label(),
                PackedWeight::quantize(&x, rows, cols, &spec).unwrap(),
            )
        })
        .collect();
        weights.push((
            "f32".into(),
            PackedWeight::f32(x.clone(), rows, cols).unwrap(),
        ));
        weights.push((
            "f32 held as bf16".into(),
            PackedWeight::f32(bf16_exact, rows, cols).unwrap(),
        ));
        // One group at a time, and four groups at once (two full, one partial, one past the
        // end) into lanes 32 wide.
        for (label, w) in &weights {
            for (o0, groups, stride) in [(0, 1, 24), (8, 1, 24), (16, 1, 24), (0, 4, 32)] {
                for (k0, len) in [(0, 64), (64, 64), (128, 64), (192, 8), (8, 16), (3, 5)] {
                    let n = (len - 1) * stride + LANES * groups;
                    let (mut a, mut b) = (vec![7.0; n], vec![7.0; n]);
                    // SAFETY: AVX2 and FMA checked above.
                    unsafe { Lanes::new(w).decode(o0, k0, len, groups, &mut a, stride) };
                    for g in 0..groups {
                        let (o, dst) = (o0 + LANES * g, &mut b[LANES * g..]);
                        decode_lanes_reference(w, o, k0, len, dst, stride);
                    }
                    assert!(
                        same(&a, &b),
                        "{label} rows {o0}.. x{groups} cols {k0}..+{len}"
                    );
                }
            }
        }
    }
}
