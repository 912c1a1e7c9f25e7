//! Patchbay's wasm-bindgen layer: the page's Web Worker calls these to pick a backend, load a
//! checkpoint from bytes, run GPT-2 and patching experiments, and draw their grids. Downloading,
//! progress and Cache Storage live in the worker's JavaScript (`web/worker.js`); the model is
//! `patchbay-model`'s and every experiment, grid, label and colour limit `patchbay-patching`'s:
//! the page keeps no copy of them.

mod catalog;
mod circuit;
mod device;
mod experiment;
mod fit;
mod grids;
mod session;
mod view;

pub use catalog::{catalog, describe_detect};
pub use circuit::CircuitView;
pub use device::init_backend;
pub use experiment::parse_spec;
pub use fit::hub_fit;
pub use grids::render_heatmap;
pub use session::{ModelStream, Session, infer_hub_config, safetensors_start};
pub use view::{Shown, compare_results};

use wasm_bindgen::prelude::*;

/// Turns Rust panics into console errors with a message instead of `unreachable`, and leaves
/// the message in the worker's global `patchbayPanic`: the trap that follows a panic leaves the
/// wasm instance unusable, and the worker reports the message as an internal error before the
/// page replaces it (`web/worker.js`).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = js_sys::Reflect::set(
            &js_sys::global(),
            &JsValue::from_str("patchbayPanic"),
            &JsValue::from_str(&info.to_string()),
        );
    }));
}
