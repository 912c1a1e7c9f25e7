//! AtP*'s QK fix (Kramár et al. 2024) for the edges into heads' queries and keys: instead of
//! linearizing through the query or key, the attention pattern is recomputed exactly and only
//! the step from the pattern to M is linear.
//!
//! Per position, as the graph's edge is the sum of TransformerLens's per-position edges: edge
//! u → h⟨q⟩ at position p gives head h's query input at p alone the delta
//! `Δ = a_source(u) − a_base(u)` at p, so the new query is `ln_1(x_p + Δ_p) W_Q[h] + b_Q[h]`
//! (`x` the base run's residual stream, `ln_1` exact at that reader), the scores of query row p
//! are recomputed with the base run's keys, the softmax exactly, and the score is
//! `Σ_j (pattern′[p, j] − pattern[p, j]) · ∂M/∂pattern[p, j]`. For u → h⟨k⟩ the new key at p
//! changes column p of every query row i ≥ p; each row's softmax with that one logit moved by
//! `δ_i` is, with `A = Σ_{j≠p} pattern[i, j] g[i, j]`, `B = Σ_{j≠p} pattern[i, j]` and
//! `w = pattern[i, p] e^{δ_i}`, `Σ_j pattern′[i, j] g[i, j] = g[i, p] + (A − B g[i, p]) / (B + w)`
//! (stable when w overflows). Scores are summed over p and rows as EAP's are. The gradient
//! `g = ∂M/∂pattern` is the base run's, from EAP's backward pass.
//!
//! Cost: every writer's delta goes through `ln_1` and `W_Q`, `W_K` of every later layer,
//! `Σ_l writers(l) · rows · len · 4 d_model²` flops (d_head times the linear edges' dot
//! products); the recomputed patterns add `len²` per query or key edge and position.

use patchbay_model::Gpt2;
use patchbay_model::burn::prelude::*;
use patchbay_model::burn::tensor::activation::{log_softmax, softmax};
use patchbay_model::read_f32;

use crate::PatchingError;
use crate::circuit::forward::{Writers, causal_scores, qkv_weights};
use crate::circuit::graph::{Graph, Qkv};

/// Writer deltas through `ln_1` per chunk, in floats of `[writers, rows, len, d_model]`.
const CHUNK_FLOATS: usize = 1 << 22;

/// The QK-fixed score of every edge into a query or key, summed over rows: `(edge, score)`,
/// for the base run `base`, writer deltas `delta` (`[writers, rows · len · d_model]`, source
/// minus base) and each layer's gradient of M (weighted over rows as EAP's is) with respect to
/// the pattern at the base run (`[rows, n_head, len, len]`).
pub async fn qk_scores(
    model: &Gpt2,
    graph: &Graph,
    base: &Writers,
    delta: &Tensor<2>,
    pattern_grads: &[Tensor<4>],
) -> Result<Vec<(usize, f64)>, PatchingError> {
    let n_head = graph.n_head;
    let [rows, len, d] = base.outputs[0].dims();
    let device = base.outputs[0].device();
    let per_writer = rows * len * d;
    let chunk = (CHUNK_FLOATS / per_writer).max(1);
    // [len, len]: 1 off the diagonal (sums over j ≠ p), and 1 where key p ≤ query i.
    let eye = Tensor::<2>::eye(len, &device);
    let off_diagonal = Tensor::<2>::ones([len, len], &device) - eye;
    let causal = Tensor::<2>::ones([len, len], &device).tril(0);
    let mut out = Vec::new();
    for (layer, block) in model.blocks.iter().enumerate() {
        let inputs = &base.attention[layer];
        let (q, k) = (inputs.q.clone(), inputs.k.clone());
        let d_head = q.dims()[3];
        let scale = 1.0 / (d_head as f32).sqrt();
        // [rows, n_head, len, len]: the base pattern, its log, the gradient.
        let log_p = log_softmax(causal_scores(q.clone(), k.clone()), 3);
        let p = log_p.clone().exp();
        let g = pattern_grads[layer].clone();
        let pg = p.clone() * g.clone();
        let big_g = pg.clone().sum_dim(3);
        let a = pg.matmul(off_diagonal.clone().unsqueeze::<4>());
        let b = p.matmul(off_diagonal.clone().unsqueeze::<4>());
        let (w, bias) = qkv_weights(block, n_head);
        let w_qk = w.narrow(0, 0, 2);
        let bias_qk = bias.map(|b| b.narrow(0, 0, 2));
        let upstream = graph.layer_start(layer);
        let mut q_scores = Vec::new();
        let mut k_scores = Vec::new();
        for start in (0..upstream).step_by(chunk) {
            let c = chunk.min(upstream - start);
            let dx = delta.clone().narrow(0, start, c).reshape([c, rows, len, d]);
            let x = inputs.resid.clone().unsqueeze::<4>() + dx;
            let normalized = block.ln_1.forward(x).reshape([1, 1, c * rows * len, d]);
            // [2, n_head, c · rows · len, d_head]: the new queries and keys.
            let mut qk = normalized.matmul(w_qk.clone());
            if let Some(b) = &bias_qk {
                qk = qk + b.clone();
            }
            // [c, rows, n_head, len, d_head] each.
            let part = |i: usize| {
                qk.clone()
                    .narrow(0, i, 1)
                    .reshape([n_head, c, rows, len, d_head])
                    .permute([1, 2, 0, 3, 4])
            };
            let (q_new, k_new) = (part(0), part(1));

            // Queries: row p of the pattern, recomputed with the base keys.
            let pattern = softmax(causal_scores(q_new, k.clone().unsqueeze::<5>()), 4);
            let row = (pattern * g.clone().unsqueeze::<5>()).sum_dim(4) - big_g.clone().unsqueeze::<5>();
            q_scores.push(summed(row, [c, rows, n_head]));

            // Keys: column p of every row i ≥ p, its logit moved by δ[i, p].
            let shift = q
                .clone()
                .unsqueeze::<5>()
                .matmul((k_new - k.clone().unsqueeze::<5>()).swap_dims(3, 4))
                .mul_scalar(scale);
            let moved = (log_p.clone().unsqueeze::<5>() + shift).exp();
            let g5 = g.clone().unsqueeze::<5>();
            let (a5, b5) = (a.clone().unsqueeze::<5>(), b.clone().unsqueeze::<5>());
            let new = g5.clone() + (a5 - b5.clone() * g5).div((b5 + moved).clamp_min(f32::MIN_POSITIVE));
            let change = (new - big_g.clone().unsqueeze::<5>()) * causal.clone().unsqueeze::<5>();
            k_scores.push(summed(change, [c, rows, n_head]));
        }
        let q_values = read_f32(Tensor::cat(q_scores, 0)).await?;
        let k_values = read_f32(Tensor::cat(k_scores, 0)).await?;
        for (input, values) in [(Qkv::Q, q_values), (Qkv::K, k_values)] {
            for writer in 0..upstream {
                for head in 0..n_head {
                    let edge = graph
                        .edge(writer, graph.head_reader(layer, head, input))
                        .expect("writers before the layer");
                    out.push((edge, values[writer * n_head + head] as f64));
                }
            }
        }
    }
    Ok(out)
}

/// `[c, rows, n_head, a, b]` summed over rows and its last two dimensions: `[c, n_head]`.
fn summed(t: Tensor<5>, [c, rows, n_head]: [usize; 3]) -> Tensor<2> {
    let per_row = t.sum_dim(4).sum_dim(3).reshape([c, rows, n_head]);
    per_row.sum_dim(1).reshape([c, n_head])
}
