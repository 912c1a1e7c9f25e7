//! GPT-2 as burn modules, with a TransformerLens hook point at every named activation.
//!
//! The forward pass can start from tokens, or at any layer from a supplied residual stream; it
//! can reuse cached keys and values for a prefix of positions that an edit cannot change
//! (causal attention), and it can compute logits at the last position only, or only the few
//! vocabulary entries a metric reads. Those are what make patching sweeps cheap.

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use crate::{Gpt2Config, HookPoint, Hooks, ModelError};

/// Where the logits are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsAt<'a> {
    /// Every computed position: `[batch, pos, vocab]`.
    All,
    /// The last position only: `[batch, 1, vocab]`. Patching metrics need nothing else, and the
    /// unembedding is the largest matmul of a small model.
    Last,
    /// The last position, and only these vocabulary entries: `[batch, 1, ids.len()]`, column `k`
    /// the logit of `ids[k]`. The logit difference reads two entries of 50,257, so this skips
    /// almost all of the unembedding.
    LastOf(&'a [u32]),
}

/// Keys and values of positions `0..len` at every layer, reused by a forward pass that only
/// recomputes positions `len..`. Each tensor is `[1 or batch, len, head, d_head]`.
#[derive(Clone, Debug)]
pub struct Prefix {
    /// Number of positions the prefix covers.
    pub len: usize,
    /// `(hook_k, hook_v)` per layer, indexed by layer; layers before the start layer may be
    /// absent (`None`).
    pub kv: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

/// Where rows enter a stacked forward pass ([`Gpt2::forward_stacked`]): before block `layer`, at
/// `blocks.{layer}.hook_resid_pre`, or after its attention, at `blocks.{layer}.hook_resid_mid`.
/// Rows that enter after the attention skip it: an edit of the attention's output (a head's
/// `hook_z`, or `hook_attn_out`) leaves everything before it as in the run the rows come from,
/// so such rows can start from their edited residual stream there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub layer: usize,
    /// At `hook_resid_mid` rather than `hook_resid_pre`.
    pub after_attention: bool,
}

impl Entry {
    /// At `blocks.{layer}.hook_resid_pre`.
    pub fn resid_pre(layer: usize) -> Self {
        Entry {
            layer,
            after_attention: false,
        }
    }

    /// At `blocks.{layer}.hook_resid_mid`.
    pub fn resid_mid(layer: usize) -> Self {
        Entry {
            layer,
            after_attention: true,
        }
    }

    /// The hook the rows enter at.
    pub fn hook(self) -> HookPoint {
        if self.after_attention {
            HookPoint::ResidMid(self.layer)
        } else {
            HookPoint::ResidPre(self.layer)
        }
    }

    /// Whether rows entering here pass `hook`: the hooks from this point of the block on, and
    /// the final LayerNorm's.
    pub fn reaches(self, hook: HookPoint) -> bool {
        use HookPoint::*;
        let after_attention = matches!(hook, ResidMid(_) | MlpPost(_) | MlpOut(_) | ResidPost(_));
        match hook.layer() {
            Some(layer) => (layer, after_attention) >= (self.layer, self.after_attention),
            None => hook == LnFinal,
        }
    }
}

/// The token embedding, split by vocabulary rows so that no single buffer exceeds the
/// device's largest storage binding (WebGPU guarantees only 128 MiB; GPT-2 small's is 154 MB).
/// The same chunks serve as the tied unembedding.
#[derive(Module, Debug)]
pub struct SplitEmbedding {
    /// `[rows, d_model]` blocks of consecutive vocabulary rows.
    pub chunks: Vec<Param<Tensor<2>>>,
}

impl SplitEmbedding {
    /// Rows of the first chunk: every chunk but the last has this many.
    fn rows_per_chunk(&self) -> usize {
        self.chunks[0].dims()[0]
    }

