//! The WGSL kernels (shaders/wgsl) against aqn-core, bit for bit, on the adapter wgpu finds (Mesa
//! lavapipe in CI, `mesa-vulkan-drivers`): every fake-quantized value, every block partial of the
//! statistics and every histogram count. A missing adapter fails the test; it never skips.
//!
//! The edge tensors hold what GPUs get wrong without the integer soft-float: subnormal inputs,
//! blocks whose scale is the subnormal 2^-127, E2M1/E4M3 ties, every amax exponent with the
//! mantissas at the scale-rule boundaries, NaN and Inf blocks, ragged rows, and random bit
//! patterns over the whole f32 range.

use std::sync::OnceLock;

use aqn_core::distributions::Distribution;
use aqn_core::error_stats::{ErrorStats, reduce, stats_grid};
use aqn_core::formats::mxfp4::mx_scale_exponent;
use aqn_core::formats::{MxScaleMode, QuantSpec};
use aqn_core::rng::counter_hash;
use aqn_shaders::runner::GpuLab;

const BINS: usize = 64;

fn lab() -> &'static GpuLab {
    static LAB: OnceLock<GpuLab> = OnceLock::new();
    LAB.get_or_init(|| {
        GpuLab::new()
            .unwrap_or_else(|e| panic!("the shader tests need a GPU adapter and found none: {e}"))
    })
}

