//! Circuits checked by exact edge-level patching, as TransformerLens 4.x's `faithfulness` and
//! the EAP-IG library's `evaluate_graph` run them.
//!
//! - A circuit (a set of edges) runs on the clean input with every edge *outside* it cut: its
//!   reader takes the writer's output in the corrupted run instead of the writer's live output.
//!   Every writer still computes from its own (partly cut) inputs, so what the kept edges carry
//!   is the circuit's own activations. With every edge kept this is the clean run, with none the
//!   corrupted run. Its faithfulness is its M normalized like a patching grid:
//!   `(M_circuit − M_corrupted) / (M_clean − M_corrupted)`.
//! - One edge's exact effect is the base run with that edge alone carrying its writer's output
//!   in the source run (the corrupted run with one edge clean, when denoising), minus the base
//!   run: what its attribution score approximates.

use patchbay_model::Gpt2;

use crate::circuit::edge_runs::{EdgeRuns, m_of};
use crate::circuit::forward::{Cut, forward};
use crate::circuit::graph::Graph;
use crate::{Direction, PatchingError};

/// M of each row of the clean run with every edge not in `kept` cut to its corrupted value.
pub async fn circuit_m(
    model: &Gpt2,
    graph: &Graph,
    runs: &EdgeRuns,
    kept: &[bool],
) -> Result<Vec<f64>, PatchingError> {
    let cut: Vec<bool> = kept.iter().map(|k| !k).collect();
    let cut = Cut {
        edges: &cut,
        values: &runs.corrupted.writers,
    };
    let (logits, _) = forward(model, graph, runs.clean.input.clone(), Some(&cut), None)?;
    m_of(&runs.scorer, runs.kind, logits).await
}

/// M of each row of the base run with edge `edge` alone carrying the source run's value, minus
/// the base run's M.
pub async fn edge_effect(
    model: &Gpt2,
    graph: &Graph,
    runs: &EdgeRuns,
    direction: Direction,
    edge: usize,
) -> Result<Vec<f64>, PatchingError> {
    let (base, source) = (runs.base(direction), runs.source(direction));
    let mut cut = vec![false; graph.edges.len()];
    cut[edge] = true;
    let cut = Cut {
        edges: &cut,
        values: &source.writers,
    };
    let (logits, _) = forward(model, graph, base.input.clone(), Some(&cut), None)?;
    let m = m_of(&runs.scorer, runs.kind, logits).await?;
    Ok(m.iter().zip(&base.m).map(|(p, b)| p - b).collect())
}
