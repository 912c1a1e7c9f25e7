//! Running an experiment end to end, orchestration only: prepare the spec, plan the sweep, run
//! each group of prompts' clean and corrupted runs and its sweeps (and, when asked, the
//! single-layer contrast of a window and attribution patching), aggregate over prompts, and give
//! a dataset's grid its per-cell uncertainty. Workers that each hold the model may share a
//! run ([`Observer::share`]): each runs its part of every sweep and they swap readings, so all
//! of them end with the results one worker alone computes.

use std::future::Future;

use patchbay_model::{Gpt2, Gpt2Tokenizer, HookPoint};

use crate::analysis::aggregate::{self, aggregate, small_denominators};
use crate::analysis::detect::{Detection, detect_with};
use crate::analysis::results::{
    AttributionContrast, Grid, NoiseSummary, PromptSummary, Results, RunSummary, Uncertainty, WindowContrast,
};
use crate::analysis::uncertainty::{CellStats, cell_stats};
use crate::metric::{MetricKind, Reading};
use crate::prepare::{Prepared, prepare};
use crate::runs::PromptRuns;
use crate::spec::Normalize;
use crate::sweep::batched::{Budget, Strategy, Sweep};
use crate::sweep::path::{self, PathSweep};
use crate::sweep::plan::{Axis, Plan};
use crate::sweep::share::{Shard, Share};
use crate::sweep::window;
use crate::{ExperimentSpec, PatchingError};

/// How an experiment runs (not part of the spec: it changes speed, never results).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub budget: Budget,
    pub strategy: Option<Strategy>,
    /// Replay these GN noise values (`[samples, positions, d_model]`, for the first prompt)
    /// instead of drawing them: how tests share noise with the reference.
    pub noise: Option<Vec<f32>>,
    /// Batches of a sweep run at once, each on a thread of its own (native only: the browser's
    /// WebAssembly has no threads), each within `budget`, so peak memory grows with them. 0 and
    /// 1 run one at a time.
    pub threads: usize,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// What is running: `"prompts 1–8 of 100"`, `"patching"`, ...
    pub stage: String,
    /// After each group of prompts: the mean effect grid over the prompts done so far, with its
    /// axes.
    pub partial: Option<(Vec<f64>, Vec<Axis>)>,
}

/// Told of progress between batches; answers whether to go on. A worker that shares the run
/// with others also says which part it runs, and swaps readings with them.
pub trait Observer {
    /// Progress counts this worker's own patches ([`Sweep::done`]): the workers' progress adds
    /// up to the run's.
    fn progress(&mut self, progress: &Progress) -> impl Future<Output = bool>;

    /// This worker's part of the run.
    fn share(&self) -> Share {
        Share::ALONE
    }

    /// Hands this worker's readings of the run's sweep number `call` (from 0) to the other
    /// workers and returns theirs, one shard from each; called only when the run is shared.
    fn exchange(
        &mut self,
        call: usize,
        mine: Shard,
    ) -> impl Future<Output = Result<Vec<Shard>, PatchingError>> {
        let _ = (call, mine);
        async {
            Err(PatchingError::Peer(
                "this run has no other workers to exchange with".into(),
            ))
        }
    }
}

impl<F: FnMut(&Progress) -> bool> Observer for F {
    async fn progress(&mut self, progress: &Progress) -> bool {
        self(progress)
    }
}

fn summary(kind: MetricKind, readings: &[Reading]) -> RunSummary {
    let n = readings.len() as f64;
    let mean = |f: &dyn Fn(&Reading) -> f64| readings.iter().map(f).sum::<f64>() / n;
    RunSummary {
        metric: mean(&|r| kind.raw(r)),
        prob_answer: mean(&|r| (r.logprob_r as f64).exp()),
        prob_counter: mean(&|r| r.prob_rp as f64),
        logit_diff: mean(&|r| r.logit_r as f64 - r.logit_rp as f64),
    }
}

