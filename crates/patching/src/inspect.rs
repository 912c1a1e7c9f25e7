//! Looking inside one patch: a head's attention pattern in the clean run, the corrupted run and
//! the patched run of one cell of a grid (on the first prompt that has the cell; noise samples
//! averaged).

use patchbay_model::burn::prelude::*;
use patchbay_model::{Entry, Gpt2, Gpt2Tokenizer, HookPoint, Hooks, LogitsAt, read_f32};
use serde::Serialize;

use crate::corruption::gn;
use crate::prepare::prepare;
use crate::runs::PromptRuns;
use crate::sweep::batched::interventions;
use crate::sweep::plan::Plan;
use crate::{Component, ExperimentSpec, PatchingError};

/// A head's attention patterns, each `[dest_pos][src_pos]`, averaged over noise samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeadPatterns {
    pub layer: usize,
    pub head: usize,
    pub tokens: Vec<String>,
    pub clean: Vec<Vec<f32>>,
    pub corrupted: Vec<Vec<f32>>,
    pub patched: Vec<Vec<f32>>,
}

async fn pattern_of(t: Tensor<4>, head: usize) -> Result<Vec<Vec<f32>>, PatchingError> {
    let [rows, _, len, _] = t.dims();
    let mean = t.narrow(1, head, 1).sum_dim(0).div_scalar(rows as f32);
    let values = read_f32(mean).await?;
    Ok(values.chunks(len).map(<[f32]>::to_vec).collect())
}

/// The attention pattern of head (`layer`, `head`) in the clean, corrupted and patched runs of
/// grid cell `cell` of `spec`.
pub async fn head_patterns(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
    cell: usize,
    layer: usize,
    head: usize,
) -> Result<HeadPatterns, PatchingError> {
    let config = &model.config;
    if layer >= config.n_layer || head >= config.n_head {
        return Err(PatchingError::Target(format!(
            "no head {layer}.{head} in this model"
        )));
    }
    if spec.target.component == Component::Path {
        return Err(PatchingError::Target(
            "pick a cell of an activation-patching grid".into(),
        ));
    }
    let prepared = prepare(model, tokenizer, spec).await?;
    let spec = &prepared.spec;
    // The first prompt that has the cell, and the cell among its own positions.
    let n_roles = prepared.labels.len();
    let (index, tokens, plan, local) = (0..prepared.prompts.len())
        .find_map(|i| {
            let tokens = prepared.tokens(tokenizer, i);
            let plan = Plan::new(
                &spec.target,
                config.n_layer,
                config.n_head,
                &tokens,
                spec.window.map(|w| w.size),
            )
            .ok()?;
            let local = if prepared.by_role {
                plan.role_cells(&prepared.prompts[i].role_of, n_roles)
                    .iter()
                    .position(|&c| c == cell)?
            } else {
                cell
            };
            (local < plan.patches.len()).then_some((i, tokens, plan, local))
        })
        .ok_or_else(|| PatchingError::Target(format!("the grid has no cell {cell}")))?;
    let patch = &plan.patches[local];
    let mut hooks: Vec<HookPoint> = patch.edits.iter().map(|e| e.hook).collect();
    hooks.push(HookPoint::Pattern(layer));
    let input = prepared.input(model, index, None);
    let runs = PromptRuns::new(model, vec![input], &hooks, spec.metric.kind).await?;
    let base = runs.base(spec.direction);
    let rows = runs.rows();
    let mut edits = gn::intervention(base.noise.clone(), rows)?;
    edits.extend(interventions(
        runs.source(spec.direction),
        &[patch],
        &[Entry::resid_pre(0)],
        rows,
    )?);
    let mut cache = patchbay_model::ActivationCache::new([HookPoint::Pattern(layer)]);
    model.forward(
        &base.tokens,
        &mut Hooks::none().with_interventions(&edits).with_cache(&mut cache),
        LogitsAt::Last,
    )?;
    Ok(HeadPatterns {
        layer,
        head,
        tokens,
        clean: pattern_of(runs.clean.cache.per_head(HookPoint::Pattern(layer))?, head).await?,
        corrupted: pattern_of(runs.corrupted.cache.per_head(HookPoint::Pattern(layer))?, head).await?,
        patched: pattern_of(cache.per_head(HookPoint::Pattern(layer))?, head).await?,
    })
}
