//! Fused grouped-query attention, `softmax(q k^T * scale, hiding mask) v`, forward and backward,
//! one parallel task per (batch row, key/value head), in blocks of 64 query rows whose GEMMs
//! cover only the keys some row of the block sees (under a causal mask, a triangle's worth of
//! products instead of a square): two GEMMs (matrixmultiply, reading the operands in place through their strides) around one
//! pass of scaling, masking and softmax; the context is written straight into the
//! `[batch, seq, heads * head_dim]` layout the output projection reads (no transpose copy).
//! The composed version is `crate::ops::attention::grouped_query_attention`; the tests in
//! `super` check that both agree, values and gradients.
//!
//! Backward, per head with `P` the saved probabilities and `dO` the output gradient:
//! `dV = sum over the group of P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(dP * P))` (0 where
//! masked), `dQ = scale dS K`, `dK^T = scale Q^T dS` (summed over the group).

use std::sync::Arc;

use burn::tensor::Tensor;

use super::host::{Fresh, HostArray, HostOp, Input, apply, for_each_task};
use super::simd::{dot, exp_sum, max, multiversion};

/// The score given to a hidden (masked) query/key pair before the softmax: the most negative finite
/// f32, so its weight underflows to exactly 0 next to any visible key, and a row with every key
/// hidden (a padding query) becomes uniform instead of NaN (its output is never used). The
/// composed attention (`crate::ops::attention`) fills hidden scores with the same value.
pub const MASKED_SCORE: f32 = f32::MIN;

/// `softmax(q k^T * scale, hiding mask) v` with every key/value head serving `heads / kv_heads`
/// consecutive query heads.
///
/// # Shapes
/// - `q`: `[batch, heads, seq, head_dim]`
/// - `k_t`: `[batch, kv_heads, head_dim, keys]`
/// - `v`: `[batch, kv_heads, keys, head_dim]`
/// - `mask`: `[batch, 1, seq, keys]`
/// - output: `[batch, seq, heads * head_dim]`
pub fn attention(
    q: Tensor<4>,
    k_t: Tensor<4>,
    v: Tensor<4>,
    mask: HostMask,
    scale: f64,
) -> Tensor<3> {
    let [b, h, s, d] = q.dims();
    let [bk, kv, dk, t] = k_t.dims();
    assert!(
        bk == b && dk == d && kv > 0 && h % kv == 0,
        "attention: q {:?} and k_t {:?} do not fit",
        q.dims(),
        k_t.dims()
    );
    assert_eq!(v.dims(), [b, kv, t, d], "attention: v");
    assert!(
        mask.keys == t && mask.hidden.len() == b * s * t,
        "attention: a mask of [{b}, 1, {s}, {t}]"
    );
    apply(
        AttentionOp {
            dims: Dims { b, h, kv, s, t, d },
            mask: mask.hidden,
            spans: mask.spans,
            scale: scale as f32,
        },
        [Input::from(q), Input::from(k_t), Input::from(v)],
    )
}

/// An attention mask on the host, `[batch, 1, seq, keys]` row-major, true where a query may not
/// see a key, with each row's visible span: found once for every layer that uses the mask.
#[derive(Clone, Debug)]
pub struct HostMask {
    hidden: Arc<Vec<bool>>,
    spans: Arc<Vec<RowSpan>>,
    keys: usize,
}

impl HostMask {
    /// The mask of `hidden`, rows of `keys` values.
    pub fn new(hidden: Vec<bool>, keys: usize) -> Self {
        Self {
            spans: Arc::new(row_spans(&hidden, keys)),
            hidden: Arc::new(hidden),
            keys,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    h: usize,
    kv: usize,
    s: usize,
    t: usize,
    d: usize,
}

#[derive(Clone, Debug)]
struct AttentionOp {
    dims: Dims,
    /// `[batch, seq, keys]`: true where hidden.
    mask: Arc<Vec<bool>>,
    /// The visible span of each mask row (`[batch, seq]`).
    spans: Arc<Vec<RowSpan>>,
    scale: f32,
}

/// Saved by the forward: the inputs and the probabilities `[batch, heads, seq, keys]`.
#[derive(Clone, Debug)]
pub struct AttentionState {
    q: HostArray,
    k_t: HostArray,
    v: HostArray,
    p: Arc<Vec<f32>>,
}

/// `C = alpha A B + beta C` for row/column strides (matrixmultiply's `sgemm`).
///
/// # Safety
/// The pointers must address matrices of the given sizes and strides; `c` must not alias `a`
/// or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    beta: f32,
    c: (*mut f32, isize, isize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, alpha, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, c.2,
        );
    }
}

