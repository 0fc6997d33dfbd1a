//! docs/spec.md section 1's reference figures on N(0,1) data, 1M elements (1,048,576).

use aqn_core::formats::{QuantFormat, QuantSpec};
use aqn_core::quant_error::ErrorMetrics;

fn normal(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| aqn_core::rng::normal_f64(seed, i as u64) as f32)
        .collect()
}

fn check(format: QuantFormat, rel: f64, dead: f64, norm: f64) {
    for seed in [0u64, 1, 2] {
        let x = normal(1 << 20, seed);
        let q = QuantSpec::new(format)
            .fake_quantize_vec(&x, 1 << 10)
            .unwrap();
        let m = ErrorMetrics::compute(&x, &q);
        assert!(
            (m.mean_relative_error - rel).abs() <= 0.003,
            "{format} seed {seed}: mean relative error {:.4}, want {rel} +- 0.003",
            m.mean_relative_error
        );
        assert!(
            (m.deadzone_ratio - dead).abs() <= 0.003,
            "{format} seed {seed}: deadzone {:.4}, want {dead} +- 0.003",
            m.deadzone_ratio
        );
        // docs/spec.md gives the norm ratios to three decimals.
        assert!(
            (m.norm_relative_error - norm).abs() <= 0.0015,
            "{format} seed {seed}: norm ratio {:.4}, want {norm}",
            m.norm_relative_error
        );
    }
}

#[test]
fn mxfp4_on_standard_normal() {
    check(QuantFormat::Mxfp4, 0.210, 0.088, 0.115);
}

#[test]
fn nvfp4_on_standard_normal() {
    check(QuantFormat::Nvfp4, 0.179, 0.068, 0.095);
}
