//! Block geometry: which elements share a scale. See docs/formats.md ("Layout of a tensor").

use core::ops::Range;

use super::error::FormatError;
use super::spec::{BlockLayout, NVFP4_BLOCK_SIZE};

/// A tensor viewed as `[rows, row_len]` with blocks of `block` elements along each row, or
/// 16x16 tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGrid {
    /// Number of rows.
    pub rows: usize,
    /// Elements per row (the quantization axis).
    pub row_len: usize,
    /// Elements per 1-D block (the tile side for tiles).
    pub block: usize,
    /// 1-D blocks or 2-D tiles.
    pub layout: BlockLayout,
}

impl BlockGrid {
    /// The grid of `len` elements in rows of `row_len`.
    pub fn new(
        len: usize,
        row_len: usize,
        block: usize,
        layout: BlockLayout,
    ) -> Result<Self, FormatError> {
        if row_len == 0 || !len.is_multiple_of(row_len) {
            if len == 0 && row_len == 0 {
                return Ok(Self {
                    rows: 0,
                    row_len: 0,
                    block,
                    layout,
                });
            }
            return Err(FormatError::BadShape { len, row_len });
        }
        let block = match layout {
            BlockLayout::Row => block,
            BlockLayout::Tile16x16 => NVFP4_BLOCK_SIZE,
        };
        Ok(Self {
            rows: len / row_len,
            row_len,
            block,
            layout,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.row_len
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks per row (1-D) or tile columns (2-D).
    pub fn block_cols(&self) -> usize {
        self.row_len.div_ceil(self.block)
    }

    /// Block rows: `rows` for 1-D blocks, tile rows for tiles.
    pub fn block_rows(&self) -> usize {
        match self.layout {
            BlockLayout::Row => self.rows,
            BlockLayout::Tile16x16 => self.rows.div_ceil(self.block),
        }
    }

    /// Number of scales.
    pub fn num_blocks(&self) -> usize {
        self.block_rows() * self.block_cols()
    }

    /// The element ranges of block `(br, bc)`: one range for a 1-D block, one per row for a tile.
    /// Partial blocks at the edges are simply shorter; nothing reaches past the tensor.
    pub fn block_ranges(
        &self,
        br: usize,
        bc: usize,
    ) -> impl Iterator<Item = Range<usize>> + Clone + '_ {
        let c0 = bc * self.block;
        let c1 = (c0 + self.block).min(self.row_len);
        let (r0, r1) = match self.layout {
            BlockLayout::Row => (br, br + 1),
            BlockLayout::Tile16x16 => (br * self.block, ((br + 1) * self.block).min(self.rows)),
        };
        (r0..r1).map(move |r| r * self.row_len + c0..r * self.row_len + c1)
    }

    /// Whether the fast path applies: 1-D blocks that tile every row exactly, so the flat buffer is
    /// a sequence of whole blocks.
    pub fn is_uniform(&self) -> bool {
        self.layout == BlockLayout::Row && self.row_len.is_multiple_of(self.block)
    }
}

/// Largest magnitude bit pattern (`bits & 0x7FFF_FFFF`) over `x`: for non-negative floats the
/// bit order is the numeric order, and NaN/Inf patterns (>= 0x7F80_0000) exceed every finite one.
#[inline(always)]
pub fn amax_bits(x: &[f32]) -> u32 {
    x.iter().fold(0u32, |m, v| m.max(v.to_bits() & ABS_MASK))
}

/// Largest magnitude over the finite elements of `x` (0 for none). A pass over a whole tensor,
/// so it runs the AVX2 build of its loop where the CPU has it.
pub fn finite_amax(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { finite_amax_avx2(x) };
    }
    finite_amax_impl(x)
}

/// [`finite_amax_impl`] with AVX2 registers written out (LLVM vectorizes the plain loop across
/// chunks, gathering one lane of eight chunks per register: three times the instructions). The
/// same maximum, whatever the order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn finite_amax_avx2(x: &[f32]) -> f32 {
    use core::arch::x86_64::*;
    let abs = _mm256_set1_epi32(ABS_MASK as i32);
    let inf = _mm256_set1_epi32(INF_BITS as i32);
    let mut m = [_mm256_setzero_si256(); 2];
    let chunks = x.chunks_exact(AMAX_LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (h, acc) in m.iter_mut().enumerate() {
            // SAFETY: 8 of the chunk's 16 values.
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().add(8 * h).cast()) };
            let a = _mm256_and_si256(v, abs);
            // Magnitudes at or above Inf's pattern (Inf, NaN) count as 0.
            *acc = _mm256_max_epi32(*acc, _mm256_and_si256(a, _mm256_cmpgt_epi32(inf, a)));
        }
    }
    let mut lanes = [0i32; 8];
    // SAFETY: 8 lanes into 8 values.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_max_epi32(m[0], m[1])) };
    let head = lanes.into_iter().max().unwrap_or(0);
    f32::from_bits(finite_amax_impl(tail).to_bits().max(head as u32))
}