multiversion! {
    /// Masks and normalizes each row of `scores` (`[rows, t]`) in place: hidden entries get
    /// [`MASKED_SCORE`], then `exp(x - max) / sum`. A hidden entry of a row that sees some key
    /// is exactly 0 that way (its exp underflows), so only the row's span from its first to its
    /// last visible key is computed (half the row under a causal mask), and only a span with
    /// hidden keys inside is masked; a row that sees nothing gets the uniform distribution the
    /// masked scores give.
    fn softmax_rows(scores: &mut [f32], spans: &[RowSpan], mask: &[bool], t: usize) {
        for ((row, m), sp) in scores.chunks_exact_mut(t).zip(mask.chunks_exact(t)).zip(spans) {
            let (lo, hi) = (sp.lo, sp.hi);
            if lo == hi {
                row.fill(1.0 / t as f32);
                continue;
            }
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let span = &mut row[lo..hi];
            if sp.holes {
                for (x, &hide) in span.iter_mut().zip(&m[lo..hi]) {
                    if hide {
                        *x = MASKED_SCORE;
                    }
                }
            }
            let total = exp_sum(span, max(span));
            for x in span.iter_mut() {
                *x /= total;
            }
        }
    }
}

multiversion! {
    /// `dS = P * (dP - rowsum(dP * P))` in place of `dp`, 0 where hidden, on the columns
    /// `lo..hi` of `rows` rows of stride `t` (`P` is 0 outside them).
    fn softmax_backward_span(dp: &mut [f32], p: &[f32], mask: &[bool], t: usize, lo: usize, hi: usize) {
        let rows = mask.len() / t;
        for i in 0..rows {
            let span = i * t + lo..i * t + hi;
            let drow = &mut dp[span.clone()];
            let prow = &p[span.clone()];
            let c = dot(drow, prow);
            for ((g, &pv), &hide) in drow.iter_mut().zip(prow).zip(&mask[span]) {
                *g = if hide { 0.0 } else { pv * (*g - c) };
            }
        }
    }
}

/// Query rows per block of the span computation.
const ROW_BLOCK: usize = 64;

/// The visible keys of one mask row: `lo..hi` from its first to one past its last visible key
/// (`lo == hi`: it sees none), and whether a hidden key lies between them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RowSpan {
    lo: usize,
    hi: usize,
    holes: bool,
}

/// The [`RowSpan`] of each row of `mask` (rows of `t` keys).
fn row_spans(mask: &[bool], t: usize) -> Vec<RowSpan> {
    mask.chunks_exact(t.max(1))
        .map(
            |row| match (row.iter().position(|&h| !h), row.iter().rposition(|&h| !h)) {
                (Some(lo), Some(last)) => RowSpan {
                    lo,
                    hi: last + 1,
                    holes: row[lo..=last].iter().any(|&h| h),
                },
                _ => RowSpan {
                    lo: 0,
                    hi: 0,
                    holes: false,
                },
            },
        )
        .collect()
}

/// The columns of a block of rows with these spans that their probabilities can be nonzero
/// on: the union of their visible spans, or every column (`0..t`) when a row sees nothing (its
/// probabilities are uniform) or none sees anything. Also the union of the visible spans alone
/// (the scores the softmax reads), `None` when no row sees a key.
fn block_spans(spans: &[RowSpan], t: usize) -> ((usize, usize), Option<(usize, usize)>) {
    let (mut lo, mut hi, mut blind) = (t, 0, false);
    for sp in spans {
        if sp.lo == sp.hi {
            blind = true;
        } else {
            lo = lo.min(sp.lo);
            hi = hi.max(sp.hi);
        }
    }
    let scores = (lo < hi).then_some((lo, hi));
    let probs = if blind {
        (0, t)
    } else {
        scores.unwrap_or((0, t))
    };
    (probs, scores)
}

