//! Fused SwiGLU gate, `y = silu(g) * u` with `silu(g) = g * sigmoid(g)`, and its backward in one
//! pass each (Burn composes the sigmoid from `exp`, `log` and three more passes).
//!
//! Backward, with `s = sigmoid(g)`: `dg = dy * u * s * (1 + g * (1 - s))`, `du = dy * g * s`.

use std::mem::MaybeUninit;

use burn::tensor::Tensor;

use super::host::{Fresh, HostArray, HostOp, Input, apply, fill_chunks};
use super::simd::{multiversion, sigmoid};

/// Values per parallel task of the elementwise work.
const CHUNK: usize = super::host::ROWS_PER_TASK * 1024;

/// `silu(gate) * up`, elementwise (same shapes).
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "swiglu: gate and up differ in shape"
    );
    let dims = gate.dims();
    let n = dims.iter().product::<usize>();
    let y: Tensor<1> = apply(
        SwigluOp,
        [Input::from(gate.reshape([n])), Input::from(up.reshape([n]))],
    );
    y.reshape(dims)
}

#[derive(Clone, Debug)]
struct SwigluOp;

/// Saved by the forward: both inputs.
#[derive(Clone, Debug)]
pub struct SwigluState {
    gate: HostArray,
    up: HostArray,
}

multiversion! {
    fn forward_span(g: &[f32], u: &[f32], y: &mut [MaybeUninit<f32>]) {
        for ((o, &a), &b) in y.iter_mut().zip(g).zip(u) {
            o.write(a * sigmoid(a) * b);
        }
    }
}

multiversion! {
    fn backward_span(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [MaybeUninit<f32>], du: &mut [MaybeUninit<f32>]) {
        for ((((og, ou), &a), &b), &d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dy) {
            let s = sigmoid(a);
            og.write(d * b * (s * (1.0 + a * (1.0 - s))));
            ou.write(d * (a * s));
        }
    }
}

impl HostOp<2> for SwigluOp {
    type State = SwigluState;

    fn forward(&self, [g, u]: [&HostArray; 2], track: bool) -> (HostArray, Option<SwigluState>) {
        let n = g.values().len();
        let (gs, us) = (g.values(), u.values());
        // SAFETY: forward_span writes every value of its span.
        let y = unsafe {
            fill_chunks(n, CHUNK, n, |i, chunk| {
                let span = i * CHUNK..i * CHUNK + chunk.len();
                forward_span(&gs[span.clone()], &us[span], chunk);
            })
        };
        let state = track.then(|| SwigluState {
            gate: g.clone(),
            up: u.clone(),
        });
        (HostArray::new(y, g.shape()), state)
    }

    fn backward(&self, s: SwigluState, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let n = s.gate.values().len();
        let du = Fresh::new(n);
        let (gs, us, ds) = (s.gate.values(), s.up.values(), dy.values());
        // SAFETY: backward_span writes every value of its spans of dg and du.
        let dg = unsafe {
            fill_chunks(n, CHUNK, n, |i, chunk| {
                let span = i * CHUNK..i * CHUNK + chunk.len();
                // Each task takes its own span of `du`.
                let dus = du.uninit(span.start, chunk.len());
                backward_span(&gs[span.clone()], &us[span.clone()], &ds[span], chunk, dus);
            })
        };
        // SAFETY: the spans of `dg`'s chunks cover `du`, all written.
        let du = unsafe { du.finish() };
        [
            needs[0].then(|| HostArray::new(dg, s.gate.shape())),
            needs[1].then(|| HostArray::new(du, s.up.shape())),
        ]
    }
}
