//! Fused SwiGLU gate, `y = silu(g) * u` with `silu(g) = g * sigmoid(g)`, and its backward in one
//! pass each (Burn composes the sigmoid from `exp`, `log` and three more passes).
//!
//! Backward, with `s = sigmoid(g)`: `dg = dy * u * s * (1 + g * (1 - s))`, `du = dy * g * s`.

use burn::tensor::Tensor;

use super::host::{HostArray, HostOp, Input, SendPtr, apply, par_rows};
use super::simd::{multiversion, sigmoid};

/// Columns per parallel row of the elementwise work (the rows of `par_rows`).
const WIDTH: usize = 1024;

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
    fn forward_span(g: &[f32], u: &[f32], y: &mut [f32]) {
        for ((o, &a), &b) in y.iter_mut().zip(g).zip(u) {
            *o = a * sigmoid(a) * b;
        }
    }
}

multiversion! {
    fn backward_span(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        for ((((og, ou), &a), &b), &d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dy) {
            let s = sigmoid(a);
            *og = d * b * (s * (1.0 + a * (1.0 - s)));
            *ou = d * (a * s);
        }
    }
}

impl HostOp<2> for SwigluOp {
    type State = SwigluState;

    fn forward(&self, [g, u]: [&HostArray; 2], track: bool) -> (HostArray, Option<SwigluState>) {
        let n = g.values().len();
        let mut y = vec![0.0f32; n];
        let (gs, us) = (g.values(), u.values());
        par_rows(&mut y, WIDTH, |row0, chunk| {
            let span = row0 * WIDTH..row0 * WIDTH + chunk.len();
            forward_span(&gs[span.clone()], &us[span], chunk);
        });
        let state = track.then(|| SwigluState {
            gate: g.clone(),
            up: u.clone(),
        });
        (HostArray::new(y, g.shape()), state)
    }

    fn backward(&self, s: SwigluState, dy: HostArray, needs: [bool; 2]) -> [Option<HostArray>; 2] {
        let n = s.gate.values().len();
        let mut dg = vec![0.0f32; n];
        let mut du = vec![0.0f32; n];
        {
            let du_ptr = SendPtr(du.as_mut_ptr());
            let (gs, us, ds) = (s.gate.values(), s.up.values(), dy.values());
            par_rows(&mut dg, WIDTH, |row0, chunk| {
                let span = row0 * WIDTH..row0 * WIDTH + chunk.len();
                // SAFETY: each task writes its own span of `du`.
                let dus = unsafe {
                    std::slice::from_raw_parts_mut(du_ptr.get().add(span.start), chunk.len())
                };
                backward_span(&gs[span.clone()], &us[span.clone()], &ds[span], chunk, dus);
            });
        }
        [
            needs[0].then(|| HostArray::new(dg, s.gate.shape())),
            needs[1].then(|| HostArray::new(du, s.up.shape())),
        ]
    }
}
