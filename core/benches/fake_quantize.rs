//! Fake-quantize throughput, one thread, 16M f32 in and out, beside a plain copy of the same bytes
//! (issue 2's target: at least 25% of the copy's element rate for MXFP4 and NVFP4).
//!
//! `cargo bench -p aqn-core --no-default-features --bench fake_quantize`

use aqn_core::formats::{QuantFormat, QuantSpec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const N: usize = 16 << 20;
const ROW: usize = 4096;

fn bench(c: &mut Criterion) {
    let x: Vec<f32> = (0..N)
        .map(|i| aqn_core::rng::normal_f64(1, i as u64) as f32)
        .collect();
    let mut out = vec![0.0f32; N];
    let mut g = c.benchmark_group("fake_quantize_16M_f32");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("copy", |b| b.iter(|| out.copy_from_slice(black_box(&x))));
    for format in [QuantFormat::Mxfp4, QuantFormat::Nvfp4] {
        let spec = QuantSpec::new(format);
        g.bench_function(format.name(), |b| {
            b.iter(|| {
                spec.fake_quantize(black_box(&x), ROW, &mut out)
                    .expect("valid shape")
            })
        });
    }
    // The extra pass NVFP4 two-level makes: the per-tensor amax.
    g.bench_function("finite_amax", |b| {
        b.iter(|| aqn_core::formats::blocks::finite_amax(black_box(&x)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
