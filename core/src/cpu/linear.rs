//! `y = x W^T` and its backward (`dx = dy W`, `dW = dy^T x`) as GEMMs that read every operand in
//! place through its strides (and `a b` the same way), split into row blocks over Rayon's
//! threads. Burn's NdArray matmul first copies a transposed operand into a contiguous one: the
//! weight in the forward, the activations and the output gradient in the backward.
//! matrixmultiply packs its operands into the same panels whatever their strides and never
//! splits a reduction, so the results are those of the matmul bit for bit (tests in `super` and
//! tests/packed_linear.rs). matrixmultiply's own threads must be off
//! ([`configure_gemm_threads`]).

use burn::tensor::Tensor;

use super::host::{HostArray, HostOp, Input, apply};

/// `x W^T` for `x` `[rows, in]` and `w` `[out, in]` (HF layout).
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    let [_, k] = x.dims();
    let [_, kw] = w.dims();
    assert_eq!(k, kw, "linear: x has {k} features, the weight {kw}");
    apply(
        LinearOp { transposed: true },
        [Input::from(x), Input::from(w)],
    )
}

/// `a b` for `a` `[m, k]` and `b` `[k, n]`, with the same kernel and backward.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [_, k] = a.dims();
    let [kb, _] = b.dims();
    assert_eq!(k, kb, "matmul: a has {k} columns, b {kb} rows");
    apply(
        LinearOp { transposed: false },
        [Input::from(a), Input::from(b)],
    )
}

/// `x W^T` (`transposed`, `W` `[out, in]`) or `x W` (`W` `[in, out]`).
#[derive(Clone, Debug)]
struct LinearOp {
    transposed: bool,
}

/// Saved by the forward: both inputs.
#[derive(Clone, Debug)]
pub struct LinearState {
    x: HostArray,
    w: HostArray,
}

/// Products at least this large (`m k n`) are split into row blocks, one per thread.
const PARALLEL_MACS: usize = 1 << 22;

/// `C = A B` (`[m, k] x [k, n]`, `C` row-major and fresh) with the operands' strides, split
/// into blocks of rows computed in parallel (each element's arithmetic does not depend on the
/// split: matrixmultiply never splits the reduction between threads).
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
) -> Vec<f32> {
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    let c = super::host::Fresh::new(m * n);
    let threads = rayon::current_num_threads();
    let block = if threads > 1 && m * k * n >= PARALLEL_MACS {
        m.div_ceil(threads).next_multiple_of(16)
    } else {
        m
    };
    let (a_ptr, b_ptr) = (a.0.as_ptr() as usize, b.0.as_ptr() as usize);
    // Work in multiply-adds over 16: a GEMM is worth splitting long before its output is.
    super::host::for_each_task(m.div_ceil(block), m * k * n / 16, |i| {
        let r0 = i * block;
        let rows = block.min(m - r0);
        // SAFETY: the callers pass the sizes and strides of the slices they hold; block `i`
        // reads rows r0.. of A and writes rows r0.. of C (room for m x n values, all written by
        // sgemm with beta = 0, which never reads them), disjoint from the other blocks.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                (a_ptr as *const f32).offset(r0 as isize * a.1),
                a.1,
                a.2,
                b_ptr as *const f32,
                b.1,
                b.2,
                0.0,
                c.ptr().add(r0 * n),
                n as isize,
                1,
            );
        }
    });
    // SAFETY: every element was written above.
    unsafe { c.finish() }
}

impl HostOp<2> for LinearOp {
    type State = LinearState;

    fn forward(&self, [x, w]: [&HostArray; 2], track: bool) -> (HostArray, Option<LinearState>) {
        let (rows, k) = (x.shape()[0], x.shape()[1]);
        let (out, b) = if self.transposed {
            // B = W^T: element (i, j) at w[j * k + i].
            (w.shape()[0], (w.values(), 1, k as isize))
        } else {
            let n = w.shape()[1];
            (n, (w.values(), n as isize, 1))
        };
        let y = gemm(rows, k, out, (x.values(), k as isize, 1), b);
        let state = track.then(|| LinearState {
            x: x.clone(),
            w: w.clone(),
        });
        (HostArray::new(y, &[rows, out]), state)
    }

    fn backward(&self, s: LinearState, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let (rows, k) = (s.x.shape()[0], s.x.shape()[1]);
        let g = dy.values();
        let (xs, ws) = (s.x.values(), s.w.values());
        if self.transposed {
            let out = s.w.shape()[0];
            // dx = dy W: [rows, out] x [out, k].
            let dx = needs[0].then(|| {
                let v = gemm(rows, out, k, (g, out as isize, 1), (ws, k as isize, 1));
                HostArray::new(v, &[rows, k])
            });
            // dW = dy^T x: [out, rows] x [rows, k], dy^T read through its strides.
            let dw = needs[1].then(|| {
                let v = gemm(out, rows, k, (g, 1, out as isize), (xs, k as isize, 1));
                HostArray::new(v, &[out, k])
            });
            [dx, dw]
        } else {
            let n = s.w.shape()[1];
            // dx = dy W^T: [rows, n] x [n, k].
            let dx = needs[0].then(|| {
                let v = gemm(rows, n, k, (g, n as isize, 1), (ws, 1, n as isize));
                HostArray::new(v, &[rows, k])
            });
            // dW = x^T dy: [k, rows] x [rows, n].
            let dw = needs[1].then(|| {
                let v = gemm(k, rows, n, (xs, 1, k as isize), (g, n as isize, 1));
                HostArray::new(v, &[k, n])
            });
            [dx, dw]
        }
    }
}

/// Makes matrixmultiply single-threaded (`MATMUL_NUM_THREADS=1` unless the variable is set): the
/// GEMMs of this module split their rows over Rayon's threads themselves, and matrixmultiply's
/// own pool inside them would oversubscribe the cores (measured on 2 cores: both at once is
/// slower than either alone). Call it at the start of a program, before any thread exists: it
/// sets an environment variable, which matrixmultiply reads at its first product.
pub fn configure_gemm_threads() {
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: called at program start, before other threads run (documented).
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
    }
}
