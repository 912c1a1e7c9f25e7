//! Patching metrics (Zhang & Nanda 2024, §3.2): probability, logit difference and KL divergence,
//! raw and normalized, and greater-than's probability difference; the answers they read.
//!
//! For one run, with r the answer, r' the counter-answer and P_cl the clean run's next-token
//! distribution:
//!
//! | metric       | raw value            | M (higher = more like the clean run) |
//! |--------------|----------------------|--------------------------------------|
//! | `prob`       | P(r)                 | P(r)                                 |
//! | `logit_diff` | logit(r) - logit(r') | logit(r) - logit(r')                 |
//! | `kl`         | KL(P_cl ‖ P)         | -KL(P_cl ‖ P)                        |
//! | `prob_diff`  | P(R) - P(R')         | P(R) - P(R')                         |
//!
//! `prob_diff` is Hanna et al.'s probability difference for greater-than: R and R' are sets of
//! answers (the years after YY, and the years up to YY), whose probabilities are summed; without
//! sets they are {r} and {r'}.
//!
//! A patch's *effect* is `M_patched - M_base`, the base being the run that is patched (the
//! corrupted run when denoising, the clean run when noising), averaged over noise samples and
//! prompts. *Normalized*, it is divided by `M_clean - M_corrupted`: denoising then reads 1 for
//! full restoration and 0 for none, noising 0 for no damage and -1 for complete damage. This
//! gives the paper's formulas: P_pt(r) - P_*(r); (LD_pt - LD_*) / (LD_cl - LD_*);
//! KL(P_cl‖P_*) - KL(P_cl‖P_pt), optionally over KL(P_cl‖P_*).

use patchbay_model::burn::prelude::*;
use patchbay_model::{Gpt2Tokenizer, LogitsAt, ModelError, read_f32};
use serde::{Deserialize, Serialize};

use crate::sweep::batched::tile;
use crate::{Direction, PatchingError, PromptPair};

/// The three metrics of the paper, and greater-than's probability difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Prob,
    LogitDiff,
    Kl,
    ProbDiff,
}

impl MetricKind {
    /// Every metric, in the order the page lists them.
    pub const ALL: [MetricKind; 4] = [
        MetricKind::LogitDiff,
        MetricKind::Prob,
        MetricKind::Kl,
        MetricKind::ProbDiff,
    ];

    /// The name of a choice list: "Logit difference", "Probability difference P(R) − P(R′)".
    pub fn choice_label(self) -> &'static str {
        match self {
            MetricKind::LogitDiff => "Logit difference",
            MetricKind::Prob => "Probability of r",
            MetricKind::Kl => "KL divergence",
            MetricKind::ProbDiff => "Probability difference P(R) − P(R′)",
        }
    }

    /// The metric's name in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Prob => "prob",
            MetricKind::LogitDiff => "logit_diff",
            MetricKind::Kl => "kl",
            MetricKind::ProbDiff => "prob_diff",
        }
    }

    /// A label for plots.
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Prob => "probability of r",
            MetricKind::LogitDiff => "logit difference",
            MetricKind::Kl => "KL divergence",
            MetricKind::ProbDiff => "probability difference",
        }
    }

    /// The raw value of one run.
    pub fn raw(self, r: &Reading) -> f64 {
        match self {
            MetricKind::Prob => (r.logprob_r as f64).exp(),
            MetricKind::LogitDiff => r.logit_r as f64 - r.logit_rp as f64,
            MetricKind::Kl => r.kl as f64,
            MetricKind::ProbDiff => r.prob_set_r as f64 - r.prob_set_rp as f64,
        }
    }

    /// M: the raw value signed so that higher means closer to the clean run.
    pub fn m(self, r: &Reading) -> f64 {
        match self {
            MetricKind::Kl => -self.raw(r),
            _ => self.raw(r),
        }
    }
}

