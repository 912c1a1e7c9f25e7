//! Patching sweeps that waste nothing.
//!
//! A sweep runs every patch of a [`Plan`](crate::sweep::plan::Plan) on a batch of prompts. Rather than one full forward pass per
//! patch (TransformerLens's loop, kept here as [`Strategy::Naive`] for tests and benchmarks):
//!
//! - patches run in batches, each variant a row, and a batch holds patches of every layer: a
//!   patch's rows enter the pass at the layer it starts at, from the base run's cached residual
//!   stream ([`Gpt2::forward_stacked`]), so each block's matrix products see every row that has
//!   reached it, and a sweep costs a few passes rather than one per layer;
//! - a patch of a layer's attention output (a head's `hook_z`, or `hook_attn_out`) enters after
//!   that attention, at `hook_resid_mid`, with its edit already made: the attention itself is
//!   the base run's, so its rows do not run it;
//! - positions before the earliest position a batch edits are not recomputed: causal attention
//!   leaves them as in the base run, whose cached keys and values stand in for them;
//! - a patch that only touches positions before the first position where the clean and
//!   corrupted runs differ changes nothing, and costs nothing;
//! - logits are computed at the last position only; for the logit difference only those of each
//!   row's r and r', and only those two numbers per row are read back (the other metrics read
//!   the whole distribution, and seven numbers per row).
//!
//! A sweep advances one batch per [`Sweep::step`], so callers can show progress and stop between
//! batches; results exist only once every batch has run. Workers that share a sweep
//! ([`Sweep::share`]) each run their own batches and swap [`Shard`]s.

use std::collections::BTreeMap;

use patchbay_model::burn::prelude::*;
use patchbay_model::{Activation, EditOp, Entry, Gpt2, HookPoint, Hooks, Intervention, Prefix, Selection};

use crate::corruption::gn;
use crate::metric::Reading;
use crate::runs::{CachedRun, PromptRuns};
use crate::sweep::plan::Patch;
use crate::sweep::share::{Shard, Share};
use crate::{Direction, PatchingError};

/// Limits on one batched forward pass, which bound its memory (with `RunOptions::threads`, that
/// many passes run at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Rows (variants × noise samples) per pass; also bounds the `[rows, vocab]` logits.
    pub max_batch: usize,
    /// Token positions computed per pass, over all rows.
    pub max_tokens: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_batch: 256,
            max_tokens: 4096,
        }
    }
}

/// How a sweep runs its patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Batched, from the cached residual stream, reusing cached keys and values.
    Batched,
    /// One full forward pass per patch, as TransformerLens does.
    Naive,
}

/// Patches run as one pass: `patches[k]` enters it at `entries[k]` (in increasing order), and
/// the pass recomputes positions from `offset`.
#[derive(Clone, Debug)]
struct Batch {
    offset: usize,
    patches: Vec<usize>,
    entries: Vec<Entry>,
}

impl Batch {
    /// Its cost: positions computed through a block, over its rows (each from the layer its
    /// patch enters at, at every position from the batch's offset).
    fn cost(&self, rows: usize, len: usize, n_layer: usize) -> usize {
        let row_layers: usize = self.entries.iter().map(|e| n_layer - e.layer).sum();
        row_layers * rows * (len - self.offset)
    }

    /// A batch of the patches `starts` (`(offset, entry, patch)`), ordered by where they enter.
    fn of(mut starts: Vec<(usize, Entry, usize)>) -> Batch {
        let offset = starts.iter().map(|s| s.0).min().expect("a batch has a patch");
        starts.sort_by_key(|&(offset, entry, i)| (entry, offset, i));
        Batch {
            offset,
            entries: starts.iter().map(|s| s.1).collect(),
            patches: starts.iter().map(|s| s.2).collect(),
        }
    }
}

