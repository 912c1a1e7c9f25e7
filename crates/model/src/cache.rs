//! The activation cache: the values a forward pass recorded at the hooks that were asked for,
//! and nothing else, so memory stays bounded by the request.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;

use crate::{HookPoint, ModelError};

/// The value at one hook. Residual-stream-like hooks are `[batch, pos, features]`; per-head hooks
/// are `[batch, pos, head, d_head]`, and `hook_pattern` is `[batch, head, query_pos, key_pos]`.
#[derive(Clone, Debug)]
pub enum Activation {
    Stream(Tensor<3>),
    PerHead(Tensor<4>),
}

impl Activation {
    /// The tensor's shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Stream(t) => t.dims().to_vec(),
            Activation::PerHead(t) => t.dims().to_vec(),
        }
    }

    /// Reads the values back to the host, flattened in row-major order.
    pub fn to_vec(&self) -> Vec<f32> {
        let data = match self {
            Activation::Stream(t) => t.to_data(),
            Activation::PerHead(t) => t.to_data(),
        };
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 data after conversion")
    }

    /// The rank-3 tensor of a residual-stream-like hook.
    pub fn stream(self, hook: HookPoint) -> Result<Tensor<3>, ModelError> {
        match self {
            Activation::Stream(t) => Ok(t),
            Activation::PerHead(_) => Err(ModelError::Intervention {
                hook: hook.to_string(),
                reason: "is a per-head activation, not a stream".into(),
            }),
        }
    }

    /// The rank-4 tensor of a per-head hook.
    pub fn per_head(self, hook: HookPoint) -> Result<Tensor<4>, ModelError> {
        match self {
            Activation::PerHead(t) => Ok(t),
            Activation::Stream(_) => Err(ModelError::Intervention {
                hook: hook.to_string(),
                reason: "is a stream activation, not a per-head one".into(),
            }),
        }
    }

    /// One batch row, keeping the batch axis (size 1).
    pub fn batch_row(&self, index: usize) -> Activation {
        self.batch_rows(index, 1)
    }

    /// `count` batch rows from `start`.
    pub fn batch_rows(&self, start: usize, count: usize) -> Activation {
        match self {
            Activation::Stream(t) => Activation::Stream(t.clone().narrow(0, start, count)),
            Activation::PerHead(t) => Activation::PerHead(t.clone().narrow(0, start, count)),
        }
    }
}

/// Activations recorded by one forward pass, keyed by hook.
#[derive(Debug, Default)]
pub struct ActivationCache {
    wanted: BTreeSet<HookPoint>,
    values: BTreeMap<HookPoint, Activation>,
    offset: usize,
}

impl ActivationCache {
    /// A cache that will record exactly these hooks.
    pub fn new(hooks: impl IntoIterator<Item = HookPoint>) -> Self {
        ActivationCache {
            wanted: hooks.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Whether this cache records `hook`.
    pub fn wants(&self, hook: HookPoint) -> bool {
        self.wanted.contains(&hook)
    }

    pub(crate) fn record(&mut self, hook: HookPoint, value: &Activation) {
        if self.wants(hook) {
            self.values.insert(hook, value.clone());
        }
    }

    pub(crate) fn set_offset(&mut self, offset: usize) {
        self.offset = offset;
    }

    /// The first position the recorded run computed: 0 for a run from tokens, the prefix length
    /// for a run that reused cached keys and values. Recorded positions start there.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The recorded value at `hook`.
    pub fn get(&self, hook: HookPoint) -> Result<&Activation, ModelError> {
        self.values
            .get(&hook)
            .ok_or_else(|| ModelError::NotCached(hook.to_string()))
    }

    /// The recorded value at a residual-stream-like hook.
    pub fn stream(&self, hook: HookPoint) -> Result<Tensor<3>, ModelError> {
        self.get(hook)?.clone().stream(hook)
    }

    /// The recorded value at a per-head hook.
    pub fn per_head(&self, hook: HookPoint) -> Result<Tensor<4>, ModelError> {
        self.get(hook)?.clone().per_head(hook)
    }

    /// Splits a cache of a pass that ran two batches as one: the first `rows` rows of every
    /// value, and the rest.
    pub fn split_rows(self, rows: usize) -> (Self, Self) {
        let (mut first, mut rest) = (BTreeMap::new(), BTreeMap::new());
        for (hook, value) in self.values {
            let n = value.dims()[0];
            let (a, b) = (value.batch_rows(0, rows), value.batch_rows(rows, n - rows));
            first.insert(hook, a);
            rest.insert(hook, b);
        }
        let half = |values| ActivationCache {
            wanted: self.wanted.clone(),
            values,
            offset: self.offset,
        };
        (half(first), half(rest))
    }

    /// The recorded hooks, in forward order.
    pub fn hooks(&self) -> impl Iterator<Item = &HookPoint> {
        self.values.keys()
    }

    /// How many values the cache holds (a measure of its memory).
    pub fn num_elements(&self) -> usize {
        self.values
            .values()
            .map(|a| a.dims().iter().product::<usize>())
            .sum()
    }
}
