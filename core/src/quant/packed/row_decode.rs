//! Row-major decoding of a segment of one weight row into f32 (the tiles of the teacher-forced
//! products, the embedding lookup): FP4 codes through their block's 16-entry table, bf16
//! patterns by a shift. Each has a plain reference ([`fp4_reference`], [`bf16_reference`]) and
//! an AVX2 version picked at run time that gives the same bits (tests below): the FP4 one looks
//! sixteen codes up at once (two 8-entry table permutes, selected by the sign bit of each code),
//! the bf16 one widens eight patterns per instruction. Decoding is exact either way: a lookup
//! of the values [`super::weight::fp4_table`] computed, or a bit shift.

use super::view::Fp4View;

/// Decodes the bf16 patterns `bytes` (little-endian, two per value) into `out`.
#[inline]
pub(super) fn bf16(bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), 2 * out.len());
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { bf16_avx2(bytes, out) };
    }
    bf16_reference(bytes, out)
}

/// [`bf16`], one value at a time.
pub(super) fn bf16_reference(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bf16_avx2(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = out.len();
    let whole = n / 8 * 8;
    // SAFETY: 16 bytes are read and 8 values written at every i + 8 <= whole <= n.
    unsafe {
        for i in (0..whole).step_by(8) {
            let h = _mm_loadu_si128(bytes.as_ptr().add(2 * i).cast());
            let v = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_castsi256_ps(v));
        }
    }
    bf16_reference(&bytes[2 * whole..], &mut out[whole..]);
}

/// Decodes columns `c0..c0 + out.len()` of row `row` of an FP4 weight into `out`.
#[inline]
pub(super) fn fp4(v: &Fp4View, row: usize, c0: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { fp4_avx2(v, row, c0, out) };
    }
    fp4_reference(v, row, c0, out)
}

/// The block pieces of a row segment: `(first element, scale byte, output range)` for each
/// block the segment `c0..c0 + n` of row `row` touches.
#[inline(always)]
fn blocks(
    v: &Fp4View,
    row: usize,
    c0: usize,
    n: usize,
) -> impl Iterator<Item = (usize, u8, std::ops::Range<usize>)> {
    let (block, cols) = (v.block, v.cols);
    let scale_row = (row / v.tile_rows) * v.block_cols;
    let c1 = c0 + n;
    let mut c = c0;
    // One division per segment; the pieces then step block by block.
    let mut bc = c0 / block;
    std::iter::from_fn(move || {
        (c < c1).then(|| {
            let end = ((bc + 1) * block).min(c1);
            let piece = (row * cols + c, v.scales[scale_row + bc], c - c0..end - c0);
            c = end;
            bc += 1;
            piece
        })
    })
}

