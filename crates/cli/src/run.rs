//! `patchbay run SPEC.json`: runs an experiment spec and writes results.json, a CSV of each grid
//! and SVG heatmaps (or prints results.json with `--json`).

use std::path::{Path, PathBuf};

use clap::Args;
use patchbay_model::Gpt2Config;
use patchbay_model::load_dir;
use patchbay_patching::analysis::known_circuits::{self, KnownCircuit};
use patchbay_patching::export::heatmap;
use patchbay_patching::{ExperimentSpec, ModelSource, run_experiment};

use crate::BackendChoice;
use crate::files::{Exit, OutDir, print, read_spec};

#[derive(Args)]
pub struct RunArgs {
    /// The experiment spec (JSON; see the README).
    spec: PathBuf,
    /// Folder for results.json, CSVs and SVG heatmaps.
    #[arg(long, required_unless_present = "json")]
    out: Option<PathBuf>,
    /// Print results.json to stdout instead of writing files.
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
    /// Print {"load_s", "run_s"} to stderr (for benchmarks).
    #[arg(long)]
    timings: bool,
}

pub(crate) fn model_dir(
    spec: &ExperimentSpec,
    spec_path: &Path,
    over: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(dir) = over {
        return Ok(dir);
    }
    match &spec.model {
        ModelSource::Local(path) => {
            let path = PathBuf::from(path);
            // Relative to the working directory, else to the spec's folder.
            if path.is_relative() && !path.exists() {
                Ok(spec_path.parent().unwrap_or(Path::new(".")).join(path))
            } else {
                Ok(path)
            }
        }
        // The page's shipped models live in the repository.
        ModelSource::Embedded(name) => ["models", "tests/fixtures/models"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|dir| dir.join("config.json").exists())
            .ok_or_else(|| {
                format!("the shipped model `{name}` is not in models/ here; run from the repository or pass --model DIR")
            }),
        other => Err(format!(
            "the spec's model is {other:?}; the CLI reads models from disk: download its folder \
             (config.json, model.safetensors, tokenizer.json) and pass --model DIR"
        )),
    }
}

/// The file that lists what a run wrote into its folder.
const MANIFEST: &str = "results.json";

pub fn run(args: RunArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    // A folder that cannot be written is found out before the run, not after it.
    let out = match (&args.out, args.json) {
        (Some(out), false) => Some(OutDir::open(out, MANIFEST)?),
        _ => None,
    };
    let start = std::time::Instant::now();
    let backend = args.backend.create()?;
    let (model, tokenizer) =
        load_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let load_s = start.elapsed().as_secs_f64();
    let quiet = args.quiet;
    let mut report = crate::progress::on_stderr(quiet, "patches ");
    let results = pollster::block_on(run_experiment(
        &model,
        &tokenizer,
        &spec,
        &crate::run_options(&backend),
        &mut report,
    ))
    .map_err(|e| e.to_string())?;
    let run_s = start.elapsed().as_secs_f64() - load_s;
    if !quiet {
        eprintln!();
    }
    if args.timings {
        eprintln!("{}", serde_json::json!({ "load_s": load_s, "run_s": run_s }));
    }
    let Some(mut out) = out else {
        return print(&serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?);
    };
    for view in results.views() {
        out.write(&format!("{}.csv", view.key), results.csv(view.grid))?;
        // Window and attribution grids share the main grid's axes.
        out.write(
            &format!("{}.svg", view.key),
            heatmap::svg(
                view.grid,
                &results.axes,
                &view.title,
                &view.value_label,
                view.limit,
            ),
        )?;
    }
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

/// The known circuit of the model in `dir`: its `circuits.json`, or GPT-2 small's by shape.
pub(crate) fn known_circuit(dir: &Path, config: &Gpt2Config) -> Result<Option<KnownCircuit>, String> {
    let path = dir.join(known_circuits::FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    KnownCircuit::for_model(config, text.as_deref()).map_err(|e| format!("{}: {e}", dir.display()))
}
