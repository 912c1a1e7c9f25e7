//! Patching metrics (PAPER.md): probability, logit difference and KL divergence, raw and
//! normalized.
//!
//! For one run, with r the answer, r' the counter-answer and P_cl the clean run's next-token
//! distribution:
//!
//! | metric       | raw value            | M (higher = more like the clean run) |
//! |--------------|----------------------|--------------------------------------|
//! | `prob`       | P(r)                 | P(r)                                 |
//! | `logit_diff` | logit(r) - logit(r') | logit(r) - logit(r')                 |
//! | `kl`         | KL(P_cl ‖ P)         | -KL(P_cl ‖ P)                        |
//!
//! A patch's *effect* is `M_patched - M_base`, the base being the run that is patched (the
//! corrupted run when denoising, the clean run when noising), averaged over noise samples and
//! prompts. *Normalized*, it is divided by `M_clean - M_corrupted`: denoising then reads 1 for
//! full restoration and 0 for none, noising 0 for no damage and -1 for complete damage. This
//! gives the paper's formulas: P_pt(r) - P_*(r); (LD_pt - LD_*) / (LD_cl - LD_*);
//! KL(P_cl‖P_*) - KL(P_cl‖P_pt), optionally over KL(P_cl‖P_*).

use patchbay_model::burn::prelude::*;
use patchbay_model::burn::tensor::activation::log_softmax;
use patchbay_model::read_f32;
use serde::{Deserialize, Serialize};

use crate::{Direction, PatchingError};

/// The three metrics of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Prob,
    LogitDiff,
    Kl,
}

impl MetricKind {
    /// The metric's name in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Prob => "prob",
            MetricKind::LogitDiff => "logit_diff",
            MetricKind::Kl => "kl",
        }
    }

    /// A label for plots.
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Prob => "probability of r",
            MetricKind::LogitDiff => "logit difference",
            MetricKind::Kl => "KL divergence",
        }
    }

    /// The raw value of one run.
    pub fn raw(self, r: &Reading) -> f64 {
        match self {
            MetricKind::Prob => (r.logprob_r as f64).exp(),
            MetricKind::LogitDiff => r.logit_r as f64 - r.logit_rp as f64,
            MetricKind::Kl => r.kl as f64,
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

/// What one run's last-position logits say, enough for every metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub logit_r: f32,
    pub logit_rp: f32,
    pub logprob_r: f32,
    /// KL(P_clean ‖ P) for this run.
    pub kl: f32,
    /// P(r'), for the baselines the page shows.
    pub prob_rp: f32,
}

/// `logit(r) - logit(r')` for each row of last-position logits `[batch, vocab]`, as
/// TransformerLens's tutorials call it.
pub fn logits_to_logit_diff(logits: Tensor<2>, answer: u32, counter: u32) -> Tensor<1> {
    let device = logits.device();
    let pick = |id: u32| {
        logits
            .clone()
            .select(1, Tensor::<1, Int>::from_data([id as i64], &device))
    };
    (pick(answer) - pick(counter)).squeeze_dim(1)
}

/// Reads logits against each row's answers and clean distribution. A batch of patched runs
/// holds `variants` copies of the scorer's rows (prompts × noise samples), variant-major.
#[derive(Clone, Debug)]
pub struct Scorer {
    /// r per row.
    pub answers: Vec<u32>,
    /// r' per row (r again when the metric needs none).
    pub counters: Vec<u32>,
    /// log P_clean per row, `[rows, vocab]`.
    clean_logprobs: Tensor<2>,
}

impl Scorer {
    /// `clean_logits`: the clean run's last-position logits, `[rows, vocab]`, one row per entry
    /// of `answers` and `counters`.
    pub fn new(answers: Vec<u32>, counters: Vec<Option<u32>>, clean_logits: Tensor<2>) -> Self {
        let counters = counters
            .iter()
            .zip(&answers)
            .map(|(c, a)| c.unwrap_or(*a))
            .collect();
        Scorer {
            answers,
            counters,
            clean_logprobs: log_softmax(clean_logits, 1),
        }
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
        self.clean_logprobs.clone().repeat_dim(0, batch / self.rows())
    }

    /// The readings of last-position logits `[batch, vocab]`, computed on the device:
    /// `[batch, 5]` = (logit r, logit r', log P(r), KL(P_cl ‖ P), P(r')).
    pub fn readings(&self, logits: Tensor<2>) -> Tensor<2> {
        let [batch, _] = logits.dims();
        let device = logits.device();
        let (r, rp) = (
            self.ids(&self.answers, batch, &device),
            self.ids(&self.counters, batch, &device),
        );
        let logprobs = log_softmax(logits.clone(), 1);
        let clean = self.clean_rows(batch);
        let kl = (clean.clone().exp() * (clean - logprobs.clone())).sum_dim(1);
        Tensor::cat(
            vec![
                logits.clone().gather(1, r.clone()),
                logits.gather(1, rp.clone()),
                logprobs.clone().gather(1, r),
                kl,
                logprobs.gather(1, rp).exp(),
            ],
            1,
        )
    }

    /// Reads `readings` back to the host (asynchronously: the browser cannot block).
    pub async fn read(&self, logits: Tensor<2>) -> Result<Vec<Reading>, PatchingError> {
        let values = read_f32(self.readings(logits)).await?;
        Ok(values
            .chunks_exact(5)
            .map(|v| Reading {
                logit_r: v[0],
                logit_rp: v[1],
                logprob_r: v[2],
                kl: v[3],
                prob_rp: v[4],
            })
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
            MetricKind::Prob => log_softmax(logits, 1).gather(1, r).exp().squeeze_dim(1),
            MetricKind::Kl => {
                let lp = log_softmax(logits, 1);
                let clean = self.clean_rows(batch);
                (clean.clone().exp() * (clean - lp))
                    .sum_dim(1)
                    .squeeze_dim(1)
                    .neg()
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
    /// Number of prompts.
    pub fn prompts(&self) -> usize {
        self.clean.len() / self.samples
    }

    /// The rows of prompt `prompt`.
    pub fn rows_of(&self, prompt: usize) -> std::ops::Range<usize> {
        prompt * self.samples..(prompt + 1) * self.samples
    }

    /// Mean raw value of prompt `prompt`'s clean run.
    pub fn clean_raw(&self, kind: MetricKind, prompt: usize) -> f64 {
        mean(self.clean[self.rows_of(prompt)].iter().map(|r| kind.raw(r)))
    }

    /// Mean raw value of prompt `prompt`'s corrupted run(s).
    pub fn corrupted_raw(&self, kind: MetricKind, prompt: usize) -> f64 {
        mean(self.corrupted[self.rows_of(prompt)].iter().map(|r| kind.raw(r)))
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