    /// Embedding rows for `ids` (flattened), `[ids.len(), d_model]`.
    fn embed(&self, ids: &[u32], device: &Device) -> Tensor<2> {
        let index =
            |ids: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(ids.clone(), [ids.len()]), device);
        if self.chunks.len() == 1 {
            return self.chunks[0]
                .val()
                .select(0, index(ids.iter().map(|&i| i as i64).collect()));
        }
        let rows = self.rows_per_chunk();
        // Gather each chunk's rows, then put them back in prompt order.
        let mut pieces = Vec::new();
        let mut order = vec![0i64; ids.len()];
        let mut gathered = 0;
        for (c, chunk) in self.chunks.iter().enumerate() {
            let local: Vec<(usize, i64)> = ids
                .iter()
                .enumerate()
                .filter(|(_, id)| **id as usize / rows == c)
                .map(|(i, id)| (i, (*id as usize % rows) as i64))
                .collect();
            if local.is_empty() {
                continue;
            }
            for (k, (i, _)) in local.iter().enumerate() {
                order[*i] = (gathered + k) as i64;
            }
            gathered += local.len();
            pieces.push(
                chunk
                    .val()
                    .select(0, index(local.into_iter().map(|(_, id)| id).collect())),
            );
        }
        Tensor::cat(pieces, 0).select(0, index(order))
    }

    /// Logits from final residuals `[n, d_model]`: `[n, vocab]` (the unembedding is tied to wte).
    fn unembed(&self, x: Tensor<2>) -> Tensor<2> {
        let pieces: Vec<Tensor<2>> = self
            .chunks
            .iter()
            .map(|chunk| x.clone().matmul(chunk.val().transpose()))
            .collect();
        Tensor::cat(pieces, 1)
    }
}

/// Multi-head causal self-attention (`attn` in the Hub checkpoint).
#[derive(Module, Debug)]
pub struct Attention {
    /// Queries, keys and values in one projection, `[d_model, 3 d_model]` (Conv1D layout).
    pub c_attn: Linear,
    /// Output projection, `[d_model, d_model]`.
    pub c_proj: Linear,
    pub n_head: usize,
}

impl Attention {
    fn forward(
        &self,
        layer: usize,
        x: Tensor<3>,
        past: Option<&(Tensor<4>, Tensor<4>)>,
        future: &Tensor<4, Bool>,
        hooks: &mut Hooks,
        last_only: bool,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, len, d_model] = x.dims();
        let (n_head, d_head) = (self.n_head, d_model / self.n_head);
        let qkv = self.c_attn.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d_model, d_model)
                .reshape([batch, len, n_head, d_head])
        };
        let q = hooks.per_head(HookPoint::Q(layer), split(0))?;
        let k = hooks.per_head(HookPoint::K(layer), split(1))?;
        let v = hooks.per_head(HookPoint::V(layer), split(2))?;
        let (k, v) = match past {
            Some((pk, pv)) => {
                let plen = pk.dims()[1];
                let shape = [batch, plen, n_head, d_head];
                (
                    Tensor::cat(vec![pk.clone().expand(shape), k], 1),
                    Tensor::cat(vec![pv.clone().expand(shape), v], 1),
                )
            }
            None => (k, v),
        };
        let total = k.dims()[1];
        // Only the last query, when nothing after this point reads the other positions.
        let (q, future, len) = if last_only {
            (q.narrow(1, len - 1, 1), future.clone().narrow(2, len - 1, 1), 1)
        } else {
            (q, future.clone(), len)
        };
        let scores = q
            .swap_dims(1, 2)
            .matmul(k.permute([0, 2, 3, 1]))
            .div_scalar((d_head as f32).sqrt());
        let future = future.expand([batch, n_head, len, total]);
        let pattern = softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3);
        let pattern = hooks.per_head(HookPoint::Pattern(layer), pattern)?;
        let z = pattern.matmul(v.swap_dims(1, 2)).swap_dims(1, 2);
        let z = hooks.per_head(HookPoint::Z(layer), z)?;
        Ok(self.project(z))
    }

    /// The attention's output (`hook_attn_out`, before its hook) of the heads' outputs `z`,
    /// `[batch, pos, head, d_head]`: their concatenation through the output projection.
    pub fn project(&self, z: Tensor<4>) -> Tensor<3> {
        let [batch, len, n_head, d_head] = z.dims();
        self.c_proj.forward(z.reshape([batch, len, n_head * d_head]))
    }
}

/// The feed-forward block (`mlp`): GELU (tanh approximation) between two projections.
#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

