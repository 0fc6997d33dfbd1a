//! Fake quantization of a Burn tensor along any axis, composed from elementwise tensor ops so it
//! runs on every backend, and bit-identical to the slice API of [`crate::formats`] (a test checks
//! every format on the NdArray backend). Exact because every step is either an f32 operation the
//! slice code performs in the same order, or a multiplication by a power of two.

use burn::tensor::{Bool, Tensor, TensorData};

use super::pow2::{floor_pow2, pow2};
use crate::formats::e2m1::E2M1_MAX;
use crate::formats::e4m3::{E4M3_MAX, E4M3_MIN_NORMAL};
use crate::formats::nvfp4::{NVFP4_MIN_TENSOR_SCALE, NVFP4_TENSOR_SCALE_DIVISOR};
use crate::formats::{
    BlockLayout, FormatError, MxScaleMode, NvScaling, QuantFormat, QuantSpec, Rounding,
};
use crate::rng::uniform_f32;

/// Exponent of E2M1's largest binade (FLOOR and CEIL subtract it).
const E2M1_MAX_POW2: i32 = 2;
/// The smallest MX scale, 2^-127 (E8M0 byte 0): a subnormal f32.
const MX_MIN_SCALE: f32 = f32::from_bits(0x0040_0000);
/// Mantissa bits of E4M3 and BF16.
const E4M3_MANTISSA_BITS: i32 = 3;
const BF16_MANTISSA_BITS: i32 = 7;
/// Smallest normal f32 exponent (below it BF16 rounding uses the subnormal step).
const F32_MIN_NORMAL_EXP: i32 = -126;

/// Fake-quantizes `x` along `axis` with `spec` (same result, bit for bit, as
/// [`QuantSpec::fake_quantize_along`] on the tensor's data).
///
/// # Shapes
/// Any rank; the result has the shape of `x`.
pub fn fake_quantize<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
) -> Result<Tensor<D>, FormatError> {
    spec.validate()?;
    if axis >= D {
        return Err(FormatError::BadAxis { axis, rank: D });
    }
    let dims = x.dims();
    if dims.iter().product::<usize>() == 0 {
        return Ok(x);
    }
    let moved = if axis + 1 == D {
        x
    } else {
        x.movedim(axis, D - 1)
    };
    let moved_dims = moved.dims();
    let n = moved_dims[D - 1];
    let rows = moved_dims.iter().product::<usize>() / n;
    let q = fake_quantize_rows(moved.reshape([rows, n]), spec);
    let q: Tensor<D> = q.reshape(moved_dims);
    Ok(if axis + 1 == D {
        q
    } else {
        q.movedim(D - 1, axis)
    })
}

/// The plain reference: the tensor's data through the slice API and back. Also the fastest path
/// on the CPU backend, where data already lives in host memory.
pub fn fake_quantize_reference<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
) -> Result<Tensor<D>, FormatError> {
    let dims = x.dims();
    let device = x.device();
    let data = x.into_data().convert::<f32>();
    let values = data
        .as_slice::<f32>()
        .map_err(|e| FormatError::BadPacked(format!("tensor data: {e:?}")))?;
    let q = spec.fake_quantize_along(values, &dims, axis)?;
    Ok(Tensor::from_data(TensorData::new(q, dims), &device))
}

/// Quantizes a `[rows, n]` matrix along its rows.
fn fake_quantize_rows(x: Tensor<2>, spec: &QuantSpec) -> Tensor<2> {
    let [rows, n] = x.dims();
    let uniforms = match spec.rounding {
        Rounding::Nearest => None,
        Rounding::Stochastic { seed } => {
            let u: Vec<f32> = (0..rows * n).map(|i| uniform_f32(seed, i as u64)).collect();
            Some(Tensor::<2>::from_data(
                TensorData::new(u, [rows, n]),
                &x.device(),
            ))
        }
    };
    match spec.format {
        QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => blockwise_fp4(x, uniforms, spec),
        QuantFormat::Fp8 => fp8(x),
        QuantFormat::Bf16 => bf16(x),
    }
}

/// Zero-pads dimension `dim` of `x` up to a multiple of `block`.
fn pad_to<const D: usize>(x: Tensor<D>, dim: usize, block: usize) -> Tensor<D> {
    let len = x.dims()[dim];
    let padded = len.div_ceil(block) * block;
    if padded == len {
        return x;
    }
    let mut shape = x.dims();
    shape[dim] = padded - len;
    let zeros = Tensor::zeros(shape, &x.device());
    Tensor::cat(vec![x, zeros], dim)
}

