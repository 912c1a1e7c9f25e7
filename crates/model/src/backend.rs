//! Where the model runs: burn's pure-Rust CPU backend (flex), or its wgpu backend (WebGPU in the
//! browser, Vulkan or Metal natively). A GPU device is created from the adapter's own features
//! and limits, so that kernels the compiler specializes for the adapter (subgroups, for one)
//! are accepted by the device that runs them.

use burn::prelude::*;

#[cfg(any(feature = "wgpu", feature = "webgpu"))]
use crate::ModelError;

/// A device and what the page or CLI should say about it.
#[derive(Clone, Debug)]
pub struct Backend {
    pub device: Device,
    /// `"cpu"` or `"wgpu"`.
    pub kind: &'static str,
    /// A human description, such as `WebGPU on google swiftshader`.
    pub description: String,
    /// The largest storage-buffer binding, which bounds every tensor (`None`: no limit).
    pub max_binding_bytes: Option<u64>,
}

/// burn's pure-Rust CPU backend.
pub fn cpu() -> Backend {
    Backend {
        device: Device::flex(),
        kind: "cpu",
        description: "the CPU (burn flex, pure Rust)".into(),
        max_binding_bytes: None,
    }
}

/// The best GPU adapter through wgpu. `binding_cap` lowers the storage-binding limit below the
/// adapter's (tests use it to exercise the split embedding).
#[cfg(any(feature = "wgpu", feature = "webgpu"))]
pub async fn gpu(binding_cap: Option<u64>) -> Result<Backend, ModelError> {
    use burn::tensor::wgpu::{WgpuSetup, wgpu};

    let fail = |what: &str, e: &dyn std::fmt::Display| ModelError::Backend(format!("{what}: {e}"));
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    // Vulkan, Metal, DX12 and the browser's WebGPU; not OpenGL.
    descriptor.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| fail("no GPU adapter", &e))?;
    let info = adapter.get_info();
    let mut limits = adapter.limits();
    if let Some(cap) = binding_cap {
        limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        limits.max_buffer_size = limits.max_buffer_size.min(cap);
    }
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("patchbay"),
            required_features: adapter
                .features()
                .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            ..Default::default()
        })
        .await
        .map_err(|e| fail("the GPU refused a device", &e))?;
    let setup = WgpuSetup {
        instance,
        adapter,
        device,
        queue,
        backend: info.backend,
    };
    let device = Device::wgpu_options()
        .setup(setup)
        .init()
        .map_err(|e| fail("burn could not use the GPU", &e))?;
    let api = if info.backend == wgpu::Backend::BrowserWebGpu {
        "WebGPU".to_string()
    } else {
        format!("{:?}", info.backend)
    };
    let name = info.name.clone();
    Ok(Backend {
        device,
        kind: "wgpu",
        description: format!(
            "{api} on {}",
            if name.is_empty() {
                "an unnamed adapter".into()
            } else {
                name
            }
        ),
        max_binding_bytes: Some(limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)),
    })
}
