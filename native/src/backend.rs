//! `--backend`: which device computes. One code path for every backend: the model, the trainer
//! and the quantizers take a `Device`, and `aqn_core::quant` picks the fused GPU kernels on the
//! CubeCL devices by itself. The CPU (NdArray) is the default and always compiled in; `wgpu` and
//! `cuda` are cargo features of aqn-native, and naming one that this binary lacks is an error that
//! says how to build it.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;

/// A compute backend compiled into this binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The CPU (Burn's NdArray backend).
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12; Mesa lavapipe on a machine without one).
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// An NVIDIA GPU through CUDA.
    #[cfg(feature = "cuda")]
    Cuda,
}

/// Every backend name, with the cargo feature that compiles it in (`None`: always there).
const BACKENDS: [(&str, Option<&str>); 3] = [
    ("cpu", None),
    ("wgpu", Some("wgpu")),
    ("cuda", Some("cuda")),
];

impl Backend {
    /// The backends compiled into this binary.
    pub fn compiled() -> Vec<Backend> {
        vec![
            Backend::Cpu,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu,
            #[cfg(feature = "cuda")]
            Backend::Cuda,
        ]
    }

    /// What a machine needs for this backend's device to start.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn driver_hint(self) -> &'static str {
        match self {
            Backend::Cpu => "nothing",
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => {
                "install a Vulkan driver (on a machine without a GPU, Mesa's software one: \
                 `apt-get install mesa-vulkan-drivers`)"
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => "install the NVIDIA driver and the CUDA toolkit",
        }
    }

    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => "wgpu",
            #[cfg(feature = "cuda")]
            Backend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(b) = Backend::compiled().into_iter().find(|b| b.name() == lower) {
            return Ok(b);
        }
        let compiled: Vec<&str> = Backend::compiled().iter().map(|b| b.name()).collect();
        match BACKENDS.iter().find(|(name, _)| *name == lower) {
            Some((name, Some(feature))) => Err(format!(
                "backend `{name}` is not compiled into this binary (it has: {}); build it with \
                 `cargo build --release -p aqn-native --features {feature}`",
                compiled.join(", ")
            )),
            _ => Err(format!(
                "unknown backend `{s}`; valid choices: {} (compiled into this binary: {})",
                BACKENDS.map(|(name, _)| name).join(", "),
                compiled.join(", ")
            )),
        }
    }
}

/// The `--backend` flag, shared by every command that computes.
#[derive(Args, Clone, Debug)]
pub struct BackendArgs {
    /// Where to compute: `cpu` (NdArray), `wgpu` (a GPU through Vulkan/Metal/DX12/OpenGL, or
    /// Mesa's software Vulkan; cargo feature `wgpu`), `cuda` (cargo feature `cuda`). The same
    /// model, trainer and quantizers run on each; on the GPU backends fake quantization uses the
    /// fused kernels (bit-identical to the CPU). The device a run got is printed as `backend  ...`.
    #[arg(long, value_name = "BACKEND", default_value = "cpu", value_parser = Backend::from_str)]
    pub backend: Backend,
    /// The graphics API of `--backend wgpu`: `auto` (the default: Vulkan wherever it exists, else
    /// Metal, DX12, OpenGL), `vulkan`, `metal`, `dx12`, `gl`. A named API never falls back to
    /// another: with `vulkan` and no Vulkan driver the command stops with an error.
    #[cfg(feature = "wgpu")]
    #[arg(long, value_name = "API")]
    pub wgpu_api: Option<aqn_core::wgpu_device::GraphicsApi>,
}

impl BackendArgs {
    /// The device for inference.
    pub fn device(&self) -> Result<Device> {
        Ok(self.named_device()?.0)
    }

    /// The device for inference and how it names itself (`cpu`; `llvmpipe (LLVM 15.0.6, 256
    /// bits) on vulkan, driver llvmpipe Mesa 22.3.6 (LLVM 15.0.6) (software)`; `NVIDIA H100 80GB
    /// HBM3 (cuda, ...)`).
    #[allow(deprecated)] // NdArray is deprecated upstream in favour of Flex, which is ~2x slower here.
    pub fn named_device(&self) -> Result<(Device, String)> {
        #[cfg(feature = "wgpu")]
        if let Some(api) = self.wgpu_api
            && self.backend != Backend::Wgpu
        {
            anyhow::bail!(
                "--wgpu-api {api} applies to --backend wgpu only (this command runs on --backend {})",
                self.backend
            );
        }
        let (device, name) = match self.backend {
            Backend::Cpu => (Device::ndarray(), "cpu".to_string()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => {
                use aqn_core::wgpu_device::{GraphicsApi, open_wgpu};
                let api = self.wgpu_api.unwrap_or(GraphicsApi::Auto);
                let adapter = open_wgpu(api).map_err(|e| {
                    anyhow::anyhow!("--backend wgpu: {e}; {}", self.backend.driver_hint())
                })?;
                (adapter.device.clone(), adapter.to_string())
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                let device = Device::cuda(0usize);
                let name = cuda_name(&device);
                (device, name)
            }
        };
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if self.backend != Backend::Cpu {
            probe(&device, self.backend)?;
            eprintln!("backend  {}: {name}", self.backend);
        }
        Ok((device, name))
    }

    /// The device for training (with autodiff).
    pub fn autodiff_device(&self) -> Result<Device> {
        Ok(self.device()?.autodiff())
    }
}

/// A CUDA device's name, from its own report (opens the device; a failure is left to [`probe`]).
#[cfg(feature = "cuda")]
fn cuda_name(device: &Device) -> String {
    let probe_device = device.clone();
    match std::panic::catch_unwind(move || probe_device.identity()) {
        Ok(Some(id)) => format!("{} (cuda, {})", id.name, id.fingerprint),
        _ => "cuda device 0".into(),
    }
}

/// Runs one tiny computation on a GPU device, so that a machine without an adapter or driver
/// gets an error naming the backend instead of a panic deep inside the first kernel, and a device
/// that computes wrong sums is refused before it trains anything.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn probe(device: &Device, backend: Backend) -> Result<()> {
    use burn::tensor::Tensor;
    let probe_device = device.clone();
    let result = std::panic::catch_unwind(move || {
        Tensor::<1>::ones([4], &probe_device)
            .sum()
            .into_data()
            .try_to_vec::<f32>()
            .ok()
    });
    match result {
        Ok(Some(v)) if v == [4.0] => Ok(()),
        Ok(v) => {
            anyhow::bail!("the {backend} device computed a wrong test sum: {v:?} (expected [4.0])")
        }
        Err(_) => anyhow::bail!(
            "the {backend} device could not start (see the message above): {}",
            backend.driver_hint()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compiled_backends_and_explains_the_rest() {
        assert_eq!("cpu".parse::<Backend>().unwrap(), Backend::Cpu);
        assert_eq!("CPU".parse::<Backend>().unwrap(), Backend::Cpu);
        for b in Backend::compiled() {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let err = "wgpu".parse::<Backend>().unwrap_err();
            assert!(err.contains("--features wgpu"), "{err}");
        }
        #[cfg(not(feature = "cuda"))]
        {
            let err = "cuda".parse::<Backend>().unwrap_err();
            assert!(err.contains("--features cuda"), "{err}");
        }
        let err = "tpu".parse::<Backend>().unwrap_err();
        assert!(
            err.contains("`tpu`") && err.contains("cpu, wgpu, cuda"),
            "{err}"
        );
    }
}
