//! Whether this browser can hold a GPT-2 of the family before its download starts: the memory
//! the load holds ([`LoadFootprint`]) against what the page reads from the browser (the
//! backend's binding limit, `navigator.deviceMemory`) and WebAssembly's own ceiling; and how
//! many Web Workers, each holding the model, may share a run on the CPU ([`pool_size`]).
//!
//! The worker streams the file into WebAssembly as it downloads (`ModelStream`), so JavaScript
//! holds one chunk at a time, WebAssembly memory (which never shrinks)
//! [`LoadFootprint::host_bytes`], and the GPU the parameters.

use patchbay_model::{HubModel, LoadFootprint};
use patchbay_patching::sweep::share::MAX_WORKERS;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::device;

/// wasm32's memory ceiling: 65,536 pages of 64 KiB.
pub const WASM32_MAX_BYTES: u64 = 1 << 32;

/// The largest value `navigator.deviceMemory` reports (Chromium caps it at 8 GiB).
const DEVICE_MEMORY_CAP_GIB: f64 = 8.0;

/// What the page knows of this device.
#[derive(Clone, Copy, Debug)]
pub struct DeviceFacts {
    pub on_gpu: bool,
    /// The backend's largest storage binding and buffer (`None` on the CPU).
    pub max_binding_bytes: Option<u64>,
    /// `navigator.deviceMemory`, in GiB, rounded to a power of two (`None`: not given).
    pub device_memory_gib: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fits,
    /// Near what the device reports: it may load, or the tab may run out of memory.
    MayNotFit,
    /// Certain not to load: refused before the download.
    DoesNotFit,
}

/// What a load needs and whether this device holds it.
#[derive(Debug, Serialize)]
pub struct Fit {
    /// WebAssembly memory at the load's peak.
    pub wasm_bytes: u64,
    /// The tab's memory at the peak: WebAssembly's (JavaScript holds a chunk of the download).
    pub tab_bytes: u64,
    /// GPU memory: the parameters (0 on the CPU).
    pub gpu_bytes: u64,
    pub verdict: Verdict,
    /// One sentence on what it needs and what this device has.
    pub message: String,
}

/// Bytes as the page writes them: "1.52 GB".
fn gb(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}

/// Whether `model`, whose `model.safetensors` has `file_bytes` bytes, fits `device`.
pub fn fit(model: &HubModel, file_bytes: u64, device: &DeviceFacts) -> Fit {
    let footprint = LoadFootprint::new(&model.config(), file_bytes);
    let wasm_bytes = footprint.host_bytes();
    let tab_bytes = wasm_bytes;
    let gpu_bytes = footprint.device_bytes(device.on_gpu);
    let on = if device.on_gpu { "on WebGPU" } else { "on the CPU" };
    let name = model.label;
    let needs = if device.on_gpu {
        format!(
            "{name} needs {} of WebAssembly memory and {} on the GPU to load {on}",
            gb(wasm_bytes),
            gb(gpu_bytes)
        )
    } else {
        format!(
            "{name} needs {} of WebAssembly memory to load {on}",
            gb(wasm_bytes)
        )
    };
    let (verdict, why) = if wasm_bytes > WASM32_MAX_BYTES {
        (
            Verdict::DoesNotFit,
            format!(
                "its {} of float32 parameters are read into WebAssembly memory, which holds at most {} (4 GiB) in any browser",
                gb(footprint.parameters),
                gb(WASM32_MAX_BYTES)
            ),
        )
    } else if let Some(limit) = device.max_binding_bytes.filter(|&l| footprint.largest_tensor > l) {
        (
            Verdict::DoesNotFit,
            format!(
                "its largest weight matrix has {} bytes and this GPU binds at most {limit} bytes at once",
                footprint.largest_tensor
            ),
        )
    } else {
        memory_verdict(tab_bytes, device.device_memory_gib)
    };
    let message = match verdict {
        Verdict::Fits => format!("{needs}; {why}."),
        Verdict::MayNotFit => format!("{needs}; {why}: it may run out of memory."),
        Verdict::DoesNotFit => format!("{needs}; {why}, so it cannot load here."),
    };
    Fit {
        wasm_bytes,
        tab_bytes,
        gpu_bytes,
        verdict,
        message,
    }
}

