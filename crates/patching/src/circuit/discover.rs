//! Circuit discovery end to end, orchestration only: prepare the spec, score every edge of the
//! graph by EAP or EAP-IG over the prompts ([`eap`]), keep the best (top k by |score|, or a
//! threshold), then check by exact edge-level patching ([`exact`]): the circuit's
//! faithfulness, the faithfulness of the top k edges for k on a log grid, and the exact effect
//! of the best-scored edges one by one beside their attributions.
//!
//! Scores and exact effects are un-normalized (M units) and averaged over prompts, each
//! prompt's over its noise samples, as TransformerLens averages edge scores over a batch.
//! Faithfulness is normalized by the spec's dataset rule, the ratio of means by default.

use patchbay_model::{Gpt2, Gpt2Tokenizer};

use crate::circuit::edge_runs::EdgeRuns;
use crate::circuit::graph::Graph;
use crate::circuit::results::{CircuitCheck, CircuitResults, CurvePoint, Disagreement, EdgeScore, NodeInfo};
use crate::circuit::{eap, exact};
use crate::experiment::{Observer, Progress, RunOptions};
use crate::prepare::{MAX_RUN_FLOPS, Prepared, prepare};
use crate::spec::Normalize;
use crate::spec::circuit::{CircuitSpec, Keep};
use crate::{ExperimentSpec, PatchingError};

/// Head inputs (rows × positions × 3 × heads) per pass: the graph's forward holds every
/// head's query, key and value input apart, `3 n_head` times a plain pass's residual stream.
const CHUNK_HEAD_INPUTS: usize = 1 << 14;

/// The progress stage of edge attribution; the exact checks follow it.
pub const ATTRIBUTION_STAGE: &str = "attribution";

/// How many disagreements between attribution and exact patching are reported.
pub const DISAGREEMENTS: usize = 10;

/// `0`, then 1, 2, 5, 10, 20, 50, … below `edges`, then `edges`: the sizes the faithfulness
/// curve is measured at.
pub fn log_grid(edges: usize) -> Vec<usize> {
    let mut grid = vec![0];
    let mut decade = 1;
    'outer: loop {
        for m in [1, 2, 5] {
            let k = m * decade;
            if k >= edges {
                break 'outer;
            }
            grid.push(k);
        }
        decade *= 10;
    }
    if edges > 0 {
        grid.push(edges);
    }
    grid
}

/// Edge indices by decreasing |score|, ties in graph order.
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].abs().total_cmp(&scores[a].abs()).then(a.cmp(&b)));
    order
}

/// A circuit's faithfulness from each prompt's M: `(M − M_corrupted) / (M_clean −
/// M_corrupted)`, by the ratio of means or as the mean of each prompt's.
pub fn faithfulness(rule: Normalize, m: &[f64], clean: &[f64], corrupted: &[f64]) -> f64 {
    let n = m.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
    match rule {
        Normalize::RatioOfMeans => (mean(m) - mean(corrupted)) / (mean(clean) - mean(corrupted)),
        Normalize::PerPrompt => {
            m.iter()
                .zip(clean)
                .zip(corrupted)
                .map(|((m, c), x)| (m - x) / (c - x))
                .sum::<f64>()
                / n
        }
    }
}

