//! Opening Burn's wgpu device on a chosen graphics API, with an error instead of a panic when the
//! machine has no adapter for it, and the adapter's own description (name, API, driver) for logs.
//!
//! `Auto` takes the best API the machine has (Vulkan wherever it exists); a pinned API never falls
//! back to another one. That is what CI needs: its wgpu tests pin Vulkan, so a machine without
//! Mesa lavapipe fails them instead of passing quietly on OpenGL.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuBackend;

/// A graphics API for the wgpu backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GraphicsApi {
    /// The best one the machine has: Vulkan, else Metal, DX12, OpenGL.
    Auto,
    /// Vulkan (on a machine without a GPU: Mesa's lavapipe).
    Vulkan,
    /// Apple's Metal.
    Metal,
    /// DirectX 12.
    Dx12,
    /// OpenGL (ES) through EGL.
    Gl,
}

impl GraphicsApi {
    /// Every API, in the order `--help` lists them.
    pub const ALL: [GraphicsApi; 5] = [
        GraphicsApi::Auto,
        GraphicsApi::Vulkan,
        GraphicsApi::Metal,
        GraphicsApi::Dx12,
        GraphicsApi::Gl,
    ];

    /// The name the CLI takes.
    pub fn name(self) -> &'static str {
        match self {
            GraphicsApi::Auto => "auto",
            GraphicsApi::Vulkan => "vulkan",
            GraphicsApi::Metal => "metal",
            GraphicsApi::Dx12 => "dx12",
            GraphicsApi::Gl => "gl",
        }
    }

    fn burn(self) -> WgpuBackend {
        match self {
            GraphicsApi::Auto => WgpuBackend::Auto,
            GraphicsApi::Vulkan => WgpuBackend::Vulkan,
            GraphicsApi::Metal => WgpuBackend::Metal,
            GraphicsApi::Dx12 => WgpuBackend::Dx12,
            GraphicsApi::Gl => WgpuBackend::Gl,
        }
    }
}

impl fmt::Display for GraphicsApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A graphics API name that is not one of [`GraphicsApi::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown graphics API `{0}`; valid choices: auto, vulkan, metal, dx12, gl")]
pub struct UnknownGraphicsApi(pub String);

impl FromStr for GraphicsApi {
    type Err = UnknownGraphicsApi;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        GraphicsApi::ALL
            .into_iter()
            .find(|api| api.name() == lower)
            .ok_or_else(|| UnknownGraphicsApi(s.to_string()))
    }
}

/// The machine has no adapter for the API, or the adapter would not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no wgpu device on graphics API `{api}`: {message}")]
pub struct WgpuDeviceError {
    /// The API asked for.
    pub api: GraphicsApi,
    /// What wgpu said.
    pub message: String,
}

/// An opened wgpu device and the adapter under it.
#[derive(Clone, Debug)]
pub struct WgpuAdapter {
    /// The Burn device (cloned into models and tensors).
    pub device: Device,
    /// The adapter's name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// The graphics API it runs on (`vulkan`, `gl`, ...), which `Auto` settled on.
    pub api: String,
    /// The driver and its version (`llvmpipe`, `Mesa 22.3.6 (LLVM 15.0.6)`).
    pub driver: String,
    /// A CPU (software) adapter, such as lavapipe.
    pub software: bool,
}

impl fmt::Display for WgpuAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.name, self.api)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        if self.software {
            f.write_str(" (software)")?;
        }
        Ok(())
    }
}

/// Devices opened so far, one per API asked for: Burn registers a runtime once per selector, so
/// a second `init` would fail, and every caller in a process must share the first one's device.
static OPENED: Mutex<Vec<(GraphicsApi, Result<WgpuAdapter, WgpuDeviceError>)>> =
    Mutex::new(Vec::new());

/// The default wgpu adapter on `api`, opened once per process.
pub fn open_wgpu(api: GraphicsApi) -> Result<WgpuAdapter, WgpuDeviceError> {
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, result)) = opened.iter().find(|(a, _)| *a == api) {
        return result.clone();
    }
    let result = Device::wgpu_options()
        .graphics_api(api.burn())
        .init_with_setup()
        .map(|(device, setup)| {
            let info = setup.adapter.get_info();
            let driver = [info.driver.as_str(), info.driver_info.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            WgpuAdapter {
                device,
                name: info.name,
                api: info.backend.to_str().to_string(),
                driver,
                software: info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu,
            }
        })
        .map_err(|e| WgpuDeviceError {
            api,
            message: e.to_string(),
        });
    opened.push((api, result.clone()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_api_and_lists_them_on_a_bad_name() {
        for api in GraphicsApi::ALL {
            assert_eq!(api.name().parse::<GraphicsApi>().unwrap(), api);
        }
        assert_eq!(
            "Vulkan".parse::<GraphicsApi>().unwrap(),
            GraphicsApi::Vulkan
        );
        let err = "opengl".parse::<GraphicsApi>().unwrap_err().to_string();
        assert!(
            err.contains("`opengl`") && err.contains("vulkan, metal, dx12, gl"),
            "{err}"
        );
    }
}
