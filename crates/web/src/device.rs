//! The page's backend, chosen once per worker: WebGPU when the browser gives an adapter,
//! otherwise burn's CPU backend, and the reason for falling back.

use std::cell::RefCell;

use patchbay_model::backend::{self, Backend};
use serde::Serialize;
use wasm_bindgen::prelude::*;

thread_local! {
    static BACKEND: RefCell<Option<Backend>> = const { RefCell::new(None) };
}

/// What the page shows about the backend.
#[derive(Serialize)]
struct BackendInfo {
    kind: &'static str,
    description: String,
    max_binding_bytes: Option<u64>,
    /// Why the CPU runs instead of WebGPU, when it does.
    fallback_reason: Option<String>,
}

/// Picks the backend: WebGPU when `use_gpu` and an adapter can be had, else the CPU.
/// `binding_cap` lowers the storage-binding limit (tests of the split embedding).
/// Calling it again returns the backend already chosen: a WebGPU runtime is created once.
#[wasm_bindgen(js_name = initBackend)]
pub async fn init_backend(use_gpu: bool, binding_cap: Option<f64>) -> Result<JsValue, JsError> {
    if let Some(existing) = current() {
        return info(&existing, None);
    }
    let (chosen, reason) = if use_gpu {
        match backend::gpu(binding_cap.map(|b| b as u64)).await {
            Ok(gpu) => (gpu, None),
            Err(e) => (backend::cpu(), Some(format!("WebGPU could not start ({e})"))),
        }
    } else {
        (
            backend::cpu(),
            Some("this browser offers no WebGPU adapter".to_string()),
        )
    };
    BACKEND.with(|b| *b.borrow_mut() = Some(chosen.clone()));
    info(&chosen, reason)
}

/// The backend chosen by [`init_backend`].
pub(crate) fn current() -> Option<Backend> {
    BACKEND.with(|b| b.borrow().clone())
}

fn info(backend: &Backend, fallback_reason: Option<String>) -> Result<JsValue, JsError> {
    let info = BackendInfo {
        kind: backend.kind,
        description: backend.description.clone(),
        max_binding_bytes: backend.max_binding_bytes,
        fallback_reason,
    };
    serde_wasm_bindgen::to_value(&info).map_err(|e| JsError::new(&e.to_string()))
}
