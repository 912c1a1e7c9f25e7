//! Attribution patching (Nanda; Kramár et al.): the first-order approximation of every patch
//! from one forward and one backward pass. A patch's attributed effect is
//! `(a_source - a_base) · ∂M/∂a`, the gradient taken at the base run, summed over the entries
//! the patch edits; burn's autodiff supplies the gradients through zero-valued probes added at
//! each hook.

use std::collections::BTreeMap;

use patchbay_model::burn::prelude::*;
use patchbay_model::{
    Activation, EditOp, Gpt2, HookLayout, HookPoint, Hooks, Intervention, LogitsAt, Selection, read_f32,
};

use crate::corruption::gn;
use crate::metric::MetricKind;
use crate::runs::PromptRuns;
use crate::sweep::plan::Patch;
use crate::{Direction, PatchingError};

fn backend_err(e: impl std::fmt::Debug) -> PatchingError {
    PatchingError::Model(patchbay_model::ModelError::Backend(format!("{e:?}")))
}

/// The attributed (un-normalized) effect of each patch on each prompt of `runs`, averaged over
/// its noise samples: `[prompt][patch]`, as exact effects are before a dataset is normalized.
pub async fn attribution(
    model: &Gpt2,
    runs: &PromptRuns,
    direction: Direction,
    kind: MetricKind,
    patches: &[Patch],
) -> Result<Vec<Vec<f64>>, PatchingError> {
    let base = runs.base(direction);
    let source = runs.source(direction);
    let device = model.device().autodiff();
    let hooks: Vec<HookPoint> = {
        let mut h: Vec<HookPoint> = patches
            .iter()
            .flat_map(|p| p.edits.iter().map(|e| e.hook))
            .collect();
        h.sort();
        h.dedup();
        h
    };
    // A zero probe per hook: adding it changes nothing, and its gradient is the activation's.
    let probes: BTreeMap<HookPoint, Activation> = hooks
        .iter()
        .map(|&hook| {
            let zeros = match base.cache.get(hook)? {
                Activation::Stream(t) => Activation::Stream(Tensor::zeros(t.dims(), &device).require_grad()),
                Activation::PerHead(t) => {
                    Activation::PerHead(Tensor::zeros(t.dims(), &device).require_grad())
                }
            };
            Ok((hook, zeros))
        })
        .collect::<Result<_, PatchingError>>()?;
    let mut interventions = gn::intervention(base.noise.clone(), base.rows)?;
    for (&hook, probe) in &probes {
        interventions.push(Intervention::new(
            hook,
            EditOp::Add,
            probe.clone(),
            &vec![Some(Selection::all()); base.rows],
        )?);
    }
    let logits = model.forward(
        &base.tokens,
        &mut Hooks::none().with_interventions(&interventions),
        LogitsAt::Last,
    )?;
    let [rows, _, vocab] = logits.dims();
    // Rows do not interact: the gradient of the summed M, each row's weighted by 1/samples, is
    // each row's gradient of its prompt's mean over samples.
    let samples = runs.baselines.samples;
    let weights = Tensor::<1>::full([rows], 1.0 / samples as f32, &model.device());
    let m = (runs.scorer.m_tensor(kind, logits.reshape([rows, vocab])) * weights).sum();
    let grads = m.backward();

    // (source - base) × gradient, per row, per hook.
    let mut products: BTreeMap<HookPoint, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (&hook, probe) in &probes {
        let (dims, values) = match (probe, base.cache.get(hook)?, source.cache.get(hook)?) {
            (Activation::Stream(p), Activation::Stream(b), Activation::Stream(s)) => {
                let g = p.grad(&grads).ok_or_else(|| backend_err("no gradient"))?;
                let d = (s.clone() - b.clone()) * g;
                (d.dims().to_vec(), read_f32(d).await?)
            }
            (Activation::PerHead(p), Activation::PerHead(b), Activation::PerHead(s)) => {
                let g = p.grad(&grads).ok_or_else(|| backend_err("no gradient"))?;
                let d = (s.clone() - b.clone()) * g;
                (d.dims().to_vec(), read_f32(d).await?)
            }
            _ => return Err(backend_err("mismatched activations")),
        };
        products.insert(hook, (dims, values));
    }

    Ok((0..rows / samples)
        .map(|prompt| {
            patches
                .iter()
                .map(|patch| {
                    let mut total = 0.0;
                    for edit in &patch.edits {
                        let (dims, values) = &products[&edit.hook];
                        let stride = values.len() / rows;
                        for row in prompt * samples..(prompt + 1) * samples {
                            total += sum_selected(
                                edit.hook.layout(),
                                dims,
                                &values[row * stride..(row + 1) * stride],
                                edit.positions.as_deref(),
                                edit.heads.as_deref(),
                            );
                        }
                    }
                    total
                })
                .collect()
        })
        .collect())
}

/// Sums one row of a `[rows, ...]` product over the selected positions and heads and every
/// trailing axis.
fn sum_selected(
    layout: HookLayout,
    dims: &[usize],
    values: &[f32],
    positions: Option<&[usize]>,
    heads: Option<&[usize]>,
) -> f64 {
    // Axes after the batch axis: (positions, heads, inner) in storage order.
    let (n_pos, n_head, inner, pattern) = match layout {
        HookLayout::Stream => (dims[1], 1, dims[2], false),
        HookLayout::Heads => (dims[1], dims[2], dims[3], false),
        HookLayout::Pattern => (dims[2], dims[1], dims[3], true),
    };
    let all_pos: Vec<usize> = (0..n_pos).collect();
    let all_heads: Vec<usize> = (0..n_head).collect();
    let mut total = 0.0;
    for &p in positions.unwrap_or(&all_pos) {
        for &h in heads.unwrap_or(&all_heads) {
            let start = if pattern {
                (h * n_pos + p) * inner
            } else {
                (p * n_head + h) * inner
            };
            total += values[start..start + inner]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
    }
    total
}
