//! Preparing an experiment, once, for every caller (the run, the editor's check, looking inside
//! a cell, the sensitivity sweep): a generated dataset is generated into prompts, every input
//! is checked against the model and tokenized, the answers become token ids, Gaussian noise
//! gets its positions, σ and ν, and prompts of different lengths are aligned by role.
//!
//! Prompts of one length share their positions: a per-position grid has a `pos` axis labelled
//! with the first prompt's tokens, as TransformerLens's grids do. Prompts of different lengths
//! (IOI over every template) are aligned by the role of each token (`IO`, `S2`, `END`; the
//! generators name them, a spec may give them, and otherwise they count from the end:
//! `END`, `END-1`, …): a per-position grid then has a `role` axis, and each cell averages the
//! prompts that have that role.

use std::collections::HashMap;

use patchbay_model::{Gpt2, Gpt2Tokenizer, ModelError};
use serde::Serialize;

use crate::corruption::Corrupted;
use crate::corruption::gn::{self, Noise};
use crate::corruption::str::str_pair;
use crate::metric::Answers;
use crate::runs::PromptInput;
use crate::spec::target::Choice;
use crate::sweep::batched::{self, Budget, Work};
use crate::sweep::plan::Plan;
use crate::sweep::window;
use crate::tasks::{self, DatasetReport, numbered};
use crate::{Corruption, Detect, ExperimentSpec, PatchingError, PromptPair};

/// The role of the prepended `<|endoftext|>`.
pub const BOS_ROLE: &str = "BOS";

/// One prompt of a spec, checked and tokenized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreparedPrompt {
    pub clean: Vec<u32>,
    /// STR's corrupted tokens, aligned with `clean`.
    pub corrupted: Option<Vec<u32>>,
    /// Positions that differ (STR) or are noised (GN).
    pub corrupted_positions: Vec<usize>,
    pub answers: Answers,
    /// For prompts aligned by role: the index in [`Prepared::roles`] of each position's role.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub role_of: Vec<usize>,
}

impl PreparedPrompt {
    /// The first position the corruption changes.
    pub fn first_changed(&self) -> usize {
        self.corrupted_positions.iter().copied().min().unwrap_or(0)
    }
}

/// An experiment ready to run.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The spec that runs: the given one with a generated dataset written out as its prompts.
    pub spec: ExperimentSpec,
    /// What generating the dataset did, when the spec names one.
    pub dataset: Option<DatasetReport>,
    pub prompts: Vec<PreparedPrompt>,
    /// Gaussian noise as it runs; `None` for STR.
    pub noise: Option<Noise>,
    /// The position axis's labels: the first prompt's tokens, readable, or the roles.
    pub labels: Vec<String>,
    /// Whether prompts are aligned by role (their lengths differ).
    pub by_role: bool,
}

