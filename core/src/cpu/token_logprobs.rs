//! Fused log-probability of the taken token and entropy of each position's distribution, from
//! the logits, in one pass per row (the composed version, `log_softmax` then `gather` and
//! `exp * log_softmax` summed, materializes two vocabulary-wide tensors). With
//! `lse = log sum exp z`, `p = exp(z - lse)` and `H = lse - sum p z`:
//! `logp = z_target - lse`; backward for output gradients `g` (log-prob) and `e` (entropy):
//! `dz_j = g (1[j = target] - p_j) - e p_j (z_j - lse + H)`.

use std::sync::Arc;

use std::mem::MaybeUninit;

use burn::tensor::Tensor;

use super::host::{Fresh, HostArray, HostOp, Input, apply, fill_rows};
use super::simd::{dot, exp, max, multiversion, sum};

/// The log-probability of `targets` (row-major `[batch, positions]`) and the entropy at each
/// position of `logits` (`[batch, positions, vocab]`), as `[batch, positions, 2]`.
pub fn token_logprobs(logits: Tensor<3>, targets: Arc<Vec<u32>>) -> Tensor<3> {
    let [b, r, v] = logits.dims();
    assert_eq!(
        targets.len(),
        b * r,
        "token_logprobs: targets for [{b}, {r}]"
    );
    assert!(
        targets.iter().all(|&t| (t as usize) < v),
        "token_logprobs: a target outside the vocabulary of {v}"
    );
    apply(TokenLogprobsOp { targets }, [Input::from(logits)])
}

#[derive(Clone, Debug)]
struct TokenLogprobsOp {
    targets: Arc<Vec<u32>>,
}

/// Saved by the forward: the logits and each row's `lse` and entropy.
#[derive(Clone, Debug)]
pub struct TokenLogprobsState {
    logits: HostArray,
    lse: Arc<Vec<f32>>,
    entropy: Arc<Vec<f32>>,
}

multiversion! {
    /// Per row: `(logp, entropy)` into `out`, `lse` and the entropy into `stats`
    /// (`2 * rows` values), with `scratch` the width of a row.
    fn forward_rows(z: &[f32], targets: &[u32], out: &mut [MaybeUninit<f32>], stats: &mut [f32], scratch: &mut [f32]) {
        let v = scratch.len();
        for (((row, &t), o), st) in z
            .chunks_exact(v)
            .zip(targets)
            .zip(out.chunks_exact_mut(2))
            .zip(stats.chunks_exact_mut(2))
        {
            let top = max(row);
            for (e, &x) in scratch.iter_mut().zip(row) {
                *e = exp(x - top);
            }
            let total = sum(scratch);
            let lse = top + total.ln();
            let pz = dot(scratch, row) / total;
            let h = lse - pz;
            o[0].write(row[t as usize] - lse);
            o[1].write(h);
            st[0] = lse;
            st[1] = h;
        }
    }
}

multiversion! {
    fn backward_rows(z: &[f32], targets: &[u32], g: &[f32], lse: &[f32], ent: &[f32], dz: &mut [MaybeUninit<f32>]) {
        let v = dz.len() / targets.len().max(1);
        for (((((row, &t), gr), &l), &h), d) in z
            .chunks_exact(v)
            .zip(targets)
            .zip(g.chunks_exact(2))
            .zip(lse)
            .zip(ent)
            .zip(dz.chunks_exact_mut(v))
        {
            let (gl, ge) = (gr[0], gr[1]);
            for (o, &x) in d.iter_mut().zip(row) {
                let lp = x - l;
                let p = exp(lp);
                o.write(-gl * p - ge * p * (lp + h));
            }
            // SAFETY: written just above.
            let at_target = unsafe { d[t as usize].assume_init_read() };
            d[t as usize].write(at_target + gl);
        }
    }
}

impl HostOp<1> for TokenLogprobsOp {
    type State = TokenLogprobsState;

    fn forward(
        &self,
        [z]: [&HostArray; 1],
        track: bool,
    ) -> (HostArray, Option<TokenLogprobsState>) {
        let shape = z.shape().to_vec();
        let v = shape[2];
        let rows = shape[0] * shape[1];
        let stats = Fresh::new(rows * 2);
        let zs = z.values();
        // The work is the logits read, not the two values written per row.
        // SAFETY: forward_rows writes both values of every row.
        let out = unsafe {
            fill_rows(rows, 2, rows * v, |row0, chunk| {
                let n = chunk.len() / 2;
                // Each task takes the stats of its own rows.
                let stats = stats.chunk(2 * row0, 2 * n);
                let mut scratch = vec![0.0f32; v];
                forward_rows(
                    &zs[row0 * v..(row0 + n) * v],
                    &self.targets[row0..row0 + n],
                    chunk,
                    stats,
                    &mut scratch,
                );
            })
        };
        // SAFETY: the row chunks cover every row's two stats.
        let stats = unsafe { stats.finish() };
        let state = track.then(|| TokenLogprobsState {
            logits: z.clone(),
            lse: Arc::new(stats.iter().step_by(2).copied().collect()),
            entropy: Arc::new(stats.iter().skip(1).step_by(2).copied().collect()),
        });
        (HostArray::new(out, &[shape[0], shape[1], 2]), state)
    }

    fn backward(
        &self,
        s: TokenLogprobsState,
        dy: HostArray,
        needs: [bool; 1],
    ) -> [Option<HostArray>; 1] {
        if !needs[0] {
            return [None];
        }
        let shape = s.logits.shape().to_vec();
        let v = shape[2];
        let (zs, gs) = (s.logits.values(), dy.values());
        let len = zs.len();
        // SAFETY: backward_rows writes every value of its rows.
        let dz = unsafe {
            fill_rows(len / v.max(1), v, len, |row0, chunk| {
                let n = chunk.len() / v;
                backward_rows(
                    &zs[row0 * v..(row0 + n) * v],
                    &self.targets[row0..row0 + n],
                    &gs[2 * row0..2 * (row0 + n)],
                    &s.lse[row0..row0 + n],
                    &s.entropy[row0..row0 + n],
                    chunk,
                );
            })
        };
        [Some(HostArray::new(dz, &shape))]
    }
}