/// Independent accumulators of [`finite_amax_impl`] (a plain fold is a serial chain LLVM does
/// not vectorize).
const AMAX_LANES: usize = 16;

#[inline(always)]
fn finite_amax_impl(x: &[f32]) -> f32 {
    // Magnitude bit patterns are non-negative as i32 and ordered like the values; NaN and Inf
    // patterns (>= INF_BITS) are masked to 0.
    #[inline(always)]
    fn finite_bits(v: f32) -> i32 {
        let a = (v.to_bits() & ABS_MASK) as i32;
        a & -i32::from(a < INF_BITS as i32)
    }
    let mut lanes = [0i32; AMAX_LANES];
    let chunks = x.chunks_exact(AMAX_LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = (*l).max(finite_bits(v));
        }
    }
    let bits = tail
        .iter()
        .fold(lanes.into_iter().max().unwrap_or(0), |m, &v| {
            m.max(finite_bits(v))
        });
    f32::from_bits(bits as u32)
}

/// Clears the sign bit.
pub const ABS_MASK: u32 = 0x7FFF_FFFF;
/// The bit pattern of +Inf; magnitudes at or above it are Inf or NaN.
pub const INF_BITS: u32 = 0x7F80_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_rows_and_tiles() {
        let g = BlockGrid::new(3 * 40, 40, 32, BlockLayout::Row).unwrap();
        assert_eq!((g.block_rows(), g.block_cols(), g.num_blocks()), (3, 2, 6));
        let r: Vec<_> = g.block_ranges(2, 1).collect();
        assert_eq!(r, vec![112..120]);
        let t = BlockGrid::new(17 * 20, 20, 16, BlockLayout::Tile16x16).unwrap();
        assert_eq!((t.block_rows(), t.block_cols()), (2, 2));
        let r: Vec<_> = t.block_ranges(1, 1).collect();
        assert_eq!(r, vec![16 * 20 + 16..16 * 20 + 20]);
        assert_eq!(t.block_ranges(0, 0).count(), 16);
        assert!(BlockGrid::new(10, 3, 32, BlockLayout::Row).is_err());
    }

    #[test]
    fn amax_orders_specials_last() {
        assert_eq!(f32::from_bits(amax_bits(&[1.0, -3.0, 2.0])), 3.0);
        assert!(amax_bits(&[1.0, f32::NAN]) >= INF_BITS);
        assert!(amax_bits(&[1.0, f32::NEG_INFINITY]) >= INF_BITS);
        assert_eq!(finite_amax(&[1.0, f32::NAN, -2.0, f32::INFINITY]), 2.0);
        let long: Vec<f32> = (0..100)
            .map(|i| {
                if i == 77 {
                    -9.5
                } else if i % 7 == 0 {
                    f32::NAN
                } else {
                    i as f32 * 0.01
                }
            })
            .collect();
        assert_eq!(finite_amax(&long), 9.5);
        assert_eq!(finite_amax_impl(&long), 9.5);
        // Every length around the 16-value chunks, the largest value in each position.
        for n in 1..40 {
            for at in 0..n {
                let mut v: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * -0.25).collect();
                v[at] = -7.5;
                if n > 2 {
                    v[(at + 1) % n] = f32::INFINITY;
                }
                assert_eq!(finite_amax(&v), 7.5, "n {n} at {at}");
            }
        }
        assert_eq!(finite_amax(&[]), 0.0);
    }
}
