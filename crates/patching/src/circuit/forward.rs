//! GPT-2's forward pass as the edge [`Graph`] sees it: every writer's output kept apart, and
//! every reader's input summed from them, so that a reader can take a gradient of its own (a
//! zero-valued probe added to that input alone, for edge attribution) and an edge can be cut
//! (its writer's live output replaced, for that reader alone, by the writer's output in another
//! run, for exact edge-level patching).
//!
//! Each head's query, key and value inputs go through `ln_1` and their own slice of `W_Q`,
//! `W_K`, `W_V` separately, as TransformerLens's `use_split_qkv_input` computes them; with no
//! probe and no cut edge, the pass computes the model's own logits (checked against
//! [`Gpt2::forward`] in the tests). Each layer's attention pattern takes a probe too, and each
//! run keeps every layer's residual stream, queries and keys, for AtP*'s QK fix
//! ([`crate::circuit::qk_fix`]).

use patchbay_model::burn::prelude::*;
use patchbay_model::burn::tensor::activation::softmax;
use patchbay_model::{Block, Gpt2, ModelError, gelu_new};

use crate::PatchingError;
use crate::circuit::graph::Graph;

/// The output of every writer of one run, `[rows, len, d_model]` each, by writer index, and
/// what each layer's attention read.
#[derive(Clone, Debug)]
pub struct Writers {
    pub outputs: Vec<Tensor<3>>,
    /// Per layer.
    pub attention: Vec<AttentionInputs>,
}

/// One layer's attention in a run with no edge cut: the residual stream every head reads,
/// `[rows, len, d_model]`, and the queries and keys, `[rows, n_head, len, d_head]`.
#[derive(Clone, Debug)]
pub struct AttentionInputs {
    pub resid: Tensor<3>,
    pub q: Tensor<4>,
    pub k: Tensor<4>,
}

/// A block's `W_Q`, `W_K`, `W_V` per head, `[3, n_head, d_model, d_head]`, and their biases
/// `[3, n_head, 1, d_head]`.
pub fn qkv_weights(block: &Block, n_head: usize) -> (Tensor<4>, Option<Tensor<4>>) {
    let attn = &block.attn;
    let [d, three_d] = attn.c_attn.weight.val().dims();
    let d_head = three_d / 3 / n_head;
    let w = attn
        .c_attn
        .weight
        .val()
        .reshape([d, 3, n_head, d_head])
        .permute([1, 2, 0, 3]);
    let b = attn
        .c_attn
        .bias
        .as_ref()
        .map(|b| b.val().reshape([3, n_head, 1, d_head]));
    (w, b)
}

/// Causal attention scores `q kᵀ / √d_head` of queries `[.., len_q, d_head]` and keys
/// `[.., len_k, d_head]` (broadcast over leading dimensions), keys after the query at
/// `−∞`; both cover positions `0..len`.
pub fn causal_scores<const D: usize>(q: Tensor<D>, k: Tensor<D>) -> Tensor<D> {
    let dims = q.dims();
    let (len, d_head) = (dims[D - 2], dims[D - 1]);
    let scores = q
        .matmul(k.swap_dims(D - 2, D - 1))
        .div_scalar((d_head as f32).sqrt());
    let shape = scores.dims();
    let future = Tensor::<2, Bool>::tril_mask([len, len], 0, &scores.device())
        .unsqueeze::<D>()
        .expand(shape);
    scores.mask_fill(future, f32::NEG_INFINITY)
}

impl Writers {
    /// Every writer's output minus `other`'s, stacked and flattened: `[writers, rows · len ·
    /// d_model]`.
    pub fn minus(&self, other: &Writers) -> Tensor<2> {
        let rows: Vec<Tensor<2>> = self
            .outputs
            .iter()
            .zip(&other.outputs)
            .map(|(a, b)| flat(a.clone() - b.clone()))
            .collect();
        Tensor::cat(rows, 0)
    }
}

/// A tensor `[rows, len, d_model]` as one row `[1, rows · len · d_model]`.
fn flat(t: Tensor<3>) -> Tensor<2> {
    let n = t.dims().iter().product::<usize>();
    t.reshape([1, n])
}

