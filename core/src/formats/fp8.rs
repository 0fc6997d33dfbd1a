//! FP8 E4M3 with one per-tensor scale: `scale = amax / 448`, elements `E4M3(v / scale)`.

use super::blocks::finite_amax;
use super::e4m3::{E4M3_MAX, e4m3_to_f32, f32_to_e4m3};

/// The per-tensor scale: `amax / 448` over the finite elements, or 1 when that is zero.
pub fn tensor_scale(x: &[f32]) -> f32 {
    let scale = finite_amax(x) / E4M3_MAX;
    if scale == 0.0 { 1.0 } else { scale }
}

/// The E4M3 code of one element (NaN and +-Inf give NaN codes).
#[inline(always)]
pub fn encode_element(v: f32, scale: f32) -> u8 {
    if v.is_finite() {
        f32_to_e4m3((v / scale).clamp(-E4M3_MAX, E4M3_MAX))
    } else {
        f32_to_e4m3(v)
    }
}

/// Fake-quantizes `x` into `out`; returns the scale.
pub(crate) fn fake_quantize(x: &[f32], out: &mut [f32]) -> f32 {
    let scale = tensor_scale(x);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = e4m3_to_f32(encode_element(v, scale)) * scale;
    }
    scale
}

/// Encodes `x`: one code per element and the scale.
pub(crate) fn encode(x: &[f32]) -> (Vec<u8>, f32) {
    let scale = tensor_scale(x);
    (x.iter().map(|&v| encode_element(v, scale)).collect(), scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_maps_to_448_and_specials_to_nan() {
        let x = [896.0, -1.0, 0.5, f32::INFINITY, f32::NAN];
        let mut out = [0.0; 5];
        let scale = fake_quantize(&x, &mut out);
        assert_eq!(scale, 2.0);
        assert_eq!(&out[..3], &[896.0, -1.0, 0.5]);
        assert!(out[3].is_nan() && out[4].is_nan());
        assert_eq!(tensor_scale(&[0.0, -0.0]), 1.0);
    }
}