impl Mlp {
    fn forward(&self, layer: usize, x: Tensor<3>, hooks: &mut Hooks) -> Result<Tensor<3>, ModelError> {
        let hidden = gelu_new(self.c_fc.forward(x));
        let hidden = hooks.stream(HookPoint::MlpPost(layer), hidden)?;
        Ok(self.c_proj.forward(hidden))
    }
}

/// GELU with the tanh approximation (`gelu_new`, as every GPT-2 checkpoint and TransformerLens
/// use): 0.5·x·(1 + tanh u) with u = √(2/π)·(x + 0.044715·x³), computed as the equal x·σ(2u),
/// with x³ as products. burn's CPU backend evaluates `powf` and `tanh` one element at a time
/// through libm, which made them a fifth of a patching sweep; one sigmoid and three products
/// cost a fraction of that, and σ(2u) avoids the cancellation of 1 + tanh u for negative x.
pub fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    // 2·√(2/π), the factor of σ(2u) in front of x + 0.044715·x³.
    const TWO_SQRT_2_OVER_PI: f64 =
        2.0 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
    let two_u = (x.clone() * x.clone() * (0.044715 * TWO_SQRT_2_OVER_PI) + TWO_SQRT_2_OVER_PI) * x.clone();
    x * sigmoid(two_u)
}

/// One transformer block (`h.{l}`): pre-LayerNorm attention, then pre-LayerNorm MLP.
#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

/// The hook points of block `layer` downstream of its queries, keys and values: where a pass that
/// computes only the block's last position would show (or edit) less than every position.
fn after_qkv(layer: usize) -> [HookPoint; 7] {
    [
        HookPoint::Pattern(layer),
        HookPoint::Z(layer),
        HookPoint::AttnOut(layer),
        HookPoint::ResidMid(layer),
        HookPoint::MlpPost(layer),
        HookPoint::MlpOut(layer),
        HookPoint::ResidPost(layer),
    ]
}

impl Block {
    /// The first half of the block: its residual stream after the attention (`hook_resid_mid`,
    /// before its hook). With `last_only`, the block computes keys and values at every position
    /// but everything after them at the last position only, returning `[batch, 1, d_model]`: all
    /// that the logits of the last position need from the final block.
    fn attend(
        &self,
        layer: usize,
        resid_pre: Tensor<3>,
        past: Option<&(Tensor<4>, Tensor<4>)>,
        future: &Tensor<4, Bool>,
        hooks: &mut Hooks,
        last_only: bool,
    ) -> Result<Tensor<3>, ModelError> {
        let attn_out = self.attn.forward(
            layer,
            self.ln_1.forward(resid_pre.clone()),
            past,
            future,
            hooks,
            last_only,
        )?;
        let resid_pre = if last_only {
            let len = resid_pre.dims()[1];
            resid_pre.narrow(1, len - 1, 1)
        } else {
            resid_pre
        };
        let attn_out = hooks.stream(HookPoint::AttnOut(layer), attn_out)?;
        Ok(resid_pre + attn_out)
    }

    /// The second half: from `hook_resid_mid` through the MLP to `hook_resid_post`.
    fn feed_forward(
        &self,
        layer: usize,
        resid_mid: Tensor<3>,
        hooks: &mut Hooks,
    ) -> Result<Tensor<3>, ModelError> {
        let resid_mid = hooks.stream(HookPoint::ResidMid(layer), resid_mid)?;
        let mlp_out = self
            .mlp
            .forward(layer, self.ln_2.forward(resid_mid.clone()), hooks)?;
        let mlp_out = hooks.stream(HookPoint::MlpOut(layer), mlp_out)?;
        hooks.stream(HookPoint::ResidPost(layer), resid_mid + mlp_out)
    }
}

/// The causal mask of one forward pass over `len` positions after a prefix of `offset`,
/// `[1, 1, len, offset + len]`, built once on the device and shared by every layer: query row
/// i sits at position offset + i and sees keys 0..=offset + i, so key j is masked (true) where
/// j > i + offset.
fn causal_mask(len: usize, offset: usize, device: &Device) -> Tensor<4, Bool> {
    Tensor::<4, Bool>::tril_mask([1, 1, len, offset + len], offset as i64, device)
}

/// GPT-2 with a tied unembedding.
#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embedding (`wte`), split by vocabulary rows; also the unembedding.
    pub wte: SplitEmbedding,
    /// Positional embedding (`wpe`), `[n_positions, d_model]`.
    pub wpe: Param<Tensor<2>>,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
    #[module(skip)]
    pub config: Gpt2Config,
}