/// Runs `spec` on `model`, telling `observer` of progress between batches.
pub async fn run_experiment(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<Results, PatchingError> {
    let prepared = prepare(model, tokenizer, spec).await?;
    run_prepared(model, tokenizer, spec, &prepared, options, observer).await
}

/// Runs a prepared experiment; `original` is the spec as given, which the results carry.
pub async fn run_prepared(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    original: &ExperimentSpec,
    prepared: &Prepared,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<Results, PatchingError> {
    let spec = &prepared.spec;
    let config = &model.config;
    let (n_layer, n_head) = (config.n_layer, config.n_head);
    let kind = spec.metric.kind;
    let (normalized, rule) = (spec.metric.normalized, spec.metric.normalize);
    let window_size = spec.window.map(|w| w.size);
    let receivers = spec.target.receivers.clone();
    let prompts = &prepared.prompts;
    let n_roles = prepared.labels.len();

    // The grid over the first prompt's positions (or over the roles, when prompts of different
    // lengths are aligned by role), and each batch's own plan over its prompts' positions.
    let plan_of =
        |labels: &[String], window: Option<usize>| Plan::new(&spec.target, n_layer, n_head, labels, window);
    let grid_plan = plan_of(&prepared.labels, window_size)?;
    let axes = if prepared.by_role {
        grid_plan.role_axes(&prepared.labels)
    } else {
        grid_plan.axes.clone()
    };
    let shape: Vec<usize> = axes.iter().map(|a| a.labels.len()).collect();
    let cells: usize = shape.iter().product();
    let single_shape = match window_size {
        Some(_) => Some(plan_of(&prepared.labels, None)?.shape()),
        None => None,
    };
    let mut hooks: Vec<HookPoint> = (0..n_layer)
        .flat_map(|l| [HookPoint::ResidPre(l), HookPoint::K(l), HookPoint::V(l)])
        .collect();
    hooks.extend(
        grid_plan
            .patches
            .iter()
            .flat_map(|p| p.edits.iter().map(|e| e.hook)),
    );
    if let Some(r) = &receivers {
        hooks.extend(path::hooks(n_layer, r));
    }
    hooks.sort();
    hooks.dedup();

    // Prompts of one length run together, as many as leave room for several variants in each
    // batched pass.
    let batches = prepared.batches(options.budget);
    let per_batch =
        cells + single_shape.as_ref().map_or(0, |s| s.iter().product()) + usize::from(spec.attribution);
    let total = per_batch * batches.len();
    let share = observer.share();
    let mut done = 0;
    let mut calls = 0;
    let mut finished = 0;

    // Per prompt, in the grid's cells: effects (un-normalized), denominators, raw values,
    // single-layer effects, attributed effects.
    let n = prompts.len();
    let mut effects: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut spans: Vec<f64> = vec![0.0; n];
    let mut raws: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut singles: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut attributed: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut summaries: Vec<Option<PromptSummary>> = vec![None; n];
    for batch in &batches {
        let stage = if n == 1 {
            "patching".to_string()
        } else {
            finished += batch.len();
            format!("prompts {}–{finished} of {n}", finished - batch.len() + 1)
        };
        let tokens = prepared.tokens(tokenizer, batch[0]);
        let plan = plan_of(&tokens, window_size)?;
        let single = match window_size {
            Some(_) => Some(plan_of(&tokens, None)?),
            None => None,
        };
        let inputs = batch
            .iter()
            .map(|&index| prepared.input(model, index, options.noise.as_deref()))
            .collect();
        let runs = PromptRuns::new(model, inputs, &hooks, kind).await?;
        let baselines = &runs.baselines;
        // A prompt's values over its own positions, placed in the grid's cells (NaN where the
        // grid has a role the prompt lacks).
        let place = |plan: &Plan, k: usize, values: Vec<f64>, cells: usize| -> Vec<f64> {
            if !prepared.by_role {
                return values;
            }
            let mut out = vec![f64::NAN; cells];
            for (v, c) in values
                .into_iter()
                .zip(plan.role_cells(&prompts[batch[k]].role_of, n_roles))
            {
                out[c] = v;
            }
            out
        };
        // One value per prompt of the batch and per patch, from each patch's readings.
        let per_prompt = |readings: &[Vec<Reading>], f: &dyn Fn(usize, &[Reading]) -> f64| -> Vec<Vec<f64>> {
            (0..batch.len())
                .map(|k| {
                    readings
                        .iter()
                        .map(|rows| f(k, &rows[baselines.rows_of(k)]))
                        .collect()
                })
                .collect()
        };
        let effect = |k: usize, rows: &[Reading]| baselines.effect(kind, spec.direction, false, k, rows);
        let raw =
            |_: usize, rows: &[Reading]| rows.iter().map(|r| kind.raw(r)).sum::<f64>() / rows.len() as f64;

        let readings = if let Some(receivers) = &receivers {
            let mut sweep = PathSweep::new(model, &runs, spec.direction, receivers.clone()).share(share);
            while sweep.step().await? {
                let progress = Progress {
                    done: done + sweep.done(),
                    total,
                    stage: stage.clone(),
                    partial: None,
                };
                if !observer.progress(&progress).await {
                    return Err(PatchingError::Cancelled);
                }
            }
            done += sweep.done();
            for shard in swap(observer, share, &mut calls, || sweep.shard()).await? {
                sweep.merge(shard)?;
            }
            sweep.into_readings()?
        } else {
            sweep(
                model, &runs, spec, &plan, options, observer, &mut done, &mut calls, total, &stage,
            )
            .await?
        };
        let batch_effects = per_prompt(&readings, &effect);
        let batch_raws = per_prompt(&readings, &raw);
        let batch_singles = match &single {
            Some(single) => {
                let readings = sweep(
                    model, &runs, spec, single, options, observer, &mut done, &mut calls, total, &stage,
                )
                .await?;
                per_prompt(&readings, &effect)
            }
            None => Vec::new(),
        };
        let batch_attributed = if spec.attribution {
            let values = attribute(model, &runs, spec, &plan).await?;
            // Every worker runs it alike; it counts on the first one only.
            done += usize::from(share.counts_common());
            values
        } else {
            Vec::new()
        };
        for (k, &index) in batch.iter().enumerate() {
            effects[index] = place(&plan, k, batch_effects[k].clone(), cells);
            raws[index] = place(&plan, k, batch_raws[k].clone(), cells);
            if let (Some(single), Some(single_shape)) = (&single, &single_shape) {
                singles[index] = place(single, k, batch_singles[k].clone(), single_shape.iter().product());
            }
            if let Some(values) = batch_attributed.get(k) {
                attributed[index] = place(&plan, k, values.clone(), cells);
            }
            spans[index] = baselines.span(kind, k);
            let rows = baselines.rows_of(k);
            let prompt = &prompts[index];
            summaries[index] = Some(PromptSummary {
                tokens: prepared.tokens(tokenizer, index),
                corrupted_positions: prompt.corrupted_positions.clone(),
                answer: prompt.answers.answer,
                counter_answer: prompt.answers.counter,
                clean: summary(kind, &baselines.clean[rows.clone()]),
                corrupted: summary(kind, &baselines.corrupted[rows]),
                denominator: baselines.span(kind, k),
            });
        }
        // Results stream in: the grid so far, after each batch of prompts.
        let ran: Vec<usize> = (0..n).filter(|&i| summaries[i].is_some()).collect();
        let so_far: Vec<Vec<f64>> = ran.iter().map(|&i| effects[i].clone()).collect();
        let so_far_spans: Vec<f64> = ran.iter().map(|&i| spans[i]).collect();
        let progress = Progress {
            done,
            total,
            stage,
            partial: Some((
                aggregate(&so_far, &so_far_spans, normalized, rule).grid,
                axes.clone(),
            )),
        };
        if !observer.progress(&progress).await {
            return Err(PatchingError::Cancelled);
        }
    }

    let summaries: Vec<PromptSummary> = summaries
        .into_iter()
        .map(|s| s.expect("every prompt ran"))
        .collect();
    let dataset = aggregate(&effects, &spans, normalized, rule);
    let many = n > 1;
    // The statistics of the grid the results report: the ratio of means from the effects and
    // their denominators, per-prompt normalization as the mean of each prompt's normalized
    // values, or the mean effect.
    let stats: Option<CellStats> = if many {
        let of = |values: &[Vec<f64>], d: Option<&[f64]>| {
            cell_stats(values, d, &spec.stats).map_err(|e| PatchingError::Spec(format!("statistics: {e}")))
        };
        Some(match (normalized, rule) {
            (true, Normalize::RatioOfMeans) => of(&effects, Some(&spans))?,
            (true, Normalize::PerPrompt) => of(&dataset.per_prompt, None)?,
            (false, _) => of(&effects, None)?,
        })
    } else {
        None
    };
    let mean = dataset.grid;
    let raw_mean = aggregate(&raws, &spans, false, rule).grid;
    let detected: Vec<Detection> = detect_with(spec.detect, &mean, &shape, stats.as_ref());
    let window = match (spec.window, single_shape) {
        (Some(w), Some(single_shape)) => {
            let single_mean = aggregate(&singles, &spans, normalized, rule).grid;
            let summed = window::summed_single_layer(&single_mean, n_layer, w.size);
            let peak = |v: &[f64]| {
                v.iter()
                    .filter(|x| x.is_finite())
                    .fold(0.0f64, |m, x| m.max(x.abs()))
            };
            let denominator = peak(&summed);
            Some(WindowContrast {
                size: w.size,
                single_layer: Grid::new(single_shape.clone(), single_mean),
                summed_single_layer: Grid::new(single_shape, summed),
                peak_ratio: (denominator > 0.0).then(|| peak(&mean) / denominator),
            })
        }
        _ => None,
    };
    let attribution = spec.attribution.then(|| {
        let grid = aggregate(&attributed, &spans, normalized, rule).grid;
        AttributionContrast {
            spearman: crate::analysis::stats::spearman(&grid, &mean),
            grid: Grid::new(shape.clone(), grid),
        }
    });
    Ok(Results {
        spec: original.clone(),
        dataset: prepared.dataset.clone(),
        metric: kind,
        normalized,
        direction: spec.direction,
        axes,
        grid: Grid::new(shape.clone(), mean),
        raw_grid: Grid::new(shape.clone(), raw_mean),
        sd_grid: many.then(|| Grid::new(shape.clone(), dataset.sd)),
        stats: stats.map(|s| Uncertainty::new(s, &shape)),
        prompt_grids: if many {
            dataset
                .per_prompt
                .into_iter()
                .map(|g| Grid::new(shape.clone(), g))
                .collect()
        } else {
            Vec::new()
        },
        denominator: aggregate::mean(&spans),
        small_denominators: if many {
            small_denominators(&spans)
        } else {
            Vec::new()
        },
        clean_metric: summaries.iter().map(|s| s.clean.metric).sum::<f64>() / n as f64,
        corrupted_metric: summaries.iter().map(|s| s.corrupted.metric).sum::<f64>() / n as f64,
        prompts: summaries,
        detected,
        window,
        attribution,
        noise: prepared.noise.as_ref().map(|n| NoiseSummary {
            sigma: n.sigma,
            nu: n.nu,
            samples: n.samples,
        }),
    })
}

/// Runs one plan's sweep on a group of prompts (this worker's part of it, then the others'
/// readings swapped in: the run's sweep number `calls`), reporting progress.
#[allow(clippy::too_many_arguments)]
async fn sweep(
    model: &Gpt2,
    runs: &PromptRuns,
    spec: &ExperimentSpec,
    plan: &Plan,
    options: &RunOptions,
    observer: &mut impl Observer,
    done: &mut usize,
    calls: &mut usize,
    total: usize,
    stage: &str,
) -> Result<Vec<Vec<Reading>>, PatchingError> {
    let strategy = options.strategy.unwrap_or(Strategy::Batched);
    let share = observer.share();
    let mut sweep = Sweep::new(
        model,
        runs,
        spec.direction,
        &plan.patches,
        options.budget,
        strategy,
    )
    .share(share);
    loop {
        let more = match options.threads {
            #[cfg(not(target_family = "wasm"))]
            threads @ 2.. => sweep.step_threads(threads)?,
            _ => sweep.step().await?,
        };
        if !more {
            break;
        }
        let progress = Progress {
            done: *done + sweep.done(),
            total,
            stage: stage.to_string(),
            partial: None,
        };
        if !observer.progress(&progress).await {
            return Err(PatchingError::Cancelled);
        }
    }
    *done += sweep.done();
    for shard in swap(observer, share, calls, || sweep.shard()).await? {
        sweep.merge(shard)?;
    }
    sweep.into_readings()
}

/// The other workers' shards of the run's sweep number `calls` (none when the run is not
/// shared), for this worker's `mine`; numbers the next sweep.
async fn swap(
    observer: &mut impl Observer,
    share: Share,
    calls: &mut usize,
    mine: impl FnOnce() -> Shard,
) -> Result<Vec<Shard>, PatchingError> {
    let theirs = if share.is_shared() {
        observer.exchange(*calls, mine()).await?
    } else {
        Vec::new()
    };
    *calls += 1;
    Ok(theirs)
}

/// The attributed effect of each patch on each prompt of a batch, `[prompt][patch]`.
#[cfg(feature = "autodiff")]
async fn attribute(
    model: &Gpt2,
    runs: &PromptRuns,
    spec: &ExperimentSpec,
    plan: &Plan,
) -> Result<Vec<Vec<f64>>, PatchingError> {
    if !spec.target.component.has_attribution() {
        return Err(PatchingError::Target(
            "attribution patching is not defined for path patching".into(),
        ));
    }
    crate::sweep::attribution::attribution(model, runs, spec.direction, spec.metric.kind, &plan.patches).await
}

#[cfg(not(feature = "autodiff"))]
async fn attribute(
    _: &Gpt2,
    _: &PromptRuns,
    _: &ExperimentSpec,
    _: &Plan,
) -> Result<Vec<Vec<f64>>, PatchingError> {
    Err(PatchingError::Target(
        "this build has no autodiff, which attribution patching needs".into(),
    ))
}
