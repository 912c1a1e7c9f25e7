//! Interventions: edits applied at hook points during a forward pass, one per batch row.
//!
//! A batch of *variants* runs as one forward pass. An [`Intervention`] names a hook, an operation
//! (replace or add), the values to write and, for every variant, which positions and heads it
//! touches. This is the engine activation patching drives: a sweep of 180 patches is one
//! intervention over a batch of 180 variants.

use burn::prelude::*;

use crate::{Activation, ActivationCache, HookLayout, HookPoint, ModelError};

/// What an intervention does to the selected entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOp {
    /// Overwrite the activation with the given values (activation patching).
    Replace,
    /// Add the given values to the activation (Gaussian noise, steering, gradient probes).
    Add,
}

/// The entries of one hook an edit touches: `None` means every position, or every head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Positions (query positions for `hook_pattern`).
    pub positions: Option<Vec<usize>>,
    /// Heads, for per-head hooks only.
    pub heads: Option<Vec<usize>>,
}

impl Selection {
    /// Every position and every head.
    pub fn all() -> Self {
        Selection::default()
    }

    /// These positions, every head.
    pub fn positions(positions: Vec<usize>) -> Self {
        Selection {
            positions: Some(positions),
            heads: None,
        }
    }

    /// These heads at every position.
    pub fn heads(heads: Vec<usize>) -> Self {
        Selection {
            positions: None,
            heads: Some(heads),
        }
    }
}

/// An edit at one hook for a batch of variants.
#[derive(Clone, Debug)]
pub struct Intervention {
    hook: HookPoint,
    op: EditOp,
    values: Activation,
    /// 1 where an entry is edited, broadcastable against the activation.
    mask: Activation,
    /// 1 - mask, kept so that replacing is exact: `x * keep + v * mask`.
    keep: Activation,
    batch: usize,
    first_position: usize,
}

impl Intervention {
    /// Builds an intervention.
    ///
    /// `values` has the hook's full shape for the whole prompt, with a batch of 1 (shared by all
    /// variants) or of `selections.len()`. `selections[i]` says what variant `i` edits; `None`
    /// leaves that variant untouched. The batch the forward pass runs must have
    /// `selections.len()` rows.
    pub fn new(
        hook: HookPoint,
        op: EditOp,
        values: Activation,
        selections: &[Option<Selection>],
    ) -> Result<Self, ModelError> {
        let fail = |reason: String| ModelError::Intervention {
            hook: hook.to_string(),
            reason,
        };
        let layout = hook.layout();
        let dims = values.dims();
        let expected_rank = if layout == HookLayout::Stream { 3 } else { 4 };
        if dims.len() != expected_rank {
            return Err(fail(format!(
                "values have rank {}, expected {expected_rank}",
                dims.len()
            )));
        }
        let batch = selections.len();
        if batch == 0 {
            return Err(fail("no variants".into()));
        }
        if dims[0] != 1 && dims[0] != batch {
            return Err(fail(format!(
                "values have a batch of {} but there are {batch} variants (use 1 to share them)",
                dims[0]
            )));
        }
        // (positions, heads) of the activation, and the shape of the mask.
        let (n_pos, n_head) = match layout {
            HookLayout::Stream => (dims[1], 1),
            HookLayout::Heads => (dims[1], dims[2]),
            HookLayout::Pattern => (dims[2], dims[1]),
        };
        let mut mask = vec![0f32; batch * n_pos * n_head];
        let mut first_position = usize::MAX;
        for (variant, selection) in selections.iter().enumerate() {
            let Some(selection) = selection else { continue };
            let positions: Vec<usize> = match &selection.positions {
                Some(p) => p.clone(),
                None => (0..n_pos).collect(),
            };
            let heads: Vec<usize> = match (&selection.heads, layout) {
                (Some(_), HookLayout::Stream) => {
                    return Err(fail("this hook has no head axis; select positions only".into()));
                }
                (Some(h), _) => h.clone(),
                (None, _) => (0..n_head).collect(),
            };
            for &pos in &positions {
                if pos >= n_pos {
                    return Err(ModelError::PositionOutOfRange { pos, len: n_pos });
                }
                first_position = first_position.min(pos);
                for &head in &heads {
                    if head >= n_head {
                        return Err(ModelError::HeadOutOfRange { head, n_head });
                    }
                    // Mask layout: [batch, pos, head] for Stream/Heads, [batch, head, pos] for Pattern.
                    let index = match layout {
                        HookLayout::Pattern => (variant * n_head + head) * n_pos + pos,
                        _ => (variant * n_pos + pos) * n_head + head,
                    };
                    mask[index] = 1.0;
                }
            }
        }
        let device = match &values {
            Activation::Stream(t) => t.device(),
            Activation::PerHead(t) => t.device(),
        };
        let keep: Vec<f32> = mask.iter().map(|m| 1.0 - m).collect();
        let to_tensor = |data: Vec<f32>| match layout {
            HookLayout::Stream => Activation::Stream(Tensor::from_data(
                TensorData::new(data, [batch, n_pos, 1]),
                &device,
            )),
            HookLayout::Heads => Activation::PerHead(Tensor::from_data(
                TensorData::new(data, [batch, n_pos, n_head, 1]),
                &device,
            )),
            HookLayout::Pattern => Activation::PerHead(Tensor::from_data(
                TensorData::new(data, [batch, n_head, n_pos, 1]),
                &device,
            )),
        };
        Ok(Intervention {
            hook,
            op,
            mask: to_tensor(mask),
            keep: to_tensor(keep),
            values,
            batch,
            first_position,
        })
    }