/// Checks every input of `spec` against the model and tokenizes its prompts (generating a
/// dataset first), without running a patch: what an editor calls as the user types.
pub async fn prepare(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
) -> Result<Prepared, PatchingError> {
    let mut spec = spec.clone();
    let dataset = match spec.dataset.take() {
        Some(dataset) => {
            let (pairs, report) = tasks::generate(model, tokenizer, &dataset, spec.prepend_bos).await?;
            spec.prompts = pairs;
            Some(report)
        }
        None => None,
    };
    if spec.prompts.is_empty() {
        return Err(PatchingError::NoPrompts);
    }
    if matches!(spec.detect, Detect::Significant { .. }) && spec.prompts.len() < 2 {
        return Err(PatchingError::Spec(
            "`detect.significant` tests each cell over a dataset's prompts: it needs at least 2 (one prompt's sign-flip p-value is 1)".into(),
        ));
    }
    let config = &model.config;
    let mut prompts: Vec<PreparedPrompt> = Vec::new();
    for (i, pair) in spec.prompts.iter().enumerate() {
        if pair.clean.is_empty() {
            return Err(ModelError::EmptyPrompt.into());
        }
        let clean = tokenizer.encode(&pair.clean, spec.prepend_bos)?;
        if clean.len() > config.n_positions {
            return Err(ModelError::ContextOverflow {
                tokens: clean.len(),
                n_ctx: config.n_positions,
            }
            .into());
        }
        let (corrupted, corrupted_positions) = match &spec.corruption {
            Corruption::Str => {
                let text = pair.corrupted.as_deref().ok_or_else(|| {
                    PatchingError::Spec(format!("prompt {i} has no `corrupted` prompt, which STR needs"))
                })?;
                let p = str_pair(tokenizer, &pair.clean, text, spec.prepend_bos, i)?;
                (Some(p.corrupted), p.differing)
            }
            Corruption::Gn(noise) => (
                None,
                gn::positions(noise, tokenizer, pair, spec.prepend_bos, clean.len(), i)?,
            ),
        };
        let answers = Answers::of(tokenizer, pair, i)?;
        answers.check_for(spec.metric.kind, tokenizer, pair, i)?;
        prompts.push(PreparedPrompt {
            clean,
            corrupted,
            corrupted_positions,
            answers,
            role_of: Vec::new(),
        });
    }
    let shortest = prompts.iter().map(|p| p.clean.len()).min().expect("prompts");
    let by_role = prompts.iter().any(|p| p.clean.len() != shortest);
    let labels = if by_role {
        refuse_positions(&spec)?;
        let roles: Vec<Vec<String>> = spec
            .prompts
            .iter()
            .zip(&prompts)
            .enumerate()
            .map(|(i, (pair, p))| roles(tokenizer, pair, p.clean.len(), spec.prepend_bos, i))
            .collect::<Result<_, _>>()?;
        let axis = role_axis(&roles);
        let index: HashMap<&str, usize> = axis.iter().enumerate().map(|(k, r)| (r.as_str(), k)).collect();
        for (p, roles) in prompts.iter_mut().zip(&roles) {
            p.role_of = roles.iter().map(|r| index[r.as_str()]).collect();
        }
        axis
    } else {
        prompts[0].clean.iter().map(|&id| tokenizer.display(id)).collect()
    };
    spec.target.check(config, shortest)?;
    if let Some(w) = spec.window {
        window::check(w.size, config.n_layer)?;
    }
    let noise = match &spec.corruption {
        Corruption::Gn(noise) => {
            let noised: Vec<(&[u32], &[usize])> = prompts
                .iter()
                .map(|p| (p.clean.as_slice(), p.corrupted_positions.as_slice()))
                .collect();
            Some(gn::level(model, tokenizer, noise, &noised).await?)
        }
        Corruption::Str => None,
    };
    let prepared = Prepared {
        spec,
        dataset,
        prompts,
        noise,
        labels,
        by_role,
    };
    let size = prepared.bound(model)?;
    if size.flops > MAX_RUN_FLOPS {
        return Err(PatchingError::Spec(format!(
            "this run would take about {:.1e} floating-point operations ({} patches × {} rows × {} tokens), more than Patchbay's limit of {MAX_RUN_FLOPS:.0e}: use fewer prompts or a coarser target",
            size.flops, size.patches, size.rows, size.tokens
        )));
    }
    Ok(prepared)
}

/// Prompts of different lengths share no positions: a spec that names positions needs one
/// length.
fn refuse_positions(spec: &ExperimentSpec) -> Result<(), PatchingError> {
    if let Choice::These(_) = spec.target.positions {
        return Err(PatchingError::Target(
            "these prompts have different lengths, so position numbers mean different tokens in each: patch each position (a role axis) or all of them".into(),
        ));
    }
    if let Corruption::Gn(gn) = &spec.corruption
        && !gn.positions.is_empty()
    {
        return Err(PatchingError::Corruption(
            "these prompts have different lengths, so noise positions mean different tokens in each: leave `positions` empty to noise the tokens each pair's STR prompt changes".into(),
        ));
    }
    Ok(())
}

