//! `y = x Q(W)^T` for a packed `W`, reading the codes directly: the CPU kernel of few-row
//! products (decoding steps of a rollout), and its plain reference.
//!
//! The result must be bit for bit what the fake-quant path computes, which on the CPU is Burn's
//! NdArray matmul, that is `matrixmultiply`'s sgemm. Its FMA kernels (chosen at run time on
//! x86-64 with AVX2 and FMA) give every output element the same arithmetic, whatever the shapes
//! and threads: the reduction axis is cut into chunks of [`SGEMM_KC`] = 256, each chunk is
//! accumulated from `+0` by one fused multiply-add per element in order, and the chunk sums are
//! added to the output in order (`c = acc + c`, starting at `c = +0`). The reference
//! ([`packed_gemm_reference`]) writes that order out with `f32::mul_add`.
//!
//! The kernel ([`packed_gemm`]) does the same arithmetic with one AVX2 lane per *output column*:
//! a task owns [`TASK_COLS`] = 32 output columns (four registers), decodes their weight rows
//! 64 columns of `x` at a time straight from the codes into output lanes
//! ([`super::lanes::Lanes`]: an 8 KiB buffer in L1, exact values), and runs every row of
//! `x` over them, two rows at a time (eight independent FMA chains: two rows times four
//! registers, each chain one output element's sequential sum). Nothing of `Q(W)` outlives the
//! 64 columns, the weight is read once per product whatever the number of rows, and the tasks
//! (groups of output columns) are spread over Rayon's threads. The kernel is used only where
//! sgemm uses its FMA kernel ([`sgemm_order_available`]); elsewhere the projections decode
//! tiles and call the matmul itself (`super::matmul`), which is exact by construction.

use super::lanes::{FP4_SPAN, LANES, Lanes};
use super::weight::PackedWeight;
use crate::cpu::host::{Fresh, parallel};

/// matrixmultiply's `S_KC`: the length of the reduction chunks of its f32 kernels.
pub const SGEMM_KC: usize = 256;

/// Output columns per task: four registers of lanes.
pub const TASK_COLS: usize = 4 * LANES;
/// Reduction columns decoded at a time (a multiple of which [`SGEMM_KC`] is).
const SPAN: usize = FP4_SPAN;
const _: () = assert!(SGEMM_KC.is_multiple_of(SPAN));

