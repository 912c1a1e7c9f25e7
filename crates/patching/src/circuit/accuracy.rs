//! How well a model does a task: over the clean prompts of prompt pairs, the top-1 accuracy
//! (the most likely next token is r, or in R for answer sets), the mean logit difference
//! logit(r) − logit(r'), the mean P(r) and the mean P(R) − P(R'), read by the metrics' own
//! [`Scorer`].

use std::collections::BTreeMap;

use patchbay_model::burn::prelude::*;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, Intervention, LogitsAt, read_f32};

use crate::metric::{Answers, Scorer};
use crate::{PatchingError, PromptPair};

/// Rows per forward pass.
const BATCH: usize = 64;

/// A task's scores, averaged over prompts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskScore {
    /// The fraction of prompts whose most likely next token is r (in R, with answer sets).
    pub accuracy: f64,
    pub logit_diff: f64,
    pub answer_logit: f64,
    pub counter_logit: f64,
    pub prob_answer: f64,
    /// P(R) − P(R').
    pub prob_diff: f64,
}

/// A pair's clean tokens and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub tokens: Vec<u32>,
    pub answers: Answers,
}

/// The clean tokens (with `<|endoftext|>` first when `prepend_bos`) and answers of `pairs`.
pub fn encode(
    tokenizer: &Gpt2Tokenizer,
    pairs: &[PromptPair],
    prepend_bos: bool,
) -> Result<Vec<Encoded>, PatchingError> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            Ok(Encoded {
                tokens: tokenizer.encode(&pair.clean, prepend_bos)?,
                answers: Answers::of(tokenizer, pair, i)?,
            })
        })
        .collect()
}

/// The task's scores over `prompts`, batched by token length. `edit` gives the interventions
/// of each batch (none: the model as it is).
pub async fn score(
    model: &Gpt2,
    prompts: &[Encoded],
    edit: impl Fn(&[Vec<u32>]) -> Result<Vec<Intervention>, PatchingError>,
) -> Result<TaskScore, PatchingError> {
    if prompts.is_empty() {
        return Err(PatchingError::NoPrompts);
    }
    let mut by_len: BTreeMap<usize, Vec<&Encoded>> = BTreeMap::new();
    for p in prompts {
        by_len.entry(p.tokens.len()).or_default().push(p);
    }
    let mut sums = [0.0; 6];
    for group in by_len.values() {
        for chunk in group.chunks(BATCH) {
            let tokens: Vec<Vec<u32>> = chunk.iter().map(|p| p.tokens.clone()).collect();
            let interventions = edit(&tokens)?;
            let logits = model.forward(
                &tokens,
                &mut Hooks::none().with_interventions(&interventions),
                LogitsAt::Last,
            )?;
            let [rows, _, vocab] = logits.dims();
            let logits: Tensor<2> = logits.reshape([rows, vocab]);
            let answers: Vec<Answers> = chunk.iter().map(|p| p.answers.clone()).collect();
            let readings = Scorer::new(&answers, logits.clone()).read(logits.clone()).await?;
            let top = read_f32(logits.argmax(1).float()).await?;
            for ((reading, answers), top) in readings.iter().zip(&answers).zip(top) {
                sums[0] += f64::from(u8::from(answers.answer_set.contains(&(top as u32))));
                sums[1] += reading.logit_r as f64 - reading.logit_rp as f64;
                sums[2] += reading.logit_r as f64;
                sums[3] += reading.logit_rp as f64;
                sums[4] += (reading.logprob_r as f64).exp();
                sums[5] += reading.prob_set_r as f64 - reading.prob_set_rp as f64;
            }
        }
    }
    let n = prompts.len() as f64;
    Ok(TaskScore {
        accuracy: sums[0] / n,
        logit_diff: sums[1] / n,
        answer_logit: sums[2] / n,
        counter_logit: sums[3] / n,
        prob_answer: sums[4] / n,
        prob_diff: sums[5] / n,
    })
}