/// The role of each of a prompt's `len` tokens: the pair's own (after `BOS`), or counted from
/// the end.
fn roles(
    tokenizer: &Gpt2Tokenizer,
    pair: &PromptPair,
    len: usize,
    prepend_bos: bool,
    index: usize,
) -> Result<Vec<String>, PatchingError> {
    let bos = usize::from(prepend_bos);
    let mut roles: Vec<String> = if prepend_bos {
        vec![BOS_ROLE.to_string()]
    } else {
        Vec::new()
    };
    if pair.roles.is_empty() {
        roles.extend((bos..len).map(|p| match len - 1 - p {
            0 => "END".to_string(),
            k => format!("END-{k}"),
        }));
        return Ok(roles);
    }
    let tokens = len - bos;
    if pair.roles.len() != tokens {
        return Err(PatchingError::Spec(format!(
            "prompt {index} names {} roles for its {tokens} tokens ({})",
            pair.roles.len(),
            tokenizer
                .encode(&pair.clean, false)?
                .iter()
                .map(|&id| tokenizer.display(id))
                .collect::<Vec<_>>()
                .join("|")
        )));
    }
    roles.extend(pair.roles.iter().cloned());
    let unique = numbered(roles.clone());
    if unique != roles {
        return Err(PatchingError::Spec(format!(
            "prompt {index} names a role twice; every token needs its own"
        )));
    }
    Ok(roles)
}

/// Every role, ordered by where it sits in the prompts that have it (its mean relative
/// position), first seen first on ties.
fn role_axis(roles: &[Vec<String>]) -> Vec<String> {
    let mut seen: Vec<(String, f64, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for prompt in roles {
        let last = prompt.len().saturating_sub(1).max(1) as f64;
        for (p, role) in prompt.iter().enumerate() {
            let k = *index.entry(role.clone()).or_insert_with(|| {
                seen.push((role.clone(), 0.0, 0));
                seen.len() - 1
            });
            seen[k].1 += p as f64 / last;
            seen[k].2 += 1;
        }
    }
    let mut order: Vec<usize> = (0..seen.len()).collect();
    let place = |k: usize| seen[k].1 / seen[k].2 as f64;
    order.sort_by(|&a, &b| place(a).total_cmp(&place(b)).then(a.cmp(&b)));
    order.into_iter().map(|k| seen[k].0.clone()).collect()
}

/// The page's CPU fallback on one worker (single-threaded wasm with 128-bit SIMD), as the size
/// estimate models it, measured by `bench/estimate.mjs` in Chromium. Its matrix products:
pub const CPU_FLOPS_PER_SECOND: f64 = 3e10;
/// The rest of a position's way through a block (LayerNorm, GELU, softmax, sums, one element
/// at a time, and the overhead of small products), per element of the residual stream.
pub const CPU_SECONDS_PER_ELEMENT: f64 = 1.2e-7;
/// Reading a logit of the full distribution (softmax, log-probabilities), which every metric
/// but the logit difference needs.
pub const CPU_SECONDS_PER_LOGIT: f64 = 3e-8;
/// How fast a pass goes through the weights, which it reads (and packs) once however few its
/// rows.
pub const CPU_WEIGHT_BYTES_PER_SECOND: f64 = 5.4e9;
/// What each prompt costs beyond its passes (its tokens, readings and statistics).
pub const CPU_SECONDS_PER_PROMPT: f64 = 4e-3;
/// Runs the CPU would take longer than this are worth a warning before they start.
pub const CPU_WARNING_SECONDS: f64 = 20.0;
/// The most floating-point operations one run may ask for (about an hour of a fast GPU): a
/// larger dataset or target is refused before anything runs.
pub const MAX_RUN_FLOPS: f64 = 1e16;

/// How big a run is, before it runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSize {
    /// Cells of the grid.
    pub cells: usize,
    /// Patched runs of each prompt: the grid's, a window's single layers, path patching's
    /// second runs, attribution's forward and backward passes.
    pub patches: usize,
    /// Rows of every run: prompts × noise samples.
    pub rows: usize,
    /// Tokens of each prompt.
    pub tokens: usize,
    /// Floating-point operations of the patched runs, at most: as if each were a full forward
    /// pass. [`MAX_RUN_FLOPS`] bounds it.
    pub flops: f64,
    /// Seconds the page's CPU fallback would take on one worker, estimated from the work the
    /// sweeps plan (see [`Prepared::size`]).
    pub cpu_seconds: f64,
    /// Whether that is over [`CPU_WARNING_SECONDS`].
    pub slow_on_cpu: bool,
}