/// Whether the family's model `id`, whose `model.safetensors` has `file_bytes` bytes (the Hub's
/// headers, or the catalog's size), fits this worker's backend and a device that reports
/// `device_memory` GiB (`navigator.deviceMemory`).
#[wasm_bindgen(js_name = hubFit)]
pub fn hub_fit(id: &str, file_bytes: f64, device_memory: Option<f64>) -> Result<String, JsError> {
    let model = HubModel::by_id(id)
        .ok_or_else(|| JsError::new(&format!("{id} is not one of the GPT-2 family on the Hub")))?;
    let backend = device::current().ok_or_else(|| JsError::new("initBackend must run before hubFit"))?;
    if !(file_bytes.is_finite() && file_bytes >= 0.0) {
        return Err(JsError::new(&format!("{file_bytes} is not a file size")));
    }
    let facts = DeviceFacts {
        on_gpu: backend.kind == "wgpu",
        max_binding_bytes: backend.max_binding_bytes,
        device_memory_gib: device_memory,
    };
    serde_json::to_string(&fit(model, file_bytes as u64, &facts)).map_err(|e| JsError::new(&e.to_string()))
}

/// The tab's peak against `navigator.deviceMemory`. The browser rounds the device's memory to
/// a power of two and caps it, so a report of `r` below the cap means less than `2r`.
fn memory_verdict(tab_bytes: u64, device_memory_gib: Option<f64>) -> (Verdict, String) {
    let need = format!("the tab holds {} at the peak", gb(tab_bytes));
    let Some(r) = device_memory_gib.filter(|r| r.is_finite() && *r > 0.0) else {
        return (
            Verdict::Fits,
            format!("{need}, and this browser does not say how much memory the device has"),
        );
    };
    let reported = (r * (1u64 << 30) as f64) as u64;
    let says = format!("this device reports {r} GiB (navigator.deviceMemory)");
    if r < DEVICE_MEMORY_CAP_GIB && tab_bytes as f64 >= 2.0 * reported as f64 {
        (
            Verdict::DoesNotFit,
            format!("{need} and {says}, less than {} GiB", 2.0 * r),
        )
    } else if tab_bytes > reported {
        (Verdict::MayNotFit, format!("{need} and {says}"))
    } else {
        (Verdict::Fits, format!("{need} and {says}"))
    }
}

/// The share of the device's memory a pool of workers may hold: a quarter, so that the tab, the
/// browser and the system keep the rest.
const POOL_MEMORY_SHARE: f64 = 0.25;

/// The device memory assumed where the browser does not say (Firefox, Safari): 4 GiB.
const UNREPORTED_DEVICE_MEMORY_GIB: f64 = 4.0;

/// What one worker's run holds beside the model: its caches and batched activations.
const RUN_BYTES: u64 = 128 << 20;

