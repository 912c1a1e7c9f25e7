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

/// Reads logits against one prompt's answers and clean distribution.
#[derive(Clone, Debug)]
pub struct Scorer {
    pub answer: u32,
    /// r' (or r again when the metric needs none).
    pub counter: u32,
    /// log P_clean, `[1, vocab]`.
    clean_logprobs: Tensor<2>,
}

impl Scorer {
    /// `clean_logits`: the clean run's last-position logits, `[1, vocab]`.
    pub fn new(answer: u32, counter: Option<u32>, clean_logits: Tensor<2>) -> Self {
        Scorer {
            answer,
            counter: counter.unwrap_or(answer),
            clean_logprobs: log_softmax(clean_logits, 1),
        }
    }

    /// The readings of last-position logits `[batch, vocab]`, computed on the device:
    /// `[batch, 5]` = (logit r, logit r', log P(r), KL(P_cl ‖ P), P(r')).
    pub fn readings(&self, logits: Tensor<2>) -> Tensor<2> {
        let device = logits.device();
        let ids = Tensor::<1, Int>::from_data([self.answer as i64, self.counter as i64], &device);
        let logprobs = log_softmax(logits.clone(), 1);
        let picked = logits.select(1, ids.clone());
        let picked_lp = logprobs.clone().select(1, ids);
        let kl = (self.clean_logprobs.clone().exp() * (self.clean_logprobs.clone() - logprobs)).sum_dim(1);
        Tensor::cat(
            vec![
                picked,
                picked_lp.clone().narrow(1, 0, 1),
                kl,
                picked_lp.narrow(1, 1, 1).exp(),
            ],
            1,
        )
    }

    /// Reads `readings` back to the host (asynchronously: the browser cannot block).
    pub async fn read(&self, logits: Tensor<2>) -> Result<Vec<Reading>, PatchingError> {
        let data = self
            .readings(logits)
            .into_data_async()
            .await
            .map_err(|e| PatchingError::Model(patchbay_model::ModelError::Backend(format!("{e:?}"))))?;
        let values: Vec<f32> = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| PatchingError::Model(patchbay_model::ModelError::Backend(format!("{e:?}"))))?;
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
        match kind {
            MetricKind::LogitDiff => logits_to_logit_diff(logits, self.answer, self.counter),
            MetricKind::Prob => {
                let device = logits.device();
                let id = Tensor::<1, Int>::from_data([self.answer as i64], &device);
                log_softmax(logits, 1).select(1, id).exp().squeeze_dim(1)
            }
            MetricKind::Kl => {
                let lp = log_softmax(logits, 1);
                let clean = self.clean_logprobs.clone();
                (clean.clone().exp() * (clean - lp))
                    .sum_dim(1)
                    .squeeze_dim(1)
                    .neg()
            }
        }
    }
}

/// The clean and corrupted runs' readings: what every effect is measured against.
#[derive(Clone, Debug)]
pub struct Baselines {
    pub clean: Vec<Reading>,
    /// One reading per noise sample (one for STR).
    pub corrupted: Vec<Reading>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

impl Baselines {
    /// Mean raw value of the clean run.
    pub fn clean_raw(&self, kind: MetricKind) -> f64 {
        mean(self.clean.iter().map(|r| kind.raw(r)))
    }

    /// Mean raw value of the corrupted run(s).
    pub fn corrupted_raw(&self, kind: MetricKind) -> f64 {
        mean(self.corrupted.iter().map(|r| kind.raw(r)))
    }

    fn clean_m(&self, kind: MetricKind) -> f64 {
        mean(self.clean.iter().map(|r| kind.m(r)))
    }

    fn corrupted_m(&self, kind: MetricKind) -> f64 {
        mean(self.corrupted.iter().map(|r| kind.m(r)))
    }

    /// M of the run that is patched.
    pub fn base_m(&self, kind: MetricKind, direction: Direction) -> f64 {
        match direction {
            Direction::Denoising => self.corrupted_m(kind),
            Direction::Noising => self.clean_m(kind),
        }
    }

    /// M_clean - M_corrupted, the normalizer.
    pub fn span(&self, kind: MetricKind) -> f64 {
        self.clean_m(kind) - self.corrupted_m(kind)
    }

    /// A patched run's effect from its rows' readings (averaged over rows).
    pub fn effect(&self, kind: MetricKind, direction: Direction, normalized: bool, rows: &[Reading]) -> f64 {
        let effect = mean(rows.iter().map(|r| kind.m(r))) - self.base_m(kind, direction);
        if normalized {
            effect / self.span(kind)
        } else {
            effect
        }
    }
}