/// Edges whose reader takes `values`' writer output instead of the live one: `cut[edge]`.
pub struct Cut<'a> {
    pub edges: &'a [bool],
    pub values: &'a Writers,
}

/// Zero tensors added to every reader's input: the gradient of the metric with respect to a
/// probe is its reader's. Created on an autodiff device with `require_grad`.
#[derive(Clone, Debug)]
pub struct Probes {
    /// Per layer, `[3, n_head, rows, len, d_model]`: query, key and value inputs of each head.
    pub heads: Vec<Tensor<5>>,
    /// Per layer, `[rows, n_head, len, len]`: added to the attention pattern.
    pub patterns: Vec<Tensor<4>>,
    /// Per layer, `[rows, len, d_model]`.
    pub mlps: Vec<Tensor<3>>,
    /// The final residual stream, `[rows, len, d_model]`.
    pub logits: Tensor<3>,
}

impl Probes {
    /// Zero probes for `rows` rows of `len` tokens on `device` (an autodiff device).
    pub fn zeros(model: &Gpt2, rows: usize, len: usize, device: &Device) -> Self {
        let c = &model.config;
        let stream = || Tensor::<3>::zeros([rows, len, c.n_embd], device).require_grad();
        Probes {
            heads: (0..c.n_layer)
                .map(|_| Tensor::<5>::zeros([3, c.n_head, rows, len, c.n_embd], device).require_grad())
                .collect(),
            patterns: (0..c.n_layer)
                .map(|_| Tensor::<4>::zeros([rows, c.n_head, len, len], device).require_grad())
                .collect(),
            mlps: (0..c.n_layer).map(|_| stream()).collect(),
            logits: stream(),
        }
    }
}

/// The input writer's output: token embeddings (plus GN's `noise` at `hook_embed`) plus the
/// positional embeddings, `[rows, len, d_model]`.
pub fn input_embedding(
    model: &Gpt2,
    tokens: &[Vec<u32>],
    noise: Option<Tensor<3>>,
) -> Result<Tensor<3>, PatchingError> {
    let len = model.check_tokens(tokens)?;
    let (rows, d) = (tokens.len(), model.config.n_embd);
    let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
    let mut embed = model.embed_tokens(&flat).reshape([rows, len, d]);
    if let Some(noise) = noise {
        embed = embed + noise;
    }
    let pos = model.wpe.val().narrow(0, 0, len).unsqueeze::<3>();
    Ok(embed + pos)
}

/// The sum over cut edges into readers `readers` (consecutive, all with the same writers
/// `0..upstream`) of `values − live`, `[readers.len(), rows · len · d_model]`; `None` when no
/// edge into them is cut.
fn correction(
    graph: &Graph,
    cut: Option<&Cut>,
    live: &[Tensor<3>],
    readers: std::ops::Range<usize>,
    upstream: usize,
) -> Option<Tensor<2>> {
    let cut = cut?;
    let n = readers.len();
    let mut columns: Vec<usize> = Vec::new();
    let mut mask: Vec<Vec<f32>> = Vec::new();
    for writer in 0..upstream {
        let column: Vec<f32> = readers
            .clone()
            .map(|r| {
                let edge = graph.edge(writer, r).expect("writers before the reader");
                f32::from(u8::from(cut.edges[edge]))
            })
            .collect();
        if column.iter().any(|&v| v != 0.0) {
            columns.push(writer);
            mask.push(column);
        }
    }
    if columns.is_empty() {
        return None;
    }
    let device = live[0].device();
    // [readers, cut writers] · [cut writers, rows · len · d_model]
    let mut values = vec![0f32; n * columns.len()];
    for (j, column) in mask.iter().enumerate() {
        for (i, &v) in column.iter().enumerate() {
            values[i * columns.len() + j] = v;
        }
    }
    let f = Tensor::<2>::from_data(TensorData::new(values, [n, columns.len()]), &device);
    let deltas: Vec<Tensor<2>> = columns
        .iter()
        .map(|&w| flat(cut.values.outputs[w].clone() - live[w].clone()))
        .collect();
    Some(f.matmul(Tensor::cat(deltas, 0)))
}