/// Every spec the kernels cover.
fn specs() -> Vec<QuantSpec> {
    [
        "mxfp4:floor",
        "mxfp4:ceil",
        "mxfp4:even",
        "mxfp4:rceil",
        "nvfp4:two-level",
        "nvfp4:single-level",
        "fp8",
        "bf16",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Runs `spec` on the GPU and checks q, the partials, the histogram and the finished stats.
fn check(name: &str, spec: &QuantSpec, x: &[f32], row_len: usize) {
    let label = format!("{name} {}", spec.label());
    let gpu = lab()
        .run(spec, x, row_len, BINS)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let want = spec.fake_quantize_vec(x, row_len).unwrap();
    let bad: Vec<String> = (0..x.len())
        .filter(|&i| !same(gpu.q[i], want[i]))
        .take(5)
        .map(|i| {
            format!(
                "#{i} x={:e} ({:#010x}): gpu {:e} ({:#010x}), rust {:e} ({:#010x})",
                x[i],
                x[i].to_bits(),
                gpu.q[i],
                gpu.q[i].to_bits(),
                want[i],
                want[i].to_bits()
            )
        })
        .collect();
    assert!(bad.is_empty(), "{label}: q differs:\n{}", bad.join("\n"));
    let grid = stats_grid(spec, x.len(), row_len).unwrap();
    let (partials, counts) = reduce(&grid, x, &want, BINS).unwrap();
    assert_eq!(gpu.partials.len(), partials.len(), "{label}");
    for (k, (g, c)) in gpu.partials.iter().zip(&partials).enumerate() {
        assert_eq!(
            g.to_words(),
            c.to_words(),
            "{label}: block {k} partials differ:\n gpu {g:?}\n cpu {c:?}"
        );
    }
    assert_eq!(gpu.stats.counts, counts, "{label}: histogram");
    let cpu = ErrorStats::from_partials(&grid, &partials, counts).unwrap();
    let m = |s: &ErrorStats| {
        let m = s.metrics;
        [
            m.norm_relative_error,
            m.mean_relative_error,
            m.sqnr_db,
            m.deadzone_ratio,
            m.saturation_ratio,
            m.mean_abs_error,
            m.max_abs_error,
            m.norm,
        ]
        .map(f64::to_bits)
    };
    assert_eq!(m(&gpu.stats), m(&cpu), "{label}: metrics");
}

#[test]
fn generated_tensors_every_format() {
    for dist in [
        Distribution::STANDARD_NORMAL,
        Distribution::WEIGHT_LIKE,
        "laplace:b=0.5".parse().unwrap(),
        "uniform:a=3".parse().unwrap(),
    ] {
        let x = dist.generate(1 << 16, 11).unwrap();
        for spec in specs() {
            check(&dist.label(), &spec, &x, 1024);
            check(
                &format!("{} ragged", dist.label()),
                &spec,
                &x[..100 * 77],
                100,
            );
        }
    }
}

/// A block per (exponent field, mantissa at a rule boundary): the amax, exact E2M1 ties of its
/// FLOOR scale, and random magnitudes below it (subnormals included when the amax is small).
fn boundary_blocks() -> Vec<f32> {
    let mants = [
        0u32, 1, 0x1f_ffff, 0x20_0000, 0x3f_ffff, 0x40_0000, 0x40_0001, 0x5f_ffff, 0x60_0000,
        0x7f_ffff,
    ];
    let ties = [0.25f32, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5];
    let mut x = Vec::new();
    let mut n = 0u64;
    for field in 0u32..=254 {
        for &mant in &mants {
            let amax = (field << 23) | mant;
            let e = mx_scale_exponent(amax, MxScaleMode::Floor);
            let mut block = vec![f32::from_bits(amax)];
            for &t in &ties {
                // t * 2^e, when it is below the amax (an exact tie after scaling).
                let v = t as f64 * 2f64.powi(e);
                if v < f32::from_bits(amax) as f64 && v as f32 as f64 == v {
                    block.push(-(v as f32));
                }
            }
            while block.len() < 32 {
                let h = counter_hash(99, n);
                n += 1;
                let bits = ((h as u32) % (amax + 1)) | (((h >> 32) as u32) & 0x8000_0000);
                block.push(f32::from_bits(bits));
            }
            x.extend(block);
        }
    }
    x
}

#[test]
fn scale_rule_boundaries_and_subnormals() {
    let x = boundary_blocks();
    for spec in specs() {
        check("boundaries", &spec, &x, 32);
        check("boundaries rows of 96", &spec, &x, 96);
    }
    // Whole tensors of tiny values: NVFP4 g from a subnormal-range amax (g falls back to 1) and
    // from ~1e-30 (g is used, 1/g near the top of f32), FP8 scales near the bottom of f32.
    for (name, scale) in [("subnormal", 1e-40f64), ("tiny", 1e-30), ("huge", 1e36)] {
        let x: Vec<f32> = Distribution::STANDARD_NORMAL
            .generate(4096, 5)
            .unwrap()
            .iter()
            .map(|&v| (v as f64 * scale) as f32)
            .collect();
        for spec in specs() {
            check(name, &spec, &x, 64);
        }
    }
}

#[test]
fn special_values_and_random_bit_patterns() {
    let mut x = Distribution::STANDARD_NORMAL.generate(4096, 8).unwrap();
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[77] = f32::NEG_INFINITY;
    x[100] = -0.0;
    x[130] = f32::MAX;
    x[131] = -f32::MAX;
    x[200] = f32::from_bits(1); // smallest subnormal
    for v in &mut x[256..288] {
        *v = 0.0; // an all-zero block: MXFP4 scale byte 0x00 = 2^-127
    }
    for v in &mut x[288..320] {
        *v = -1e-42; // an all-subnormal block
    }
    for spec in specs() {
        check("specials", &spec, &x, 512);
    }
    // Random bit patterns over the whole f32 range (NaN and Inf included).
    let x: Vec<f32> = (0..1 << 15)
        .map(|i| f32::from_bits(counter_hash(2024, i) as u32))
        .collect();
    for spec in specs() {
        check("random bits", &spec, &x, 256);
    }
    // The same without non-finite values, so that the soft-float sums see huge finite terms.
    let finite: Vec<f32> = x
        .iter()
        .map(|&v| if v.is_finite() { v } else { 1.5 })
        .collect();
    for spec in specs() {
        check("random finite bits", &spec, &finite, 256);
    }
}

#[test]
fn refused_specs_name_the_cpu_path() {
    let x = vec![1.0f32; 256];
    let err = lab()
        .run(&"mxfp4:sr=3".parse().unwrap(), &x, 32, BINS)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stochastic rounding runs on the CPU only"),
        "{err}"
    );
}
