//! Sweeps: every patch of a plan, run with as little work as possible.
//!
//! - [`plan`]: the grid a target fills and the patch of each cell;
//! - [`batched`]: exact activation patching, batched, reusing what a patch cannot change;
//! - [`window`]: sliding windows of layers (ROME);
//! - [`path`]: path patching from each sender head (Wang et al.);
//! - [`attribution`]: attribution patching, the gradient approximation (needs autodiff).

#[cfg(feature = "autodiff")]
pub mod attribution;
pub mod batched;
pub mod path;
pub mod plan;
pub mod window;