/// A sweep in progress over one prompt.
pub struct Sweep<'a> {
    model: &'a Gpt2,
    runs: &'a PromptRuns,
    direction: Direction,
    patches: Vec<Patch>,
    strategy: Strategy,
    batches: Vec<Batch>,
    /// The batches this worker runs, in order; the next to run is `owned[next]`.
    owned: Vec<usize>,
    next: usize,
    readings: Vec<Option<Vec<Reading>>>,
    share: Share,
    /// Patches that change nothing, read from the base run.
    no_ops: usize,
    /// Patches this worker has run.
    ran: usize,
}

impl<'a> Sweep<'a> {
    /// Plans a sweep of `patches` on `runs`, in at least [`PARTS`] batches where it has that
    /// many patches.
    pub fn new(
        model: &'a Gpt2,
        runs: &'a PromptRuns,
        direction: Direction,
        patches: &[Patch],
        budget: Budget,
        strategy: Strategy,
    ) -> Self {
        let len = runs.len();
        let rows = runs.rows();
        let mut readings = vec![None; patches.len()];
        let mut patches: Vec<Patch> = patches.to_vec();
        let batches = match strategy {
            Strategy::Naive => (0..patches.len())
                .map(|i| Batch {
                    offset: 0,
                    patches: vec![i],
                    entries: vec![Entry::resid_pre(0)],
                })
                .collect(),
            Strategy::Batched => {
                // Drop the positions where the two runs agree; a patch left with none is a no-op.
                let mut starts: Vec<(usize, Entry, usize)> = Vec::new();
                for (i, patch) in patches.iter_mut().enumerate() {
                    match effective(patch, runs.first_diff, len) {
                        Some((entry, offset)) => starts.push((offset, entry, i)),
                        None => readings[i] = Some(runs.base_readings(direction).to_vec()),
                    }
                }
                plan(starts, budget, rows, len, model.config.n_layer)
            }
        };
        let no_ops = readings.iter().filter(|r| r.is_some()).count();
        Sweep {
            model,
            runs,
            direction,
            patches,
            strategy,
            owned: (0..batches.len()).collect(),
            batches,
            next: 0,
            readings,
            share: Share::ALONE,
            no_ops,
            ran: 0,
        }
    }

    /// The sweep as worker `share.index` of `share.count` runs it: only its own batches, the
    /// costliest spread first (a batch costs its rows' positions times the layers it runs).
    pub fn share(mut self, share: Share) -> Self {
        let (rows, len, n_layer) = (self.runs.rows(), self.runs.len(), self.model.config.n_layer);
        let costs: Vec<usize> = self.batches.iter().map(|b| b.cost(rows, len, n_layer)).collect();
        let owned = share.owned(&costs);
        self.owned = (0..self.batches.len()).filter(|&b| owned[b]).collect();
        self.share = share;
        self
    }

    /// Number of patches.
    pub fn total(&self) -> usize {
        self.patches.len()
    }

    /// Number of patches this worker has results for so far; those that change nothing count
    /// on the first worker only, so that the workers sharing a sweep add up to its total.
    pub fn done(&self) -> usize {
        self.ran
            + if self.share.counts_common() {
                self.no_ops
            } else {
                0
            }
    }

    /// Whether every batch of this worker has run.
    pub fn is_finished(&self) -> bool {
        self.next == self.owned.len()
    }

    /// Runs the next batch. Returns whether batches remain.
    pub async fn step(&mut self) -> Result<bool, PatchingError> {
        let Some(batch) = self.owned.get(self.next).map(|&b| self.batches[b].clone()) else {
            return Ok(false);
        };
        let readings = self.run_batch(&batch).await?;
        self.store(&batch, readings);
        self.next += 1;
        Ok(!self.is_finished())
    }

