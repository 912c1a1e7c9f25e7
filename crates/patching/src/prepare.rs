//! Preparing an experiment, once, for every caller (the run, the editor's check, looking inside
//! a cell, the sensitivity sweep): a generated dataset is generated into prompts, every input
//! is checked against the model and tokenized, the answers become token ids, and Gaussian
//! noise gets its positions, σ and ν.

use patchbay_model::{Gpt2, Gpt2Tokenizer, ModelError};
use serde::Serialize;

use crate::corruption::Corrupted;
use crate::corruption::gn::{self, Noise};
use crate::corruption::str::str_pair;
use crate::metric::Answers;
use crate::runs::PromptInput;
use crate::sweep::window;
use crate::tasks::{self, DatasetReport};
use crate::{Corruption, ExperimentSpec, PatchingError};

/// One prompt of a spec, checked and tokenized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreparedPrompt {
    pub clean: Vec<u32>,
    /// STR's corrupted tokens, aligned with `clean`.
    pub corrupted: Option<Vec<u32>>,
    /// Positions that differ (STR) or are noised (GN).
    pub corrupted_positions: Vec<usize>,
    pub answers: Answers,
}

/// An experiment ready to run.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The spec that runs: the given one with a generated dataset written out as its prompts.
    pub spec: ExperimentSpec,
    /// What generating the dataset did, when the spec names one.
    pub dataset: Option<DatasetReport>,
    pub prompts: Vec<PreparedPrompt>,
    /// Gaussian noise as it runs; `None` for STR.
    pub noise: Option<Noise>,
    /// The first prompt's tokens, readable: the position axis.
    pub labels: Vec<String>,
}

/// Checks every input of `spec` against the model and tokenizes its prompts (generating a
/// dataset first), without running a patch: what an editor calls as the user types.
pub async fn prepare(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
) -> Result<Prepared, PatchingError> {
    let mut spec = spec.clone();
    let dataset = match spec.dataset.take() {
        Some(dataset) => {
            let (pairs, report) = tasks::generate(model, tokenizer, &dataset, spec.prepend_bos).await?;
            spec.prompts = pairs;
            Some(report)
        }
        None => None,
    };
    if spec.prompts.is_empty() {
        return Err(PatchingError::NoPrompts);
    }
    let config = &model.config;
    let mut prompts: Vec<PreparedPrompt> = Vec::new();
    let mut noise_positions = None;
    for (i, pair) in spec.prompts.iter().enumerate() {
        if pair.clean.is_empty() {
            return Err(ModelError::EmptyPrompt.into());
        }
        let clean = tokenizer.encode(&pair.clean, spec.prepend_bos)?;
        if clean.len() > config.n_positions {
            return Err(ModelError::ContextOverflow {
                tokens: clean.len(),
                n_ctx: config.n_positions,
            }
            .into());
        }
        let (corrupted, corrupted_positions) = match &spec.corruption {
            Corruption::Str => {
                let text = pair.corrupted.as_deref().ok_or_else(|| {
                    PatchingError::Spec(format!("prompt {i} has no `corrupted` prompt, which STR needs"))
                })?;
                let p = str_pair(tokenizer, &pair.clean, text, spec.prepend_bos, i)?;
                (Some(p.corrupted), p.differing)
            }
            Corruption::Gn(noise) => {
                // One set of positions for the whole dataset, which shares one grid.
                let positions = match &noise_positions {
                    Some(positions) => positions,
                    None => noise_positions.insert(gn::positions(
                        noise,
                        tokenizer,
                        pair,
                        spec.prepend_bos,
                        clean.len(),
                    )?),
                };
                (None, positions.clone())
            }
        };
        let answers = Answers::of(tokenizer, pair, i)?;
        answers.check_for(spec.metric.kind, tokenizer, pair, i)?;
        if let Some(first) = prompts.first().map(|p| p.clean.len())
            && first != clean.len()
        {
            return Err(PatchingError::RaggedDataset {
                first,
                prompt: i,
                len: clean.len(),
            });
        }
        prompts.push(PreparedPrompt {
            clean,
            corrupted,
            corrupted_positions,
            answers,
        });
    }
    spec.target.check(config, prompts[0].clean.len())?;
    if let Some(w) = spec.window {
        window::check(w.size, config.n_layer)?;
    }
    let noise = match (&spec.corruption, noise_positions) {
        (Corruption::Gn(noise), Some(positions)) => {
            let clean: Vec<&[u32]> = prompts.iter().map(|p| p.clean.as_slice()).collect();
            Some(gn::level(model, tokenizer, noise, positions, &clean).await?)
        }
        _ => None,
    };
    let labels = prompts[0].clean.iter().map(|&id| tokenizer.display(id)).collect();
    Ok(Prepared {
        spec,
        dataset,
        prompts,
        noise,
        labels,
    })
}

impl Prepared {
    /// The inputs of the clean and corrupted runs of prompt `index`; `replay` replaces the
    /// first prompt's noise values (`[samples, positions, d_model]`), as tests that share noise
    /// with the reference do.
    pub fn input(&self, model: &Gpt2, index: usize, replay: Option<&[f32]>) -> PromptInput {
        let prompt = &self.prompts[index];
        let corrupted = match (&prompt.corrupted, &self.noise) {
            (Some(tokens), _) => Corrupted::Tokens(tokens.clone()),
            (None, Some(noise)) => noise.corrupted(
                model,
                self.spec.seed,
                index,
                prompt.clean.len(),
                replay.filter(|_| index == 0),
            ),
            (None, None) => unreachable!("prepare pairs STR with tokens and GN with noise"),
        };
        PromptInput {
            clean: prompt.clean.clone(),
            corrupted,
            first_changed: prompt.corrupted_positions.iter().copied().min().unwrap_or(0),
            answers: prompt.answers.clone(),
        }
    }
}
