//! `patchbay lens SPEC.json`: the logit lens and direct logit attribution of a spec's clean and
//! corrupted runs, written as lens.json, a CSV and an SVG heatmap of every view, and
//! dla_terms.csv (or printed as lens.json with `--json`).

use std::path::{Path, PathBuf};

use clap::Args;
use patchbay_model::load_dir;
use patchbay_patching::analysis::results::csv;
use patchbay_patching::export::heatmap;
use patchbay_patching::lens::run_lens;

use crate::BackendChoice;
use crate::files::{Exit, OutDir, print, read_spec};
use crate::run::model_dir;

#[derive(Args)]
pub struct LensArgs {
    /// The experiment spec (JSON; see the README): its prompts, answers and corruption.
    spec: PathBuf,
    /// Folder for lens.json, CSVs and SVG heatmaps.
    #[arg(long, required_unless_present = "json")]
    out: Option<PathBuf>,
    /// Print lens.json to stdout instead of writing files.
    #[arg(long)]
    json: bool,
    /// Use this Hub-layout model folder instead of the one the spec names.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

/// The file that lists what a run wrote into its folder.
const MANIFEST: &str = "lens.json";

pub fn run(args: LensArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    let out = match (&args.out, args.json) {
        (Some(out), false) => Some(OutDir::open(out, MANIFEST)?),
        _ => None,
    };
    let backend = args.backend.create()?;
    let (model, tokenizer) =
        load_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let quiet = args.quiet;
    let mut report = crate::progress::on_stderr(quiet, "prompts ");
    let results = pollster::block_on(run_lens(
        &model,
        &tokenizer,
        &spec,
        &crate::run_options(&backend),
        &mut report,
    ))
    .map_err(|e| e.to_string())?;
    if !quiet {
        eprintln!();
    }
    let Some(mut out) = out else {
        return print(&serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?);
    };
    for view in results.views() {
        out.write(&format!("{}.csv", view.key), csv(view.grid, view.axes))?;
        out.write(
            &format!("{}.svg", view.key),
            heatmap::svg(view.grid, view.axes, &view.title, &view.value_label, view.limit),
        )?;
    }
    out.write("dla_terms.csv", results.dla_terms_csv())?;
    out.finish(
        MANIFEST,
        serde_json::to_value(&results).map_err(|e| e.to_string())?,
    )?;
    if !quiet {
        eprintln!(
            "wrote {}",
            args.out.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    Ok(())
}
