//! Fused RMSNorm, `y = (x * r) * w` with `r = 1 / sqrt(mean(x^2) + eps)` per row, and its
//! backward, in one pass over the rows each (the composed version,
//! [`crate::model::RmsNorm::forward_reference`], takes eight tensor passes forward).
//!
//! Backward, with `g = dy * w` and `d` the row width:
//! `dx = r * g - x * (r^3 / d) * sum(g * x)`, `dw = sum over rows of dy * x * r`.

use super::host::{Fresh, HostArray, HostOp, Input, apply, fill_rows, sum_rows};
use super::simd::{dot, multiversion};
use std::mem::MaybeUninit;

use burn::tensor::Tensor;

/// The fused RMSNorm of `x` (`[..., d]`) with weight `w` (`[d]`).
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, epsilon: f64) -> Tensor<D> {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims.iter().product::<usize>() / d.max(1);
    let y: Tensor<2> = apply(
        RmsNormOp {
            epsilon: epsilon as f32,
        },
        [Input::from(x.reshape([rows, d])), Input::from(w)],
    );
    y.reshape(dims)
}

#[derive(Clone, Debug)]
struct RmsNormOp {
    epsilon: f32,
}

/// Saved by the forward: the input, the weight and each row's `r`.
#[derive(Clone, Debug)]
pub struct RmsNormState {
    x: HostArray,
    w: HostArray,
    r: Vec<f32>,
}

multiversion! {
    fn forward_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>], r: &mut [f32]) {
        let d = w.len();
        for ((xr, yr), rr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(r.iter_mut()) {
            let inv = 1.0 / (dot(xr, xr) / d as f32 + eps).sqrt();
            *rr = inv;
            for ((y, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
                y.write((v * inv) * g);
            }
        }
    }
}

multiversion! {
    fn backward_rows(x: &[f32], w: &[f32], r: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>], dw: &mut [f32]) {
        let d = w.len();
        for (((xr, gr), dxr), &inv) in x
            .chunks_exact(d)
            .zip(dy.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
            .zip(r)
        {
            // sum(g * x) with g = dy * w.
            let mut s = 0.0f32;
            let mut lanes = [0.0f32; super::simd::LANES];
            for (j, ((&v, &g), &ww)) in xr.iter().zip(gr).zip(w).enumerate() {
                lanes[j % super::simd::LANES] += g * ww * v;
            }
            for l in lanes {
                s += l;
            }
            let c = inv * inv * inv * s / d as f32;
            for ((o, (&v, &g)), &ww) in dxr.iter_mut().zip(xr.iter().zip(gr)).zip(w) {
                o.write(inv * (g * ww) - v * c);
            }
            for ((a, &v), &g) in dw.iter_mut().zip(xr).zip(gr) {
                *a += g * v * inv;
            }
        }
    }
}

impl HostOp<2> for RmsNormOp {
    type State = RmsNormState;

    fn forward(&self, [x, w]: [&HostArray; 2], track: bool) -> (HostArray, Option<RmsNormState>) {
        let d = w.values().len();
        let rows = x.values().len() / d.max(1);
        let r = Fresh::new(rows);
        let (xs, ws, eps) = (x.values(), w.values(), self.epsilon);
        // SAFETY: forward_rows writes every value of its rows.
        let out = unsafe {
            fill_rows(rows, d, rows * d, |row0, chunk| {
                let n = chunk.len() / d;
                // Each task takes the `r` entries of its own rows.
                let rr = r.chunk(row0, n);
                forward_rows(&xs[row0 * d..(row0 + n) * d], ws, eps, chunk, rr);
            })
        };
        // SAFETY: the row chunks cover every row (d > 0: one row per `r` entry).
        let r = if d == 0 {
            vec![0.0; rows]
        } else {
            unsafe { r.finish() }
        };
        let state = track.then(|| RmsNormState {
            x: x.clone(),
            w: w.clone(),
            r,
        });
        (HostArray::new(out, x.shape()), state)
    }

    fn backward(&self, s: RmsNormState, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let d = s.w.values().len();
        let rows = s.r.len();
        let tasks = rows.div_ceil(super::host::ROWS_PER_TASK);
        // One partial dw per task, summed in task order (the same bits on any thread count).
        let partial = Fresh::new(tasks * d);
        let (xs, ws, gs, r) = (s.x.values(), s.w.values(), dy.values(), &s.r);
        // SAFETY: backward_rows writes every value of its rows of dx.
        let dx = unsafe {
            fill_rows(rows, d, rows * d, |row0, chunk| {
                let n = chunk.len() / d;
                let task = row0 / super::host::ROWS_PER_TASK;
                // Each task takes its own partial row.
                let dw = partial.chunk(task * d, d);
                let span = row0 * d..(row0 + n) * d;
                backward_rows(
                    &xs[span.clone()],
                    ws,
                    &r[row0..row0 + n],
                    &gs[span],
                    chunk,
                    dw,
                );
            })
        };
        // SAFETY: one task per partial row (none when d = 0: no values).
        let partial = if d == 0 {
            Vec::new()
        } else {
            unsafe { partial.finish() }
        };
        let dw = sum_rows(&partial, d);
        [
            needs[0].then(|| HostArray::new(dx, s.x.shape())),
            needs[1].then(|| HostArray::new(dw, s.w.shape())),
        ]
    }
}
