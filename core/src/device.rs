//! Which burn backend runs the model: the CPU (burn's `flex` backend) or wgpu (WebGPU in browsers,
//! Vulkan/Metal/DX12 natively).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A backend choice, as `--device cpu|wgpu` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Cpu,
    Wgpu,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        })
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            other => Err(format!("unknown device `{other}`; expected cpu or wgpu")),
        }
    }
}

/// burn's CPU backend.
#[cfg(feature = "flex")]
pub fn cpu() -> Device {
    Device::flex()
}

/// The default wgpu adapter, initialised synchronously (native only).
#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
pub fn wgpu() -> Result<Device> {
    Device::wgpu_options().init().map_err(|e| Error::Backend { backend: "wgpu", reason: e.to_string() })
}

/// The default wgpu adapter, initialised asynchronously (browsers: WebGPU).
#[cfg(feature = "wgpu")]
pub async fn wgpu_async() -> Result<Device> {
    Device::wgpu_options().init_async().await.map_err(|e| Error::Backend { backend: "wgpu", reason: e.to_string() })
}
