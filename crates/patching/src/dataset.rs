//! Datasets named by a generator in the spec (`"dataset": {"task": "ioi", "n": 100, "seed": 0}`),
//! expanded into prompt pairs when the experiment runs: a share link stays short and reopens the
//! very same prompts. Also where Gaussian noise goes for a generated dataset (the IOI names, or
//! the tokens an STR pair swaps).

use patchbay_model::{Gpt2, Gpt2Tokenizer};
use serde::{Deserialize, Serialize};

use crate::facts::{FactReport, known_fact_pairs};
use crate::generate::{self, IoiCorruption, IoiOptions};
use crate::{Corruption, ExperimentSpec, PatchingError, PromptPair};

/// The tasks with generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Ioi,
    GreaterThan,
    Induction,
    /// Factual recall (GPT-2 small): built-in facts the model knows.
    Factual,
}

/// Which IOI names the corrupted prompt changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoiNames {
    /// S2 becomes IO (the paper's STR).
    #[default]
    S2,
    /// S1 and IO become two other names.
    S1Io,
    /// All three names change (Wang et al.'s ABC).
    Abc,
}

/// A generated dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub task: Task,
    /// Number of prompt pairs.
    pub n: usize,
    #[serde(default)]
    pub seed: u64,
    /// IOI: the names STR changes, and under GN the names noised.
    #[serde(default)]
    pub names: IoiNames,
    /// IOI: the template (one template gives one token length, which a grid needs).
    #[serde(default)]
    pub template: usize,
}

/// What expanding a dataset did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetReport {
    pub prompts: usize,
    /// Factual recall: facts listed, known to the model, paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<(usize, usize, usize)>,
}

impl From<FactReport> for DatasetReport {
    fn from(r: FactReport) -> Self {
        DatasetReport {
            prompts: r.pairs,
            facts: Some((r.listed, r.known, r.pairs)),
        }
    }
}

/// The spec with its dataset generated into `prompts` (and, under GN with no positions given,
/// the positions to noise), and what generating did. Specs without a dataset are returned as
/// they are.
pub async fn expand(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
) -> Result<(ExperimentSpec, Option<DatasetReport>), PatchingError> {
    let Some(dataset) = &spec.dataset else {
        return Ok((spec.clone(), None));
    };
    if dataset.n == 0 {
        return Err(PatchingError::Spec(
            "a dataset needs at least one prompt (`n`)".into(),
        ));
    }
    let mut out = spec.clone();
    let (pairs, report): (Vec<PromptPair>, DatasetReport) = match dataset.task {
        Task::Ioi => {
            let corruption = match dataset.names {
                IoiNames::S2 => IoiCorruption::S2,
                IoiNames::S1Io => IoiCorruption::S1Io,
                IoiNames::Abc => IoiCorruption::Abc,
            };
            if dataset.template >= generate::IOI_TEMPLATES.len() {
                return Err(PatchingError::Spec(format!(
                    "IOI template {} does not exist: there are {}",
                    dataset.template,
                    generate::IOI_TEMPLATES.len()
                )));
            }
            let options = IoiOptions::new(corruption).with_template(dataset.template);
            let prompts = generate::ioi_prompts(tokenizer, dataset.n, dataset.seed, &options)?;
            let pairs: Vec<PromptPair> = prompts.into_iter().map(|p| p.pair).collect();
            let n = pairs.len();
            (
                pairs,
                DatasetReport {
                    prompts: n,
                    facts: None,
                },
            )
        }
        Task::GreaterThan => {
            let pairs = generate::greater_than(tokenizer, dataset.n, dataset.seed)?;
            let n = pairs.len();
            (
                pairs,
                DatasetReport {
                    prompts: n,
                    facts: None,
                },
            )
        }
        Task::Induction => {
            let pairs = generate::induction(tokenizer, dataset.n, dataset.seed, 10)?;
            let n = pairs.len();
            (
                pairs,
                DatasetReport {
                    prompts: n,
                    facts: None,
                },
            )
        }
        Task::Factual => {
            let (pairs, report) = known_fact_pairs(model, tokenizer, dataset.n, spec.prepend_bos).await?;
            if pairs.is_empty() {
                return Err(PatchingError::Spec(format!(
                    "the model knows {} of the {} built-in facts, too few to pair: factual recall needs GPT-2 small or larger",
                    report.known, report.listed
                )));
            }
            (pairs, report.into())
        }
    };
    // GN with no positions: noise the tokens the STR pair swaps (for IOI, the chosen names).
    if let Corruption::Gn(gn) = &mut out.corruption
        && gn.positions.is_empty()
    {
        let first = &pairs[0];
        let clean = tokenizer.encode(&first.clean, spec.prepend_bos)?;
        let corrupted = tokenizer.encode(first.corrupted.as_deref().unwrap_or(""), spec.prepend_bos)?;
        gn.positions = (0..clean.len())
            .filter(|&i| corrupted.get(i) != Some(&clean[i]))
            .collect();
    }
    out.prompts = pairs;
    out.dataset = None;
    Ok((out, Some(report)))
}