    /// Runs the next `threads` batches at once, each on a thread of its own. Returns whether
    /// batches remain. Each batch is the same computation as in [`Sweep::step`], so the readings
    /// are the same; on the CPU backend one batch's element-wise work, which burn runs on the
    /// calling thread, then overlaps another's matrix products, which it runs on every core.
    /// Native only.
    #[cfg(not(target_family = "wasm"))]
    pub fn step_threads(&mut self, threads: usize) -> Result<bool, PatchingError> {
        let end = (self.next + threads.max(1)).min(self.owned.len());
        let batches: Vec<Batch> = self.owned[self.next..end]
            .iter()
            .map(|&b| self.batches[b].clone())
            .collect();
        let this = &*self;
        let outcomes: Vec<Result<Vec<Reading>, PatchingError>> = std::thread::scope(|scope| {
            let running: Vec<_> = batches
                .iter()
                .map(|batch| scope.spawn(move || pollster::block_on(this.run_batch(batch))))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for (batch, readings) in batches.iter().zip(outcomes) {
            self.store(batch, readings?);
        }
        self.next = end;
        Ok(!self.is_finished())
    }

    /// The readings of one batch's patches, variant-major.
    async fn run_batch(&self, batch: &Batch) -> Result<Vec<Reading>, PatchingError> {
        let logits = match self.strategy {
            Strategy::Batched => self.forward_batched(batch)?,
            Strategy::Naive => self.forward_naive(batch.patches[0])?,
        };
        self.runs.scorer.read_patched(logits).await
    }

    fn store(&mut self, batch: &Batch, readings: Vec<Reading>) {
        let rows = self.runs.rows();
        for (k, &i) in batch.patches.iter().enumerate() {
            self.readings[i] = Some(readings[k * rows..(k + 1) * rows].to_vec());
        }
        self.ran += batch.patches.len();
    }

    /// The readings of the patches this worker has run, for the others sharing the sweep.
    pub fn shard(&self) -> Shard {
        let patches: Vec<usize> = self.owned[..self.next]
            .iter()
            .flat_map(|&b| self.batches[b].patches.iter().copied())
            .collect();
        Shard::of(patches, &self.readings)
    }

    /// Another worker's readings, checked: patches the plan has, each filled once, with a
    /// reading per row.
    pub fn merge(&mut self, shard: Shard) -> Result<(), PatchingError> {
        shard.fill(&mut self.readings, self.runs.rows())
    }

    /// Every patch's readings (one per noise sample), in plan order.
    pub fn into_readings(self) -> Result<Vec<Vec<Reading>>, PatchingError> {
        Shard::complete(self.readings, self.share)
    }

    /// One pass for a batch, each patch's rows entering where [`effective`] says.
    fn forward_batched(&self, batch: &Batch) -> Result<Tensor<2>, PatchingError> {
        let base = self.runs.base(self.direction);
        let source = self.runs.source(self.direction);
        let rows = self.runs.rows();
        let len = self.runs.len();
        let patches: Vec<&Patch> = batch.patches.iter().map(|&i| &self.patches[i]).collect();
        let mut entries = Vec::new();
        let mut first = 0;
        for same in batch.entries.chunk_by(|a, b| a == b) {
            let at = same[0];
            let group = &patches[first..first + same.len()];
            first += same.len();
            let resid = base.cache.stream(HookPoint::ResidPre(at.layer))?;
            let resid = tile(resid.narrow(1, batch.offset, len - batch.offset), same.len());
            let resid = if at.after_attention {
                resid + attention_out(self.model, base, source, at.layer, group, rows, batch.offset)?
            } else {
                resid
            };
            entries.push((at, resid));
        }
        let prefix = prefix(self.model, base, batch.offset, &batch.entries)?;
        let interventions = interventions(source, &patches, &batch.entries, rows)?;
        let logits = self.model.forward_stacked(
            entries,
            prefix.as_ref(),
            &mut Hooks::none().with_interventions(&interventions),
            self.runs.scorer.logits_at(),
        )?;
        Ok(flatten_last(logits))
    }

    /// One full pass from tokens for one patch.
    fn forward_naive(&self, patch: usize) -> Result<Tensor<2>, PatchingError> {
        let base = self.runs.base(self.direction);
        let source = self.runs.source(self.direction);
        let rows = self.runs.rows();
        let mut interventions = gn::intervention(base.noise.clone(), rows)?;
        interventions.extend(self.interventions_for(source, patch, rows)?);
        let logits = self.model.forward(
            &base.tokens,
            &mut Hooks::none().with_interventions(&interventions),
            self.runs.scorer.logits_at(),
        )?;
        Ok(flatten_last(logits))
    }

    fn interventions_for(
        &self,
        source: &CachedRun,
        patch: usize,
        rows: usize,
    ) -> Result<Vec<Intervention>, PatchingError> {
        interventions(source, &[&self.patches[patch]], &[Entry::resid_pre(0)], rows)
    }
}

/// The fewest batches a sweep is cut into, where it has that many patches: two run at once, on
/// the CLI's two threads or the page's pool of two workers. A constant, not the number of threads
/// or workers, so that a sweep's batches, and so every number it gives, are the same however
/// many run it.
pub const PARTS: usize = 2;

/// Cuts the patches `starts` (`(offset, layer, patch)`) into batches: in order of offset, as many
/// as `budget` allows in each, so that a batch recomputes few positions its patches do not edit;
/// then, where that makes fewer than [`PARTS`] batches, each is cut into parts of about equal cost
/// (see [`cut`]).
fn plan(
    mut starts: Vec<(usize, Entry, usize)>,
    budget: Budget,
    rows: usize,
    len: usize,
    n_layer: usize,
) -> Vec<Batch> {
    starts.sort();
    let mut groups: Vec<Vec<(usize, Entry, usize)>> = Vec::new();
    for start in starts {
        let fits = groups.last().is_some_and(|g| {
            let variants = g.len() + 1;
            variants * rows <= budget.max_batch && variants * rows * (len - g[0].0) <= budget.max_tokens
        });
        match groups.last_mut() {
            Some(group) if fits => group.push(start),
            _ => groups.push(vec![start]),
        }
    }
    let deal = if groups.is_empty() {
        1
    } else {
        PARTS.div_ceil(groups.len()).max(1)
    };
    groups
        .into_iter()
        .flat_map(|group| cut(&group, deal, len, n_layer))
        .map(Batch::of)
        .collect()
}

/// Cuts `starts` (in order of offset) into `hands` runs of consecutive patches whose costs are as
/// even as can be: a part recomputes the positions from its first patch's offset, so parts of
/// late offsets cost less than their patches' share of the whole, and the sweep less than it would
/// cost dealt out patch by patch (every part then from the earliest offset).
fn cut(
    starts: &[(usize, Entry, usize)],
    hands: usize,
    len: usize,
    n_layer: usize,
) -> Vec<Vec<(usize, Entry, usize)>> {
    if hands <= 1 || starts.len() <= 1 {
        return vec![starts.to_vec()];
    }
    let (left_hands, right_hands) = (hands / 2, hands - hands / 2);
    // Row-layers of the patches before each point.
    let mut before = vec![0usize];
    for &(_, entry, _) in starts {
        before.push(before.last().unwrap() + (n_layer - entry.layer));
    }
    let cost = |from: usize, to: usize| (before[to] - before[from]) * (len - starts[from].0);
    // The cut whose heavier side, per hand, costs least (compared without dividing).
    let at = (1..starts.len())
        .min_by_key(|&k| {
            let (left, right) = (cost(0, k) * right_hands, cost(k, starts.len()) * left_hands);
            (left.max(right), k)
        })
        .expect("two patches or more");
    let mut parts = cut(&starts[..at], left_hands, len, n_layer);
    parts.extend(cut(&starts[at..], right_hands, len, n_layer));
    parts
}

/// What a batched sweep computes, planned as [`Sweep::new`] plans it, without running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Positions computed through a block, over every block, row and pass.
    pub block_positions: usize,
    /// Passes through the model.
    pub passes: usize,
    /// Rows whose last-position logits are read.
    pub readouts: usize,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.block_positions += other.block_positions;
        self.passes += other.passes;
        self.readouts += other.readouts;
    }
}

