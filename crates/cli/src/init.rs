//! `patchbay init --shape gpt2-small --seed 0 --out DIR`: a seeded GPT-2 of one of the family's
//! shapes, with GPT-2's own initialisation, written as a Hub checkpoint (config.json,
//! model.safetensors in float32, and GPT-2's tokenizer.json, which the binary carries): a model
//! of the real size for benchmarks and loading tests, with no download.

use std::path::PathBuf;

use clap::Args;
use clap::builder::PossibleValuesParser;
use patchbay_model::burn::prelude::Device;
use patchbay_model::{GPT2_FAMILY, SaveDtype};

use crate::files::Exit;

/// GPT-2's tokenizer (the Hub's tokenizer.json), carried by the binary.
const TOKENIZER: &[u8] = include_bytes!("../../../tests/fixtures/models/tiny/tokenizer.json");

#[derive(Args)]
pub struct InitArgs {
    /// The shape to make: one of the GPT-2 family's (patchbay_model::GPT2_FAMILY).
    #[arg(long, value_parser = PossibleValuesParser::new(GPT2_FAMILY.map(|m| m.name)))]
    shape: String,
    /// Seeds the weights: the same seed gives the same checkpoint.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for config.json, model.safetensors and tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: InitArgs) -> Result<(), Exit> {
    let shape = GPT2_FAMILY
        .iter()
        .find(|m| m.name == args.shape)
        .ok_or_else(|| format!("no GPT-2 shape named {}", args.shape))?;
    let config = shape.config();
    let model = config.init(&Device::flex(), args.seed);
    model
        .save_dir(&args.out, SaveDtype::F32)
        .map_err(|e| e.to_string())?;
    let path = args.out.join("tokenizer.json");
    std::fs::write(&path, TOKENIZER).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "wrote a seeded {} ({} layers × {} heads, width {}) to {}",
        shape.name,
        config.n_layer,
        config.n_head,
        config.n_embd,
        args.out.display()
    );
    Ok(())
}
