//! `patchbay expand SPEC.json`: prints the spec with its generated dataset written out as prompt
//! pairs, to see (or hand to another tool) exactly the prompts an experiment runs.

use std::path::PathBuf;

use clap::Args;
use patchbay_model::load_dir;
use patchbay_patching::prepare;

use crate::BackendChoice;
use crate::files::{Exit, print, read_spec};
use crate::run::model_dir;

#[derive(Args)]
pub struct ExpandArgs {
    spec: PathBuf,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
}

pub fn run(args: ExpandArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    let backend = args.backend.create()?;
    let (model, tokenizer) =
        load_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).map_err(|e| e.to_string())?;
    print(&serde_json::to_string_pretty(&prepared.spec).map_err(|e| e.to_string())?)
}
