//! Path patching (Wang et al. 2023): the effect of one sender head through a chosen path only.
//!
//! For each sender head, the base prompt runs with every head's output frozen to its base-run
//! value except the sender's, which takes the source run's value; MLPs recompute. To the
//! logits, that run is measured directly. To receiver heads, their queries, keys or values are
//! recorded in that run, and a second run of the base prompt patches in only those.
//!
//! Workers that share the sweep ([`PathSweep::share`]) each run their own sender layers.

use patchbay_model::burn::prelude::*;
use patchbay_model::{Activation, EditOp, Entry, Gpt2, HookPoint, Hooks, Intervention, LogitsAt, Selection};

use crate::metric::Reading;
use crate::runs::{CachedRun, PromptRuns};
use crate::spec::target::{HeadInput, Receivers};
use crate::sweep::batched::{prefix, tile};
use crate::sweep::share::{Shard, Share};
use crate::{Direction, PatchingError};

/// Hooks path patching needs cached in both runs.
pub fn hooks(n_layer: usize, receivers: &Receivers) -> Vec<HookPoint> {
    let mut hooks: Vec<HookPoint> = (0..n_layer).map(HookPoint::Z).collect();
    if let Receivers::Heads { heads, input, .. } = receivers {
        hooks.extend(heads.iter().map(|[l, _]| receiver_hook(*input, *l)));
    }
    hooks
}

fn receiver_hook(input: HeadInput, layer: usize) -> HookPoint {
    match input {
        HeadInput::Q => HookPoint::Q(layer),
        HeadInput::K => HookPoint::K(layer),
        HeadInput::V => HookPoint::V(layer),
    }
}

/// Path patching progress: one sender layer per step.
pub struct PathSweep<'a> {
    model: &'a Gpt2,
    runs: &'a PromptRuns,
    direction: Direction,
    receivers: Receivers,
    /// The sender layers this worker runs, in order; the next is `layers[next]`.
    layers: Vec<usize>,
    next: usize,
    /// Per sender head, `[layer, head]` in row-major order.
    readings: Vec<Option<Vec<Reading>>>,
    share: Share,
}

impl<'a> PathSweep<'a> {
    pub fn new(model: &'a Gpt2, runs: &'a PromptRuns, direction: Direction, receivers: Receivers) -> Self {
        let n_layer = model.config.n_layer;
        PathSweep {
            model,
            runs,
            direction,
            receivers,
            layers: (0..n_layer).collect(),
            next: 0,
            readings: vec![None; n_layer * model.config.n_head],
            share: Share::ALONE,
        }
    }

    /// The sweep as worker `share.index` of `share.count` runs it: only its own sender layers
    /// (a layer costs the layers it recomputes).
    pub fn share(mut self, share: Share) -> Self {
        let n_layer = self.model.config.n_layer;
        let costs: Vec<usize> = (0..n_layer).map(|l| n_layer - l).collect();
        let owned = share.owned(&costs);
        self.layers = (0..n_layer).filter(|&l| owned[l]).collect();
        self.share = share;
        self
    }

    /// Sender heads in all.
    pub fn total(&self) -> usize {
        self.model.config.n_layer * self.model.config.n_head
    }

    /// Sender heads this worker has run.
    pub fn done(&self) -> usize {
        self.next * self.model.config.n_head
    }

    /// The readings of the sender heads this worker has run, for the others sharing the sweep.
    pub fn shard(&self) -> Shard {
        let n_head = self.model.config.n_head;
        let patches: Vec<usize> = self.layers[..self.next]
            .iter()
            .flat_map(|&l| l * n_head..(l + 1) * n_head)
            .collect();
        Shard::of(patches, &self.readings)
    }

    /// Another worker's readings, checked: sender heads the model has, each filled once, with
    /// a reading per row.
    pub fn merge(&mut self, shard: Shard) -> Result<(), PatchingError> {
        shard.fill(&mut self.readings, self.runs.rows())
    }

    /// Runs every sender head of the next layer. Returns whether layers remain.
    pub async fn step(&mut self) -> Result<bool, PatchingError> {
        let Some(&layer) = self.layers.get(self.next) else {
            return Ok(false);
        };
        let n_head = self.model.config.n_head;
        let rows = self.runs.rows();
        let readings = if self.runs.first_diff >= self.runs.len() {
            vec![self.runs.base_readings(self.direction).to_vec(); n_head]
        } else {
            let logits = self.senders(layer).await?;
            let all = self.runs.scorer.read(logits).await?;
            all.chunks(rows).map(<[Reading]>::to_vec).collect()
        };
        for (h, readings) in readings.into_iter().enumerate() {
            self.readings[layer * n_head + h] = Some(readings);
        }
        self.next += 1;
        Ok(self.next < self.layers.len())
    }

    /// Readings per sender head, `[layer, head]` in row-major order.
    pub fn into_readings(self) -> Result<Vec<Vec<Reading>>, PatchingError> {
        Shard::complete(self.readings, self.share)
    }

