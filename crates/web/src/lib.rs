//! Patchbay's wasm-bindgen layer: the page's Web Worker calls these to pick a backend, load a
//! checkpoint from bytes, run GPT-2 and patching experiments, and draw their grids. Downloading,
//! progress and Cache Storage live in the worker's JavaScript (`web/worker.js`); the model is
//! `patchbay-model`'s and every experiment, grid and label `patchbay-patching`'s.

mod device;
mod experiment;
mod grids;
mod session;

pub use device::init_backend;
pub use experiment::parse_spec;
pub use grids::{compare_grids, render_heatmap, results_csv, results_title, transformer_lens_script};
pub use session::{Session, infer_hub_config};

use wasm_bindgen::prelude::*;

/// Turns Rust panics into console errors with a message instead of `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
