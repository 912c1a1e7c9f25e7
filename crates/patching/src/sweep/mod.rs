//! Sweeps: every patch of a plan, run with as little work as possible.
//!
//! - [`plan`]: the grid a target fills and the patch of each cell;
//! - [`batched`]: exact activation patching, batched, reusing what a patch cannot change;
//! - [`window`]: sliding windows of layers (ROME);
//! - [`path`]: path patching from each sender head (Wang et al.);
//! - [`share`]: a sweep shared by workers that each hold the model;
//! - [`attribution`]: attribution patching, the gradient approximation (needs autodiff).

#[cfg(feature = "autodiff")]
pub mod attribution;
pub mod batched;
pub mod path;
pub mod plan;
pub mod share;
pub mod window;