/// [`fp4`], one code at a time through the block's table.
pub(super) fn fp4_reference(v: &Fp4View, row: usize, c0: usize, out: &mut [f32]) {
    for (first, byte, range) in blocks(v, row, c0, out.len()) {
        let table = &v.lut[16 * byte as usize..16 * byte as usize + 16];
        for (i, o) in out[range].iter_mut().enumerate() {
            let e = first + i;
            let code = (v.codes[e / 2] >> ((e % 2) * 4)) & 0xF;
            *o = table[code as usize];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fp4_avx2(v: &Fp4View, row: usize, c0: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    for (first, byte, range) in blocks(v, row, c0, out.len()) {
        let table = &v.lut[16 * byte as usize..16 * byte as usize + 16];
        let out = &mut out[range];
        let n = out.len();
        // An odd first element takes the high nibble of its byte alone.
        let head = first % 2;
        if head == 1 && n > 0 {
            out[0] = table[(v.codes[first / 2] >> 4) as usize];
        }
        let whole = (n - head.min(n)) / 16 * 16;
        // SAFETY: the table has 16 values; every chunk reads 8 code bytes of this segment
        // (elements first + head + i .. + 16 <= first + n) and writes 16 values of `out`.
        unsafe {
            let positive = _mm256_loadu_ps(table.as_ptr());
            let negative = _mm256_loadu_ps(table.as_ptr().add(8));
            let bytes_at = v.codes.as_ptr().add((first + head) / 2);
            for i in (0..whole).step_by(16) {
                let b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(bytes_at.add(i / 2).cast()));
                // Lane j holds byte j: its low nibble is element 2j, its high one 2j + 1. The
                // permutes read the low 3 bits of each lane (the magnitude code); the sign bit
                // of the code, moved to bit 31, picks the table half.
                let hi = _mm256_srli_epi32::<4>(b);
                let lo_val = _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(positive, b),
                    _mm256_permutevar8x32_ps(negative, b),
                    _mm256_castsi256_ps(_mm256_slli_epi32::<28>(b)),
                );
                let hi_val = _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(positive, hi),
                    _mm256_permutevar8x32_ps(negative, hi),
                    _mm256_castsi256_ps(_mm256_slli_epi32::<24>(b)),
                );
                // Interleave back to element order: (lo0 hi0 lo1 hi1 ...).
                let a = _mm256_unpacklo_ps(lo_val, hi_val); // 0 1 2 3 | 8 9 10 11
                let c = _mm256_unpackhi_ps(lo_val, hi_val); // 4 5 6 7 | 12 13 14 15
                let dst = out.as_mut_ptr().add(head + i);
                _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(a, c));
                _mm256_storeu_ps(dst.add(8), _mm256_permute2f128_ps::<0x31>(a, c));
            }
        }
        for (i, o) in out.iter_mut().enumerate().skip(head + whole) {
            let e = first + i;
            *o = table[((v.codes[e / 2] >> ((e % 2) * 4)) & 0xF) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::View;
    use super::super::weight::PackedWeight;
    use super::*;
    use crate::formats::QuantSpec;
    use crate::rng::normal_f64;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn vector_fp4_decoding_is_the_table_lookup() {
        // Odd widths start rows on odd nibbles; segments start and end inside blocks.
        for (rows, cols) in [(20usize, 96usize), (18, 101), (3, 33)] {
            let mut x: Vec<f32> = (0..rows * cols)
                .map(|i| (normal_f64(7, i as u64) * 0.03) as f32)
                .collect();
            x[cols + 3] = f32::NAN; // a NaN block
            x[2 * cols + 1] = -0.0;
            for spec in ["nvfp4", "mxfp4", "nvfp4:tile16x16", "mxfp4:rceil"] {
                let spec: QuantSpec = spec.parse().unwrap();
                let w = PackedWeight::quantize(&x, rows, cols, &spec).unwrap();
                let View::Fp4(v) = w.view() else {
                    panic!("FP4 storage")
                };
                for row in [0, 1, 2, rows - 1] {
                    for (c0, c1) in [(0, cols), (1, cols), (5, cols - 3), (17, 18), (0, 0)] {
                        let mut a = vec![0.0; c1 - c0];
                        let mut b = vec![1.0; c1 - c0];
                        fp4(&v, row, c0, &mut a);
                        fp4_reference(&v, row, c0, &mut b);
                        assert_eq!(bits(&a), bits(&b), "{} row {row} {c0}..{c1}", spec.label());
                    }
                }
            }
        }
    }

    #[test]
    fn vector_bf16_decoding_is_the_shift() {
        let values: Vec<u16> = (0..77u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as u16)
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for n in [0, 7, 8, 77] {
            let (mut a, mut b) = (vec![0.0; n], vec![1.0; n]);
            bf16(&bytes[..2 * n], &mut a);
            bf16_reference(&bytes[..2 * n], &mut b);
            assert_eq!(bits(&a), bits(&b));
            let want: Vec<u32> = values[..n].iter().map(|&v| u32::from(v) << 16).collect();
            assert_eq!(bits(&a), want);
        }
    }
}
