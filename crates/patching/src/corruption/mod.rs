//! Corruption: how the corrupted run differs from the clean one.
//!
//! - [`str`] (symmetric token replacement): a corrupted prompt of the same token length,
//!   position by position, with its own answer.
//! - [`gn`] (Gaussian noise, ROME's causal tracing): N(0, ν²) added to the token embeddings at
//!   chosen positions, by default the positions STR changes.

pub mod gn;
pub mod str;

use patchbay_model::burn::prelude::Tensor;

/// How a prompt's corrupted run is made.
pub enum Corrupted {
    /// STR: other tokens.
    Tokens(Vec<u32>),
    /// GN: the clean tokens plus `noise` (`[samples, len, d_model]`) at `hook_embed`.
    Noise { noise: Tensor<3> },
}