    /// The hook this intervention edits.
    pub fn hook(&self) -> HookPoint {
        self.hook
    }

    /// Applies the edit to the activation of a batch whose computed positions start at `offset`.
    pub fn apply(&self, x: Activation, offset: usize) -> Result<Activation, ModelError> {
        let fail = |reason: String| ModelError::Intervention {
            hook: self.hook.to_string(),
            reason,
        };
        if self.first_position < offset {
            return Err(fail(format!(
                "edits position {} but this pass only recomputes positions from {offset}",
                self.first_position
            )));
        }
        // The axis that holds positions: query rows for patterns, else axis 1.
        let pos_axis = if self.hook.layout() == HookLayout::Pattern {
            2
        } else {
            1
        };
        let dims = x.dims();
        if dims[0] != self.batch {
            return Err(fail(format!(
                "built for {} variants but the batch has {} rows",
                self.batch, dims[0]
            )));
        }
        let len = dims[pos_axis];
        let vdims = self.values.dims();
        let same_other_axes = (1..dims.len())
            .filter(|&axis| axis != pos_axis)
            .all(|axis| dims[axis] == vdims[axis]);
        if !same_other_axes || offset + len != vdims[pos_axis] {
            return Err(fail(format!(
                "values have shape {vdims:?}, which does not fit the activation {dims:?} \
                 computed from position {offset}"
            )));
        }
        let window = (pos_axis, offset, len);
        match (x, &self.values, &self.mask, &self.keep) {
            (Activation::Stream(x), Activation::Stream(v), Activation::Stream(m), Activation::Stream(k)) => {
                Ok(Activation::Stream(edit(self.op, x, v, m, k, window)))
            }
            (
                Activation::PerHead(x),
                Activation::PerHead(v),
                Activation::PerHead(m),
                Activation::PerHead(k),
            ) => Ok(Activation::PerHead(edit(self.op, x, v, m, k, window))),
            _ => Err(fail("values do not have the activation's rank".into())),
        }
    }
}

/// `x` edited by `values` where `mask` is 1, over the positions `offset..offset + len` of `axis`.
/// Replacing computes `x * keep + values * mask`, which is exact for a 0/1 mask.
fn edit<const D: usize>(
    op: EditOp,
    x: Tensor<D>,
    values: &Tensor<D>,
    mask: &Tensor<D>,
    keep: &Tensor<D>,
    (axis, offset, len): (usize, usize, usize),
) -> Tensor<D> {
    let values = values.clone().narrow(axis, offset, len);
    let mask = mask.clone().narrow(axis, offset, len);
    match op {
        EditOp::Replace => x * keep.clone().narrow(axis, offset, len) + values * mask,
        EditOp::Add => x + values * mask,
    }
}

/// What a forward pass does at its hook points: the interventions to apply and the cache to
/// record into. Interventions apply first, so a cache records the edited values.
pub struct Hooks<'a> {
    interventions: &'a [Intervention],
    cache: Option<&'a mut ActivationCache>,
    offset: usize,
}

impl<'a> Hooks<'a> {
    /// No interventions, no cache.
    pub fn none() -> Self {
        Hooks {
            interventions: &[],
            cache: None,
            offset: 0,
        }
    }

    /// Apply these interventions.
    pub fn with_interventions(mut self, interventions: &'a [Intervention]) -> Self {
        self.interventions = interventions;
        self
    }

    /// Record into this cache.
    pub fn with_cache(mut self, cache: &'a mut ActivationCache) -> Self {
        self.cache = Some(cache);
        self
    }

    pub(crate) fn set_offset(&mut self, offset: usize) {
        self.offset = offset;
        if let Some(cache) = self.cache.as_deref_mut() {
            cache.set_offset(offset);
        }
    }

    /// Whether any intervention or the cache involves `hook`; lets the forward pass skip work.
    pub(crate) fn involves(&self, hook: HookPoint) -> bool {
        self.interventions.iter().any(|i| i.hook == hook)
            || self.cache.as_ref().is_some_and(|c| c.wants(hook))
    }

    fn run(&mut self, hook: HookPoint, mut x: Activation) -> Result<Activation, ModelError> {
        for intervention in self.interventions.iter().filter(|i| i.hook == hook) {
            x = intervention.apply(x, self.offset)?;
        }
        if let Some(cache) = self.cache.as_deref_mut() {
            cache.record(hook, &x);
        }
        Ok(x)
    }

    /// Runs the hook point `hook` on a stream activation.
    pub(crate) fn stream(&mut self, hook: HookPoint, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        if !self.involves(hook) {
            return Ok(x);
        }
        self.run(hook, Activation::Stream(x))?.stream(hook)
    }

    /// Runs the hook point `hook` on a per-head activation.
    pub(crate) fn per_head(&mut self, hook: HookPoint, x: Tensor<4>) -> Result<Tensor<4>, ModelError> {
        if !self.involves(hook) {
            return Ok(x);
        }
        self.run(hook, Activation::PerHead(x))?.per_head(hook)
    }
}
