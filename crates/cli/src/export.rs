//! `patchbay export [--to tl3|tl4|nnsight] SPEC.json`: prints a Python script that reproduces
//! the experiment in TransformerLens 3.9 (the default), TransformerLens 4.x or nnsight (here, or
//! on NDIF with `REMOTE = True`), with a generated dataset's prompts written out.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use patchbay_model::load_dir;
use patchbay_patching::export::Library;
use patchbay_patching::prepare;

use crate::BackendChoice;
use crate::files::{Exit, print, read_spec};
use crate::run::model_dir;

/// The library the script is for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum To {
    /// TransformerLens 3.9 (HookedTransformer).
    Tl3,
    /// TransformerLens 4.x (TransformerBridge).
    Tl4,
    /// nnsight, locally or on NDIF.
    Nnsight,
}

impl From<To> for Library {
    fn from(to: To) -> Library {
        match to {
            To::Tl3 => Library::TransformerLens3,
            To::Tl4 => Library::TransformerLens4,
            To::Nnsight => Library::Nnsight,
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    spec: PathBuf,
    #[arg(long, value_enum, default_value = "tl3")]
    to: To,
    /// The model's folder, when the spec's model is not on disk where it says (the model is
    /// loaded to expand a generated dataset and check the spec).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
}

pub fn run(args: ExportArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    let backend = args.backend.create()?;
    let (model, tokenizer) =
        load_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).map_err(|e| e.to_string())?;
    let script = Library::from(args.to).script(&prepared.spec);
    print(script.trim_end())
}