impl Gpt2 {
    /// Checks a batch of token sequences against the model: non-empty, equal lengths, within
    /// the context and the vocabulary.
    pub fn check_tokens(&self, tokens: &[Vec<u32>]) -> Result<usize, ModelError> {
        let len = tokens.first().map(Vec::len).unwrap_or(0);
        if len == 0 {
            return Err(ModelError::EmptyPrompt);
        }
        if tokens.iter().any(|t| t.len() != len) {
            return Err(ModelError::RaggedBatch(tokens.iter().map(Vec::len).collect()));
        }
        if len > self.config.n_positions {
            return Err(ModelError::ContextOverflow {
                tokens: len,
                n_ctx: self.config.n_positions,
            });
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { id, vocab });
        }
        Ok(len)
    }

    /// The final LayerNorm before its gain and bias, which is what TransformerLens records at
    /// `ln_final.hook_normalized`: `(x - mean) / sqrt(var + eps)`.
    fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        let centered = x.clone() - x.mean_dim(2);
        centered.clone() / self.scale_of_centered(centered)
    }

    fn scale_of_centered(&self, centered: Tensor<3>) -> Tensor<3> {
        (centered.square().mean_dim(2) + self.config.layer_norm_epsilon).sqrt()
    }

    /// The final LayerNorm's scale of a residual stream `[batch, pos, d_model]`, what
    /// TransformerLens records at `ln_final.hook_scale`: `sqrt(var + eps)`, `[batch, pos, 1]`.
    /// Direct logit attribution divides every component by it, frozen.
    pub fn ln_final_scale(&self, x: Tensor<3>) -> Tensor<3> {
        self.scale_of_centered(x.clone() - x.mean_dim(2))
    }

    /// The final LayerNorm's gain and bias, applied to a normalized stream.
    fn ln_final_affine(&self, normalized: Tensor<3>) -> Tensor<3> {
        let gamma = self.ln_f.gamma.val().unsqueeze::<3>();
        match &self.ln_f.beta {
            Some(beta) => normalized * gamma + beta.val().unsqueeze::<3>(),
            None => normalized * gamma,
        }
    }

    /// The final LayerNorm `ln_f` of any residual stream `[batch, pos, d_model]`, with its own
    /// statistics, gain and bias: what the unembedding reads. The logit lens applies it to every
    /// accumulated stream.
    pub fn ln_final(&self, x: Tensor<3>) -> Tensor<3> {
        self.ln_final_affine(self.normalize(x))
    }

    /// A forward pass from tokens: `tokens` is a batch of equal-length sequences.
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        hooks: &mut Hooks,
        logits_at: LogitsAt<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let resid = self.embed(tokens, hooks)?;
        self.forward_from(0, resid, None, hooks, logits_at)
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.wpe.val().device()
    }

    /// Token embeddings (`wte` rows) of `ids`: `[ids.len(), d_model]`.
    pub fn embed_tokens(&self, ids: &[u32]) -> Tensor<2> {
        self.wte.embed(ids, &self.device())
    }

    /// `blocks.0.hook_resid_pre` for a batch of tokens: token plus positional embedding.
    pub fn embed(&self, tokens: &[Vec<u32>], hooks: &mut Hooks) -> Result<Tensor<3>, ModelError> {
        let len = self.check_tokens(tokens)?;
        let batch = tokens.len();
        let d_model = self.config.n_embd;
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        let embed = self.embed_tokens(&flat).reshape([batch, len, d_model]);
        let embed = hooks.stream(HookPoint::Embed, embed)?;
        let pos = self
            .wpe
            .val()
            .narrow(0, 0, len)
            .unsqueeze::<3>()
            .expand([batch, len, d_model]);
        let pos = hooks.stream(HookPoint::PosEmbed, pos)?;
        Ok(embed + pos)
    }

    /// A forward pass that starts at `blocks.{layer}.hook_resid_pre` with the given residual
    /// stream `[batch, pos, d_model]`.
    ///
    /// With a `prefix`, `resid` holds positions `prefix.len..` only and the prefix's cached keys
    /// and values stand in for the earlier positions; hooks then see only the recomputed
    /// positions, and interventions may only edit those.
    pub fn forward_from(
        &self,
        layer: usize,
        resid: Tensor<3>,
        prefix: Option<&Prefix>,
        hooks: &mut Hooks,
        logits_at: LogitsAt<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        self.forward_stacked(vec![(Entry::resid_pre(layer), resid)], prefix, hooks, logits_at)
    }

    /// The prefix's keys and values at layer `layer`, checked against its length.
    fn prefix_at<'p>(
        &self,
        prefix: &'p Prefix,
        layer: usize,
    ) -> Result<&'p (Tensor<4>, Tensor<4>), ModelError> {
        let kv =
            prefix.kv.get(layer).and_then(Option::as_ref).ok_or_else(|| {
                ModelError::Backend(format!("prefix has no keys and values for layer {layer}"))
            })?;
        let offset = prefix.len;
        if kv.0.dims()[1] != offset || kv.1.dims()[1] != offset {
            return Err(ModelError::Backend(format!(
                "prefix of {offset} positions holds keys of {} and values of {} positions at layer {layer}",
                kv.0.dims()[1],
                kv.1.dims()[1]
            )));
        }
        Ok(kv)
    }

    /// A forward pass whose batch grows as it goes: each entry `(at, resid)` adds its rows at
    /// `at` ([`Entry`]: a block's `hook_resid_pre`, or its `hook_resid_mid`), after the rows
    /// already in the pass, so a row keeps its index from the point it enters at. Entries come
    /// in increasing order and have the same positions. Patches that start at different layers
    /// thus share one pass, and each block's matrix products see every row that has reached it.
    ///
    /// A hook sees the rows of the entries that reach it ([`Entry::reaches`]); an intervention
    /// there must be built for that many rows, and the prefix's keys and values at layer `l`
    /// have 1 row or as many as the entries up to `blocks.{l}.hook_resid_pre`, the rows that
    /// run block `l`'s attention. With a `prefix`, the entries hold positions `prefix.len..`
    /// only, as in [`forward_from`](Self::forward_from).
    pub fn forward_stacked(
        &self,
        entries: Vec<(Entry, Tensor<3>)>,
        prefix: Option<&Prefix>,
        hooks: &mut Hooks,
        logits_at: LogitsAt<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let n_layer = self.config.n_layer;
        let Some((first, first_rows)) = entries.first() else {
            return Err(ModelError::Backend(
                "a forward pass needs at least one row".into(),
            ));
        };
        let first = first.layer;
        let offset = prefix.map_or(0, |p| p.len);
        let [_, len, d_model] = first_rows.dims();
        if offset + len > self.config.n_positions {
            return Err(ModelError::ContextOverflow {
                tokens: offset + len,
                n_ctx: self.config.n_positions,
            });
        }
        let mut previous: Option<Entry> = None;
        for (at, rows) in &entries {
            if at.layer >= n_layer {
                return Err(ModelError::LayerOutOfRange {
                    layer: at.layer,
                    n_layer,
                });
            }
            let [_, rows_len, rows_d] = rows.dims();
            if previous.is_some_and(|p| *at <= p) || rows_len != len || rows_d != d_model {
                return Err(ModelError::Backend(format!(
                    "rows entering at {} with {rows_len} positions of width {rows_d} do not follow \
                     the rows before them ({len} positions of width {d_model}, entering earlier)",
                    at.hook()
                )));
            }
            previous = Some(*at);
        }
        hooks.set_offset(offset);
        let future = causal_mask(len, offset, &first_rows.device());
        let mut entries = entries.into_iter().peekable();
        let join = |rows: Option<Tensor<3>>, more: Tensor<3>| match rows {
            Some(rows) => Tensor::cat(vec![rows, more], 0),
            None => more,
        };
        let mut resid: Option<Tensor<3>> = None;
        for (l, block) in self.blocks.iter().enumerate().skip(first) {
            while let Some((_, rows)) = entries.next_if(|(at, _)| *at == Entry::resid_pre(l)) {
                resid = Some(join(resid, rows));
            }
            // The final block's other positions feed nothing but logits the caller does not want.
            let last_only = l + 1 == n_layer
                && logits_at != LogitsAt::All
                && len > 1
                && !after_qkv(l).into_iter().any(|h| hooks.involves(h));
            // Rows that have entered by now run the attention; rows entering after it join them.
            let mut mid = match resid.take() {
                Some(rows) => {
                    let past = match prefix {
                        Some(p) => Some(self.prefix_at(p, l)?),
                        None => None,
                    };
                    let rows = hooks.stream(HookPoint::ResidPre(l), rows)?;
                    Some(block.attend(l, rows, past, &future, hooks, last_only)?)
                }
                None => None,
            };
            while let Some((_, rows)) = entries.next_if(|(at, _)| *at == Entry::resid_mid(l)) {
                let rows = if last_only {
                    rows.narrow(1, len - 1, 1)
                } else {
                    rows
                };
                mid = Some(join(mid, rows));
            }
            let mid = mid.ok_or_else(|| ModelError::Backend(format!("no rows reach block {l}")))?;
            resid = Some(block.feed_forward(l, mid, hooks)?);
        }
        let Some(mut resid) = resid else {
            return Err(ModelError::Backend("no rows reach the last block".into()));
        };
        let [batch, computed, _] = resid.dims();
        if logits_at != LogitsAt::All && computed > 1 {
            resid = resid.narrow(1, computed - 1, 1);
        }
        let rows = resid.dims()[1];
        let normalized = hooks.stream(HookPoint::LnFinal, self.normalize(resid))?;
        let final_resid = self.ln_final_affine(normalized).reshape([batch * rows, d_model]);
        let logits = match logits_at {
            LogitsAt::LastOf(ids) => {
                let vocab = self.config.vocab_size;
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(ModelError::TokenOutOfRange { id, vocab });
                }
                final_resid.matmul(self.embed_tokens(ids).transpose())
            }
            LogitsAt::All | LogitsAt::Last => self.wte.unembed(final_resid),
        };
        let columns = logits.dims()[1];
        Ok(logits.reshape([batch, rows, columns]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_mask_hides_exactly_the_future() {
        let device = Device::flex();
        for (len, offset) in [(1, 0), (4, 0), (3, 2), (1, 5), (5, 1)] {
            let mask = causal_mask(len, offset, &device);
            assert_eq!(mask.dims(), [1, 1, len, offset + len]);
            let got: Vec<bool> = mask.into_data().try_into_vec::<bool>().unwrap();
            let expected: Vec<bool> = (0..len)
                .flat_map(|i| (0..offset + len).map(move |j| j > offset + i))
                .collect();
            assert_eq!(got, expected, "len {len}, offset {offset}");
        }
    }

    #[test]
    fn gelu_new_is_the_tanh_formula() {
        let device = Device::flex();
        let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 / 100.0).collect();
        let n = xs.len();
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [1, 1, n]), &device);
        let got: Vec<f32> = gelu_new(x).into_data().try_into_vec::<f32>().unwrap();
        for (x, got) in xs.iter().zip(got) {
            let x = *x as f64;
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
            let expected = 0.5 * x * (1.0 + u.tanh());
            assert!(
                (got as f64 - expected).abs() <= 1e-6 * (1.0 + x.abs()),
                "x {x}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn logits_of_chosen_entries_are_those_columns_of_the_last_position() {
        let device = Device::flex();
        let model = crate::Gpt2Config::new(2, 2, 32, 16)
            .with_vocab_size(128)
            .init(&device, 3);
        let tokens = vec![vec![5, 17, 3, 99], vec![1, 2, 3, 4]];
        let full: Vec<f32> = model
            .forward(&tokens, &mut Hooks::none(), LogitsAt::Last)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let ids = [7u32, 99, 7, 0];
        let some: Vec<f32> = model
            .forward(&tokens, &mut Hooks::none(), LogitsAt::LastOf(&ids))
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let vocab = model.config.vocab_size;
        assert_eq!(some.len(), tokens.len() * ids.len());
        for row in 0..tokens.len() {
            for (k, &id) in ids.iter().enumerate() {
                let (a, b) = (some[row * ids.len() + k], full[row * vocab + id as usize]);
                assert!((a - b).abs() < 1e-5, "row {row}, id {id}: {a} vs {b}");
            }
        }
        let out = model.forward(&tokens, &mut Hooks::none(), LogitsAt::LastOf(&[vocab as u32]));
        assert!(matches!(out, Err(ModelError::TokenOutOfRange { .. })));
    }
}
