//! `patchbay`: Patchbay's experiments from the command line.
//!
//! Every failure is printed as one clear line on stderr with exit status 1; nothing panics on
//! bad input, and a closed pipe on stdout ends the command quietly.

mod circuit;
mod expand;
mod export;
mod files;
mod init;
mod lens;
mod logits;
mod progress;
mod report;
mod run;
mod sensitivity;
mod train;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use files::Exit;
use patchbay_model::backend::{self, Backend};

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e` in mimalloc.h, v2 and v3
/// alike; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory a pass frees for the next pass: mimalloc otherwise hands pages unused for a
/// second back to the kernel, and a sweep's next pass pays page faults for fresh zeroed ones
/// (with its memory kept, the factual head sweep ran in 0.731 s rather than 0.774 s, with the
/// same results). A `MIMALLOC_PURGE_DELAY` in the environment still decides.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options; any value is valid for it (-1: never purge).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

#[derive(Parser)]
#[command(name = "patchbay", version, about = "Activation patching on GPT-2, natively.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Next-token logits of a prompt at its last position.
    Logits(logits::LogitsArgs),
    /// Runs an experiment spec: results.json, CSVs and SVG heatmaps.
    Run(run::RunArgs),
    /// The logit lens and direct logit attribution of a spec's clean and corrupted runs:
    /// lens.json, CSVs and SVG heatmaps.
    Lens(lens::LensArgs),
    /// Finds a circuit by edge attribution (EAP, EAP-IG) and checks it by exact edge patching:
    /// circuit.json, circuit.svg, edges.csv and the faithfulness curve.
    Circuit(circuit::CircuitArgs),
    /// Runs a spec's dataset under every corruption × metric × direction × seed: detections,
    /// Jaccard and rank-correlation matrices, Table 1.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Prints the spec with its generated dataset written out as prompt pairs.
    Expand(expand::ExpandArgs),
    /// Prints a Python script that reproduces the spec in TransformerLens 3.9 or 4.x, or in
    /// nnsight (locally or on NDIF).
    Export(export::ExportArgs),
    /// Times forward passes (a benchmark, not a test): prints JSON with per-pass milliseconds.
    BenchForward(logits::BenchArgs),
    /// Trains a small GPT-2 on IOI and greater-than (CPU, seeded) and measures its IOI circuit.
    Train(train::TrainArgs),
    /// Writes a seeded GPT-2 of one of the family's shapes as a Hub checkpoint (benchmarks, no
    /// download).
    Init(init::InitArgs),
}

/// How the CLI runs experiments on `backend`: on the CPU, two batches of a sweep at once, so that
/// one's element-wise work (which burn runs on the calling thread) overlaps the other's matrix
/// products (which it runs on every core).
pub fn run_options(backend: &Backend) -> patchbay_patching::RunOptions {
    patchbay_patching::RunOptions {
        threads: if backend.kind == "cpu" { 2 } else { 1 },
        ..Default::default()
    }
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendChoice {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal or DX12).
    Wgpu,
}

impl BackendChoice {
    pub fn create(self) -> Result<Backend, String> {
        match self {
            BackendChoice::Cpu => Ok(backend::cpu()),
            BackendChoice::Wgpu => pollster::block_on(backend::gpu(None)).map_err(|e| e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Logits(args) => logits::run(args),
        Command::Run(args) => run::run(args),
        Command::Lens(args) => lens::run(args),
        Command::Circuit(args) => circuit::run(args),
        Command::Sensitivity(args) => sensitivity::run(args),
        Command::Expand(args) => expand::run(args),
        Command::Export(args) => export::run(args),
        Command::BenchForward(args) => logits::bench(args),
        Command::Train(args) => train::run(args),
        Command::Init(args) => init::run(args),
    };
    match result {
        Ok(()) | Err(Exit::Quiet) => ExitCode::SUCCESS,
        Err(Exit::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// The option `keep_freed_memory` sets is mimalloc's purge delay, the one option whose
    /// default is 1,000 ms (mimalloc v3, which libmimalloc-sys builds by default).
    #[test]
    fn the_option_set_at_start_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one of mimalloc's options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