/// True where an element is NaN or infinite.
fn non_finite<const D: usize>(x: &Tensor<D>) -> Tensor<D, Bool> {
    x.clone().is_nan().bool_or(x.clone().is_inf())
}

/// True where the sign bit of `x` is set: negative values, and -0.0 (whose reciprocal is -inf).
fn sign_bit<const D: usize>(x: Tensor<D>) -> Tensor<D, Bool> {
    x.clone().lower_elem(0.0).bool_or(x.recip().lower_elem(0.0))
}

/// `magnitude` with the sign of `negative`.
fn with_sign<const D: usize>(magnitude: Tensor<D>, negative: Tensor<D, Bool>) -> Tensor<D> {
    magnitude.clone().mask_where(negative, magnitude.neg())
}

/// Rounds non-negative magnitudes onto the E2M1 grid (saturating at 6), nearest-even or
/// stochastically with the given uniforms.
fn e2m1_magnitude<const D: usize>(a: Tensor<D>, uniforms: Option<Tensor<D>>) -> Tensor<D> {
    let a = a.clamp_max(E2M1_MAX);
    // Inverse grid step: 2 below 2, 1 below 4, 0.5 above.
    let inv = a
        .ones_like()
        .mul_scalar(0.5)
        .mask_fill(a.clone().lower_elem(4.0), 1.0)
        .mask_fill(a.clone().lower_elem(2.0), 2.0);
    let scaled = a * inv.clone();
    let grid = match uniforms {
        None => scaled.round(),
        Some(u) => {
            let lo = scaled.clone().floor();
            let frac = scaled - lo.clone();
            lo.clone().mask_where(u.lower(frac), lo.add_scalar(1.0))
        }
    };
    grid / inv
}

/// MXFP4 and NVFP4: blocks along rows (or 16x16 tiles), per-block scales, E2M1 elements.
fn blockwise_fp4(x: Tensor<2>, uniforms: Option<Tensor<2>>, spec: &QuantSpec) -> Tensor<2> {
    let [rows, n] = x.dims();
    let b = spec.block_size();
    let tiles = spec.blocks == BlockLayout::Tile16x16;
    let bad = non_finite(&x);
    let clean = x.clone().mask_fill(bad.clone(), 0.0);
    // The per-tensor scale g (NVFP4 two-level) is over the real elements.
    let g = match (spec.format, spec.nv_scaling) {
        (QuantFormat::Nvfp4, NvScaling::TwoLevel) => {
            let g = clean
                .clone()
                .abs()
                .max()
                .reshape([1, 1, 1, 1])
                .div_scalar(NVFP4_TENSOR_SCALE_DIVISOR);
            Some(
                g.clone()
                    .mask_fill(g.lower_elem(NVFP4_MIN_TENSOR_SCALE), 1.0),
            )
        }
        _ => None,
    };
    // View as [row_blocks, rows_per_block, col_blocks, cols_per_block]: a 1-D block is one row
    // by `b` columns, a tile 16 by 16.
    let rb = if tiles { b } else { 1 };
    let to_blocks = |t: Tensor<2>| -> Tensor<4> {
        let t = pad_to(pad_to(t, 1, b), 0, rb);
        let [r, c] = t.dims();
        t.reshape([r / rb, rb, c / b, b])
    };
    let xb = to_blocks(clean);
    let bad_b = to_blocks(bad.float()).greater_elem(0.0);
    let ub = uniforms.map(to_blocks);
    let amax = xb.clone().abs().max_dims(&[1, 3]);
    let block_dims = bad_b.dims();
    let block_bad = bad_b.any_dim(1).any_dim(3);

    let negative = sign_bit(xb.clone());
    let magnitude = match spec.format {
        QuantFormat::Mxfp4 => {
            let scale = mx_scale(amax, spec.scale_mode);
            let inv = scale.clone().recip();
            e2m1_magnitude((xb * inv).abs(), ub) * scale
        }
        _ => {
            let g = g.unwrap_or_else(|| amax.ones_like());
            let r = (amax.div_scalar(E2M1_MAX) / g.clone()).clamp(E4M3_MIN_NORMAL, E4M3_MAX);
            let s = e4m3_round_normal(r);
            let m = g.clone().recip() / s.clone();
            (e2m1_magnitude((xb * m).clamp(-E2M1_MAX, E2M1_MAX).abs(), ub) * s) * g
        }
    };
    let q = with_sign(magnitude, negative);
    let q = q.mask_fill(block_bad.expand(block_dims), f32::NAN);
    let [r4, rb4, c4, b4] = q.dims();
    q.reshape([r4 * rb4, c4 * b4]).slice([0..rows, 0..n])
}

