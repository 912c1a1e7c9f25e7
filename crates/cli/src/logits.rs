//! `patchbay logits` and `patchbay bench-forward`: one forward pass on a Hub-layout checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use patchbay_model::logits::top_k;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, LogitsAt, load_gpt2_dir};
use serde_json::json;

use crate::BackendChoice;

#[derive(Args)]
pub struct LogitsArgs {
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
    /// Print one JSON object {"tokens", "logits", "backend"} instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    prepend_bos: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Timed passes, after one untimed warm-up.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Compute logits at every position, as a plain HF forward does.
    #[arg(long)]
    all_positions: bool,
}

fn load(model: &PathBuf, backend: BackendChoice) -> Result<(Gpt2, Gpt2Tokenizer, String), String> {
    let backend = backend.create()?;
    let gpt2 = load_gpt2_dir(model, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let tokenizer = Gpt2Tokenizer::from_dir(model).map_err(|e| e.to_string())?;
    Ok((gpt2, tokenizer, backend.kind.to_string()))
}

pub fn run(args: LogitsArgs) -> Result<(), String> {
    let (gpt2, tokenizer, backend) = load(&args.model, args.backend)?;
    let tokens = tokenizer
        .encode(&args.prompt, args.prepend_bos)
        .map_err(|e| e.to_string())?;
    let logits = gpt2
        .forward(&[tokens.clone()], &mut Hooks::none(), LogitsAt::Last)
        .map_err(|e| e.to_string())?;
    let logits: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    if args.json {
        println!(
            "{}",
            json!({ "tokens": tokens, "logits": logits, "backend": backend })
        );
        return Ok(());
    }
    let shown: Vec<String> = tokens.iter().map(|&id| tokenizer.display(id)).collect();
    println!("backend: {backend}");
    println!("tokens ({}): {}", tokens.len(), shown.join(" | "));
    println!("top next tokens:");
    for (id, p) in top_k(&logits, 10) {
        println!("  {:>6}  {:<20} {:.4}", id, tokenizer.display(id), p);
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<(), String> {
    let (gpt2, tokenizer, backend) = load(&args.model, args.backend)?;
    let tokens = vec![
        tokenizer
            .encode(&args.prompt, args.prepend_bos)
            .map_err(|e| e.to_string())?,
    ];
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
    println!(
        "{}",
        json!({ "backend": backend, "tokens": tokens[0].len(), "ms": ms, "median_ms": ms[ms.len() / 2] })
    );
    Ok(())
}