/// Runs the model from the input writer's output `input` (`[rows, len, d_model]`): the
/// last-position logits `[rows, vocab]` and every writer's output.
pub fn forward(
    model: &Gpt2,
    graph: &Graph,
    input: Tensor<3>,
    cut: Option<&Cut>,
    probes: Option<&Probes>,
) -> Result<(Tensor<2>, Writers), PatchingError> {
    let c = &model.config;
    let [rows, len, d] = input.dims();
    let (n_head, d_head) = (c.n_head, d / c.n_head);
    if let Some(cut) = cut
        && cut.edges.len() != graph.edges.len()
    {
        return Err(PatchingError::Model(ModelError::Backend(format!(
            "{} edge flags for a graph of {} edges",
            cut.edges.len(),
            graph.edges.len()
        ))));
    }
    let mut writers: Vec<Tensor<3>> = vec![input.clone()];
    let mut attention = Vec::new();
    let mut resid = input;
    for (layer, block) in model.blocks.iter().enumerate() {
        // The query, key and value inputs of every head: [3, n_head, rows, len, d].
        let mut x: Tensor<5> = resid.clone().unsqueeze::<5>().expand([3, n_head, rows, len, d]);
        let start = graph.reader_start(layer);
        if let Some(delta) = correction(
            graph,
            cut,
            &writers,
            start..start + 3 * n_head,
            graph.layer_start(layer),
        ) {
            x = x + delta.reshape([3, n_head, rows, len, d]);
        }
        if let Some(p) = probes {
            x = x + p.heads[layer].clone();
        }
        let attn = &block.attn;
        let (w, b) = qkv_weights(block, n_head);
        let normalized = block.ln_1.forward(x).reshape([3, n_head, rows * len, d]);
        let mut qkv = normalized.matmul(w);
        if let Some(b) = b {
            qkv = qkv + b;
        }
        // [rows, n_head, len, d_head] each.
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([n_head, rows, len, d_head])
                .swap_dims(0, 1)
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let mut pattern = softmax(causal_scores(q.clone(), k.clone()), 3);
        if let Some(p) = probes {
            pattern = pattern + p.patterns[layer].clone();
        }
        attention.push(AttentionInputs {
            resid: resid.clone(),
            q,
            k,
        });
        // Each head's z W_O[h]: [n_head, rows, len, d].
        let z = pattern
            .matmul(v)
            .swap_dims(0, 1)
            .reshape([n_head, rows * len, d_head]);
        let w_o = attn.c_proj.weight.val().reshape([n_head, d_head, d]);
        let heads = z.matmul(w_o).reshape([n_head, rows, len, d]);
        for h in 0..n_head {
            writers.push(heads.clone().narrow(0, h, 1).reshape([rows, len, d]));
        }
        resid = resid + heads.sum_dim(0).reshape([rows, len, d]);
        if let Some(b) = &attn.c_proj.bias {
            resid = resid + b.val().unsqueeze::<3>();
        }

        let mlp_reader = graph.mlp_reader(layer);
        let mut x = resid.clone();
        if let Some(delta) = correction(
            graph,
            cut,
            &writers,
            mlp_reader..mlp_reader + 1,
            graph.mlp_writer(layer),
        ) {
            x = x + delta.reshape([rows, len, d]);
        }
        if let Some(p) = probes {
            x = x + p.mlps[layer].clone();
        }
        let mlp = &block.mlp;
        let out = mlp
            .c_proj
            .forward(gelu_new(mlp.c_fc.forward(block.ln_2.forward(x))));
        writers.push(out.clone());
        resid = resid + out;
    }
    let logits_reader = graph.logits_reader();
    let mut x = resid;
    if let Some(delta) = correction(
        graph,
        cut,
        &writers,
        logits_reader..logits_reader + 1,
        graph.writers(),
    ) {
        x = x + delta.reshape([rows, len, d]);
    }
    if let Some(p) = probes {
        x = x + p.logits.clone();
    }
    let last = model.ln_final(x.narrow(1, len - 1, 1)).reshape([rows, d]);
    let pieces: Vec<Tensor<2>> = model
        .wte
        .chunks
        .iter()
        .map(|chunk| last.clone().matmul(chunk.val().transpose()))
        .collect();
    Ok((
        Tensor::cat(pieces, 1),
        Writers {
            outputs: writers,
            attention,
        },
    ))
}
