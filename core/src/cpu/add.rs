//! `a + b` for tensors of one shape (the residual connections, a LoRA update onto its base
//! projection) and `y + b` with the bias `b` added to every row of `y`, each one multi-threaded
//! pass (Burn's NdArray adds run on one thread). The sums are the plain adds' bit for bit; the
//! bias gradient (the column sums of the output gradient) adds per-task partial sums in task
//! order, so its bits do not depend on the threads.

use std::mem::MaybeUninit;

use burn::tensor::Tensor;

use super::host::{
    Fresh, HostArray, HostOp, Input, ROWS_PER_TASK, apply, fill_chunks, fused_cpu_available,
    sum_rows,
};

/// Values per parallel task.
const CHUNK: usize = ROWS_PER_TASK * 1024;

/// `a + b` (same shapes): the fused kernel where both are f32 tensors of the CPU backend
/// ([`fused_cpu_available`]), else Burn's add.
///
/// # Panics
/// If the shapes differ.
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    assert_eq!(a.dims(), b.dims(), "add: shapes differ");
    if !(fused_cpu_available(&a.device(), a.dtype()) && fused_cpu_available(&b.device(), b.dtype()))
    {
        return a + b;
    }
    // As flat vectors (a reshape of a contiguous tensor is a view).
    let dims = a.dims();
    let flat = |t: Tensor<D>| Input::from(t.reshape([dims.iter().product::<usize>()]));
    apply::<2, 1, _>(AddOp, [flat(a), flat(b)]).reshape(dims)
}

/// `y + b` for `y` `[rows, n]` and `b` `[n]`, `b` added to every row: the fused kernel where both
/// are f32 tensors of the CPU backend, else Burn's broadcast add.
///
/// # Panics
/// If `b` is not as wide as `y`.
pub fn add_bias(y: Tensor<2>, b: Tensor<1>) -> Tensor<2> {
    let [_, n] = y.dims();
    assert_eq!(b.dims(), [n], "add_bias: a bias of {n} values");
    if !(fused_cpu_available(&y.device(), y.dtype()) && fused_cpu_available(&b.device(), b.dtype()))
    {
        return y + b.unsqueeze::<2>();
    }
    apply(AddBiasOp, [Input::from(y), Input::from(b)])
}

#[derive(Clone, Debug)]
struct AddOp;

impl HostOp<2> for AddOp {
    type State = ();

    fn forward(&self, [a, b]: [&HostArray; 2], track: bool) -> (HostArray, Option<()>) {
        let (xs, ys) = (a.values(), b.values());
        let len = xs.len();
        // SAFETY: each chunk is written whole.
        let out = unsafe {
            fill_chunks(len, CHUNK, len, |i, c| {
                let at = i * CHUNK;
                sum_into(&xs[at..at + c.len()], &ys[at..at + c.len()], c);
            })
        };
        (HostArray::new(out, a.shape()), track.then_some(()))
    }

    fn backward(&self, _: (), dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        // Both gradients are the output's (shared storage, copied only if written).
        [needs[0].then(|| dy.clone()), needs[1].then_some(dy)]
    }
}

#[derive(Clone, Debug)]
struct AddBiasOp;

impl HostOp<2> for AddBiasOp {
    type State = usize;

    fn forward(&self, [y, b]: [&HostArray; 2], track: bool) -> (HostArray, Option<usize>) {
        let (ys, bs) = (y.values(), b.values());
        let n = bs.len();
        let len = ys.len();
        let rows_per_task = CHUNK.div_ceil(n.max(1));
        let chunk = rows_per_task * n;
        // SAFETY: each chunk (whole rows) is written whole.
        let out = unsafe {
            fill_chunks(len, chunk, len, |i, c| {
                let (at, len) = (i * chunk, c.len());
                for (o, x) in c.chunks_mut(n).zip(ys[at..at + len].chunks(n)) {
                    sum_into(x, bs, o);
                }
            })
        };
        (HostArray::new(out, y.shape()), track.then_some(n))
    }

    fn backward(&self, n: usize, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let db = needs[1].then(|| {
            let gs = dy.values();
            let rows = gs.len() / n.max(1);
            let tasks = rows.div_ceil(ROWS_PER_TASK);
            // One partial column sum per task of ROWS_PER_TASK rows, added in task order.
            let partial = Fresh::new(tasks * n);
            super::host::for_each_task(tasks, gs.len(), |t| {
                // SAFETY: task `t` alone takes partial row `t`.
                let p = unsafe { partial.chunk(t * n, n) };
                let r1 = ((t + 1) * ROWS_PER_TASK).min(rows);
                for g in gs[t * ROWS_PER_TASK * n..r1 * n].chunks_exact(n) {
                    for (a, v) in p.iter_mut().zip(g) {
                        *a += v;
                    }
                }
            });
            // SAFETY: one task per partial row (none when n = 0: no values).
            let partial = if n == 0 {
                Vec::new()
            } else {
                unsafe { partial.finish() }
            };
            HostArray::new(sum_rows(&partial, n), &[n])
        });
        [needs[0].then_some(dy), db]
    }
}

/// `out = a + b`, elementwise.
fn sum_into(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(x + y);
    }
}
