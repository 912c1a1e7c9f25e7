//! The clean and corrupted runs of a batch of prompts, cached once and reused by every patch:
//! the activations patches copy, the residual streams and keys/values patched runs start from,
//! and the baseline metrics effects are measured against.
//!
//! Both runs have one row per prompt and noise sample (prompt-major: row `p * samples + s`);
//! under STR there is one sample, and under GN the clean run repeats each prompt so that every
//! row of one run lines up with the same row of the other.

use patchbay_model::burn::prelude::*;
use patchbay_model::{ActivationCache, Gpt2, HookPoint, Hooks, LogitsAt};

use crate::corruption::{Corrupted, gn};
use crate::metric::{Answers, Baselines, MetricKind, Reading, Scorer};
use crate::{Direction, PatchingError};

/// One cached forward pass over `rows` token sequences.
#[derive(Debug)]
pub struct CachedRun {
    /// Tokens of each row.
    pub tokens: Vec<Vec<u32>>,
    /// GN's addend at `hook_embed`, `[rows, len, d_model]`.
    pub noise: Option<Tensor<3>>,
    pub rows: usize,
    pub cache: ActivationCache,
    pub last_logits: Tensor<2>,
}

impl CachedRun {
    /// Runs `tokens` (one sequence per row) with optional noise and records `hooks`.
    pub fn execute(
        model: &Gpt2,
        tokens: Vec<Vec<u32>>,
        noise: Option<Tensor<3>>,
        hooks: impl IntoIterator<Item = HookPoint>,
    ) -> Result<Self, PatchingError> {
        let rows = tokens.len();
        let interventions = gn::intervention(noise.clone(), rows)?;
        let mut cache = ActivationCache::new(hooks);
        let logits = model.forward(
            &tokens,
            &mut Hooks::none()
                .with_interventions(&interventions)
                .with_cache(&mut cache),
            LogitsAt::Last,
        )?;
        let vocab = logits.dims()[2];
        Ok(CachedRun {
            tokens,
            noise,
            rows,
            cache,
            last_logits: logits.reshape([rows, vocab]),
        })
    }
}

/// The clean and corrupted runs go through the model as one pass when together they have at most
/// this many tokens: a small pass costs about what reading the weights costs, so two small runs
/// in one pass take little more than one. Larger runs stay apart, to keep the peak memory of one.
const JOINT_TOKENS: usize = 4096;

impl CachedRun {
    /// Runs and records the clean rows and the corrupted rows (with GN's addend, if any), as one
    /// forward pass when they are small: each row's values are those of its own run.
    pub fn execute_pair(
        model: &Gpt2,
        clean: Vec<Vec<u32>>,
        corrupted: Vec<Vec<u32>>,
        noise: Option<Tensor<3>>,
        hooks: &[HookPoint],
    ) -> Result<(Self, Self), PatchingError> {
        let len = clean.first().map_or(0, Vec::len);
        let (a, b) = (clean.len(), corrupted.len());
        let joint = (a + b) * len <= JOINT_TOKENS && clean.iter().chain(&corrupted).all(|t| t.len() == len);
        if !joint {
            let clean = CachedRun::execute(model, clean, None, hooks.iter().copied())?;
            let corrupted = CachedRun::execute(model, corrupted, noise, hooks.iter().copied())?;
            return Ok((clean, corrupted));
        }
        // GN's addend on the corrupted rows only; the clean rows add exact zeros.
        let joint_noise = noise.clone().map(|n| {
            let [_, pos, d] = n.dims();
            let zeros = Tensor::<3>::zeros([a, pos, d], &n.device());
            Tensor::cat(vec![zeros, n], 0)
        });
        let tokens: Vec<Vec<u32>> = clean.iter().chain(&corrupted).cloned().collect();
        let both = CachedRun::execute(model, tokens, joint_noise, hooks.iter().copied())?;
        let vocab = both.last_logits.dims()[1];
        let (clean_cache, corrupted_cache) = both.cache.split_rows(a);
        let logits = both.last_logits;
        Ok((
            CachedRun {
                tokens: clean,
                noise: None,
                rows: a,
                cache: clean_cache,
                last_logits: logits.clone().slice([0..a, 0..vocab]),
            },
            CachedRun {
                tokens: corrupted,
                noise,
                rows: b,
                cache: corrupted_cache,
                last_logits: logits.slice([a..a + b, 0..vocab]),
            },
        ))
    }
}

/// One prompt of a batch: its tokens, corruption and answers.
pub struct PromptInput {
    pub clean: Vec<u32>,
    pub corrupted: Corrupted,
    /// The first position the corruption changes.
    pub first_changed: usize,
    pub answers: Answers,
}

/// The two runs of a batch of prompts and what they measure.
#[derive(Debug)]
pub struct PromptRuns {
    pub clean: CachedRun,
    pub corrupted: CachedRun,
    /// The first position whose activations can differ between the runs of any prompt: before
    /// it, by causality, they are identical, and patching there changes nothing.
    pub first_diff: usize,
    pub scorer: Scorer,
    pub baselines: Baselines,
}

impl PromptRuns {
    /// Runs and caches the clean prompts and their corruptions (all of one length, all STR or
    /// all GN with the same number of samples), recording `hooks` in both; patched runs will be
    /// read for metric `kind`.
    pub async fn new(
        model: &Gpt2,
        prompts: Vec<PromptInput>,
        hooks: &[HookPoint],
        kind: MetricKind,
    ) -> Result<Self, PatchingError> {
        let samples = match &prompts[0].corrupted {
            Corrupted::Noise { noise } => noise.dims()[0],
            Corrupted::Tokens(_) => 1,
        };
        let repeat = |p: &PromptInput| vec![p.clean.clone(); samples];
        let clean_tokens: Vec<Vec<u32>> = prompts.iter().flat_map(repeat).collect();
        let first_diff = prompts.iter().map(|p| p.first_changed).min().unwrap_or(0);
        let mut noises = Vec::new();
        let mut corrupted_tokens = Vec::new();
        for p in &prompts {
            match &p.corrupted {
                Corrupted::Tokens(tokens) => corrupted_tokens.push(tokens.clone()),
                Corrupted::Noise { noise } => {
                    noises.push(noise.clone());
                    corrupted_tokens.extend(repeat(p));
                }
            }
        }
        let noise = (!noises.is_empty()).then(|| Tensor::cat(noises, 0));
        let (clean, corrupted) =
            CachedRun::execute_pair(model, clean_tokens, corrupted_tokens, noise, hooks)?;
        let answers: Vec<Answers> = prompts
            .iter()
            .flat_map(|p| vec![p.answers.clone(); samples])
            .collect();
        let scorer = Scorer::new(&answers, clean.last_logits.clone()).for_metric(kind);
        let baselines = Baselines {
            clean: scorer.read(clean.last_logits.clone()).await?,
            corrupted: scorer.read(corrupted.last_logits.clone()).await?,
            samples,
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

    /// Rows of every run: prompts × noise samples.
    pub fn rows(&self) -> usize {
        self.clean.rows
    }

    /// Prompt length.
    pub fn len(&self) -> usize {
        self.clean.tokens[0].len()
    }
}
