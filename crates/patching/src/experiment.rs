//! Running an experiment spec end to end: check every input, build the clean and corrupted
//! runs of each prompt, sweep the target (and, when asked, the single-layer contrast of a
//! window and attribution patching), and aggregate over prompts.

use std::future::Future;

use patchbay_model::{Gpt2, Gpt2Tokenizer, HookPoint, ModelError};

use crate::corruption::{embedding_std, gaussian_noise, noise_tensor, str_pair};
use crate::path::{self, PathSweep};
use crate::run::{Corrupted, PromptInput};
use crate::{
    AttributionContrast, Budget, Component, Corruption, Detect, Detection, ExperimentSpec, GaussianNoise,
    Grid, MetricKind, NoiseSummary, PatchingError, Plan, PromptRuns, PromptSummary, Reading, Results,
    RunSummary, Strategy, Sweep, WindowContrast, compare, window,
};

/// How an experiment runs (not part of the spec: it changes speed, never results).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub budget: Budget,
    pub strategy: Option<Strategy>,
    /// Replay these GN noise values (`[samples, positions, d_model]`, for the first prompt)
    /// instead of drawing them: how tests share noise with the reference.
    pub noise: Option<Vec<f32>>,
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
    pub partial: Option<(Vec<f64>, Vec<crate::Axis>)>,
}

/// Told of progress between batches; answers whether to go on.
pub trait Observer {
    fn progress(&mut self, progress: &Progress) -> impl Future<Output = bool>;
}

impl<F: FnMut(&Progress) -> bool> Observer for F {
    async fn progress(&mut self, progress: &Progress) -> bool {
        self(progress)
    }
}

/// One prompt of a spec, checked and tokenized.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Prepared {
    pub clean: Vec<u32>,
    /// STR's corrupted tokens, aligned with `clean`.
    pub corrupted: Option<Vec<u32>>,
    /// Positions that differ (STR) or are noised (GN).
    pub corrupted_positions: Vec<usize>,
    pub answer: u32,
    pub counter: Option<u32>,
    /// R and R' of `prob_diff`: the answer sets, or {r} and {r'}.
    pub answer_set: Vec<u32>,
    pub counter_set: Vec<u32>,
}

/// The id of an answer, which must be one token; `which` names it in the message.
pub(crate) fn answer_token(
    tokenizer: &Gpt2Tokenizer,
    text: &str,
    prompt: usize,
    which: &'static str,
) -> Result<u32, PatchingError> {
    tokenizer
        .single_token(text)
        .map_err(|e| PatchingError::NotOneToken {
            prompt,
            which,
            text: text.to_string(),
            reason: match e {
                ModelError::Tokenizer(reason) => reason,
                other => other.to_string(),
            },
        })
}