impl HostOp<3> for AttentionOp {
    type State = AttentionState;

    fn forward(
        &self,
        [q, k_t, v]: [&HostArray; 3],
        track: bool,
    ) -> (HostArray, Option<AttentionState>) {
        let Dims { b, h, kv, s, t, d } = self.dims;
        let rep = h / kv;
        // Both written by the tasks below: `out` through the GEMM (beta 0: matrixmultiply
        // never reads it), `p` by the scores' GEMM and zeros around it.
        let (out, p) = (Fresh::new(b * s * h * d), Fresh::new(b * h * s * t));
        let (qs, ks, vs, mask) = (q.values(), k_t.values(), v.values(), &self.mask);
        for_each_task(b * kv, b * h * s * t * d / 16, |task| {
            let (bi, g) = (task / kv, task % kv);
            let k_g = &ks[(bi * kv + g) * d * t..][..d * t];
            let v_g = &vs[(bi * kv + g) * t * d..][..t * d];
            let m = &mask[bi * s * t..][..s * t];
            for i0 in (0..s).step_by(ROW_BLOCK) {
                let i1 = (i0 + ROW_BLOCK).min(s);
                let mb = &m[i0 * t..i1 * t];
                let sp = &self.spans[bi * s + i0..bi * s + i1];
                let ((plo, phi), scores) = block_spans(sp, t);
                for r in 0..rep {
                    let head = g * rep + r;
                    let q_b = &qs[((bi * h + head) * s + i0) * d..][..(i1 - i0) * d];
                    // SAFETY: task (bi, g) alone writes the probabilities of its heads and their
                    // columns of the output; every operand below lies inside its buffer.
                    unsafe {
                        let at = ((bi * h + head) * s + i0) * t;
                        // Scores only where some row of the block sees a key: under a causal
                        // mask, up to the block's last query (half the products of a square).
                        let (lo, hi) = scores.unwrap_or((0, 0));
                        if hi > lo {
                            gemm(
                                (i1 - i0, d, hi - lo),
                                self.scale,
                                (q_b.as_ptr(), d as isize, 1),
                                (k_g.as_ptr().add(lo), t as isize, 1),
                                0.0,
                                (p.ptr().add(at + lo), t as isize, 1),
                            );
                        }
                        // Zeros around them (what the softmax leaves at 0 anyway).
                        for row in 0..i1 - i0 {
                            let r = p.ptr().add(at + row * t);
                            std::ptr::write_bytes(r, 0, lo);
                            std::ptr::write_bytes(r.add(hi), 0, t - hi);
                        }
                        let p_b = p.written(at, (i1 - i0) * t);
                        softmax_rows(p_b, sp, mb, t);
                        gemm(
                            (i1 - i0, phi - plo, d),
                            1.0,
                            (p_b.as_ptr().add(plo), t as isize, 1),
                            (v_g.as_ptr().add(plo * d), d as isize, 1),
                            0.0,
                            (
                                out.ptr().add((bi * s + i0) * h * d + head * d),
                                (h * d) as isize,
                                1,
                            ),
                        );
                    }
                }
            }
        });
        // SAFETY: every (row, head) block of `p` was written by its task; every row of
        // every head of `out` was written by a product over at least one key (the span
        // `plo..phi` is never empty: t >= s >= 1 whenever there are values).
        let (out, p) = unsafe { (out.finish(), p.finish()) };
        let state = track.then(|| AttentionState {
            q: q.clone(),
            k_t: k_t.clone(),
            v: v.clone(),
            p: Arc::new(p),
        });
        (HostArray::new(out, &[b, s, h * d]), state)
    }

