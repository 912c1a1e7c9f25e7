//! Dataset generators, one file per task, seeded (ChaCha8) so that a dataset is named by its
//! generator, its size and its seed, and a share link stays short yet reopens the very same
//! prompts. Each yields [`PromptPair`]s checked for symmetric token replacement: the clean and
//! corrupted prompts tokenize to the same length, position by position, and the answers are
//! single tokens. Token lengths assume no `<|endoftext|>` in the text; prepending it shifts
//! every position by one and changes nothing else.
//!
//! - [`ioi`]: indirect object identification (Wang et al. 2023);
//! - [`greater_than`]: greater-than (Hanna et al. 2023);
//! - [`induction`]: repeated random tokens;
//! - [`factual`]: factual recall, filtered to the facts the loaded model knows;
//! - [`words`]: the word lists they draw from.
//!
//! The generators also make the training data of the repo's own small model (`patchbay train`),
//! with other seeds than the held-out sets its tests use.

pub mod factual;
pub mod greater_than;
pub mod induction;
pub mod ioi;
pub mod words;

use patchbay_model::{Gpt2, Gpt2Tokenizer};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::corruption::str::str_pair;
use crate::metric::Answers;
use crate::spec::dataset::{DatasetSpec, IoiNames, Task, Templates};
use crate::{PatchingError, PromptPair};
use ioi::{IOI_TEMPLATES, IoiCorruption, IoiOptions};

/// Sequence length of generated induction prompts (each half).
pub const INDUCTION_LENGTH: usize = 10;

/// What generating a dataset did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetReport {
    pub prompts: usize,
    /// Factual recall: facts listed, known to the model, paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<(usize, usize, usize)>,
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A piece of a generated prompt: literal text, whose tokens are named by their words, or a
/// filler whose tokens take a role.
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Role(&'a str, &'a str),
}

/// The role of every token of the prompt `pieces` make (without `<|endoftext|>`): a filler's
/// tokens take its role (numbered from 1 when it is several tokens), literal tokens their
/// readable text; a name that repeats gets its occurrence, `␣the (2)`. The pieces must
/// tokenize as the whole prompt does (they split where GPT-2's pre-tokenizer does).
pub(crate) fn roles_of(tokenizer: &Gpt2Tokenizer, pieces: &[Piece]) -> Result<Vec<String>, PatchingError> {
    let mut roles = Vec::new();
    let mut whole = String::new();
    for piece in pieces {
        let (text, role) = match piece {
            Piece::Text(text) => (*text, None),
            Piece::Role(text, role) => (*text, Some(*role)),
        };
        whole.push_str(text);
        let ids = tokenizer.encode(text, false)?;
        let many = ids.len() > 1;
        for (k, &id) in ids.iter().enumerate() {
            roles.push(match role {
                Some(role) if many => format!("{role} {}", k + 1),
                Some(role) => role.to_string(),
                None => tokenizer.display(id),
            });
        }
    }
    if tokenizer.encode(&whole, false)?.len() != roles.len() {
        return Err(PatchingError::Spec(format!(
            "the generator's pieces of {whole:?} tokenize differently from the prompt"
        )));
    }
    Ok(numbered(roles))
}

/// `names` with each repeat marked by its occurrence: `to`, `to (2)`.
pub(crate) fn numbered(names: Vec<String>) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    names
        .into_iter()
        .map(|name| {
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { name } else { format!("{name} ({n})") }
        })
        .collect()
}

/// Checks what symmetric token replacement needs of a pair: a corrupted prompt of the clean
/// one's token length that differs from it, and single-token, different answers whose sets R
/// and R' are disjoint.
pub fn check_pair(tokenizer: &Gpt2Tokenizer, pair: &PromptPair, index: usize) -> Result<(), PatchingError> {
    if let Some(corrupted) = &pair.corrupted {
        str_pair(tokenizer, &pair.clean, corrupted, false, index)?;
    }
    if !pair.roles.is_empty() {
        let tokens = tokenizer.encode(&pair.clean, false)?.len();
        if pair.roles.len() != tokens {
            return Err(PatchingError::Spec(format!(
                "prompt {index} names {} roles for its {tokens} tokens",
                pair.roles.len()
            )));
        }
    }
    let answers = Answers::of(tokenizer, pair, index)?;
    answers.check_distinct(pair, index)?;
    // A shared token is named as the pair writes it.
    answers.check_disjoint(index, |id| {
        pair.counter_set
            .iter()
            .find(|t| tokenizer.single_token(t).ok() == Some(id))
            .cloned()
            .unwrap_or_else(|| tokenizer.display(id))
    })
}

/// The prompt pairs of a generated dataset, and what generating them did.
pub async fn generate(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    dataset: &DatasetSpec,
    prepend_bos: bool,
) -> Result<(Vec<PromptPair>, DatasetReport), PatchingError> {
    if dataset.n == 0 {
        return Err(PatchingError::Spec(
            "a dataset needs at least one prompt (`n`)".into(),
        ));
    }
    let report = |pairs: &[PromptPair]| DatasetReport {
        prompts: pairs.len(),
        facts: None,
    };
    let pairs = match dataset.task {
        Task::Ioi => {
            let corruption = match dataset.names {
                IoiNames::S2 => IoiCorruption::S2,
                IoiNames::S1Io => IoiCorruption::S1Io,
                IoiNames::Abc => IoiCorruption::Abc,
            };
            let options = match dataset.template {
                Templates::One(t) if t >= IOI_TEMPLATES.len() => {
                    return Err(PatchingError::Spec(format!(
                        "IOI template {t} does not exist: there are {}",
                        IOI_TEMPLATES.len()
                    )));
                }
                Templates::One(t) => IoiOptions::new(corruption).with_template(t),
                Templates::All => IoiOptions::new(corruption),
            };
            ioi::ioi_prompts(tokenizer, dataset.n, dataset.seed, &options)?
                .into_iter()
                .map(|p| p.pair)
                .collect()
        }
        Task::GreaterThan => greater_than::greater_than(tokenizer, dataset.n, dataset.seed)?,
        Task::Induction => induction::induction(tokenizer, dataset.n, dataset.seed, INDUCTION_LENGTH)?,
        Task::Factual => {
            let (pairs, facts) = factual::known_fact_pairs(model, tokenizer, dataset.n, prepend_bos).await?;
            if pairs.is_empty() {
                return Err(PatchingError::Spec(format!(
                    "the model knows {} of the {} built-in facts, too few to pair: factual recall needs GPT-2 small or larger",
                    facts.known, facts.listed
                )));
            }
            let report = DatasetReport {
                prompts: pairs.len(),
                facts: Some((facts.listed, facts.known, facts.pairs)),
            };
            return Ok((pairs, report));
        }
    };
    let report = report(&pairs);
    Ok((pairs, report))
}
