//! GPT-2 in burn, built for activation patching.
//!
//! - [`Gpt2`]: the model, loaded from a Hub-layout checkpoint by [`load_gpt2`] (or a folder,
//!   with its tokenizer, by `load_dir`), runnable on the CPU or a GPU ([`backend`]) and from
//!   any layer. Every size a file may set is bounded by a `MAX_*` constant.
//! - [`HookPoint`]: every activation, named as TransformerLens names it.
//! - [`ActivationCache`] records the hooks asked for; [`Intervention`]s edit them, one edit per
//!   variant of a batch.
//! - [`GPT2_FAMILY`]: OpenAI's four GPT-2 checkpoints on the Hub; [`LoadFootprint`]: the memory
//!   a load holds.
//! - [`Gpt2Tokenizer`]: GPT-2's tokenizer via the `tokenizers` crate.
//! - [`Gpt2Config::init`]: GPT-2's seeded initialisation, for training; [`Gpt2::to_safetensors`]
//!   writes a model back as a Hub checkpoint.

pub mod backend;
mod cache;
mod config;
mod error;
mod family;
#[cfg(not(target_family = "wasm"))]
mod files;
mod footprint;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod gpt2;
mod hook;
mod hub;
mod init;
mod intervention;
mod loader;
pub mod logits;
mod readback;
mod save;
mod stream;
mod tokenizer;

pub use cache::{Activation, ActivationCache};
pub use config::{
    Gpt2Config, MAX_CONFIG_BYTES, MAX_N_EMBD, MAX_N_HEAD, MAX_N_INNER, MAX_N_LAYER, MAX_N_POSITIONS,
    MAX_VOCAB_SIZE,
};
pub use error::ModelError;
pub use family::{GPT2_FAMILY, HubModel};
pub use footprint::LoadFootprint;
pub use gpt2::{Attention, Block, Entry, Gpt2, LogitsAt, Mlp, Prefix, SplitEmbedding, gelu_new};
pub use hook::{HookLayout, HookPoint};
pub use intervention::{EditOp, Hooks, Intervention, Selection};
pub use loader::{
    MAX_SAFETENSORS_HEADER_BYTES, header_length as safetensors_header_length, infer_config, load_gpt2,
};
#[cfg(not(target_family = "wasm"))]
pub use loader::{load_dir, load_gpt2_dir};
pub use readback::read_f32;
pub use save::SaveDtype;
pub use stream::StreamLoader;
pub use tokenizer::{
    END_OF_TEXT, Gpt2Tokenizer, MAX_ADDED_TOKEN_BYTES, MAX_ADDED_TOKENS, MAX_PROMPT_BYTES,
    MAX_TOKENIZER_FILE_BYTES,
};

/// burn, re-exported so that dependents use the same version and features.
pub use burn;
