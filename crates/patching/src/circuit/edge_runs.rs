//! The clean and corrupted runs of a batch of prompts as the edge graph sees them: each run's
//! input embedding, every writer's output and every row's metric, computed once and shared by
//! edge attribution and the exact checks.
//!
//! Rows are prompt-major, one per prompt and noise sample (`p * samples + s`), as in
//! [`crate::runs`]: under GN the clean run repeats each prompt.

use patchbay_model::Gpt2;
use patchbay_model::burn::prelude::*;

use crate::circuit::forward::{Writers, forward, input_embedding};
use crate::circuit::graph::Graph;
use crate::corruption::Corrupted;
use crate::metric::{Answers, MetricKind, Scorer};
use crate::runs::PromptInput;
use crate::{Direction, PatchingError};

/// One run of the batch.
#[derive(Clone, Debug)]
pub struct EdgeRun {
    /// The input writer's output, `[rows, len, d_model]`.
    pub input: Tensor<3>,
    pub writers: Writers,
    /// M of each row.
    pub m: Vec<f64>,
}

/// Both runs of a batch of prompts (of one length).
#[derive(Clone, Debug)]
pub struct EdgeRuns {
    pub clean: EdgeRun,
    pub corrupted: EdgeRun,
    pub scorer: Scorer,
    pub kind: MetricKind,
    /// Rows per prompt (noise samples; 1 for STR).
    pub samples: usize,
}

impl EdgeRuns {
    pub async fn new(
        model: &Gpt2,
        graph: &Graph,
        prompts: &[PromptInput],
        kind: MetricKind,
    ) -> Result<Self, PatchingError> {
        let samples = match &prompts[0].corrupted {
            Corrupted::Noise { noise } => noise.dims()[0],
            Corrupted::Tokens(_) => 1,
        };
        let clean_tokens: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|p| vec![p.clean.clone(); samples])
            .collect();
        let mut noises = Vec::new();
        let mut corrupted_tokens = Vec::new();
        for p in prompts {
            match &p.corrupted {
                Corrupted::Tokens(tokens) => corrupted_tokens.push(tokens.clone()),
                Corrupted::Noise { noise } => {
                    noises.push(noise.clone());
                    corrupted_tokens.extend(vec![p.clean.clone(); samples]);
                }
            }
        }
        let noise = (!noises.is_empty()).then(|| Tensor::cat(noises, 0));
        let clean_input = input_embedding(model, &clean_tokens, None)?;
        let corrupted_input = input_embedding(model, &corrupted_tokens, noise)?;
        let (clean_logits, clean_writers) = forward(model, graph, clean_input.clone(), None, None)?;
        let (corrupted_logits, corrupted_writers) =
            forward(model, graph, corrupted_input.clone(), None, None)?;
        let answers: Vec<Answers> = prompts
            .iter()
            .flat_map(|p| vec![p.answers.clone(); samples])
            .collect();
        let scorer = Scorer::new(&answers, clean_logits.clone());
        let clean_m = m_of(&scorer, kind, clean_logits).await?;
        let corrupted_m = m_of(&scorer, kind, corrupted_logits).await?;
        Ok(EdgeRuns {
            clean: EdgeRun {
                input: clean_input,
                writers: clean_writers,
                m: clean_m,
            },
            corrupted: EdgeRun {
                input: corrupted_input,
                writers: corrupted_writers,
                m: corrupted_m,
            },
            scorer,
            kind,
            samples,
        })
    }

    /// The run that is patched: the corrupted one when denoising.
    pub fn base(&self, direction: Direction) -> &EdgeRun {
        match direction {
            Direction::Denoising => &self.corrupted,
            Direction::Noising => &self.clean,
        }
    }

    /// The run whose values are patched in.
    pub fn source(&self, direction: Direction) -> &EdgeRun {
        match direction {
            Direction::Denoising => &self.clean,
            Direction::Noising => &self.corrupted,
        }
    }

    /// Prompts in the batch.
    pub fn prompts(&self) -> usize {
        self.clean.m.len() / self.samples
    }

    /// Each prompt's mean over its rows of `rows` (one value per row).
    pub fn per_prompt(&self, rows: &[f64]) -> Vec<f64> {
        rows.chunks(self.samples)
            .map(|c| c.iter().sum::<f64>() / c.len() as f64)
            .collect()
    }
}

/// M of each row of last-position logits `[rows, vocab]`.
pub async fn m_of(scorer: &Scorer, kind: MetricKind, logits: Tensor<2>) -> Result<Vec<f64>, PatchingError> {
    Ok(scorer.read(logits).await?.iter().map(|r| kind.m(r)).collect())
}