/// How many Web Workers share each run on the CPU: one per core
/// (`navigator.hardwareConcurrency`), at most [`MAX_WORKERS`], as many as a quarter of the
/// device's memory holds when each keeps a model of `host_bytes` and a run's working memory.
/// (On WebGPU the lead runs alone: the GPU already runs every batch at once.)
pub fn pool_size(cores: usize, device_memory_gib: Option<f64>, host_bytes: u64) -> usize {
    let gib = device_memory_gib
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(UNREPORTED_DEVICE_MEMORY_GIB);
    let budget = gib * POOL_MEMORY_SHARE * (1u64 << 30) as f64;
    let by_memory = (budget / (host_bytes + RUN_BYTES) as f64) as usize;
    cores.min(by_memory).clamp(1, MAX_WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_model::GPT2_FAMILY;

    const CPU: DeviceFacts = DeviceFacts {
        on_gpu: false,
        max_binding_bytes: None,
        device_memory_gib: Some(8.0),
    };

    #[test]
    fn small_fits_and_xl_never_fits_in_wasm32() {
        let [small, medium, large, xl] = GPT2_FAMILY;
        let small_fit = fit(&small, small.weights_bytes(), &CPU);
        assert_eq!(small_fit.verdict, Verdict::Fits, "{}", small_fit.message);
        // The float32 weights and the embedding matrix once more: never the file.
        assert_eq!(small_fit.wasm_bytes, 497_759_232 + 154_389_504);
        assert_eq!(small_fit.tab_bytes, small_fit.wasm_bytes);
        let medium_fit = fit(&medium, medium.weights_bytes(), &CPU);
        assert_eq!(medium_fit.verdict, Verdict::Fits, "{}", medium_fit.message);
        // Large's 3.35 GB fits wasm32, on the CPU and on WebGPU.
        let gpu = DeviceFacts {
            on_gpu: true,
            max_binding_bytes: Some(1 << 30),
            ..CPU
        };
        for device in [CPU, gpu] {
            assert_eq!(fit(&large, large.weights_bytes(), &device).verdict, Verdict::Fits);
        }
        let xl_cpu = fit(&xl, xl.weights_bytes(), &CPU);
        assert!(
            xl_cpu.message.starts_with("GPT-2 XL needs 6.55 GB of WebAssembly memory to load on the CPU; its 6.23 GB of float32 parameters are read into WebAssembly memory, which holds at most 4.29 GB (4 GiB)"),
            "{}",
            xl_cpu.message
        );
        for device in [CPU, gpu] {
            assert_eq!(fit(&xl, xl.weights_bytes(), &device).verdict, Verdict::DoesNotFit);
        }
    }

    #[test]
    fn pools_fit_the_cores_and_a_quarter_of_the_memory() {
        let [small, medium, ..] = GPT2_FAMILY;
        let host = |m: &HubModel| LoadFootprint::new(&m.config(), m.weights_bytes()).host_bytes();
        // GPT-2 small holds 0.65 GB per worker: 2 in a quarter of 8 GiB; medium's 1.63 GB: 1.
        assert_eq!(pool_size(8, Some(8.0), host(&small)), 2);
        assert_eq!(pool_size(8, Some(8.0), host(&medium)), 1);
        assert_eq!(pool_size(8, Some(2.0), host(&small)), 1);
        // The shipped model (8 MB): the cores decide, up to 8; unreported memory counts as 4 GiB.
        let shipped = 8 << 20;
        assert_eq!(pool_size(4, Some(8.0), shipped), 4);
        assert_eq!(pool_size(32, Some(8.0), shipped), MAX_WORKERS);
        assert_eq!(pool_size(32, None, shipped), 7);
        assert_eq!(pool_size(0, Some(f64::NAN), shipped), 1);
    }

    #[test]
    fn device_memory_and_binding_limits_refuse() {
        let [small, medium, large, _] = GPT2_FAMILY;
        // Chromium's 1 GiB report: under 2 GiB. Large's tab peak is 3.35 GB.
        let one = DeviceFacts {
            device_memory_gib: Some(1.0),
            ..CPU
        };
        let refused = fit(&large, large.weights_bytes(), &one);
        assert_eq!(refused.verdict, Verdict::DoesNotFit);
        assert_eq!(refused.tab_bytes, 3_096_120_320 + 257_315_840);
        assert!(
            refused.message.ends_with("the tab holds 3.35 GB at the peak and this device reports 1 GiB (navigator.deviceMemory), less than 2 GiB, so it cannot load here."),
            "{}",
            refused.message
        );
        // Medium's 1.63 GB lies between 1 and 2 GiB: it may load; small's 0.65 GB fits.
        assert_eq!(
            fit(&medium, medium.weights_bytes(), &one).verdict,
            Verdict::MayNotFit
        );
        assert_eq!(fit(&small, small.weights_bytes(), &one).verdict, Verdict::Fits);
        // At the cap, 8 GiB means at least 8: never refused on memory alone.
        let capped = fit(&medium, medium.weights_bytes(), &CPU);
        assert_eq!(capped.verdict, Verdict::Fits);
        // Without a report, only wasm32 and the GPU's limits decide.
        let unknown = DeviceFacts {
            device_memory_gib: None,
            ..CPU
        };
        assert!(
            fit(&small, small.weights_bytes(), &unknown)
                .message
                .contains("does not say how much memory")
        );
        // A GPU that binds 16 MiB: large's 1280 × 5120 MLP matrix (26 MB) cannot be bound.
        let small_gpu = DeviceFacts {
            on_gpu: true,
            max_binding_bytes: Some(16 << 20),
            device_memory_gib: None,
        };
        let bound = fit(&large, large.weights_bytes(), &small_gpu);
        assert_eq!(bound.verdict, Verdict::DoesNotFit);
        assert!(
            bound.message.contains(
                "its largest weight matrix has 26214400 bytes and this GPU binds at most 16777216 bytes"
            ),
            "{}",
            bound.message
        );
        assert_eq!(
            fit(&small, small.weights_bytes(), &small_gpu).verdict,
            Verdict::Fits
        );
    }
}
