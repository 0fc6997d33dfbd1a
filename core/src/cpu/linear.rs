//! `y = x W^T` and its backward (`dx = dy W`, `dW = dy^T x`) as GEMMs that read every operand in
//! place through its strides. Burn's NdArray matmul first copies a transposed operand into a
//! contiguous one: the weight in the forward, the activations and the output gradient in the
//! backward. matrixmultiply packs its operands into the same panels whatever their strides, so
//! the results are those of the matmul bit for bit (tests in `super` and tests/packed_linear.rs).

use burn::tensor::Tensor;

use super::host::{HostArray, HostOp, Input, apply};

/// `x W^T` for `x` `[rows, in]` and `w` `[out, in]` (HF layout).
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    let [_, k] = x.dims();
    let [_, kw] = w.dims();
    assert_eq!(k, kw, "linear: x has {k} features, the weight {kw}");
    apply(LinearOp, [Input::from(x), Input::from(w)])
}

#[derive(Clone, Debug)]
struct LinearOp;

/// Saved by the forward: both inputs.
#[derive(Clone, Debug)]
pub struct LinearState {
    x: HostArray,
    w: HostArray,
}

/// `C = A B` (`[m, k] x [k, n]`, `C` row-major and fresh) with the operands' strides.
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
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: the callers pass the sizes and strides of the slices they hold; `c` has room for
    // `m x n` values, all of which sgemm writes (beta = 0: it never reads them), so setting the
    // length afterwards exposes only written values.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.0.as_ptr(),
            a.1,
            a.2,
            b.0.as_ptr(),
            b.1,
            b.2,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
        c.set_len(m * n);
    }
    c
}

impl HostOp<2> for LinearOp {
    type State = LinearState;

    fn forward(&self, [x, w]: [&HostArray; 2], track: bool) -> (HostArray, Option<LinearState>) {
        let (rows, k) = (x.shape()[0], x.shape()[1]);
        let out = w.shape()[0];
        // B = W^T: element (i, j) at w[j * k + i].
        let y = gemm(
            rows,
            k,
            out,
            (x.values(), k as isize, 1),
            (w.values(), 1, k as isize),
        );
        let state = track.then(|| LinearState {
            x: x.clone(),
            w: w.clone(),
        });
        (HostArray::new(y, &[rows, out]), state)
    }

    fn backward(&self, s: LinearState, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let (rows, k) = (s.x.shape()[0], s.x.shape()[1]);
        let out = s.w.shape()[0];
        let g = dy.values();
        // dx = dy W: [rows, out] x [out, k].
        let dx = needs[0].then(|| {
            let v = gemm(
                rows,
                out,
                k,
                (g, out as isize, 1),
                (s.w.values(), k as isize, 1),
            );
            HostArray::new(v, &[rows, k])
        });
        // dW = dy^T x: [out, rows] x [rows, k], dy^T read through its strides.
        let dw = needs[1].then(|| {
            let v = gemm(
                out,
                rows,
                k,
                (g, 1, out as isize),
                (s.x.values(), k as isize, 1),
            );
            HostArray::new(v, &[out, k])
        });
        [dx, dw]
    }
}
