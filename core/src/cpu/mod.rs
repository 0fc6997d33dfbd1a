//! Fused kernels for the CPU backend (Burn's NdArray): the composite operations of the model that
//! Burn runs as chains of single-threaded elementwise passes, as one multi-threaded pass each,
//! with their backward as one autodiff node.
//!
//! | file | operation | plain reference |
//! |---|---|---|
//! | [`add`] | `a + b`, and a bias added to every row | `a + b`, `y + b.unsqueeze()` |
//! | [`linear`] | `x W^T` with its backward, no transposed copies | `x.matmul(w.transpose())` |
//! | [`rms_norm`] | RMSNorm and its weight gradient | [`crate::ops::rms_norm_reference`] |
//! | [`swiglu`] | `silu(gate) * up` | [`crate::ops::swiglu_reference`] |
//! | [`rope`] | the split into heads and the rotary embedding | [`crate::ops::RotaryTables::apply`] |
//! | [`token_logprobs`] | log-prob of the taken token and entropy, from the logits | [`crate::ops::token_logprobs_reference`] |
//! | [`attention`] | grouped-query softmax attention with its mask | [`crate::ops::grouped_query_attention`] |
//!
//! [`allocator`] sets the C allocator up for tensor-sized buffers (programs call
//! [`configure_allocator`] and [`configure_gemm_threads`] at start).
//!
//! [`host`] holds the plumbing (tensors as row-major host arrays, one autodiff node per fused
//! operation) and [`simd`] the vectorizable arithmetic. Each operation is used only where
//! [`fused_cpu_available`] (f32 tensors on the NdArray device); other backends take the plain
//! reference, and the tests below check that both agree, values and gradients. The model never
//! calls these directly: [`crate::ops`] is the one place that picks a kernel or its reference.

pub mod add;
pub mod allocator;
pub mod attention;
pub mod host;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod simd;
pub mod swiglu;
pub mod token_logprobs;

