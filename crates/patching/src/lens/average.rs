//! Averaging the lens and the direct terms over prompts: each prompt's rows (its noise
//! samples under GN) are averaged first, then prompts, as patching averages them. Prompts of
//! different lengths are aligned by role: a lens cell averages the prompts that have its role
//! (an empty cell is NaN, written as null); the direct terms, all at the last position, average
//! every prompt.

use std::ops::Range;

use crate::analysis::results::Grid;
use crate::lens::reading::{Reading, Terms};
use crate::lens::results::LensRun;

/// One run's sums over the prompts added so far.
#[derive(Clone, Debug)]
pub struct RunMean {
    terms: Terms,
    columns: usize,
    /// logit(r) and logit(r′) summed per cell, `[2, streams, columns]`.
    lens: Vec<f64>,
    /// Prompts with a value in each column.
    count: Vec<usize>,
    direct: Vec<f64>,
    logit_diff: f64,
    prompts: usize,
}

impl RunMean {
    /// Sums for a model of `terms`'s shape and a lens of `columns` positions (or roles).
    pub fn new(terms: Terms, columns: usize) -> Self {
        RunMean {
            terms,
            columns,
            lens: vec![0.0; 2 * (terms.n_layer + 1) * columns],
            count: vec![0; columns],
            direct: vec![0.0; terms.count()],
            logit_diff: 0.0,
            prompts: 0,
        }
    }

    /// Adds one prompt: rows `rows` of `reading`, whose position `p` is column `columns[p]`.
    pub fn add(&mut self, reading: &Reading, rows: Range<usize>, columns: &[usize]) {
        let n = rows.len() as f64;
        let mean = |f: &dyn Fn(usize) -> f64| rows.clone().map(f).sum::<f64>() / n;
        let streams = reading.streams;
        for k in 0..2 {
            for s in 0..streams {
                for (p, &col) in columns.iter().enumerate() {
                    self.lens[(k * streams + s) * self.columns + col] +=
                        mean(&|r| reading.lens(k == 1, s, r, p));
                }
            }
        }
        for &col in columns {
            self.count[col] += 1;
        }
        for (t, sum) in self.direct.iter_mut().enumerate() {
            *sum += mean(&|r| reading.term(t, r));
        }
        self.logit_diff += mean(&|r| reading.logit_diff(r));
        self.prompts += 1;
    }

    /// The means.
    pub fn finish(&self) -> LensRun {
        let Terms { n_layer, n_head } = self.terms;
        let streams = n_layer + 1;
        let cells = streams * self.columns;
        let lens = |k: usize| -> Vec<f64> {
            (0..cells)
                .map(|cell| match self.count[cell % self.columns] {
                    0 => f64::NAN,
                    n => self.lens[k * cells + cell] / n as f64,
                })
                .collect()
        };
        let (answer, counter) = (lens(0), lens(1));
        let diff = answer.iter().zip(&counter).map(|(a, b)| a - b).collect();
        let n = self.prompts as f64;
        let term = |t: usize| self.direct[t] / n;
        let shape = vec![streams, self.columns];
        LensRun {
            lens_answer: Grid::new(shape.clone(), answer),
            lens_counter: Grid::new(shape.clone(), counter),
            lens_logit_diff: Grid::new(shape, diff),
            dla_heads: Grid::new(
                vec![n_layer, n_head],
                (0..n_layer * n_head)
                    .map(|k| term(self.terms.head(k / n_head, k % n_head)))
                    .collect(),
            ),
            dla_mlp: Grid::new(
                vec![n_layer],
                (0..n_layer).map(|l| term(self.terms.mlp(l))).collect(),
            ),
            dla_embed: term(self.terms.embed()),
            dla_pos_embed: term(self.terms.pos_embed()),
            dla_attn_bias: term(self.terms.bias()),
            dla_ln_final_bias: term(self.terms.ln_final_bias()),
            logit_diff: self.logit_diff / n,
        }
    }
}
