//! `patchbay init --shape gpt2-small --seed 0 --out DIR`: a seeded GPT-2 of one of the family's
//! shapes, with GPT-2's own initialisation, written as a Hub checkpoint (config.json,
//! model.safetensors in float32, and GPT-2's tokenizer.json, which the binary carries): a model
//! of the real size for benchmarks and loading tests, with no download.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use patchbay_model::burn::prelude::Device;
use patchbay_model::{Gpt2Config, SaveDtype};

use crate::files::Exit;

/// GPT-2's tokenizer (the Hub's tokenizer.json), carried by the binary.
const TOKENIZER: &[u8] = include_bytes!("../../../tests/fixtures/models/tiny/tokenizer.json");

#[derive(Args)]
pub struct InitArgs {
    /// The shape to make.
    #[arg(long, value_enum)]
    shape: Shape,
    /// Seeds the weights: the same seed gives the same checkpoint.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for config.json, model.safetensors and tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

/// The shapes of OpenAI's GPT-2 checkpoints.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shape {
    #[value(name = "gpt2-small")]
    Small,
    #[value(name = "gpt2-medium")]
    Medium,
    #[value(name = "gpt2-large")]
    Large,
    #[value(name = "gpt2-xl")]
    Xl,
}

impl Shape {
    /// Layers, heads, width: the Hub configs of openai-community/gpt2, -medium, -large, -xl.
    pub fn config(self) -> Gpt2Config {
        let (n_layer, n_head, n_embd) = match self {
            Shape::Small => (12, 12, 768),
            Shape::Medium => (24, 16, 1024),
            Shape::Large => (36, 20, 1280),
            Shape::Xl => (48, 25, 1600),
        };
        Gpt2Config::new(n_layer, n_head, n_embd, 1024)
    }
}

pub fn run(args: InitArgs) -> Result<(), Exit> {
    let config = args.shape.config();
    let model = config.init(&Device::flex(), args.seed);
    model
        .save_dir(&args.out, SaveDtype::F32)
        .map_err(|e| e.to_string())?;
    let path = args.out.join("tokenizer.json");
    std::fs::write(&path, TOKENIZER).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "wrote a seeded {} ({} layers × {} heads, width {}) to {}",
        args.shape
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string()),
        config.n_layer,
        config.n_head,
        config.n_embd,
        args.out.display()
    );
    Ok(())
}