pub use add::{add, add_bias};
pub use allocator::configure_allocator;
pub use attention::attention;
pub use host::fused_cpu_available;
pub use linear::{configure_gemm_threads, linear, matmul};
pub use rms_norm::rms_norm;
pub use rope::rope_heads;
pub use swiglu::swiglu;
pub use token_logprobs::token_logprobs;

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
pub(crate) mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    /// Deterministic normal values.
    pub fn normals(n: usize, seed: u64, scale: f64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| (crate::rng::normal_f64(seed, i) * scale) as f32)
            .collect()
    }

    /// A tracked tensor of `shape` on the autodiff CPU device.
    pub fn tracked<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::<D>::from_data(
            TensorData::new(values, shape),
            &Device::ndarray().autodiff(),
        )
        .require_grad()
    }

    pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    /// `|a - b| <= atol + rtol |b|` everywhere.
    pub fn close(a: &[f32], b: &[f32], atol: f32, rtol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= atol + rtol * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn rms_norm_matches_the_reference_with_gradients() {
        use crate::model::RmsNorm;
        use burn::module::Param;
        // 70 rows: two full parallel tasks and a partial one; width 48: lanes plus a remainder.
        let (rows, d) = (70, 48);
        let x = normals(rows * d, 1, 1.5);
        let w: Vec<f32> = normals(d, 2, 0.3).iter().map(|v| 1.0 + v).collect();
        let g = normals(rows * d, 3, 1.0);
        let run = |fused: bool| {
            let xt = tracked(x.clone(), [2, 35, d]);
            let wt = tracked(w.clone(), [d]);
            let norm = RmsNorm {
                weight: Param::from_tensor(wt.clone()),
                epsilon: 1e-6,
            };
            let y = if fused {
                super::rms_norm(xt.clone(), wt.clone(), 1e-6)
            } else {
                norm.forward_reference(xt.clone())
            };
            let gt = Tensor::<3>::from_data(TensorData::new(g.clone(), [2, 35, d]), &y.device());
            let grads = (y.clone() * gt).sum().backward();
            (
                values(y),
                values(xt.grad(&grads).unwrap()),
                values(wt.grad(&grads).unwrap()),
            )
        };
        let (y0, dx0, dw0) = run(false);
        let (y1, dx1, dw1) = run(true);
        close(&y1, &y0, 1e-6, 1e-5, "y");
        close(&dx1, &dx0, 1e-5, 1e-4, "dx");
        close(&dw1, &dw0, 1e-4, 1e-4, "dw");
    }

    #[test]
    fn swiglu_matches_the_reference_with_gradients() {
        let n = 5000;
        let g0 = normals(n, 4, 3.0);
        let u0 = normals(n, 5, 1.0);
        let dy = normals(n, 6, 1.0);
        let run = |fused: bool| {
            let (g, u) = (
                tracked(g0.clone(), [2, n / 2]),
                tracked(u0.clone(), [2, n / 2]),
            );
            let y = if fused {
                super::swiglu(g.clone(), u.clone())
            } else {
                crate::ops::swiglu_reference(g.clone(), u.clone())
            };
            let dyt = Tensor::<2>::from_data(TensorData::new(dy.clone(), [2, n / 2]), &y.device());
            let grads = (y.clone() * dyt).sum().backward();
            (
                values(y),
                values(g.grad(&grads).unwrap()),
                values(u.grad(&grads).unwrap()),
            )
        };
        let (y0, dg0, du0) = run(false);
        let (y1, dg1, du1) = run(true);
        close(&y1, &y0, 1e-6, 1e-5, "y");
        close(&dg1, &dg0, 1e-6, 1e-5, "dgate");
        close(&du1, &du0, 1e-6, 1e-5, "dup");
    }

    /// The fused attention against the composed one, values and gradients, for `[b, h, s, d]`
    /// queries over `t` keys (the first `t - s` cached) with causal masking, `pad` keys of left
    /// padding in row 1, and (when `blind`) one query of row 0 that sees nothing and later ones
    /// with a hidden key inside their visible span.
    #[allow(clippy::too_many_arguments)]
    fn check_attention(
        b: usize,
        h: usize,
        kv: usize,
        s: usize,
        t: usize,
        d: usize,
        pad: usize,
        blind: bool,
    ) {
        use crate::ops::grouped_query_attention;
        use burn::tensor::Bool;
        let q0 = normals(b * h * s * d, 7, 1.0);
        let k0 = normals(b * kv * d * t, 8, 1.0);
        let v0 = normals(b * kv * t * d, 9, 1.0);
        let dy = normals(b * s * h * d, 10, 1.0);
        let cached = t - s;
        let hidden: Vec<bool> = (0..b)
            .flat_map(|row| {
                (0..s).flat_map(move |i| {
                    (0..t).map(move |j| {
                        j > cached + i
                            || (row == 1 && j < pad)
                            || (blind && row == 0 && (i == 2 || (i >= 3 && j == 1)))
                    })
                })
            })
            .collect();
        let run = |fused: bool| {
            let (q, k_t, v) = (
                tracked(q0.clone(), [b, h, s, d]),
                tracked(k0.clone(), [b, kv, d, t]),
                tracked(v0.clone(), [b, kv, t, d]),
            );
            let mask = Tensor::<4, Bool>::from_data(
                TensorData::new(hidden.clone(), [b, 1, s, t]),
                &q.device(),
            );
            let y = if fused {
                super::attention(
                    q.clone(),
                    k_t.clone(),
                    v.clone(),
                    super::attention::HostMask::new(hidden.clone(), t),
                    0.4,
                )
            } else {
                grouped_query_attention(q.clone(), k_t.clone(), v.clone(), mask, 0.4)
                    .swap_dims(1, 2)
                    .reshape([b, s, h * d])
            };
            let g = Tensor::<3>::from_data(TensorData::new(dy.clone(), [b, s, h * d]), &y.device());
            let grads = (y.clone() * g).sum().backward();
            (
                values(y),
                values(q.grad(&grads).unwrap()),
                values(k_t.grad(&grads).unwrap()),
                values(v.grad(&grads).unwrap()),
            )
        };
        let (y0, dq0, dk0, dv0) = run(false);
        let (y1, dq1, dk1, dv1) = run(true);
        close(&y1, &y0, 1e-5, 1e-5, "y");
        close(&dq1, &dq0, 1e-5, 1e-4, "dq");
        close(&dk1, &dk0, 1e-5, 1e-4, "dk");
        close(&dv1, &dv0, 1e-5, 1e-4, "dv");
    }

    #[test]
    fn attention_matches_the_reference_with_gradients() {
        // 8 query heads on 2 kv heads; 5 queries over 9 keys (4 cached), a blind query.
        check_attention(2, 8, 2, 5, 9, 6, 3, true);
        // Three blocks of query rows (64, 64, 22) with causal spans, 10 cached keys, padding.
        check_attention(2, 4, 2, 150, 160, 8, 20, false);
        check_attention(2, 4, 1, 150, 160, 8, 70, true);
    }

    #[test]
    fn rope_heads_matches_the_reference_with_gradients() {
        use crate::model::rotary::RotaryEmbeddingConfig;
        let (b, s, n, d): (usize, usize, usize, usize) = (2, 7, 3, 8);
        let rope = RotaryEmbeddingConfig::new(d).with_theta(1000.0).init();
        // Row 1 starts after two padding positions.
        let positions: Vec<usize> = (0..b)
            .flat_map(|row| (0..s).map(move |i| if row == 1 { i.saturating_sub(2) } else { i + 3 }))
            .collect();
        let x0 = normals(b * s * n * d, 11, 1.0);
        let dy = normals(b * n * s * d, 12, 1.0);
        let run = |fused: bool| {
            let x = tracked(x0.clone(), [b, s, n * d]);
            let tables = rope.tables(&positions, b, s, &x.device());
            let y = if fused {
                super::rope_heads(
                    x.clone(),
                    n,
                    tables.cos_host.clone(),
                    tables.sin_host.clone(),
                )
            } else {
                tables.apply(x.clone().reshape([b, s, n, d]).swap_dims(1, 2))
            };
            let g = Tensor::<4>::from_data(TensorData::new(dy.clone(), [b, n, s, d]), &y.device());
            let grads = (y.clone() * g).sum().backward();
            (values(y), values(x.grad(&grads).unwrap()))
        };
        let (y0, dx0) = run(false);
        let (y1, dx1) = run(true);
        close(&y1, &y0, 1e-6, 1e-6, "y");
        close(&dx1, &dx0, 1e-6, 1e-6, "dx");
    }

    #[test]
    fn token_logprobs_match_the_reference_with_gradients() {
        use crate::ops::{token_logprobs, token_logprobs_reference};
        use burn::tensor::Int;
        let (b, r, v) = (3, 37, 50);
        let z0 = normals(b * r * v, 13, 4.0);
        let ids: Vec<i64> = (0..b * r).map(|i| ((i * 7) % v) as i64).collect();
        let (g0, e0) = (normals(b * r, 14, 1.0), normals(b * r, 15, 1.0));
        let run = |fused: bool| {
            let z = tracked(z0.clone(), [b, r, v]);
            let t = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [b, r]), &z.device());
            let (lp, ent) = if fused {
                token_logprobs(z.clone(), t, true)
            } else {
                token_logprobs_reference(z.clone(), t, true)
            };
            let ent = ent.unwrap();
            let dev = lp.device();
            let g = Tensor::<2>::from_data(TensorData::new(g0.clone(), [b, r]), &dev);
            let e = Tensor::<2>::from_data(TensorData::new(e0.clone(), [b, r]), &dev);
            let grads = ((lp.clone() * g).sum() + (ent.clone() * e).sum()).backward();
            (values(lp), values(ent), values(z.grad(&grads).unwrap()))
        };
        let (lp0, h0, dz0) = run(false);
        let (lp1, h1, dz1) = run(true);
        close(&lp1, &lp0, 1e-5, 1e-5, "logp");
        close(&h1, &h0, 1e-5, 1e-5, "entropy");
        close(&dz1, &dz0, 1e-5, 1e-4, "dlogits");
    }

    #[test]
    fn linear_is_the_matmul_bit_for_bit_with_gradients() {
        // 300 inputs: a whole GEMM depth block of 256 and a partial one.
        let (rows, k, out) = (37, 300, 45);
        let x0 = normals(rows * k, 16, 1.0);
        let w0 = normals(out * k, 17, 0.05);
        let dy = normals(rows * out, 18, 1.0);
        let run = |fused: bool| {
            let (x, w) = (
                tracked(x0.clone(), [rows, k]),
                tracked(w0.clone(), [out, k]),
            );
            let y = if fused {
                super::linear(x.clone(), w.clone())
            } else {
                x.clone().matmul(w.clone().transpose())
            };
            let g = Tensor::<2>::from_data(TensorData::new(dy.clone(), [rows, out]), &y.device());
            let grads = (y.clone() * g).sum().backward();
            (
                values(y),
                values(x.grad(&grads).unwrap()),
                values(w.grad(&grads).unwrap()),
            )
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        // `a b` against Burn's matmul too (b = w^T as a plain [k, out] matrix).
        let wt: Vec<f32> = (0..k * out).map(|i| w0[(i % out) * k + i / out]).collect();
        let (a, b) = (
            tracked(x0.clone(), [rows, k]),
            tracked(wt.clone(), [k, out]),
        );
        let (a2, b2) = (tracked(x0.clone(), [rows, k]), tracked(wt, [k, out]));
        let g = Tensor::<2>::from_data(TensorData::new(dy.clone(), [rows, out]), &a.device());
        let fused = super::matmul(a.clone(), b.clone());
        let plain = a2.clone().matmul(b2.clone());
        assert_eq!(
            bits(&values(fused.clone())),
            bits(&values(plain.clone())),
            "a b"
        );
        let (gf, gp) = (
            (fused * g.clone()).sum().backward(),
            (plain * g).sum().backward(),
        );
        assert_eq!(
            bits(&values(a.grad(&gf).unwrap())),
            bits(&values(a2.grad(&gp).unwrap())),
            "da"
        );
        assert_eq!(
            bits(&values(b.grad(&gf).unwrap())),
            bits(&values(b2.grad(&gp).unwrap())),
            "db"
        );
        let (y0, dx0, dw0) = run(false);
        let (y1, dx1, dw1) = run(true);
        assert_eq!(bits(&y1), bits(&y0), "forward");
        assert_eq!(bits(&dx1), bits(&dx0), "dx");
        assert_eq!(bits(&dw1), bits(&dw0), "dw");
    }

    #[test]
    fn adds_are_the_plain_adds_with_gradients() {
        use crate::cpu::host::ROWS_PER_TASK;
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        // 3 tasks of rows and a partial one (the bias gradient's partial sums), 2 chunks of adds.
        let (rows, n) = (3 * ROWS_PER_TASK + 5, 700);
        let a0 = normals(rows * n, 20, 1.0);
        let b0 = normals(rows * n, 21, 3.0);
        let c0 = normals(n, 22, 0.5);
        let g0 = normals(rows * n, 23, 1.0);
        let run = |fused: bool| {
            let (a, b, c) = (
                tracked(a0.clone(), [rows, n]),
                tracked(b0.clone(), [rows, n]),
                tracked(c0.clone(), [n]),
            );
            let y = if fused {
                super::add_bias(super::add(a.clone(), b.clone()), c.clone())
            } else {
                a.clone() + b.clone() + c.clone().unsqueeze::<2>()
            };
            let g = Tensor::<2>::from_data(TensorData::new(g0.clone(), [rows, n]), &y.device());
            let grads = (y.clone() * g).sum().backward();
            (
                values(y),
                values(a.grad(&grads).unwrap()),
                values(b.grad(&grads).unwrap()),
                values(c.grad(&grads).unwrap()),
            )
        };
        let (y0, da0, db0, dc0) = run(false);
        let (y1, da1, db1, dc1) = run(true);
        assert_eq!(bits(&y1), bits(&y0), "a + b + c");
        assert_eq!(bits(&da1), bits(&da0), "da");
        assert_eq!(bits(&db1), bits(&db0), "db");
        close(&dc1, &dc0, 1e-4, 1e-5, "dbias");
    }

    #[test]
    fn split_gemms_are_the_single_thread_ones_bit_for_bit() {
        // Products large enough to split into row blocks (forward, input and weight gradients;
        // some with fewer rows than columns), on 2 threads against 1.
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (rows, k, out) in [(64, 700, 300), (300, 700, 64), (2048, 96, 40)] {
            let x0 = normals(rows * k, 24, 1.0);
            let w0 = normals(out * k, 25, 0.05);
            let g0 = normals(rows * out, 26, 1.0);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (x, w) = (
                        tracked(x0.clone(), [rows, k]),
                        tracked(w0.clone(), [out, k]),
                    );
                    let y = super::linear(x.clone(), w.clone());
                    let g = Tensor::<2>::from_data(
                        TensorData::new(g0.clone(), [rows, out]),
                        &y.device(),
                    );
                    let grads = (y.clone() * g).sum().backward();
                    (
                        bits(&values(y)),
                        bits(&values(x.grad(&grads).unwrap())),
                        bits(&values(w.grad(&grads).unwrap())),
                    )
                })
            };
            assert_eq!(run(2), run(1), "[{rows}, {k}] x [{k}, {out}]");
        }
    }

    #[test]
    fn an_input_without_autodiff_joins_as_a_constant() {
        // A tracked activation through a frozen (`valid()`, no autodiff) weight.
        let x = tracked(normals(6 * 8, 19, 1.0), [6, 8]);
        let w = Tensor::<1>::from_data(TensorData::new(vec![1.5f32; 8], [8]), &Device::ndarray());
        let y = super::rms_norm(x.clone(), w.clone(), 1e-6);
        let grads = y.sum().backward();
        assert_eq!(values(x.grad(&grads).unwrap()).len(), 48);
        let plain = super::rms_norm(x.clone().without_autodiff(), w, 1e-6);
        assert!(!plain.is_autodiff());
    }
}