    /// Last-position logits of the path-patched runs of every sender head at `layer`.
    async fn senders(&self, layer: usize) -> Result<Tensor<2>, PatchingError> {
        let (model, runs) = (self.model, self.runs);
        let base = runs.base(self.direction);
        let source = runs.source(self.direction);
        let n_head = model.config.n_head;
        let n_layer = model.config.n_layer;
        let rows = runs.rows();
        let len = runs.len();
        let offset = runs.first_diff;
        let batch = n_head * rows;
        let values = |run: &CachedRun, hook| -> Result<Activation, PatchingError> {
            let t = run.cache.per_head(hook)?;
            Ok(Activation::PerHead(if run.rows > 1 {
                t.repeat_dim(0, n_head)
            } else {
                t
            }))
        };

        // Freeze every head from the sender's layer on, then give each row's sender its source
        // value; positions before `offset` are reused, not recomputed, and need neither.
        let recomputed: Vec<usize> = (offset..len).collect();
        let mut frozen = Vec::new();
        for l in layer..n_layer {
            let all = vec![Some(Selection::positions(recomputed.clone())); batch];
            frozen.push(Intervention::new(
                HookPoint::Z(l),
                EditOp::Replace,
                values(base, HookPoint::Z(l))?,
                &all,
            )?);
        }
        let sender: Vec<Option<Selection>> = (0..batch)
            .map(|row| {
                Some(Selection {
                    positions: Some(recomputed.clone()),
                    heads: Some(vec![row / rows]),
                })
            })
            .collect();
        frozen.push(Intervention::new(
            HookPoint::Z(layer),
            EditOp::Replace,
            values(source, HookPoint::Z(layer))?,
            &sender,
        )?);
        let resid = |l: usize| -> Result<Tensor<3>, PatchingError> {
            let t = base
                .cache
                .stream(HookPoint::ResidPre(l))?
                .narrow(1, offset, len - offset);
            Ok(tile(t, n_head))
        };

        let Receivers::Heads {
            heads,
            input,
            positions,
        } = &self.receivers
        else {
            let logits = model.forward_from(
                layer,
                resid(layer)?,
                prefix(model, base, offset, &vec![Entry::resid_pre(layer); n_head])?.as_ref(),
                &mut Hooks::none().with_interventions(&frozen),
                LogitsAt::Last,
            )?;
            return Ok(flatten(logits));
        };

        // Receivers after the sender's layer see its change; the others are unaffected.
        let later: Vec<[usize; 2]> = heads.iter().copied().filter(|[l, _]| *l > layer).collect();
        let unaffected = || tile(base.last_logits.clone(), n_head);
        let Some(first) = later.iter().map(|[l, _]| *l).min() else {
            return Ok(unaffected());
        };
        let hooks: Vec<HookPoint> = later.iter().map(|[l, _]| receiver_hook(*input, *l)).collect();
        let mut step2 = patchbay_model::ActivationCache::new(hooks.iter().copied());
        model.forward_from(
            layer,
            resid(layer)?,
            prefix(model, base, offset, &vec![Entry::resid_pre(layer); n_head])?.as_ref(),
            &mut Hooks::none().with_interventions(&frozen).with_cache(&mut step2),
            LogitsAt::Last,
        )?;

        // Patch the receivers' inputs from that run into a plain run of the base prompt.
        let receiver_positions: Option<Vec<usize>> = Some(
            positions
                .clone()
                .unwrap_or_else(|| (0..len).collect())
                .into_iter()
                .filter(|&p| p >= offset)
                .collect(),
        );
        let mut patches = Vec::new();
        for hook in hooks.iter().copied().collect::<std::collections::BTreeSet<_>>() {
            let layer_heads: Vec<usize> = later
                .iter()
                .filter(|[l, _]| receiver_hook(*input, *l) == hook)
                .map(|[_, h]| *h)
                .collect();
            let recorded = step2.per_head(hook)?;
            let full = if offset == 0 {
                recorded
            } else {
                let before = base.cache.per_head(hook)?.narrow(1, 0, offset);
                Tensor::cat(vec![tile(before, n_head), recorded], 1)
            };
            let selection = Some(Selection {
                positions: receiver_positions.clone(),
                heads: Some(layer_heads),
            });
            patches.push(Intervention::new(
                hook,
                EditOp::Replace,
                Activation::PerHead(full),
                &vec![selection; batch],
            )?);
        }
        if receiver_positions.as_ref().is_some_and(Vec::is_empty) {
            return Ok(unaffected());
        }
        let logits = model.forward_from(
            first,
            resid(first)?,
            prefix(model, base, offset, &vec![Entry::resid_pre(first); n_head])?.as_ref(),
            &mut Hooks::none().with_interventions(&patches),
            LogitsAt::Last,
        )?;
        Ok(flatten(logits))
    }
}

fn flatten(logits: Tensor<3>) -> Tensor<2> {
    let [rows, _, vocab] = logits.dims();
    logits.reshape([rows, vocab])
}