/// Sums `[rows, vocab]` over the vocabulary in two stages (blocks of 256, then the blocks): a
/// backend that reduces sequentially in f32 (burn's CPU backend in wasm) drifts by 1e-3 of the
/// total over GPT-2's 50,257 entries, which the metrics would inherit; two stages keep every
/// partial sum short. `[rows, 1]`.
fn sum_vocab(values: Tensor<2>) -> Tensor<2> {
    const BLOCK: usize = 256;
    let [rows, vocab] = values.dims();
    let blocks = vocab.div_ceil(BLOCK);
    let pad = blocks * BLOCK - vocab;
    let padded = if pad == 0 {
        values
    } else {
        let zeros = Tensor::zeros([rows, pad], &values.device());
        Tensor::cat(vec![values, zeros], 1)
    };
    padded
        .reshape([rows, blocks, BLOCK])
        .sum_dim(2)
        .reshape([rows, blocks])
        .sum_dim(1)
}

/// log softmax over the vocabulary, with the normalizer summed by `sum_vocab`.
fn log_softmax(logits: Tensor<2>) -> Tensor<2> {
    // The maximum only keeps exp in range: no gradient flows through it (attribution).
    let shifted = logits.clone() - logits.max_dim(1).detach();
    let log_sum = sum_vocab(shifted.clone().exp()).log();
    shifted - log_sum
}

/// What one run's last-position logits say, enough for every metric. A patched run's readings
/// for the logit difference ([`Scorer::read_patched`]) hold only `logit_r` and `logit_rp`; the
/// other fields are NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub logit_r: f32,
    pub logit_rp: f32,
    pub logprob_r: f32,
    /// KL(P_clean ‖ P) for this run.
    pub kl: f32,
    /// P(r'), for the baselines the page shows.
    pub prob_rp: f32,
    /// P(R) and P(R'): the probability mass of the answer sets.
    pub prob_set_r: f32,
    pub prob_set_rp: f32,
}

impl Reading {
    /// How many numbers a reading is, as a run's readings come back from the device and as
    /// shards carry them between workers.
    pub const FIELDS: usize = 7;

    /// A reading from its [`Reading::FIELDS`] numbers, in the order of the fields.
    pub fn from_fields(v: &[f32]) -> Reading {
        Reading {
            logit_r: v[0],
            logit_rp: v[1],
            logprob_r: v[2],
            kl: v[3],
            prob_rp: v[4],
            prob_set_r: v[5],
            prob_set_rp: v[6],
        }
    }

    /// Its numbers, in the order of the fields (every field by name: a new one cannot be left
    /// out unnoticed).
    pub fn fields(&self) -> [f32; Reading::FIELDS] {
        let Reading {
            logit_r,
            logit_rp,
            logprob_r,
            kl,
            prob_rp,
            prob_set_r,
            prob_set_rp,
        } = *self;
        [logit_r, logit_rp, logprob_r, kl, prob_rp, prob_set_r, prob_set_rp]
    }
}

/// The id of an answer, which must be one token; `which` names it in the message.
pub fn answer_token(
    tokenizer: &Gpt2Tokenizer,
    text: &str,
    prompt: usize,
    which: &'static str,
) -> Result<u32, PatchingError> {
    tokenizer
        .single_token(text)
        .map_err(|e| PatchingError::NotOneToken {
            prompt,
            which,
            text: text.to_string(),
            reason: match e {
                ModelError::Tokenizer(reason) => reason,
                other => other.to_string(),
            },
        })
}

/// A prompt's answers as token ids: r, r', and the sets R and R' of `prob_diff` (by default
/// {r} and {r'}).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answers {
    pub answer: u32,
    pub counter: Option<u32>,
    pub answer_set: Vec<u32>,
    pub counter_set: Vec<u32>,
}