impl Prepared {
    /// The size of this run on `model`: its bound, and an estimate of the seconds it takes on
    /// the CPU. The estimate counts what the batched sweeps compute ([`batched::work`]: patches
    /// that change nothing cost nothing, positions before the first one a batch edits come from
    /// the cache), the clean and corrupted runs, every pass's reading of the weights, the full
    /// distribution where the metric reads it and each prompt's own costs; path patching and
    /// attribution count as full passes. Its rates are the page's (`bench/estimate.mjs`: within
    /// 0.8–1.12 of its time on runs of a second or more).
    pub fn size(&self, model: &Gpt2) -> Result<RunSize, PatchingError> {
        let mut size = self.bound(model)?;
        if size.flops <= MAX_RUN_FLOPS {
            size.cpu_seconds = self.cpu_seconds(model)?;
            size.slow_on_cpu = size.cpu_seconds > CPU_WARNING_SECONDS;
        }
        Ok(size)
    }

    /// The run's size, as if every patched run were a full forward pass (the CPU fields as
    /// if the CPU computed that).
    fn bound(&self, model: &Gpt2) -> Result<RunSize, PatchingError> {
        let prepared = self;
        let spec = &prepared.spec;
        let c = &model.config;
        let plan = Plan::new(
            &spec.target,
            c.n_layer,
            c.n_head,
            &prepared.labels,
            spec.window.map(|w| w.size),
        )?;
        let cells: usize = plan.shape().iter().product();
        let mut patches = cells;
        if spec.window.is_some() {
            patches += plan.patches.len();
        }
        if matches!(spec.target.receivers, Some(crate::Receivers::Heads { .. })) {
            patches += cells;
        }
        if spec.attribution {
            patches += 3;
        }
        let samples = prepared.noise.as_ref().map_or(1, |n| n.samples);
        let rows = prepared.prompts.len() * samples;
        let tokens = prepared.prompts.iter().map(|p| p.clean.len()).max().unwrap_or(0);
        let (d, layers) = (c.n_embd as f64, c.n_layer as f64);
        // Per row: every token through every block (12 d² weights, 2 flops each), and the
        // unembedding at the last position.
        let per_row = tokens as f64 * layers * 24.0 * d * d + 2.0 * c.vocab_size as f64 * d;
        let flops = (patches * rows) as f64 * per_row;
        let cpu_seconds = flops / CPU_FLOPS_PER_SECOND;
        Ok(RunSize {
            cells,
            patches,
            rows,
            tokens,
            flops,
            cpu_seconds,
            slow_on_cpu: cpu_seconds > CPU_WARNING_SECONDS,
        })
    }

    /// The estimate of [`Prepared::size`], in seconds, over the groups of prompts as they run.
    fn cpu_seconds(&self, model: &Gpt2) -> Result<f64, PatchingError> {
        let c = &model.config;
        let samples = self.noise.as_ref().map_or(1, |n| n.samples);
        let budget = Budget::default();
        // Groups of one length, first difference and size do the same work.
        let mut known: HashMap<(usize, usize, usize), Work> = HashMap::new();
        let mut total = Work::default();
        for group in self.batches(budget) {
            let len = self.prompts[group[0]].clean.len();
            let first_diff = group.iter().map(|&i| self.prompts[i].first_changed()).min();
            let key = (len, first_diff.unwrap_or(0), group.len() * samples);
            let work = match known.get(&key) {
                Some(&work) => work,
                None => {
                    let work = self.group_work(model, key, budget)?;
                    known.insert(key, work);
                    work
                }
            };
            total += work;
        }
        let (d, vocab) = (c.n_embd as f64, c.vocab_size as f64);
        let readout = match self.spec.metric.kind {
            // The two columns of r and r′.
            crate::metric::MetricKind::LogitDiff => 4.0 * d / CPU_FLOPS_PER_SECOND,
            _ => 2.0 * vocab * d / CPU_FLOPS_PER_SECOND + vocab * CPU_SECONDS_PER_LOGIT,
        };
        let position = 24.0 * d * d / CPU_FLOPS_PER_SECOND + d * CPU_SECONDS_PER_ELEMENT;
        let pass = 4.0 * c.n_layer as f64 * 12.0 * d * d / CPU_WEIGHT_BYTES_PER_SECOND;
        Ok(total.block_positions as f64 * position
            + total.readouts as f64 * readout
            + total.passes as f64 * pass
            + self.prompts.len() as f64 * CPU_SECONDS_PER_PROMPT)
    }

