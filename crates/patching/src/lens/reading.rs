//! The arithmetic of the logit lens and of direct logit attribution on one cached run, on the
//! device, with the model's own weights and final LayerNorm. Only the answers' rows of the
//! (tied) unembedding are used, so nothing is computed over the vocabulary; everything a run
//! gives is read back in one transfer (the browser's WebGPU reads asynchronously).

use patchbay_model::burn::prelude::*;
use patchbay_model::{Gpt2, HookPoint, read_f32};

use crate::PatchingError;
use crate::runs::CachedRun;

/// The hooks a run records for both views: the accumulated residual streams, the token and
/// positional embeddings, each layer's head outputs before `W_O` (`hook_z`) and MLP output.
pub fn hooks(n_layer: usize) -> Vec<HookPoint> {
    let mut hooks = vec![
        HookPoint::Embed,
        HookPoint::PosEmbed,
        HookPoint::ResidPost(n_layer - 1),
    ];
    for l in 0..n_layer {
        hooks.extend([HookPoint::ResidPre(l), HookPoint::Z(l), HookPoint::MlpOut(l)]);
    }
    hooks
}

/// The direct terms of the logit difference, in TransformerLens's order
/// (`cache.get_full_resid_decomposition(expand_neurons=False)`, then the unembedding's bias):
///
/// - each head's output `z_h W_O[h]`, layer by layer (`L{l}H{h}`);
/// - each MLP's output, its output bias included (`{l}_mlp_out`);
/// - `embed` and `pos_embed`;
/// - `bias`: every attention layer's output bias b_O together (a head's output has none);
/// - `ln_final_bias`: the final LayerNorm's bias β through the unembedding,
///   β · (W_U[:, r] − W_U[:, r′]), which is b_U[r] − b_U[r′] in TransformerLens's model with
///   the LayerNorm folded (GPT-2 has no unembedding bias of its own).
///
/// The first ones are the whole final residual stream, so with the final LayerNorm's scale
/// frozen the terms sum to the model's logit difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub n_layer: usize,
    pub n_head: usize,
}

impl Terms {
    /// Index of head `h` of layer `l`.
    pub fn head(self, l: usize, h: usize) -> usize {
        l * self.n_head + h
    }

    /// Index of layer `l`'s MLP.
    pub fn mlp(self, l: usize) -> usize {
        self.n_layer * self.n_head + l
    }

    pub fn embed(self) -> usize {
        self.mlp(self.n_layer)
    }

    pub fn pos_embed(self) -> usize {
        self.embed() + 1
    }

    pub fn bias(self) -> usize {
        self.embed() + 2
    }

    pub fn ln_final_bias(self) -> usize {
        self.embed() + 3
    }

    pub fn count(self) -> usize {
        self.embed() + 4
    }
}

/// What one run gives, row by row, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub rows: usize,
    pub len: usize,
    /// Accumulated streams: `n_layer + 1`.
    pub streams: usize,
    /// logit(r) and logit(r′) read from each accumulated stream: `[2, streams, rows, len]`.
    lens: Vec<f32>,
    /// The direct terms at the last position, `[terms, rows]` in [`Terms`] order.
    terms: Vec<f32>,
    /// The model's own logit(r) − logit(r′) at the last position, `[rows]`.
    logit_diff: Vec<f32>,
}

impl Reading {
    /// The lens's logit of r (`counter` false) or r′ from stream `stream` at `pos` of `row`.
    pub fn lens(&self, counter: bool, stream: usize, row: usize, pos: usize) -> f64 {
        let k = usize::from(counter);
        self.lens[((k * self.streams + stream) * self.rows + row) * self.len + pos] as f64
    }

    /// Term `term` of `row`.
    pub fn term(&self, term: usize, row: usize) -> f64 {
        self.terms[term * self.rows + row] as f64
    }

    /// The model's own logit difference in `row`.
    pub fn logit_diff(&self, row: usize) -> f64 {
        self.logit_diff[row] as f64
    }
}

/// The last position of a `[rows, len, d]` stream, `[rows, 1, d]`.
fn last(t: Tensor<3>) -> Tensor<3> {
    let len = t.dims()[1];
    t.narrow(1, len - 1, 1)
}

/// The `[rows, 1]` column of `logits` `[rows, vocab]` at each row's token.
fn pick(logits: Tensor<2>, ids: &[u32]) -> Tensor<2> {
    let index: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
    let device = logits.device();
    logits.gather(
        1,
        Tensor::from_data(TensorData::new(index, [ids.len(), 1]), &device),
    )
}

