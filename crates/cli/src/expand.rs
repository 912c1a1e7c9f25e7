//! `patchbay expand SPEC.json`: prints the spec with its generated dataset written out as prompt
//! pairs, to see (or hand to another tool) exactly the prompts an experiment runs.

use std::path::PathBuf;

use clap::Args;
use patchbay_model::{Gpt2Tokenizer, load_gpt2_dir};
use patchbay_patching::{ExperimentSpec, prepare};

use crate::BackendChoice;
use crate::run::model_dir;

#[derive(Args)]
pub struct ExpandArgs {
    spec: PathBuf,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
}

pub fn run(args: ExpandArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.spec).map_err(|e| format!("{}: {e}", args.spec.display()))?;
    let spec = ExperimentSpec::from_json(&text).map_err(|e| format!("{}: {e}", args.spec.display()))?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    let backend = args.backend.create()?;
    let model = load_gpt2_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let tokenizer = Gpt2Tokenizer::from_dir(&dir).map_err(|e| e.to_string())?;
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&prepared.spec).map_err(|e| e.to_string())?
    );
    Ok(())
}