    /// The work of one group of `rows` rows of `len` tokens that first differ at `first_diff`.
    fn group_work(
        &self,
        model: &Gpt2,
        (len, first_diff, rows): (usize, usize, usize),
        budget: Budget,
    ) -> Result<Work, PatchingError> {
        let spec = &self.spec;
        let (n_layer, n_head) = (model.config.n_layer, model.config.n_head);
        let positions: Vec<String> = (0..len).map(|p| p.to_string()).collect();
        let plan = |window| Plan::new(&spec.target, n_layer, n_head, &positions, window);
        let full = |runs: usize| Work {
            block_positions: runs * rows * len * n_layer,
            passes: (runs * rows).div_ceil(budget.max_batch).max(1),
            readouts: runs * rows,
        };
        // The clean and corrupted runs.
        let mut work = full(2);
        let window = spec.window.map(|w| w.size);
        if spec.target.receivers.is_some() {
            let cells: usize = plan(window)?.shape().iter().product();
            work += full(2 * cells);
        } else {
            work += batched::work(&plan(window)?.patches, first_diff, len, rows, n_layer, budget);
        }
        if window.is_some() {
            work += batched::work(&plan(None)?.patches, first_diff, len, rows, n_layer, budget);
        }
        if spec.attribution {
            work += full(3);
        }
        Ok(work)
    }

    /// The prompts as they run, in groups of one length, as many in each as leave room for
    /// several variants in a batched pass within `budget`.
    pub fn batches(&self, budget: Budget) -> Vec<Vec<usize>> {
        let samples = self.noise.as_ref().map_or(1, |n| n.samples);
        let chunk = (budget.max_batch / (4 * samples)).max(1);
        self.groups()
            .into_iter()
            .flat_map(|group| group.chunks(chunk).map(<[usize]>::to_vec).collect::<Vec<_>>())
            .collect()
    }
}

impl Prepared {
    /// The inputs of the clean and corrupted runs of prompt `index`; `replay` replaces the
    /// first prompt's noise values (`[samples, positions, d_model]`), as tests that share noise
    /// with the reference do.
    pub fn input(&self, model: &Gpt2, index: usize, replay: Option<&[f32]>) -> PromptInput {
        let prompt = &self.prompts[index];
        let corrupted = match (&prompt.corrupted, &self.noise) {
            (Some(tokens), _) => Corrupted::Tokens(tokens.clone()),
            (None, Some(noise)) => noise.corrupted(
                model,
                self.spec.seed,
                index,
                prompt.clean.len(),
                &prompt.corrupted_positions,
                replay.filter(|_| index == 0),
            ),
            (None, None) => unreachable!("prepare pairs STR with tokens and GN with noise"),
        };
        PromptInput {
            clean: prompt.clean.clone(),
            corrupted,
            first_changed: prompt.first_changed(),
            answers: prompt.answers.clone(),
        }
    }

    /// The prompts, grouped by token length (first seen first), as they run: each group shares
    /// one batched run.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, p) in self.prompts.iter().enumerate() {
            match groups.iter_mut().find(|(len, _)| *len == p.clean.len()) {
                Some((_, members)) => members.push(i),
                None => groups.push((p.clean.len(), vec![i])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }

    /// The readable tokens of prompt `index`.
    pub fn tokens(&self, tokenizer: &Gpt2Tokenizer, index: usize) -> Vec<String> {
        self.prompts[index]
            .clean
            .iter()
            .map(|&id| tokenizer.display(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_where_they_sit() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let axis = role_axis(&[
            r(&["BOS", "IO", "S2", "END"]),
            r(&["BOS", "x", "IO", "y", "S2", "END"]),
        ]);
        assert_eq!(axis, r(&["BOS", "x", "IO", "y", "S2", "END"]));
    }
}
