//! The clean and corrupted runs of one prompt, cached once and reused by every patch: the
//! activations patches copy, the residual streams and keys/values patched runs start from, and
//! the baseline metrics effects are measured against.

use patchbay_model::burn::prelude::*;
use patchbay_model::{
    ActivationCache, EditOp, Gpt2, HookPoint, Hooks, Intervention, LogitsAt, ModelError, Selection,
};

use crate::{Baselines, Direction, PatchingError, Reading, Scorer};

/// One cached forward pass over `rows` copies of a prompt (noise samples for GN).
#[derive(Debug)]
pub struct CachedRun {
    pub tokens: Vec<u32>,
    /// GN's addend at `hook_embed`, `[rows, len, d_model]`.
    pub noise: Option<Tensor<3>>,
    pub rows: usize,
    pub cache: ActivationCache,
    pub last_logits: Tensor<2>,
}

impl CachedRun {
    /// Runs `tokens` (`rows` times when there is noise) and records `hooks`.
    pub fn execute(
        model: &Gpt2,
        tokens: &[u32],
        noise: Option<Tensor<3>>,
        hooks: impl IntoIterator<Item = HookPoint>,
    ) -> Result<Self, PatchingError> {
        let rows = noise.as_ref().map_or(1, |n| n.dims()[0]);
        let interventions = noise_intervention(noise.clone(), rows)?;
        let mut cache = ActivationCache::new(hooks);
        let logits = model.forward(
            &vec![tokens.to_vec(); rows],
            &mut Hooks::none()
                .with_interventions(&interventions)
                .with_cache(&mut cache),
            LogitsAt::Last,
        )?;
        let vocab = logits.dims()[2];
        Ok(CachedRun {
            tokens: tokens.to_vec(),
            noise,
            rows,
            cache,
            last_logits: logits.reshape([rows, vocab]),
        })
    }
}

/// The GN addend as an intervention for `rows` rows (nothing without noise).
pub(crate) fn noise_intervention(
    noise: Option<Tensor<3>>,
    rows: usize,
) -> Result<Vec<Intervention>, ModelError> {
    noise
        .map(|n| {
            let values = patchbay_model::Activation::Stream(n);
            Intervention::new(
                HookPoint::Embed,
                EditOp::Add,
                values,
                &vec![Some(Selection::all()); rows],
            )
        })
        .into_iter()
        .collect()
}

/// The two runs of one prompt and what they measure.
#[derive(Debug)]
pub struct PromptRuns {
    pub clean: CachedRun,
    pub corrupted: CachedRun,
    /// The first position whose activations can differ between the runs: before it, by
    /// causality, they are identical, and patching there changes nothing.
    pub first_diff: usize,
    pub scorer: Scorer,
    pub baselines: Baselines,
}

impl PromptRuns {
    /// Runs and caches the clean prompt and its corruption (STR tokens, or the clean tokens with
    /// GN noise), recording `hooks` in both.
    pub async fn new(
        model: &Gpt2,
        clean_tokens: &[u32],
        corrupted: Corrupted,
        answer: u32,
        counter: Option<u32>,
        hooks: &[HookPoint],
    ) -> Result<Self, PatchingError> {
        let clean = CachedRun::execute(model, clean_tokens, None, hooks.iter().copied())?;
        let (corrupted, first_diff) = match corrupted {
            Corrupted::Tokens(tokens) => {
                let first = (0..tokens.len())
                    .find(|&i| tokens[i] != clean_tokens[i])
                    .unwrap_or(tokens.len());
                (
                    CachedRun::execute(model, &tokens, None, hooks.iter().copied())?,
                    first,
                )
            }
            Corrupted::Noise {
                noise,
                first_position,
            } => (
                CachedRun::execute(model, clean_tokens, Some(noise), hooks.iter().copied())?,
                first_position,
            ),
        };
        let scorer = Scorer::new(answer, counter, clean.last_logits.clone());
        let baselines = Baselines {
            clean: scorer.read(clean.last_logits.clone()).await?,
            corrupted: scorer.read(corrupted.last_logits.clone()).await?,
        };
        Ok(PromptRuns {
            clean,
            corrupted,
            first_diff,
            scorer,
            baselines,
        })
    }

    /// The run that is patched.
    pub fn base(&self, direction: Direction) -> &CachedRun {
        match direction {
            Direction::Denoising => &self.corrupted,
            Direction::Noising => &self.clean,
        }
    }

    /// The run whose activations are patched in.
    pub fn source(&self, direction: Direction) -> &CachedRun {
        match direction {
            Direction::Denoising => &self.clean,
            Direction::Noising => &self.corrupted,
        }
    }

    /// The base run's readings: the result of a patch that changes nothing.
    pub fn base_readings(&self, direction: Direction) -> &[Reading] {
        match direction {
            Direction::Denoising => &self.baselines.corrupted,
            Direction::Noising => &self.baselines.clean,
        }
    }

    /// Rows of a patched run: noise samples, whichever run carries them.
    pub fn rows(&self) -> usize {
        self.clean.rows.max(self.corrupted.rows)
    }

    /// Prompt length.
    pub fn len(&self) -> usize {
        self.clean.tokens.len()
    }
}

/// How the corrupted run of a prompt is made.
pub enum Corrupted {
    /// STR: other tokens.
    Tokens(Vec<u32>),
    /// GN: the clean tokens plus `noise` (`[samples, len, d_model]`) at `hook_embed`, zero before
    /// `first_position`.
    Noise { noise: Tensor<3>, first_position: usize },
}