/// The work of a batched sweep of `patches` on `rows` rows of `len` tokens whose runs first
/// differ at `first_diff`, on a model of `n_layer` blocks: patches that change nothing cost
/// nothing, and the others run in [`Sweep::new`]'s batches.
pub fn work(
    patches: &[Patch],
    first_diff: usize,
    len: usize,
    rows: usize,
    n_layer: usize,
    budget: Budget,
) -> Work {
    let starts: Vec<(usize, Entry, usize)> = patches
        .iter()
        .enumerate()
        .filter_map(|(i, patch)| {
            effective(&mut patch.clone(), first_diff, len).map(|(entry, offset)| (offset, entry, i))
        })
        .collect();
    let readouts = starts.len() * rows;
    let batches = plan(starts, budget, rows, len, n_layer);
    Work {
        block_positions: batches.iter().map(|b| b.cost(rows, len, n_layer)).sum(),
        passes: batches.len(),
        readouts,
    }
}

/// Restricts a patch's edits to the positions where the runs differ (`first_diff..len`).
/// Returns where its rows enter a pass and the position it starts at, or `None` when nothing is
/// left to patch. The rows enter at the `hook_resid_pre` of the first layer it edits, or, when
/// it edits only that layer's attention output (`hook_z`, `hook_attn_out`), after the attention
/// at `hook_resid_mid`: the attention's inputs, and so all it computes, are the base run's.
fn effective(patch: &mut Patch, first_diff: usize, len: usize) -> Option<(Entry, usize)> {
    for edit in &mut patch.edits {
        let positions = edit.positions.take().unwrap_or_else(|| (0..len).collect());
        edit.positions = Some(positions.into_iter().filter(|&p| p >= first_diff).collect());
    }
    patch
        .edits
        .retain(|e| e.positions.as_ref().is_some_and(|p| !p.is_empty()));
    let layer = patch.edits.iter().filter_map(|e| e.hook.layer()).min()?;
    let offset = patch
        .edits
        .iter()
        .flat_map(|e| e.positions.iter().flatten())
        .min()
        .copied()?;
    let attention_output = |hook| matches!(hook, HookPoint::Z(l) | HookPoint::AttnOut(l) if l == layer);
    let entry = if patch.edits.iter().all(|e| attention_output(e.hook)) {
        Entry::resid_mid(layer)
    } else {
        Entry::resid_pre(layer)
    };
    Some((entry, offset))
}