/// Reads a run cached with [`hooks`]; `answers` and `counters` are each row's r and r′.
pub async fn read(
    model: &Gpt2,
    run: &CachedRun,
    answers: &[u32],
    counters: &[u32],
) -> Result<Reading, PatchingError> {
    let c = &model.config;
    let (n_layer, n_head, d) = (c.n_layer, c.n_head, c.n_embd);
    let cache = &run.cache;
    let final_resid = cache.stream(HookPoint::ResidPost(n_layer - 1))?;
    let [rows, len, _] = final_resid.dims();
    let streams = n_layer + 1;
    let u_r = model.embed_tokens(answers);
    let u_rp = model.embed_tokens(counters);

    // The logit lens: each accumulated stream through ln_f with its own statistics, then r's
    // and r′'s unembedding rows.
    let mut accumulated = (0..n_layer)
        .map(|l| cache.stream(HookPoint::ResidPre(l)))
        .collect::<Result<Vec<_>, _>>()?;
    accumulated.push(final_resid.clone());
    let lensed = model
        .ln_final(Tensor::cat(accumulated, 0))
        .reshape([streams, rows, len, d]);
    let lens = |u: Tensor<2>| {
        (lensed.clone() * u.reshape([1, rows, 1, d]))
            .sum_dim(3)
            .reshape([streams * rows * len])
    };
    let lens = Tensor::cat(vec![lens(u_r.clone()), lens(u_rp.clone())], 0);

    // Direct logit attribution: every component at the last position, centred, divided by the
    // final stream's LayerNorm scale there (frozen) and dotted with γ ⊙ (W_U[:, r] − W_U[:, r′]).
    let scale = model.ln_final_scale(last(final_resid)).reshape([1, rows, 1]);
    let delta = u_r - u_rp;
    let gamma = model.ln_f.gamma.val().reshape([1, 1, d]);
    let direction = delta.clone().reshape([1, rows, d]) * gamma / scale;
    let mut components = Vec::with_capacity(n_layer + 4);
    for (l, block) in model.blocks.iter().enumerate() {
        let z = last(cache.per_head(HookPoint::Z(l))?.reshape([rows, len, d]));
        let z = z.reshape([rows, n_head, d / n_head]).swap_dims(0, 1);
        let w_o = block.attn.c_proj.weight.val().reshape([n_head, d / n_head, d]);
        components.push(z.matmul(w_o));
    }
    for l in 0..n_layer {
        components.push(last(cache.stream(HookPoint::MlpOut(l))?).reshape([1, rows, d]));
    }
    components.push(last(cache.stream(HookPoint::Embed)?).reshape([1, rows, d]));
    components.push(last(cache.stream(HookPoint::PosEmbed)?).reshape([1, rows, d]));
    let mut bias = Tensor::<1>::zeros([d], &model.device());
    for b in model.blocks.iter().filter_map(|b| b.attn.c_proj.bias.as_ref()) {
        bias = bias + b.val();
    }
    components.push(bias.reshape([1, 1, d]).expand([1, rows, d]));
    let components = Tensor::cat(components, 0);
    let centred = components.clone() - components.mean_dim(2);
    let direct = (centred * direction).sum_dim(2);
    let ln_final_bias = match &model.ln_f.beta {
        Some(beta) => (delta * beta.val().reshape([1, d])).sum_dim(1),
        None => Tensor::zeros([rows, 1], &model.device()),
    };
    let terms = Terms { n_layer, n_head }.count();
    let terms = Tensor::cat(
        vec![
            direct.reshape([(terms - 1) * rows]),
            ln_final_bias.reshape([rows]),
        ],
        0,
    );
    let logit_diff =
        (pick(run.last_logits.clone(), answers) - pick(run.last_logits.clone(), counters)).reshape([rows]);

    let values = read_f32(Tensor::cat(vec![lens, terms, logit_diff], 0)).await?;
    let (lens, rest) = values.split_at(2 * streams * rows * len);
    let (terms, logit_diff) = rest.split_at(rest.len() - rows);
    Ok(Reading {
        rows,
        len,
        streams,
        lens: lens.to_vec(),
        terms: terms.to_vec(),
        logit_diff: logit_diff.to_vec(),
    })
}
