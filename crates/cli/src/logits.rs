//! `patchbay logits` and `patchbay bench-forward`: one forward pass on a Hub-layout checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use patchbay_model::backend::Backend;
use patchbay_model::logits::top_k;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, LogitsAt, load_dir};
use serde_json::json;

use crate::BackendChoice;
use crate::files::{Exit, print};

/// What both commands take: a checkpoint, a prompt, a backend.
#[derive(Args)]
struct ForwardArgs {
    /// Folder with config.json, model.safetensors and tokenizer files (Hub layout).
    #[arg(long)]
    model: PathBuf,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Prepend <|endoftext|> as TransformerLens does by default.
    #[arg(long)]
    prepend_bos: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
}

impl ForwardArgs {
    /// The model, the prompt's tokens, the tokenizer and the backend.
    fn load(&self) -> Result<(Gpt2, Vec<u32>, Gpt2Tokenizer, Backend), String> {
        let backend = self.backend.create()?;
        let (gpt2, tokenizer) =
            load_dir(&self.model, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
        let tokens = tokenizer
            .encode(&self.prompt, self.prepend_bos)
            .map_err(|e| e.to_string())?;
        Ok((gpt2, tokens, tokenizer, backend))
    }
}

#[derive(Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    forward: ForwardArgs,
    /// Print one JSON object {"tokens", "logits", "backend"} instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    forward: ForwardArgs,
    /// Timed passes, after one untimed warm-up.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Compute logits at every position, as a plain HF forward does.
    #[arg(long)]
    all_positions: bool,
}

pub fn run(args: LogitsArgs) -> Result<(), Exit> {
    let (gpt2, tokens, tokenizer, backend) = args.forward.load()?;
    let logits = gpt2
        .forward(&[tokens.clone()], &mut Hooks::none(), LogitsAt::Last)
        .map_err(|e| e.to_string())?;
    let logits: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    if args.json {
        return print(&json!({ "tokens": tokens, "logits": logits, "backend": backend.kind }).to_string());
    }
    let shown: Vec<String> = tokens.iter().map(|&id| tokenizer.display(id)).collect();
    print(&format!("backend: {}", backend.description))?;
    print(&format!("tokens ({}): {}", tokens.len(), shown.join(" | ")))?;
    print("top next tokens:")?;
    for (id, p) in top_k(&logits, 10) {
        print(&format!("  {:>6}  {:<20} {:.4}", id, tokenizer.display(id), p))?;
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<(), Exit> {
    let (gpt2, tokens, _, backend) = args.forward.load()?;
    let tokens = vec![tokens];
    let at = if args.all_positions {
        LogitsAt::All
    } else {
        LogitsAt::Last
    };
    let pass = || -> Result<f64, String> {
        let start = Instant::now();
        let logits = gpt2
            .forward(&tokens, &mut Hooks::none(), at)
            .map_err(|e| e.to_string())?;
        // Reading the result back waits for the device.
        logits.into_data();
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    pass()?;
    let mut ms = (0..args.iters).map(|_| pass()).collect::<Result<Vec<_>, _>>()?;
    ms.sort_by(f64::total_cmp);
    print(
        &json!({
            "backend": backend.kind,
            "device": backend.description,
            "tokens": tokens[0].len(),
            "ms": ms,
            "median_ms": ms[ms.len() / 2]
        })
        .to_string(),
    )
}
