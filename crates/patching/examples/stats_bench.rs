//! What the per-cell statistics add to a dataset sweep, as a ratio measured in one process (Step 7:
//! 1,000 bootstrap resamples of a 100-prompt 12×12 grid must add under 5% to the sweep).
//!
//! ```sh
//! target/release/patchbay init --shape gpt2-small --seed 0 --out /tmp/g2s
//! cargo run --release -p patchbay-patching --example stats_bench -- /tmp/g2s 100
//! ```
//!
//! With a model folder it runs a generated IOI dataset of that many prompts (one template, STR
//! S2, logit difference) patching every head's output at all positions — a 12×12 grid on a
//! GPT-2-small-shaped model — on the CPU backend, then times the statistics of its own per-prompt
//! effects: the bootstrap alone (1,000 resamples, one sign flip) and the defaults (1,000
//! resamples and 9,999 Monte Carlo sign flips), the median of several runs each, and prints each
//! over the sweep's time (the run's time less the statistics it computed itself). Without a
//! folder it times only the statistics, on synthetic 100-prompt and 16-prompt (exact test)
//! 12×12 grids.

use std::time::Instant;

use patchbay_model::{Gpt2Tokenizer, backend, load_gpt2_dir};
use patchbay_patching::analysis::uncertainty::{StatsSettings, cell_stats};
use patchbay_patching::{ExperimentSpec, Progress, RunOptions, run_experiment};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const RUNS: usize = 7;

/// The median time in seconds of `RUNS` calls of `f`.
fn median_s(mut f: impl FnMut()) -> f64 {
    let mut s: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    s.sort_by(f64::total_cmp);
    s[RUNS / 2]
}

/// The statistics of `effects` under the defaults, and with the bootstrap alone.
fn time_stats(effects: &[Vec<f64>], spans: &[f64]) -> (f64, f64) {
    let defaults = StatsSettings::default();
    let bootstrap = StatsSettings {
        permutations: 1,
        ..defaults
    };
    let run = |s: &StatsSettings| {
        median_s(|| drop(std::hint::black_box(cell_stats(effects, Some(spans), s).unwrap())))
    };
    (run(&bootstrap), run(&defaults))
}

fn synthetic(prompts: usize, cells: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let effects = (0..prompts)
        .map(|_| {
            (0..cells)
                .map(|c| rng.random::<f64>() - 0.5 + if c % 12 == 0 { 0.3 } else { 0.0 })
                .collect()
        })
        .collect();
    let spans = (0..prompts).map(|_| 0.5 + rng.random::<f64>()).collect();
    (effects, spans)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        let (effects, spans) = synthetic(100, 144);
        let (boot, all) = time_stats(&effects, &spans);
        println!(
            "100 prompts × 144 cells: bootstrap (1000 resamples) {:.1} ms; with 9999 Monte Carlo sign flips {:.1} ms",
            boot * 1e3,
            all * 1e3
        );
        let (effects, spans) = synthetic(16, 144);
        let (_, exact) = time_stats(&effects, &spans);
        println!(
            "16 prompts × 144 cells: bootstrap (1000 resamples) with exact sign flips (65,536 patterns) {:.1} ms",
            exact * 1e3
        );
        return;
    };
    let prompts: usize = args
        .next()
        .map_or(100, |n| n.parse().expect("a number of prompts"));
    let dir = std::path::PathBuf::from(dir);
    let b = backend::cpu();
    let model = load_gpt2_dir(&dir, &b.device, b.max_binding_bytes).unwrap();
    let tokenizer = Gpt2Tokenizer::from_dir(&dir).unwrap();
    let spec = serde_json::json!({
        "version": 1,
        "model": {"local": dir.display().to_string()},
        "prompts": [],
        "dataset": {"task": "ioi", "n": prompts, "seed": 0, "names": "s2", "template": 0},
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": true},
        "target": {"component": "z", "positions": "all"}
    });
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let start = Instant::now();
    let results = pollster::block_on(run_experiment(
        &model,
        &tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap();
    let run_s = start.elapsed().as_secs_f64();
    // Each prompt's effects, as the run aggregated them: its grid times the mean denominator.
    let effects: Vec<Vec<f64>> = results
        .prompt_grids
        .iter()
        .map(|g| g.values.iter().map(|v| v * results.denominator).collect())
        .collect();
    let spans: Vec<f64> = results.prompts.iter().map(|p| p.denominator).collect();
    let (boot, all) = time_stats(&effects, &spans);
    let sweep = run_s - all;
    println!(
        "{} prompts × {:?} cells on {} ({} layers, d_model {}), CPU: sweep {sweep:.1} s",
        results.prompts.len(),
        results.grid.shape,
        dir.display(),
        model.config.n_layer,
        model.config.n_embd
    );
    println!(
        "bootstrap, 1000 resamples: {:.1} ms = {:.3}% of the sweep",
        boot * 1e3,
        100.0 * boot / sweep
    );
    println!(
        "all statistics (1000 resamples + 9999 sign flips, Holm, BH): {:.1} ms = {:.3}% of the sweep",
        all * 1e3,
        100.0 * all / sweep
    );
}