    fn backward(
        &self,
        st: AttentionState,
        dy: HostArray,
        needs: [bool; 3],
    ) -> [Option<HostArray>; 3] {
        let Dims { b, h, kv, s, t, d } = self.dims;
        let rep = h / kv;
        // dq written by the GEMMs (beta 0), dk and dv accumulated into blocks their tasks zero.
        let (dq, dk, dv) = (
            Fresh::new(b * h * s * d),
            Fresh::new(b * kv * d * t),
            Fresh::new(b * kv * t * d),
        );
        let (qs, ks, vs, ps, dys) = (
            st.q.values(),
            st.k_t.values(),
            st.v.values(),
            &st.p[..],
            dy.values(),
        );
        let mask = &self.mask;
        for_each_task(b * kv, b * h * s * t * d / 16, |task| {
            let (bi, g) = (task / kv, task % kv);
            // SAFETY: task (bi, g) alone owns its group's blocks of dk and dv.
            let (dk_g, dv_g) = unsafe {
                (
                    dk.chunk((bi * kv + g) * d * t, d * t).as_mut_ptr(),
                    dv.chunk((bi * kv + g) * t * d, t * d).as_mut_ptr(),
                )
            };
            let k_g = &ks[(bi * kv + g) * d * t..][..d * t];
            let v_g = &vs[(bi * kv + g) * t * d..][..t * d];
            let m = &mask[bi * s * t..][..s * t];
            let mut ds = vec![0.0f32; ROW_BLOCK * t];
            for i0 in (0..s).step_by(ROW_BLOCK) {
                let i1 = (i0 + ROW_BLOCK).min(s);
                let rows = i1 - i0;
                let mb = &m[i0 * t..i1 * t];
                let ((lo, hi), _) = block_spans(&self.spans[bi * s + i0..bi * s + i1], t);
                let w = hi - lo;
                for r in 0..rep {
                    let head = g * rep + r;
                    let q_b = &qs[((bi * h + head) * s + i0) * d..][..rows * d];
                    let p_b = &ps[((bi * h + head) * s + i0) * t..][..rows * t];
                    let do_b = dys[(bi * s + i0) * h * d + head * d..].as_ptr();
                    let hd = (h * d) as isize;
                    // SAFETY: task (bi, g) alone writes dq of its heads and dk, dv of its group
                    // (accumulated into their zeroed buffers); every operand lies inside its
                    // buffer, and only the columns lo..hi of the block's rows are read or
                    // written (P is 0 outside them).
                    unsafe {
                        // dV[lo..hi] += P^T dO
                        gemm(
                            (w, rows, d),
                            1.0,
                            (p_b.as_ptr().add(lo), 1, t as isize),
                            (do_b, hd, 1),
                            1.0,
                            (dv_g.add(lo * d), d as isize, 1),
                        );
                        // dP = dO V^T on the span, then dS in place.
                        gemm(
                            (rows, d, w),
                            1.0,
                            (do_b, hd, 1),
                            (v_g.as_ptr().add(lo * d), 1, d as isize),
                            0.0,
                            (ds.as_mut_ptr().add(lo), t as isize, 1),
                        );
                        softmax_backward_span(&mut ds[..rows * t], p_b, mb, t, lo, hi);
                        // dQ = scale dS K, with K = (K^T)^T read through its strides.
                        gemm(
                            (rows, w, d),
                            self.scale,
                            (ds.as_ptr().add(lo), t as isize, 1),
                            (k_g.as_ptr().add(lo), 1, t as isize),
                            0.0,
                            (dq.ptr().add(((bi * h + head) * s + i0) * d), d as isize, 1),
                        );
                        // dK^T[:, lo..hi] += scale Q^T dS
                        gemm(
                            (d, rows, w),
                            self.scale,
                            (q_b.as_ptr(), 1, d as isize),
                            (ds.as_ptr().add(lo), t as isize, 1),
                            1.0,
                            (dk_g.add(lo), t as isize, 1),
                        );
                    }
                }
            }
        });
        // SAFETY: dk and dv zeroed whole by their tasks; every row of every head of dq written
        // by a product over a nonempty key span.
        let (dq, dk, dv) = unsafe { (dq.finish(), dk.finish(), dv.finish()) };
        [
            needs[0].then(|| HostArray::new(dq, st.q.shape())),
            needs[1].then(|| HostArray::new(dk, st.k_t.shape())),
            needs[2].then(|| HostArray::new(dv, st.v.shape())),
        ]
    }
}
