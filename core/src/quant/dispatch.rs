//! One entry point for fake quantization on any backend: the slice-API path where tensor data
//! already lives in host memory (the NdArray CPU backend: one copy out and back, the fastest
//! there), the fused kernels of `quant::fused` on CubeCL devices (wgpu, CUDA: one launch, no
//! host round trip), and the composed tensor ops as the fallback for any other backend. All three
//! are bit-identical (tests/quant_tensor_op.rs, tests/fused_quant_parity.rs), so the choice is
//! invisible in the results.

use burn::tensor::Tensor;

use super::{fake_quantize, fake_quantize_reference};
use crate::formats::{FormatError, QuantSpec};

pub use crate::cpu::host::is_host_device;

/// [`fake_quantize_reference`] on host backends, the fused kernels of [`super::fused`] on CubeCL
/// devices (wgpu, CUDA) when compiled in, [`fake_quantize`] elsewhere (bit-identical).
///
/// # Shapes
/// Any rank; the result has the shape of `x`.
pub fn fake_quantize_on_device<const D: usize>(
    x: Tensor<D>,
    spec: &QuantSpec,
    axis: usize,
) -> Result<Tensor<D>, FormatError> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if super::fused::is_fused_device(&x.device()) {
        return super::fused::fake_quantize_fused(x, spec, axis);
    }
    if is_host_device(&x.device()) {
        spec.validate()?;
        if axis >= D {
            return Err(FormatError::BadAxis { axis, rank: D });
        }
        fake_quantize_reference(x, spec, axis)
    } else {
        fake_quantize(x, spec, axis)
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: the CPU backend of the tests
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn host_detection_and_agreement() {
        let device = Device::ndarray();
        assert!(is_host_device(&device));
        assert!(is_host_device(&device.clone().autodiff()));
        let values: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [3, 32]), &device);
        for spec in ["mxfp4", "nvfp4", "fp8"] {
            let spec: QuantSpec = spec.parse().unwrap();
            let a = fake_quantize_on_device(x.clone(), &spec, 1).unwrap();
            let b = fake_quantize(x.clone(), &spec, 1).unwrap();
            assert_eq!(
                a.into_data().to_vec::<f32>().unwrap(),
                b.into_data().to_vec::<f32>().unwrap()
            );
        }
        let spec: QuantSpec = "mxfp4".parse().unwrap();
        let err = fake_quantize_on_device(x, &spec, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains('2'), "{err}");
    }
}