/// The attention output of block `layer` (`hook_attn_out`) for `patches` that enter a pass after
/// it, at positions from `offset`: the base run's heads' outputs with each patch's edits of
/// `hook_z` made, through the output projection, then its edits of `hook_attn_out`, as the
/// block makes them. `[patches × rows, len - offset, d_model]`.
fn attention_out(
    model: &Gpt2,
    base: &CachedRun,
    source: &CachedRun,
    layer: usize,
    patches: &[&Patch],
    rows: usize,
    offset: usize,
) -> Result<Tensor<3>, PatchingError> {
    let variants = patches.len();
    let edits = interventions(source, patches, &vec![Entry::resid_pre(layer); variants], rows)?;
    let edit = |hook: HookPoint, x: Activation| -> Result<Activation, PatchingError> {
        match edits.iter().find(|e| e.hook() == hook) {
            Some(edit) => Ok(edit.apply(x, offset)?),
            None => Ok(x),
        }
    };
    let (z, out) = (HookPoint::Z(layer), HookPoint::AttnOut(layer));
    let attn_out = if edits.iter().any(|e| e.hook() == z) {
        let heads = base.cache.per_head(z)?;
        let len = heads.dims()[1];
        let heads = tile(heads.narrow(1, offset, len - offset), variants);
        model.blocks[layer]
            .attn
            .project(edit(z, Activation::PerHead(heads))?.per_head(z)?)
    } else {
        let attn_out = base.cache.stream(out)?;
        let len = attn_out.dims()[1];
        tile(attn_out.narrow(1, offset, len - offset), variants)
    };
    Ok(edit(out, Activation::Stream(attn_out))?.stream(out)?)
}

