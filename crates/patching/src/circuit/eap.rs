//! Edge attribution patching: every edge's effect on the metric from backward passes alone.
//!
//! - **EAP** (Syed et al. 2023): `score(u→v) = (a_source(u) − a_base(u)) · ∂M/∂input_v`, the
//!   gradient taken at the base run, summed over positions and the model dimension. With the
//!   default denoising direction the base run is the corrupted one and the source the clean
//!   one, which is TransformerLens 4.x's convention (`attribution_patch(...,
//!   EdgeAttributionConfig(granularity="edge"))`: gradient on the corrupt run, delta clean minus
//!   corrupt): a positive score says that giving the edge its clean value moves M up, toward
//!   the clean run. Noising swaps the runs (gradient on the clean run, delta corrupted minus
//!   clean), the EAP-IG library's convention.
//! - **EAP-IG** (Hanna et al. 2024): the same delta times the gradient averaged over `m` points
//!   on the straight line between the two runs' input embeddings, `base + (k/m)(source − base)`
//!   for k = 0 … m − 1. Under noising these are exactly Hanna et al.'s points
//!   `z' + (k/m)(z − z')`, k = 1 … m, from the corrupted input z' to the clean z; under
//!   denoising the same rule starts at the corrupted run, so that one step is EAP, as
//!   TransformerLens 4.x's `ig_steps = 1` is.
//!
//! - With AtP*'s QK fix (`qk_fix`, EAP only), the edges into queries and keys are scored
//!   through the exact attention pattern instead ([`crate::circuit::qk_fix`]), with the pattern's gradient
//!   from the same backward pass.
//!
//! Gradients come from zero-valued probes at every reader's input ([`Probes`]); one backward
//! pass a step gives every edge of every prompt of the batch, and the sum over positions and
//! rows is one matrix product per layer, writers' deltas times readers' gradients.

use patchbay_model::Gpt2;
use patchbay_model::burn::prelude::*;
use patchbay_model::read_f32;

use crate::circuit::edge_runs::EdgeRuns;
use crate::circuit::forward::{Probes, forward};
use crate::circuit::graph::Graph;
use crate::circuit::qk_fix::qk_scores;
use crate::{Direction, PatchingError};

fn no_gradient() -> PatchingError {
    PatchingError::Model(patchbay_model::ModelError::Backend(
        "a reader's probe got no gradient".into(),
    ))
}

/// Each edge's attributed effect summed over the batch's prompts (each prompt's mean over its
/// noise samples), with the gradient averaged over `steps` points (1: EAP); with `qk_fix`
/// (one step only), the edges into queries and keys by [`crate::circuit::qk_fix`].
pub async fn attribute(
    model: &Gpt2,
    graph: &Graph,
    runs: &EdgeRuns,
    direction: Direction,
    steps: usize,
    qk_fix: bool,
) -> Result<Vec<f64>, PatchingError> {
    if qk_fix && steps != 1 {
        return Err(PatchingError::Spec(
            "AtP*'s QK fix takes EAP's one gradient, at the base run".into(),
        ));
    }
    let (base, source) = (runs.base(direction), runs.source(direction));
    let [rows, len, _] = base.input.dims();
    let device = model.device().autodiff();
    // [writers, rows · len · d_model]
    let delta = source.writers.minus(&base.writers);
    let n = delta.dims()[1];
    let weights = Tensor::<1>::full([rows], 1.0 / runs.samples as f32, &model.device());
    let (n_writers, n_readers) = (graph.writers(), graph.readers());
    let mut totals = vec![0.0f64; n_writers * n_readers];
    for k in 0..steps {
        let alpha = k as f32 / steps as f32;
        let input = base.input.clone() + (source.input.clone() - base.input.clone()).mul_scalar(alpha);
        let probes = Probes::zeros(model, rows, len, &device);
        let (logits, _) = forward(model, graph, input, None, Some(&probes))?;
        // Rows do not interact: the gradient of the weighted sum is each row's gradient of its
        // prompt's mean over samples.
        let m = (runs.scorer.m_tensor(runs.kind, logits) * weights.clone()).sum();
        let grads = m.backward();
        // [readers, rows · len · d_model], in reader order.
        let mut gradients: Vec<Tensor<2>> = Vec::new();
        for layer in 0..graph.n_layer {
            let g = probes.heads[layer].grad(&grads).ok_or_else(no_gradient)?;
            gradients.push(g.reshape([3 * graph.n_head, n]));
            let g = probes.mlps[layer].grad(&grads).ok_or_else(no_gradient)?;
            gradients.push(g.reshape([1, n]));
        }
        let g = probes.logits.grad(&grads).ok_or_else(no_gradient)?;
        gradients.push(g.reshape([1, n]));
        // [writers, readers]
        let products: Vec<Tensor<2>> = gradients
            .into_iter()
            .map(|g| delta.clone().matmul(g.transpose()))
            .collect();
        let values = read_f32(Tensor::cat(products, 1)).await?;
        for (total, v) in totals.iter_mut().zip(values) {
            *total += v as f64;
        }
        if qk_fix {
            let pattern_grads = probes
                .patterns
                .iter()
                .map(|p| p.grad(&grads).ok_or_else(no_gradient))
                .collect::<Result<Vec<_>, _>>()?;
            for (edge, score) in qk_scores(model, graph, &base.writers, &delta, &pattern_grads).await? {
                let e = graph.edges[edge];
                totals[e.writer * n_readers + e.reader] = score;
            }
        }
    }
    Ok(graph
        .edges
        .iter()
        .map(|e| totals[e.writer * n_readers + e.reader] / steps as f64)
        .collect())
}