/// The MX scale `2^e` of each block amax, per scale mode, clamped to `[2^-127, 2^127]`.
fn mx_scale<const D: usize>(amax: Tensor<D>, mode: MxScaleMode) -> Tensor<D> {
    let quarter = pow2(-E2M1_MAX_POW2);
    let scale = match mode {
        MxScaleMode::Floor => floor_pow2(amax).0.mul_scalar(quarter),
        MxScaleMode::Ceil => {
            let (p, r) = floor_pow2(amax);
            // Not a power of two: one binade up (p * 2^-1 instead of p * 2^-2; no overflow).
            p.clone()
                .mul_scalar(quarter)
                .mask_where(r.greater_elem(1.0), p.mul_scalar(0.5))
        }
        MxScaleMode::Even => {
            // amax rounded to one mantissa bit, ties up (the spec's `+ 2^21` on the bits).
            let (p, r) = floor_pow2(amax);
            let r1 = r.mul_scalar(2.0).add_scalar(0.5).floor().mul_scalar(0.5);
            p.clone()
                .mul_scalar(quarter)
                .mask_where(r1.greater_equal_elem(2.0), p.mul_scalar(0.5))
        }
        MxScaleMode::Rceil => {
            let (p, r) = floor_pow2(amax.div_scalar(E2M1_MAX));
            p.clone().mask_where(r.greater_elem(1.0), p.mul_scalar(2.0))
        }
    };
    scale.clamp_min(MX_MIN_SCALE)
}

/// Rounds values in E4M3's normal range `[2^-6, 448]` to E4M3 (nearest even).
fn e4m3_round_normal<const D: usize>(r: Tensor<D>) -> Tensor<D> {
    let (p, m) = floor_pow2(r);
    let k = pow2(E4M3_MANTISSA_BITS);
    m.mul_scalar(k).round().mul(p).mul_scalar(1.0 / k)
}

/// Rounds magnitudes to a float grid with `mantissa_bits` and a subnormal floor `2^min_exp`
/// (nearest even): the step is `2^(max(floor(log2 a), min_exp) - mantissa_bits)`.
fn round_to_grid<const D: usize>(a: Tensor<D>, mantissa_bits: i32, min_exp: i32) -> Tensor<D> {
    let (p, _) = floor_pow2(a.clone());
    let step = p.clamp_min(pow2(min_exp)).mul_scalar(pow2(-mantissa_bits));
    (a / step.clone()).round() * step
}

/// FP8 E4M3 with a per-tensor scale.
fn fp8(x: Tensor<2>) -> Tensor<2> {
    let bad = non_finite(&x);
    let clean = x.clone().mask_fill(bad.clone(), 0.0);
    let scale = clean
        .clone()
        .abs()
        .max()
        .reshape([1, 1])
        .div_scalar(E4M3_MAX);
    let scale = scale.clone().mask_fill(scale.equal_elem(0.0), 1.0);
    let y = (clean / scale.clone()).clamp(-E4M3_MAX, E4M3_MAX);
    let negative = sign_bit(y.clone());
    let mag = round_to_grid(y.abs(), E4M3_MANTISSA_BITS, E4M3_MIN_NORMAL_EXP) * scale;
    with_sign(mag, negative).mask_fill(bad, f32::NAN)
}

/// Exponent of E4M3's smallest normal, 2^-6.
const E4M3_MIN_NORMAL_EXP: i32 = -6;

/// BF16 rounding (nearest even; overflow to Inf; NaN stays NaN).
fn bf16(x: Tensor<2>) -> Tensor<2> {
    let negative = sign_bit(x.clone());
    with_sign(
        round_to_grid(x.abs(), BF16_MANTISSA_BITS, F32_MIN_NORMAL_EXP),
        negative,
    )
}