/// `[rows, 1, columns]` logits as `[rows, columns]`.
fn flatten_last(logits: Tensor<3>) -> Tensor<2> {
    let [rows, _, columns] = logits.dims();
    logits.reshape([rows, columns])
}

/// A run's tensor (one row per prompt and sample) repeated for `variants` variants: row
/// `v * rows + r` of the batch holds the run's row `r`.
pub(crate) fn tile<const D: usize>(t: Tensor<D>, variants: usize) -> Tensor<D> {
    if variants == 1 {
        t
    } else {
        t.repeat_dim(0, variants)
    }
}

/// Like [`tile`], but a single-row run stays one row, broadcast inside the model.
fn shared<const D: usize>(t: Tensor<D>, run_rows: usize, variants: usize) -> Tensor<D> {
    if run_rows == 1 { t } else { tile(t, variants) }
}

/// How many of a pass's variants, which enter it at `entered` (in increasing order), `hook`
/// sees ([`Entry::reaches`]); a hook of no layer (the final LayerNorm's) sees them all.
fn variants_at(entered: &[Entry], hook: HookPoint) -> usize {
    match hook.layer() {
        Some(_) => entered.partition_point(|e| e.reaches(hook)),
        None => entered.len(),
    }
}

/// The base run's keys and values before `offset`, at each layer as many times as the variants
/// that run its attention (see [`variants_at`]).
pub(crate) fn prefix(
    model: &Gpt2,
    base: &CachedRun,
    offset: usize,
    entered: &[Entry],
) -> Result<Option<Prefix>, PatchingError> {
    if offset == 0 {
        return Ok(None);
    }
    let kv = (0..model.config.n_layer)
        .map(|l| {
            let variants = variants_at(entered, HookPoint::K(l));
            if variants == 0 {
                return Ok(None);
            }
            let cut = |hook| -> Result<Tensor<4>, PatchingError> {
                Ok(shared(
                    base.cache.per_head(hook)?.narrow(1, 0, offset),
                    base.rows,
                    variants,
                ))
            };
            Ok(Some((cut(HookPoint::K(l))?, cut(HookPoint::V(l))?)))
        })
        .collect::<Result<Vec<_>, PatchingError>>()?;
    Ok(Some(Prefix { len: offset, kv }))
}

/// The interventions that apply `patches` (one variant each, `rows` rows per variant, entering
/// the pass at `entered`), copying values from `source`. Each hook's intervention has a row for
/// every variant that reaches the hook. Patches that enter after an attention have their edits
/// made in the rows they enter with ([`attention_out`]), and none here.
pub(crate) fn interventions(
    source: &CachedRun,
    patches: &[&Patch],
    entered: &[Entry],
    rows: usize,
) -> Result<Vec<Intervention>, PatchingError> {
    let mut by_hook: BTreeMap<HookPoint, Vec<Option<Selection>>> = BTreeMap::new();
    for (v, (patch, entry)) in patches.iter().zip(entered).enumerate() {
        if entry.after_attention {
            continue;
        }
        for edit in &patch.edits {
            let variants = variants_at(entered, edit.hook);
            let selections = by_hook
                .entry(edit.hook)
                .or_insert_with(|| vec![None; variants * rows]);
            for s in 0..rows {
                selections[v * rows + s] = Some(Selection {
                    positions: edit.positions.clone(),
                    heads: edit.heads.clone(),
                });
            }
        }
    }
    by_hook
        .into_iter()
        .map(|(hook, selections)| {
            let variants = selections.len() / rows;
            let values = match source.cache.get(hook)?.clone() {
                Activation::Stream(t) => Activation::Stream(shared(t, source.rows, variants)),
                Activation::PerHead(t) => Activation::PerHead(shared(t, source.rows, variants)),
            };
            Ok(Intervention::new(hook, EditOp::Replace, values, &selections)?)
        })
        .collect()
}