impl Answers {
    /// Tokenizes the answers of pair `prompt`: each must be one token.
    pub fn of(tokenizer: &Gpt2Tokenizer, pair: &PromptPair, prompt: usize) -> Result<Self, PatchingError> {
        let one = |text: &str, which| answer_token(tokenizer, text, prompt, which);
        let answer = one(&pair.answer, "answer")?;
        let counter = pair
            .counter_answer
            .as_deref()
            .map(|t| one(t, "counter-answer"))
            .transpose()?;
        let set = |texts: &[String], which| -> Result<Vec<u32>, PatchingError> {
            texts.iter().map(|t| one(t, which)).collect()
        };
        let answer_set = match set(&pair.answer_set, "answer set")? {
            ids if ids.is_empty() => vec![answer],
            ids => ids,
        };
        let counter_set = match set(&pair.counter_set, "counter set")? {
            ids if ids.is_empty() => counter.into_iter().collect(),
            ids => ids,
        };
        Ok(Answers {
            answer,
            counter,
            answer_set,
            counter_set,
        })
    }

    /// Checks that r' differs from r, when given.
    pub fn check_distinct(&self, pair: &PromptPair, prompt: usize) -> Result<(), PatchingError> {
        match self.counter {
            Some(c) if c == self.answer => Err(PatchingError::SameAnswers {
                prompt,
                text: pair.answer.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks that R and R' are disjoint; `name` says how a shared token is named.
    pub fn check_disjoint(&self, prompt: usize, name: impl Fn(u32) -> String) -> Result<(), PatchingError> {
        match self.answer_set.iter().find(|id| self.counter_set.contains(id)) {
            Some(&shared) => Err(PatchingError::OverlappingSets {
                prompt,
                text: name(shared),
            }),
            None => Ok(()),
        }
    }

    /// Checks what `kind` needs: logit difference two different answers r and r', probability
    /// difference a non-empty R' disjoint from R.
    pub fn check_for(
        &self,
        kind: MetricKind,
        tokenizer: &Gpt2Tokenizer,
        pair: &PromptPair,
        prompt: usize,
    ) -> Result<(), PatchingError> {
        match kind {
            MetricKind::LogitDiff => {
                if self.counter.is_none() {
                    return Err(PatchingError::MissingCounterAnswer {
                        prompt,
                        metric: "logit difference",
                    });
                }
                self.check_distinct(pair, prompt)
            }
            MetricKind::ProbDiff => {
                if self.counter_set.is_empty() {
                    return Err(PatchingError::MissingCounterAnswer {
                        prompt,
                        metric: "probability difference",
                    });
                }
                self.check_disjoint(prompt, |id| tokenizer.display(id))
            }
            MetricKind::Prob | MetricKind::Kl => Ok(()),
        }
    }
}

/// Reads logits against each row's answers and clean distribution. A batch of patched runs
/// holds `variants` copies of the scorer's rows (prompts × noise samples), variant-major.
#[derive(Clone, Debug)]
pub struct Scorer {
    /// r per row.
    pub answers: Vec<u32>,
    /// r' per row (r again when the metric needs none).
    pub counters: Vec<u32>,
    /// log P_clean and P_clean per row, `[rows, vocab]`.
    clean_logprobs: Tensor<2>,
    clean_probs: Tensor<2>,
    /// Per row, 1 on the tokens of R (of R'), 0 elsewhere: `[rows, vocab]`.
    set_r: Tensor<2>,
    set_rp: Tensor<2>,
    /// For a metric that reads only r and r' (the logit difference): the distinct ids of every
    /// row's r and r', which patched runs unembed instead of the whole vocabulary, and where each
    /// row's r and r' sit among them.
    columns: Option<Columns>,
}

/// The few vocabulary entries a patched run's logits are computed for.
#[derive(Clone, Debug)]
struct Columns {
    ids: Vec<u32>,
    /// Per row, the column of r and of r'.
    of_answer: Vec<u32>,
    of_counter: Vec<u32>,
}

impl Scorer {
    /// `clean_logits`: the clean run's last-position logits, `[rows, vocab]`, one row per entry
    /// of `rows`.
    pub fn new(rows: &[Answers], clean_logits: Tensor<2>) -> Self {
        let [n, vocab] = clean_logits.dims();
        let device = clean_logits.device();
        let mask = |pick: &dyn Fn(&Answers) -> &Vec<u32>| {
            let mut values = vec![0f32; n * vocab];
            for (row, answers) in rows.iter().enumerate() {
                for &id in pick(answers) {
                    values[row * vocab + id as usize] = 1.0;
                }
            }
            Tensor::from_data(TensorData::new(values, [n, vocab]), &device)
        };
        let clean_logprobs = log_softmax(clean_logits);
        Scorer {
            answers: rows.iter().map(|a| a.answer).collect(),
            counters: rows.iter().map(|a| a.counter.unwrap_or(a.answer)).collect(),
            set_r: mask(&|a| &a.answer_set),
            set_rp: mask(&|a| &a.counter_set),
            clean_probs: clean_logprobs.clone().exp(),
            clean_logprobs,
            columns: None,
        }
    }

    /// Lets patched runs compute only what `kind` reads: for the logit difference, the logits of
    /// r and r' ([`Scorer::logits_at`]); the other metrics read the whole distribution.
    pub fn for_metric(mut self, kind: MetricKind) -> Self {
        self.columns = (kind == MetricKind::LogitDiff).then(|| {
            let mut ids: Vec<u32> = self.answers.iter().chain(&self.counters).copied().collect();
            ids.sort_unstable();
            ids.dedup();
            let column = |id: &u32| ids.binary_search(id).expect("listed") as u32;
            Columns {
                of_answer: self.answers.iter().map(column).collect(),
                of_counter: self.counters.iter().map(column).collect(),
                ids,
            }
        });
        self
    }

    /// The logits patched runs compute: the last position's, and only the columns of r and r'
    /// when the metric is the logit difference.
    pub fn logits_at(&self) -> LogitsAt<'_> {
        match &self.columns {
            Some(columns) => LogitsAt::LastOf(&columns.ids),
            None => LogitsAt::Last,
        }
    }

    /// The readings of patched runs' logits, computed as [`Scorer::logits_at`] says (`[batch,
    /// columns]`). With only r and r' computed, the fields the metric does not read are NaN.
    pub async fn read_patched(&self, logits: Tensor<2>) -> Result<Vec<Reading>, PatchingError> {
        let Some(columns) = &self.columns else {
            return self.read(logits).await;
        };
        let [batch, _] = logits.dims();
        let device = logits.device();
        let picked = Tensor::cat(
            vec![
                logits
                    .clone()
                    .gather(1, self.ids(&columns.of_answer, batch, &device)),
                logits.gather(1, self.ids(&columns.of_counter, batch, &device)),
            ],
            1,
        );
        Ok(read_f32(picked)
            .await?
            .chunks_exact(2)
            .map(|v| Reading {
                logit_r: v[0],
                logit_rp: v[1],
                logprob_r: f32::NAN,
                kl: f32::NAN,
                prob_rp: f32::NAN,
                prob_set_r: f32::NAN,
                prob_set_rp: f32::NAN,
            })
            .collect())
    }

    fn rows(&self) -> usize {
        self.answers.len()
    }

    /// `[batch, 1]` indices of `ids`, repeated for every variant of the batch.
    fn ids(&self, ids: &[u32], batch: usize, device: &Device) -> Tensor<2, Int> {
        let tiled: Vec<i64> = ids.iter().map(|&id| id as i64).cycle().take(batch).collect();
        Tensor::from_data(TensorData::new(tiled, [batch, 1]), device)
    }

    fn clean_rows(&self, batch: usize) -> Tensor<2> {
        tile(self.clean_logprobs.clone(), batch / self.rows())
    }

    fn clean_probs_rows(&self, batch: usize) -> Tensor<2> {
        tile(self.clean_probs.clone(), batch / self.rows())
    }

    /// The readings of last-position logits `[batch, vocab]`, computed on the device:
    /// `[batch, 7]` = (logit r, logit r', log P(r), KL(P_cl ‖ P), P(r'), P(R), P(R')).
    pub fn readings(&self, logits: Tensor<2>) -> Tensor<2> {
        let [batch, _] = logits.dims();
        let device = logits.device();
        let (r, rp) = (
            self.ids(&self.answers, batch, &device),
            self.ids(&self.counters, batch, &device),
        );
        let logprobs = log_softmax(logits.clone());
        let kl = sum_vocab(self.clean_probs_rows(batch) * (self.clean_rows(batch) - logprobs.clone()));
        let probs = logprobs.clone().exp();
        let reps = batch / self.rows();
        let mass = |set: &Tensor<2>| sum_vocab(probs.clone() * tile(set.clone(), reps));
        Tensor::cat(
            vec![
                logits.clone().gather(1, r.clone()),
                logits.gather(1, rp.clone()),
                logprobs.clone().gather(1, r),
                kl,
                logprobs.gather(1, rp).exp(),
                mass(&self.set_r),
                mass(&self.set_rp),
            ],
            1,
        )
    }

    /// Reads `readings` back to the host (asynchronously: the browser cannot block).
    pub async fn read(&self, logits: Tensor<2>) -> Result<Vec<Reading>, PatchingError> {
        let values = read_f32(self.readings(logits)).await?;
        Ok(values
            .chunks_exact(Reading::FIELDS)
            .map(Reading::from_fields)
            .collect())
    }

    /// M of each row, differentiable (attribution patching): `[batch]`.
    pub fn m_tensor(&self, kind: MetricKind, logits: Tensor<2>) -> Tensor<1> {
        let [batch, _] = logits.dims();
        let device = logits.device();
        let r = self.ids(&self.answers, batch, &device);
        match kind {
            MetricKind::LogitDiff => {
                let rp = self.ids(&self.counters, batch, &device);
                (logits.clone().gather(1, r) - logits.gather(1, rp)).squeeze_dim(1)
            }
            MetricKind::Prob => log_softmax(logits).gather(1, r).exp().squeeze_dim(1),
            MetricKind::Kl => {
                let lp = log_softmax(logits);
                sum_vocab(self.clean_probs_rows(batch) * (self.clean_rows(batch) - lp))
                    .squeeze_dim(1)
                    .neg()
            }
            MetricKind::ProbDiff => {
                let reps = batch / self.rows();
                let sets = (self.set_r.clone() - self.set_rp.clone()).repeat_dim(0, reps);
                sum_vocab(log_softmax(logits).exp() * sets).squeeze_dim(1)
            }
        }
    }
}

/// The clean and corrupted runs' readings, one per row (prompt × noise sample, prompt-major):
/// what every effect is measured against, prompt by prompt.
#[derive(Clone, Debug)]
pub struct Baselines {
    pub clean: Vec<Reading>,
    pub corrupted: Vec<Reading>,
    /// Rows per prompt (noise samples; 1 for STR).
    pub samples: usize,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

impl Baselines {
    /// The rows of prompt `prompt`.
    pub fn rows_of(&self, prompt: usize) -> std::ops::Range<usize> {
        prompt * self.samples..(prompt + 1) * self.samples
    }

    fn clean_m(&self, kind: MetricKind, prompt: usize) -> f64 {
        mean(self.clean[self.rows_of(prompt)].iter().map(|r| kind.m(r)))
    }

    fn corrupted_m(&self, kind: MetricKind, prompt: usize) -> f64 {
        mean(self.corrupted[self.rows_of(prompt)].iter().map(|r| kind.m(r)))
    }

    /// M of the run that is patched.
    pub fn base_m(&self, kind: MetricKind, direction: Direction, prompt: usize) -> f64 {
        match direction {
            Direction::Denoising => self.corrupted_m(kind, prompt),
            Direction::Noising => self.clean_m(kind, prompt),
        }
    }

    /// M_clean - M_corrupted of one prompt, the normalizer.
    pub fn span(&self, kind: MetricKind, prompt: usize) -> f64 {
        self.clean_m(kind, prompt) - self.corrupted_m(kind, prompt)
    }

    /// A patched run's effect on prompt `prompt` from that prompt's rows' readings.
    pub fn effect(
        &self,
        kind: MetricKind,
        direction: Direction,
        normalized: bool,
        prompt: usize,
        rows: &[Reading],
    ) -> f64 {
        let effect = mean(rows.iter().map(|r| kind.m(r))) - self.base_m(kind, direction, prompt);
        if normalized {
            effect / self.span(kind, prompt)
        } else {
            effect
        }
    }
}