/// Whether [`packed_gemm`] runs here with the arithmetic of the matmul: x86-64 with AVX2 and
/// FMA, the condition under which `matrixmultiply` picks its FMA kernel.
pub fn sgemm_order_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y[r, o] = sum_k x[r, k] Q(W)[o, k]` (`x`: `[rows, in]`, result `[rows, out]`, row-major)
/// with sgemm's FMA order, one element at a time: the reference of [`packed_gemm`].
pub fn packed_gemm_reference(x: &[f32], rows: usize, w: &PackedWeight) -> Vec<f32> {
    let [out, k] = w.dims();
    assert_eq!(x.len(), rows * k, "x must be [rows, in]");
    let mut y = vec![0.0f32; rows * out];
    let mut wrow = vec![0.0f32; k];
    for o in 0..out {
        w.decode_segment(o, 0, k, &mut wrow);
        for r in 0..rows {
            let xr = &x[r * k..(r + 1) * k];
            let mut c = 0.0f32;
            for (xc, wc) in xr.chunks(SGEMM_KC).zip(wrow.chunks(SGEMM_KC)) {
                let mut acc = 0.0f32;
                for (&a, &b) in xc.iter().zip(wc) {
                    acc = a.mul_add(b, acc);
                }
                c += acc;
            }
            y[r * out + o] = c;
        }
    }
    y
}

/// A task's buffers: the decoded weight span, the chunk sums and the running outputs.
struct Scratch {
    /// `[SPAN][TASK_COLS]`: the weight span in output lanes.
    wbuf: Vec<f32>,
    /// `[rows][TASK_COLS]`: the current chunk's sums.
    acc: Vec<f32>,
    /// `[rows][TASK_COLS]`: the outputs so far (`c`).
    c: Vec<f32>,
}

impl Scratch {
    fn new(rows: usize) -> Self {
        Self {
            wbuf: vec![0.0; SPAN * TASK_COLS],
            acc: vec![0.0; rows * TASK_COLS],
            c: vec![0.0; rows * TASK_COLS],
        }
    }
}

/// [`packed_gemm_reference`]'s values, computed by the AVX2/FMA kernel over Rayon's threads.
///
/// # Panics
/// If [`sgemm_order_available`] is false or `x` is not `[rows, in]`.
pub fn packed_gemm(x: &[f32], rows: usize, w: &PackedWeight) -> Vec<f32> {
    assert!(
        sgemm_order_available(),
        "packed_gemm needs x86-64 with AVX2 and FMA"
    );
    let [out, k] = w.dims();
    assert_eq!(x.len(), rows * k, "x must be [rows, in]");
    if rows == 0 {
        return Vec::new();
    }
    let y = Fresh::new(rows * out);
    let tasks = out.div_ceil(TASK_COLS);
    let lanes = Lanes::new(w);
    let task = |t: usize, s: &mut Scratch| {
        let o0 = t * TASK_COLS;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were checked above; the task writes only its own columns
        // o0..o0 + n of every row of `y`, which has room for rows x out values.
        unsafe {
            column_block(x, rows, k, &lanes, o0, s);
            let n = (out - o0).min(TASK_COLS);
            for r in 0..rows {
                let dst = y.ptr().add(r * out + o0);
                std::ptr::copy_nonoverlapping(s.c.as_ptr().add(r * TASK_COLS), dst, n);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (o0, s);
    };
    // The weight is the work: every value is decoded once.
    if parallel(out * k) {
        use rayon::prelude::*;
        (0..tasks)
            .into_par_iter()
            .for_each_init(|| Scratch::new(rows), |s, t| task(t, s));
    } else {
        let mut s = Scratch::new(rows);
        (0..tasks).for_each(|t| task(t, &mut s));
    }
    // SAFETY: the tasks cover every column of every row.
    unsafe { y.finish() }
}

/// Outputs `o0..o0 + 32` (columns past the weight compute zeros) for every row of `x`, into
/// `s.c` (`[rows][32]`), in sgemm's order: per chunk of 256 reduction columns, sums from zero
/// over the chunk's 64-column spans (decoded into `s.wbuf`), then `c = acc + c`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x` must be `[rows, k]` and `s` made for `rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn column_block(
    x: &[f32],
    rows: usize,
    k: usize,
    lanes: &Lanes,
    o0: usize,
    s: &mut Scratch,
) {
    use std::arch::x86_64::*;
    s.c.fill(0.0);
    let mut kc = 0;
    while kc < k {
        let chunk_end = (kc + SGEMM_KC).min(k);
        s.acc.fill(0.0);
        let mut k0 = kc;
        while k0 < chunk_end {
            let len = (chunk_end - k0).min(SPAN);
            // SAFETY: AVX2 and FMA (the caller); the buffer holds SPAN x TASK_COLS values.
            unsafe { lanes.decode(o0, k0, len, TASK_COLS / LANES, &mut s.wbuf, TASK_COLS) };
            let mut r = 0;
            // SAFETY: rows r, r + 1 < rows of `x` ([rows, k]) and of `acc` ([rows][32]); the
            // span k0..k0 + len lies inside the row.
            unsafe {
                while r + 2 <= rows {
                    fma_rows::<2>(
                        x.as_ptr().add(r * k + k0),
                        k,
                        &s.wbuf,
                        len,
                        &mut s.acc[r * TASK_COLS..],
                    );
                    r += 2;
                }
                if r < rows {
                    fma_rows::<1>(
                        x.as_ptr().add(r * k + k0),
                        k,
                        &s.wbuf,
                        len,
                        &mut s.acc[r * TASK_COLS..],
                    );
                }
            }
            k0 += len;
        }
        // c = acc + c, lane by lane.
        // SAFETY: both are [rows][32].
        unsafe {
            for (c, a) in s.c.chunks_exact_mut(LANES).zip(s.acc.chunks_exact(LANES)) {
                let v = _mm256_add_ps(_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(c.as_ptr()));
                _mm256_storeu_ps(c.as_mut_ptr(), v);
            }
        }
        kc = chunk_end;
    }
}

/// `acc[r][o] = fma(x[r][kk], wbuf[kk][o], acc[r][o])` for `kk` in `0..len` in order, for `R`
/// rows of `x` (`x` points at row 0's first column, rows `k` apart) and the 32 columns of
/// `wbuf`; `acc` holds the `R` rows of 32 sums, `R * 4` independent FMA chains.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x` must have `len` readable values in each of `R` rows,
/// `wbuf` `len * 32` values and `acc` `R * 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fma_rows<const R: usize>(
    x: *const f32,
    k: usize,
    wbuf: &[f32],
    len: usize,
    acc: &mut [f32],
) {
    use std::arch::x86_64::*;
    const G: usize = TASK_COLS / LANES;
    debug_assert!(wbuf.len() >= len * TASK_COLS && acc.len() >= R * TASK_COLS);
    // SAFETY: the bounds above (the caller's contract).
    unsafe {
        let mut a: [[__m256; G]; R] = std::array::from_fn(|r| {
            std::array::from_fn(|g| _mm256_loadu_ps(acc.as_ptr().add(r * TASK_COLS + g * LANES)))
        });
        let wp = wbuf.as_ptr();
        for kk in 0..len {
            let wv: [__m256; G] =
                std::array::from_fn(|g| _mm256_loadu_ps(wp.add(kk * TASK_COLS + g * LANES)));
            for (r, ar) in a.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*x.add(r * k + kk));
                for (av, &w) in ar.iter_mut().zip(&wv) {
                    *av = _mm256_fmadd_ps(xv, w, *av);
                }
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (g, av) in ar.iter().enumerate() {
                _mm256_storeu_ps(acc.as_mut_ptr().add(r * TASK_COLS + g * LANES), *av);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::QuantSpec;
    use crate::rng::normal_f64;

    #[test]
    fn kernel_equals_reference_bit_for_bit() {
        if !sgemm_order_available() {
            return;
        }
        // K spans two chunks and a partial one (whole 64-spans and a tail); 45 outputs: a full
        // task and a partial one (a partial register of lanes).
        let (out, k) = (45usize, 600usize);
        let wv: Vec<f32> = (0..out * k)
            .map(|i| (normal_f64(1, i as u64) * 0.05) as f32)
            .collect();
        let bf16_exact: Vec<f32> = wv
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000))
            .collect();
        let mut weights: Vec<(String, PackedWeight)> =
            ["nvfp4", "mxfp4", "nvfp4:tile16x16", "fp8", "bf16"]
                .iter()
                .map(|s| {
                    let spec: QuantSpec = s.parse().unwrap();
                    (
                        spec.label(),
                        PackedWeight::quantize(&wv, out, k, &spec).unwrap(),
                    )
                })
                .collect();
        weights.push(("f32".into(), PackedWeight::f32(wv.clone(), out, k).unwrap()));
        weights.push((
            "bf16-exact f32".into(),
            PackedWeight::f32(bf16_exact, out, k).unwrap(),
        ));
        for (label, w) in &weights {
            for rows in [1usize, 2, 3, 8, 11] {
                let x: Vec<f32> = (0..rows * k)
                    .map(|i| normal_f64(2, i as u64) as f32)
                    .collect();
                let a = packed_gemm(&x, rows, w);
                let b = packed_gemm_reference(&x, rows, w);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{label} rows {rows}");
            }
        }
    }
}
