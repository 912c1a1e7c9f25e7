//! `patchbay circuit SPEC.json --out DIR`: finds a circuit by edge attribution (EAP or EAP-IG,
//! the spec's `circuit` block or its defaults) and checks it by exact edge-level patching:
//! circuit.json (nodes, edges with scores and exact effects, the circuit's faithfulness, the
//! curve, the disagreements, the spec), circuit.svg, edges.csv, faithfulness.csv and
//! faithfulness.svg (or circuit.json printed with `--json`).

use std::path::{Path, PathBuf};

use clap::Args;
use patchbay_model::load_dir;
use patchbay_patching::Progress;
use patchbay_patching::circuit::discover::{ATTRIBUTION_STAGE, run_circuit};
use patchbay_patching::circuit::draw::{circuit_svg, curve_svg};

use crate::BackendChoice;
use crate::files::{Exit, OutDir, print, read_spec};
use crate::run::model_dir;

#[derive(Args)]
pub struct CircuitArgs {
    /// The experiment spec (JSON; see the README): its prompts, corruption, metric, direction
    /// and `circuit` block.
    spec: PathBuf,
    /// Folder for circuit.json, circuit.svg, edges.csv and the faithfulness curve.
    #[arg(long, required_unless_present = "json")]
    out: Option<PathBuf>,
    /// Print circuit.json to stdout instead of writing files.
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
    /// Print {"load_s", "attribution_s", "checks_s"} to stderr (for benchmarks): loading the
    /// model, scoring every edge (the two runs and the gradient passes), the exact checks.
    #[arg(long)]
    timings: bool,
}

/// The file that lists what a run wrote into its folder.
const MANIFEST: &str = "circuit.json";

pub fn run(args: CircuitArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
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
    let mut report = crate::progress::on_stderr(quiet, "passes ");
    // When the last attribution batch was reported: the end of attribution.
    let mut attributed = start.elapsed().as_secs_f64();
    let mut observe = |p: &Progress| {
        if p.stage == ATTRIBUTION_STAGE {
            attributed = start.elapsed().as_secs_f64();
        }
        report(p)
    };
    let results = pollster::block_on(run_circuit(
        &model,
        &tokenizer,
        &spec,
        &crate::run_options(&backend),
        &mut observe,
    ))
    .map_err(|e| e.to_string())?;
    let total_s = start.elapsed().as_secs_f64();
    if !quiet {
        eprintln!();
    }
    if args.timings {
        let times = serde_json::json!({
            "load_s": load_s,
            "attribution_s": attributed - load_s,
            "checks_s": total_s - attributed,
        });
        eprintln!("{times}");
    }
    let document = serde_json::to_value(&results).map_err(|e| e.to_string())?;
    let Some(mut out) = out else {
        return print(&serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?);
    };
    out.write("circuit.svg", circuit_svg(&results))?;
    out.write("edges.csv", results.edges_csv())?;
    out.write("faithfulness.csv", results.curve_csv())?;
    out.write("faithfulness.svg", curve_svg(&results))?;
    out.finish(MANIFEST, document)?;
    if !quiet {
        eprintln!(
            "{} edges kept of {}: faithfulness {:.4}; wrote {}",
            results.circuit.edges,
            results.edges.len(),
            results.circuit.faithfulness,
            args.out.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    Ok(())
}
