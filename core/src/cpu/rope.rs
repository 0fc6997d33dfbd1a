//! Fused rotary position embedding with the split into heads: a projection's output
//! `[batch, seq, heads * head_dim]` becomes `[batch, heads, seq, head_dim]` rotated,
//! `y = x cos + rotate_half(x) sin` with `rotate_half([a, b]) = [-b, a]`, in one pass (the
//! composed version, [`crate::ops::RotaryTables::apply`] after a reshape and a swap,
//! takes a copy and six passes). Backward:
//! `dx_j = dy_j cos_j + dy_{j+half} sin_{j+half}` for `j < half`,
//! `dx_j = dy_j cos_j - dy_{j-half} sin_{j-half}` otherwise.

use std::sync::Arc;

use burn::tensor::Tensor;

use super::host::{HostArray, HostOp, Input, apply, fill_chunks};

/// Splits `x` (`[batch, seq, heads * head_dim]`) into heads and rotates them with the tables
/// `cos`, `sin` (row-major `[batch, 1, seq, head_dim]`).
pub fn rope_heads(x: Tensor<3>, heads: usize, cos: Arc<Vec<f32>>, sin: Arc<Vec<f32>>) -> Tensor<4> {
    let [b, s, width] = x.dims();
    assert!(
        heads > 0 && width % heads == 0,
        "rope_heads: {width} columns for {heads} heads"
    );
    let d = width / heads;
    assert!(d.is_multiple_of(2), "rope_heads: odd head_dim {d}");
    assert_eq!(cos.len(), b * s * d, "rope_heads: cos table");
    assert_eq!(sin.len(), b * s * d, "rope_heads: sin table");
    apply(
        RopeOp {
            b,
            s,
            heads,
            d,
            cos,
            sin,
        },
        [Input::from(x)],
    )
}

#[derive(Clone, Debug)]
struct RopeOp {
    b: usize,
    s: usize,
    heads: usize,
    d: usize,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

impl HostOp<1> for RopeOp {
    type State = ();

    fn forward(&self, [x]: [&HostArray; 1], track: bool) -> (HostArray, Option<()>) {
        let (s, n, d) = (self.s, self.heads, self.d);
        let half = d / 2;
        let xs = x.values();
        let len = self.b * n * s * d;
        // One task per (batch row, head): its [seq, head_dim] block of the output.
        // SAFETY: every value of each block is written below.
        let out = unsafe {
            fill_chunks(len, s * d, len, |task, block| {
                let (bi, h) = (task / n, task % n);
                for (i, y) in block.chunks_exact_mut(d).enumerate() {
                    let xr = &xs[(bi * s + i) * n * d + h * d..][..d];
                    let c = &self.cos[(bi * s + i) * d..][..d];
                    let sn = &self.sin[(bi * s + i) * d..][..d];
                    for j in 0..half {
                        y[j].write(xr[j] * c[j] + (-xr[j + half]) * sn[j]);
                        y[j + half].write(xr[j + half] * c[j + half] + xr[j] * sn[j + half]);
                    }
                }
            })
        };
        (HostArray::new(out, &[self.b, n, s, d]), track.then_some(()))
    }

    fn backward(&self, _: (), dy: HostArray, needs: [bool; 1]) -> [Option<HostArray>; 1] {
        if !needs[0] {
            return [None];
        }
        let (s, n, d) = (self.s, self.heads, self.d);
        let half = d / 2;
        let gs = dy.values();
        let len = self.b * s * n * d;
        // One task per (batch row, position): its row of the input gradient.
        // SAFETY: every value of each row is written below.
        let dx = unsafe {
            fill_chunks(len, n * d, len, |task, row| {
                let (bi, i) = (task / s, task % s);
                let c = &self.cos[(bi * s + i) * d..][..d];
                let sn = &self.sin[(bi * s + i) * d..][..d];
                for (h, o) in row.chunks_exact_mut(d).enumerate() {
                    let g = &gs[((bi * n + h) * s + i) * d..][..d];
                    for j in 0..half {
                        o[j].write(g[j] * c[j] + g[j + half] * sn[j + half]);
                        o[j + half].write(g[j + half] * c[j + half] - g[j] * sn[j]);
                    }
                }
            })
        };
        [Some(HostArray::new(dx, &[self.b, s, n * d]))]
    }
}
