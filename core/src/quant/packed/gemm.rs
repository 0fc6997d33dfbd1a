//! `y = x Q(W)^T` for a packed `W`, reading the codes directly: the CPU kernel of few-row
//! products (decoding steps of a rollout), and its plain reference.
//!
//! The result must be bit for bit what the fake-quant path computes, which on the CPU is Burn's
//! NdArray matmul, that is `matrixmultiply`'s sgemm. Its FMA kernels (chosen at run time on
//! x86-64 with AVX2 and FMA) give every output element the same arithmetic, whatever the shapes
//! and threads: the reduction axis is cut into chunks of [`SGEMM_KC`] = 256, each chunk is
//! accumulated from `+0` by one fused multiply-add per element in order, and the chunk sums are
//! added to the output in order (`c = acc + c`, starting at `c = +0`). The reference
//! ([`packed_gemm_reference`]) writes that order out with `f32::mul_add`; the kernel
//! ([`packed_gemm`]) does the same arithmetic eight rows at a time in AVX2 lanes, with eight
//! output columns in flight to hide the FMA latency. The kernel is used only where sgemm uses its
//! FMA kernel ([`sgemm_order_available`]); elsewhere the projections decode tiles and call the
//! matmul itself (`super::matmul`), which is exact by construction.

use super::weight::PackedWeight;

/// matrixmultiply's `S_KC`: the length of the reduction chunks of its f32 kernels.
pub const SGEMM_KC: usize = 256;

/// Rows of `x` per pass of the kernel (one AVX2 register of lanes).
const LANES: usize = 8;
/// Output columns decoded and accumulated together (independent FMA chains).
const COLS: usize = 8;

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

/// [`packed_gemm_reference`]'s values, computed by the AVX2/FMA kernel over both cores.
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
    // x transposed into groups of 8 rows: xt[g][k][lane], zero-padded.
    let groups = rows.div_ceil(LANES);
    let mut xt = vec![0.0f32; groups * k * LANES];
    for r in 0..rows {
        let (g, lane) = (r / LANES, r % LANES);
        let dst = &mut xt[g * k * LANES..(g + 1) * k * LANES];
        for (kk, &v) in x[r * k..(r + 1) * k].iter().enumerate() {
            dst[kk * LANES + lane] = v;
        }
    }
    // yt[o][g * 8 + lane]: column blocks of 8 outputs are independent tasks.
    let stride = groups * LANES;
    let mut yt = vec![0.0f32; out * stride];
    use rayon::prelude::*;
    yt.par_chunks_mut(COLS * stride).enumerate().for_each_init(
        || vec![0.0f32; COLS * SGEMM_KC],
        |wbuf, (blk, dst)| {
            let o0 = blk * COLS;
            let n = (out - o0).min(COLS);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the features were checked above; buffers have the sizes used.
            unsafe {
                column_block(&xt, groups, k, w, o0, n, dst, wbuf)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (o0, n, dst, wbuf);
        },
    );
    let mut y = vec![0.0f32; rows * out];
    for o in 0..out {
        for r in 0..rows {
            y[r * out + o] = yt[o * stride + r];
        }
    }
    y
}

/// Outputs `o0..o0 + n` (n <= 8) for every row group: decodes the 8 weight rows chunk by chunk
/// into `wbuf` and accumulates each chunk from zero, then into `dst` (`[n][groups * 8]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn column_block(
    xt: &[f32],
    groups: usize,
    k: usize,
    w: &PackedWeight,
    o0: usize,
    n: usize,
    dst: &mut [f32],
    wbuf: &mut [f32],
) {
    use std::arch::x86_64::*;
    let stride = groups * LANES;
    // SAFETY (all pointer arithmetic below): `xt` is `[groups][k][8]`, `wbuf` `[8][256]`, `dst`
    // `[n][groups * 8]`, and every offset stays inside them.
    let mut kc = 0;
    while kc < k {
        let len = (k - kc).min(SGEMM_KC);
        for j in 0..COLS {
            let row = &mut wbuf[j * SGEMM_KC..j * SGEMM_KC + len];
            if j < n {
                w.decode_segment(o0 + j, kc, kc + len, row);
            } else {
                row.fill(0.0);
            }
        }
        for g in 0..groups {
            unsafe {
                let xg = xt.as_ptr().add((g * k + kc) * LANES);
                let wp = wbuf.as_ptr();
                let mut acc = [_mm256_setzero_ps(); COLS];
                for kk in 0..len {
                    let xv = _mm256_loadu_ps(xg.add(kk * LANES));
                    // Eight independent chains: one per output column.
                    for (j, a) in acc.iter_mut().enumerate() {
                        let wv = _mm256_broadcast_ss(&*wp.add(j * SGEMM_KC + kk));
                        *a = _mm256_fmadd_ps(xv, wv, *a);
                    }
                }
                for (j, a) in acc.iter().enumerate().take(n) {
                    let c = dst.as_mut_ptr().add(j * stride + g * LANES);
                    _mm256_storeu_ps(c, _mm256_add_ps(*a, _mm256_loadu_ps(c)));
                }
            }
        }
        kc += len;
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
        // K spans two chunks and a partial one; outputs a partial column block.
        let (out, k) = (21usize, 600usize);
        let wv: Vec<f32> = (0..out * k)
            .map(|i| (normal_f64(1, i as u64) * 0.05) as f32)
            .collect();
        for spec in ["nvfp4", "mxfp4", "fp8", "bf16"] {
            let w =
                PackedWeight::quantize(&wv, out, k, &spec.parse::<QuantSpec>().unwrap()).unwrap();
            for rows in [1usize, 2, 8, 11] {
                let x: Vec<f32> = (0..rows * k)
                    .map(|i| normal_f64(2, i as u64) as f32)
                    .collect();
                let a = packed_gemm(&x, rows, &w);
                let b = packed_gemm_reference(&x, rows, &w);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{spec} rows {rows}");
            }
        }
    }
}
