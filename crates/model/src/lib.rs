//! GPT-2 in burn, built for activation patching.
//!
//! - [`Gpt2`]: the model, loaded from a Hub-layout checkpoint by [`load_gpt2`], runnable on the
//!   CPU or a GPU ([`backend`]) and from any layer.
//! - [`HookPoint`]: every activation, named as TransformerLens names it.
//! - [`ActivationCache`] records the hooks asked for; [`Intervention`]s edit them, one edit per
//!   variant of a batch.
//! - [`Gpt2Tokenizer`]: GPT-2's tokenizer via the `tokenizers` crate.
//! - [`Gpt2Config::init`]: GPT-2's seeded initialisation, for training; [`Gpt2::to_safetensors`]
//!   writes a model back as a Hub checkpoint.

pub mod backend;
mod cache;
mod config;
mod error;
mod gpt2;
mod hook;
mod init;
mod intervention;
mod loader;
pub mod logits;
mod readback;
mod save;
mod tokenizer;

pub use cache::{Activation, ActivationCache};
pub use config::Gpt2Config;
pub use error::ModelError;
pub use gpt2::{Attention, Block, Gpt2, LogitsAt, Mlp, Prefix, SplitEmbedding};
pub use hook::{HookLayout, HookPoint};
pub use intervention::{EditOp, Hooks, Intervention, Selection};
#[cfg(not(target_family = "wasm"))]
pub use loader::load_gpt2_dir;
pub use loader::{infer_config, load_gpt2};
pub use readback::read_f32;
pub use save::SaveDtype;
pub use tokenizer::{END_OF_TEXT, Gpt2Tokenizer};

/// burn, re-exported so that dependents use the same version and features.
pub use burn;
