//! Fake quantization of a host array on the device of `--backend`, for the commands that work on
//! arrays (`quant-error`, `quantize`): the slice API of `aqn_core::formats` on the CPU, the fused
//! kernels (through `aqn_core::quant::fake_quantize_on_device`) on a GPU. Both give the same bits
//! (tests/fused_quant_parity.rs; tests/cli_wgpu.rs compares the commands' outputs).

use anyhow::Result;
use aqn_core::formats::QuantSpec;
use aqn_core::quant::{fake_quantize_on_device, is_host_device};
use burn::tensor::{Device, Tensor, TensorData};

/// `x` (row-major, of `shape`) fake-quantized along `axis` on `device`.
pub fn fake_quantize_along(
    device: &Device,
    spec: &QuantSpec,
    x: &[f32],
    shape: &[usize],
    axis: usize,
) -> Result<Vec<f32>> {
    // The host path, and an empty tensor (nothing to launch a kernel for) on any device.
    if is_host_device(device) || x.is_empty() {
        return Ok(spec.fake_quantize_along(x, shape, axis)?);
    }
    anyhow::ensure!(
        axis < shape.len(),
        "axis {axis} is out of range for a tensor of rank {}",
        shape.len()
    );
    anyhow::ensure!(
        shape.iter().product::<usize>() == x.len(),
        "shape {shape:?} does not hold {} elements",
        x.len()
    );
    // [outer, n, inner] along axis 1 is the same grouping as `axis` of `shape`.
    let outer = shape[..axis].iter().product::<usize>();
    let inner = shape[axis + 1..].iter().product::<usize>();
    let dims = [outer, shape[axis], inner];
    let t = Tensor::<3>::from_data(TensorData::new(x.to_vec(), dims), device);
    let q = fake_quantize_on_device(t, spec, 1)?;
    q.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the quantized tensor back: {e:?}"))
}