/// Finds and checks the circuit of `spec` (its `circuit` block, or the defaults) on `model`,
/// telling `observer` of progress.
pub async fn run_circuit(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<CircuitResults, PatchingError> {
    let prepared = prepare(model, tokenizer, spec).await?;
    run_prepared_circuit(model, spec, &prepared, options, observer).await
}

/// Batches of prompt indices: prompts of one length together, as many as
/// [`CHUNK_HEAD_INPUTS`] allows.
fn batches(model: &Gpt2, prepared: &Prepared, samples: usize) -> Vec<Vec<usize>> {
    prepared
        .groups()
        .into_iter()
        .flat_map(|group| {
            let len = prepared.prompts[group[0]].clean.len();
            let rows = (CHUNK_HEAD_INPUTS / (len * 3 * model.config.n_head)).max(1);
            let chunk = (rows / samples).max(1);
            group.chunks(chunk).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect()
}

/// Runs a prepared circuit discovery; `original` is the spec as given, which the results carry.
pub async fn run_prepared_circuit(
    model: &Gpt2,
    original: &ExperimentSpec,
    prepared: &Prepared,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<CircuitResults, PatchingError> {
    let spec = &prepared.spec;
    let settings = spec.circuit.clone().unwrap_or_default();
    let c = &model.config;
    let graph = Graph::new(c.n_layer, c.n_head);
    let n_edges = graph.edges.len();
    if let Keep::Top(k) = settings.keep
        && k > n_edges
    {
        return Err(PatchingError::Spec(format!(
            "`circuit.keep.top` is {k}; this model's graph has {n_edges} edges"
        )));
    }
    let (kind, direction, steps) = (spec.metric.kind, spec.direction, settings.steps());
    let samples = prepared.noise.as_ref().map_or(1, |n| n.samples);
    let grid = log_grid(n_edges);
    let checked = settings.checked.min(n_edges);
    check_cost(model, prepared, samples, &settings, grid.len() + 1 + checked)?;

    let batches = batches(model, prepared, samples);
    let n = prepared.prompts.len();
    let total = batches.len() * (steps + grid.len() + 1 + checked);
    let mut done = 0;
    let mut tell = async |done: usize, stage: &str| {
        let progress = Progress {
            done,
            total,
            stage: stage.to_string(),
            partial: None,
        };
        if observer.progress(&progress).await {
            Ok(())
        } else {
            Err(PatchingError::Cancelled)
        }
    };
    let runs_of = async |batch: &[usize]| {
        let inputs: Vec<_> = batch
            .iter()
            .map(|&i| prepared.input(model, i, options.noise.as_deref()))
            .collect();
        EdgeRuns::new(model, &graph, &inputs, kind).await
    };

    // Attribution over every prompt.
    let mut sums = vec![0.0; n_edges];
    for batch in &batches {
        let runs = runs_of(batch).await?;
        for (s, v) in sums
            .iter_mut()
            .zip(eap::attribute(model, &graph, &runs, direction, steps, settings.qk_fix).await?)
        {
            *s += v;
        }
        done += steps;
        tell(done, ATTRIBUTION_STAGE).await?;
    }
    let scores: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
    let order = ranking(&scores);
    let kept_count = match settings.keep {
        Keep::Top(k) => k,
        Keep::Threshold(t) => order.iter().take_while(|&&e| scores[e].abs() >= t).count(),
    };
    let top = |k: usize| {
        let mut kept = vec![false; n_edges];
        for &e in &order[..k] {
            kept[e] = true;
        }
        kept
    };
    let circuit = top(kept_count);
    let checked_edges = &order[..checked];

    // Exact checks, prompt by prompt: each prompt's M (mean over samples).
    let (mut clean_m, mut corrupted_m) = (Vec::new(), Vec::new());
    let mut curve_m: Vec<Vec<f64>> = vec![Vec::new(); grid.len()];
    let mut circuit_m = Vec::new();
    let mut exact_sums = vec![0.0; checked];
    for batch in &batches {
        let runs = runs_of(batch).await?;
        clean_m.extend(runs.per_prompt(&runs.clean.m));
        corrupted_m.extend(runs.per_prompt(&runs.corrupted.m));
        for (k, m) in grid.iter().zip(curve_m.iter_mut()) {
            m.extend(runs.per_prompt(&exact::circuit_m(model, &graph, &runs, &top(*k)).await?));
            done += 1;
            tell(done, "exact check of the curve").await?;
        }
        circuit_m.extend(runs.per_prompt(&exact::circuit_m(model, &graph, &runs, &circuit).await?));
        done += 1;
        for (sum, &edge) in exact_sums.iter_mut().zip(checked_edges) {
            let effects = runs.per_prompt(&exact::edge_effect(model, &graph, &runs, direction, edge).await?);
            *sum += effects.iter().sum::<f64>();
            done += 1;
            tell(done, "exact effect of the best edges").await?;
        }
    }
    let rule = spec.metric.normalize;
    let faith = |m: &[f64]| faithfulness(rule, m, &clean_m, &corrupted_m);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let exact_of: Vec<Option<f64>> = {
        let mut e = vec![None; n_edges];
        for (sum, &edge) in exact_sums.iter().zip(checked_edges) {
            e[edge] = Some(sum / n as f64);
        }
        e
    };
    let mut disagreements: Vec<Disagreement> = checked_edges
        .iter()
        .map(|&e| {
            let exact = exact_of[e].expect("checked");
            Disagreement {
                edge: graph.edge_name(e),
                attribution: scores[e],
                exact,
                difference: scores[e] - exact,
            }
        })
        .collect();
    disagreements.sort_by(|a, b| b.difference.abs().total_cmp(&a.difference.abs()));
    disagreements.truncate(DISAGREEMENTS);

    Ok(CircuitResults {
        spec: original.clone(),
        method: settings.method.name().into(),
        steps,
        direction: direction.name().into(),
        metric: kind.name().into(),
        prompts: n,
        nodes: NodeInfo::all(&graph),
        edges: order
            .iter()
            .enumerate()
            .map(|(rank, &e)| EdgeScore::of(&graph, e, rank + 1, scores[e], circuit[e], exact_of[e]))
            .collect(),
        clean_metric: mean(&clean_m),
        corrupted_metric: mean(&corrupted_m),
        circuit: CircuitCheck {
            edges: kept_count,
            metric: mean(&circuit_m),
            faithfulness: faith(&circuit_m),
        },
        curve: grid
            .iter()
            .zip(&curve_m)
            .map(|(&edges, m)| CurvePoint {
                edges,
                metric: mean(m),
                faithfulness: faith(m),
            })
            .collect(),
        disagreements,
    })
}

/// Refuses a discovery that would cost more than [`MAX_RUN_FLOPS`]: per row, the two runs
/// twice, a forward and a backward pass per step, one patched run per exact check, and the
/// QK fix's recomputed queries, keys and patterns.
fn check_cost(
    model: &Gpt2,
    prepared: &Prepared,
    samples: usize,
    settings: &CircuitSpec,
    exact_runs: usize,
) -> Result<(), PatchingError> {
    let c = &model.config;
    let (d, layers) = (c.n_embd as f64, c.n_layer as f64);
    let tokens: f64 = prepared.prompts.iter().map(|p| p.clean.len() as f64).sum();
    let per_pass = samples as f64 * (tokens * layers * 24.0 * d * d + 2.0 * c.vocab_size as f64 * d);
    let passes = 4 + 3 * settings.steps() + exact_runs;
    // AtP*'s QK fix: every writer's delta through ln_1, W_Q and W_K of each later layer, and a
    // pattern row or column per query or key edge and position.
    let qk_fix = if settings.qk_fix {
        let max_len = prepared.prompts.iter().map(|p| p.clean.len()).max().unwrap_or(0) as f64;
        let writers: f64 = (0..c.n_layer).map(|l| (1 + l * (c.n_head + 1)) as f64).sum();
        samples as f64 * tokens * writers * (4.0 * d * d + 8.0 * c.n_head as f64 * max_len * d)
    } else {
        0.0
    };
    let flops = passes as f64 * per_pass + qk_fix;
    if flops > MAX_RUN_FLOPS {
        return Err(PatchingError::Spec(format!(
            "this circuit discovery would take about {flops:.1e} floating-point operations ({passes} passes of {} prompts), more than Patchbay's limit of {MAX_RUN_FLOPS:.0e}: use fewer prompts, steps or checked edges",
            prepared.prompts.len()
        )));
    }
    Ok(())
}