/// Checks every input of a spec against the model and tokenizes its prompts, without running
/// anything: what an editor calls as the user types.
pub fn prepare(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
) -> Result<Vec<Prepared>, PatchingError> {
    if spec.prompts.is_empty() {
        return Err(PatchingError::NoPrompts);
    }
    let config = &model.config;
    let mut prepared = Vec::new();
    for (i, pair) in spec.prompts.iter().enumerate() {
        if pair.clean.is_empty() {
            return Err(ModelError::EmptyPrompt.into());
        }
        let clean_len = tokenizer.encode(&pair.clean, spec.prepend_bos)?.len();
        if clean_len > config.n_positions {
            return Err(ModelError::ContextOverflow {
                tokens: clean_len,
                n_ctx: config.n_positions,
            }
            .into());
        }
        let (clean, corrupted, corrupted_positions) = match &spec.corruption {
            Corruption::Str => {
                let text = pair.corrupted.as_deref().ok_or_else(|| {
                    PatchingError::Spec(format!("prompt {i} has no `corrupted` prompt, which STR needs"))
                })?;
                let p = str_pair(tokenizer, &pair.clean, text, spec.prepend_bos, i)?;
                (p.clean, Some(p.corrupted), p.differing)
            }
            Corruption::Gn(gn) => {
                let clean = tokenizer.encode(&pair.clean, spec.prepend_bos)?;
                let fail = |m: String| Err(PatchingError::Corruption(m));
                if gn.positions.is_empty() {
                    return fail("Gaussian noise needs at least one position to noise".into());
                }
                if let Some(&p) = gn.positions.iter().find(|&&p| p >= clean.len()) {
                    return fail(format!(
                        "noise position {p} is out of range: the prompt has {} positions",
                        clean.len()
                    ));
                }
                if gn.samples == 0 || !(gn.scale.is_finite() && gn.scale >= 0.0) {
                    return fail("Gaussian noise needs at least one sample and a non-negative scale".into());
                }
                (clean, None, gn.positions.clone())
            }
        };
        let answer = answer_token(tokenizer, &pair.answer, i, "answer")?;
        let counter = pair
            .counter_answer
            .as_deref()
            .map(|t| answer_token(tokenizer, t, i, "counter-answer"))
            .transpose()?;
        let set = |texts: &[String], which| -> Result<Vec<u32>, PatchingError> {
            texts
                .iter()
                .map(|t| answer_token(tokenizer, t, i, which))
                .collect()
        };
        let answer_set = match set(&pair.answer_set, "answer set")? {
            ids if ids.is_empty() => vec![answer],
            ids => ids,
        };
        let counter_set = match set(&pair.counter_set, "counter set")? {
            ids if ids.is_empty() => counter.into_iter().collect(),
            ids => ids,
        };
        match spec.metric.kind {
            MetricKind::LogitDiff => match counter {
                None => {
                    return Err(PatchingError::MissingCounterAnswer {
                        prompt: i,
                        metric: "logit difference",
                    });
                }
                Some(c) if c == answer => {
                    return Err(PatchingError::SameAnswers {
                        prompt: i,
                        text: pair.answer.clone(),
                    });
                }
                _ => {}
            },
            MetricKind::ProbDiff => {
                if counter_set.is_empty() {
                    return Err(PatchingError::MissingCounterAnswer {
                        prompt: i,
                        metric: "probability difference",
                    });
                }
                if let Some(&shared) = answer_set.iter().find(|id| counter_set.contains(id)) {
                    return Err(PatchingError::OverlappingSets {
                        prompt: i,
                        text: tokenizer.display(shared),
                    });
                }
            }
            MetricKind::Prob | MetricKind::Kl => {}
        }
        if let Some(first) = prepared.first().map(|p: &Prepared| p.clean.len())
            && first != clean.len()
        {
            return Err(PatchingError::RaggedDataset {
                first,
                prompt: i,
                len: clean.len(),
            });
        }
        prepared.push(Prepared {
            clean,
            corrupted,
            corrupted_positions,
            answer,
            counter,
            answer_set,
            counter_set,
        });
    }
    spec.target.check(config, prepared[0].clean.len())?;
    if let Some(w) = spec.window {
        window::check(w.size, config.n_layer)?;
    }
    Ok(prepared)
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

/// GN's settings as run: the spec's, σ (over the stated texts, or over the noised tokens of
/// every prompt) and ν = scale × σ. `None` for STR.
pub(crate) async fn noise_level(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
    prepared: &[Prepared],
) -> Result<Option<(GaussianNoise, f64, f64)>, PatchingError> {
    let Corruption::Gn(gn) = &spec.corruption else {
        return Ok(None);
    };
    let ids: Vec<u32> = match &gn.sigma_texts {
        Some(texts) => texts
            .iter()
            .map(|t| tokenizer.encode(t, false))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        None => prepared
            .iter()
            .flat_map(|p| gn.positions.iter().map(|&i| p.clean[i]))
            .collect(),
    };
    let sigma = embedding_std(model, &ids).await?;
    Ok(Some((gn.clone(), sigma, gn.scale * sigma)))
}

/// The corrupted run of prompt `index`: its STR tokens, or seeded noise (`replay` overrides the
/// first prompt's noise values).
pub(crate) fn corrupted_input(
    model: &Gpt2,
    spec: &ExperimentSpec,
    prompt: &Prepared,
    index: usize,
    noise: Option<&(GaussianNoise, f64, f64)>,
    replay: Option<&[f32]>,
) -> Corrupted {
    match (&prompt.corrupted, noise) {
        (Some(tokens), _) => Corrupted::Tokens(tokens.clone()),
        (None, Some((gn, _, nu))) => {
            let d_model = model.config.n_embd;
            let values = match (replay, index) {
                (Some(values), 0) => values.to_vec(),
                _ => gaussian_noise(
                    spec.seed.wrapping_add(index as u64),
                    gn.samples,
                    gn.positions.len(),
                    d_model,
                    *nu,
                ),
            };
            Corrupted::Noise {
                noise: noise_tensor(
                    &values,
                    gn.samples,
                    &gn.positions,
                    prompt.clean.len(),
                    d_model,
                    &model.device(),
                ),
                first_position: *gn.positions.iter().min().expect("prepare checked non-empty"),
            }
        }
        (None, None) => unreachable!("prepare pairs STR with tokens"),
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
    let original = spec;
    let (expanded, dataset) = crate::dataset::expand(model, tokenizer, spec).await?;
    let spec = &expanded;
    let prepared = prepare(model, tokenizer, spec)?;
    let config = &model.config;
    let (n_layer, n_head) = (config.n_layer, config.n_head);
    let kind = spec.metric.kind;
    let labels: Vec<String> = prepared[0]
        .clean
        .iter()
        .map(|&id| tokenizer.display(id))
        .collect();

    // What to sweep.
    let is_path = spec.target.component == Component::Path;
    let receivers = spec.target.receivers.clone();
    let plan = if is_path {
        Plan {
            axes: path::axes(n_layer, n_head),
            patches: Vec::new(),
        }
    } else {
        spec.target
            .plan(n_layer, n_head, &labels, spec.window.map(|w| w.size))?
    };
    let single = match spec.window {
        Some(_) => Some(spec.target.plan(n_layer, n_head, &labels, None)?),
        None => None,
    };
    let mut hooks: Vec<HookPoint> = (0..n_layer)
        .flat_map(|l| [HookPoint::ResidPre(l), HookPoint::K(l), HookPoint::V(l)])
        .collect();
    hooks.extend(plan.patches.iter().flat_map(|p| p.edits.iter().map(|e| e.hook)));
    if let Some(r) = &receivers {
        hooks.extend(path::hooks(n_layer, r));
    }
    hooks.sort();
    hooks.dedup();

    let noise_settings = noise_level(model, tokenizer, spec, &prepared).await?;

    // Prompts run together, as many as leave room for several variants in each batched pass.
    let samples = match &spec.corruption {
        Corruption::Gn(gn) => gn.samples,
        Corruption::Str => 1,
    };
    let chunk = (options.budget.max_batch / (4 * samples)).clamp(1, prepared.len());
    let chunks = prepared.len().div_ceil(chunk);
    let cells = plan.axes.iter().map(|a| a.labels.len()).product::<usize>();
    let per_chunk = cells + single.as_ref().map_or(0, |s| s.patches.len()) + usize::from(spec.attribution);
    let total = per_chunk * chunks;
    let mut done = 0;

    // Per prompt: effects, raw values, single-layer effects; attribution per chunk, weighted.
    let mut effects: Vec<Vec<f64>> = Vec::new();
    let mut raws: Vec<Vec<f64>> = Vec::new();
    let mut singles: Vec<Vec<f64>> = Vec::new();
    let mut attribution_sum: Option<Vec<f64>> = None;
    let mut summaries = Vec::new();
    for (c, group) in prepared.chunks(chunk).enumerate() {
        let first = c * chunk;
        let stage = if prepared.len() == 1 {
            "patching".to_string()
        } else {
            format!(
                "prompts {}–{} of {}",
                first + 1,
                first + group.len(),
                prepared.len()
            )
        };
        let inputs = group
            .iter()
            .enumerate()
            .map(|(k, p)| PromptInput {
                clean: p.clean.clone(),
                corrupted: corrupted_input(
                    model,
                    spec,
                    p,
                    first + k,
                    noise_settings.as_ref(),
                    options.noise.as_deref(),
                ),
                answer: p.answer,
                counter: p.counter,
                answer_set: p.answer_set.clone(),
                counter_set: p.counter_set.clone(),
            })
            .collect();
        let runs = PromptRuns::new(model, inputs, &hooks).await?;
        let baselines = &runs.baselines;
        // One value per prompt of the group and per patch, from each patch's readings.
        let per_prompt = |readings: &[Vec<Reading>], f: &dyn Fn(usize, &[Reading]) -> f64| -> Vec<Vec<f64>> {
            (0..group.len())
                .map(|k| {
                    readings
                        .iter()
                        .map(|rows| f(k, &rows[baselines.rows_of(k)]))
                        .collect()
                })
                .collect()
        };
        let effect = |k: usize, rows: &[Reading]| {
            baselines.effect(kind, spec.direction, spec.metric.normalized, k, rows)
        };
        let raw =
            |_: usize, rows: &[Reading]| rows.iter().map(|r| kind.raw(r)).sum::<f64>() / rows.len() as f64;

        let readings = if let Some(receivers) = &receivers {
            let mut sweep = PathSweep::new(model, &runs, spec.direction, receivers.clone());
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
            done += sweep.total();
            sweep.into_readings()?
        } else {
            sweep(
                model, &runs, spec, &plan, options, observer, &mut done, total, &stage,
            )
            .await?
        };
        effects.extend(per_prompt(&readings, &effect));
        raws.extend(per_prompt(&readings, &raw));
        if let Some(single) = &single {
            let readings = sweep(
                model, &runs, spec, single, options, observer, &mut done, total, &stage,
            )
            .await?;
            singles.extend(per_prompt(&readings, &effect));
        }
        if spec.attribution {
            let chunk_mean = attribute(model, &runs, spec, &plan).await?;
            let sum = attribution_sum.get_or_insert_with(|| vec![0.0; chunk_mean.len()]);
            for (s, v) in sum.iter_mut().zip(&chunk_mean) {
                *s += v * group.len() as f64;
            }
            done += 1;
        }
        for (k, prompt) in group.iter().enumerate() {
            let rows = baselines.rows_of(k);
            summaries.push(PromptSummary {
                tokens: prompt.clean.iter().map(|&id| tokenizer.display(id)).collect(),
                corrupted_positions: prompt.corrupted_positions.clone(),
                answer: prompt.answer,
                counter_answer: prompt.counter,
                clean: summary(kind, &baselines.clean[rows.clone()]),
                corrupted: summary(kind, &baselines.corrupted[rows]),
            });
        }
        // Results stream in: the mean so far, after each group of prompts.
        let progress = Progress {
            done,
            total,
            stage,
            partial: Some((compare::mean_sd(&effects).0, plan.axes.clone())),
        };
        if !observer.progress(&progress).await {
            return Err(PatchingError::Cancelled);
        }
    }

    let shape = plan.shape();
    let (mean, sd) = compare::mean_sd(&effects);
    let (raw_mean, _) = compare::mean_sd(&raws);
    let detected: Vec<Detection> = match spec.detect {
        Detect::Sigma(k) => compare::detect(&mean, &shape, k),
        Detect::Threshold(t) => compare::detect_threshold(&mean, &shape, t),
    };
    let many = prepared.len() > 1;
    let window = match (spec.window, single) {
        (Some(w), Some(single)) => {
            let (single_mean, _) = compare::mean_sd(&singles);
            let summed = window::summed_single_layer(&single_mean, n_layer, w.size);
            let peak = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let denominator = peak(&summed);
            Some(WindowContrast {
                size: w.size,
                single_layer: Grid::new(single.shape(), single_mean),
                summed_single_layer: Grid::new(single.shape(), summed),
                peak_ratio: (denominator > 0.0).then(|| peak(&mean) / denominator),
            })
        }
        _ => None,
    };
    let attribution = attribution_sum.map(|sum| {
        let grid: Vec<f64> = sum.iter().map(|s| s / prepared.len() as f64).collect();
        AttributionContrast {
            spearman: compare::spearman(&grid, &mean),
            grid: Grid::new(shape.clone(), grid),
        }
    });
    Ok(Results {
        spec: original.clone(),
        dataset,
        metric: kind,
        normalized: spec.metric.normalized,
        direction: spec.direction,
        axes: plan.axes.clone(),
        grid: Grid::new(shape.clone(), mean),
        raw_grid: Grid::new(shape.clone(), raw_mean),
        sd_grid: many.then(|| Grid::new(shape.clone(), sd)),
        prompt_grids: if many {
            effects.into_iter().map(|g| Grid::new(shape.clone(), g)).collect()
        } else {
            Vec::new()
        },
        clean_metric: summaries.iter().map(|s| s.clean.metric).sum::<f64>() / summaries.len() as f64,
        corrupted_metric: summaries.iter().map(|s| s.corrupted.metric).sum::<f64>() / summaries.len() as f64,
        prompts: summaries,
        detected,
        window,
        attribution,
        noise: noise_settings.map(|(gn, sigma, nu)| NoiseSummary {
            sigma,
            nu,
            samples: gn.samples,
        }),
    })
}

/// Runs one plan's sweep on one prompt, reporting progress.
#[allow(clippy::too_many_arguments)]
async fn sweep(
    model: &Gpt2,
    runs: &PromptRuns,
    spec: &ExperimentSpec,
    plan: &Plan,
    options: &RunOptions,
    observer: &mut impl Observer,
    done: &mut usize,
    total: usize,
    stage: &str,
) -> Result<Vec<Vec<Reading>>, PatchingError> {
    let strategy = options.strategy.unwrap_or(Strategy::Batched);
    let mut sweep = Sweep::new(
        model,
        runs,
        spec.direction,
        &plan.patches,
        options.budget,
        strategy,
    );
    while sweep.step().await? {
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
    *done += sweep.total();
    sweep.into_readings()
}

#[cfg(feature = "autodiff")]
async fn attribute(
    model: &Gpt2,
    runs: &PromptRuns,
    spec: &ExperimentSpec,
    plan: &Plan,
) -> Result<Vec<f64>, PatchingError> {
    if spec.target.component == Component::Path {
        return Err(PatchingError::Target(
            "attribution patching is not defined for path patching".into(),
        ));
    }
    crate::attribution::attribution(
        model,
        runs,
        spec.direction,
        spec.metric.kind,
        spec.metric.normalized,
        &plan.patches,
    )
    .await
}

#[cfg(not(feature = "autodiff"))]
async fn attribute(
    _: &Gpt2,
    _: &PromptRuns,
    _: &ExperimentSpec,
    _: &Plan,
) -> Result<Vec<f64>, PatchingError> {
    Err(PatchingError::Target(
        "this build has no autodiff, which attribution patching needs".into(),
    ))
}
