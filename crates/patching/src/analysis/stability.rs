//! How stable one method's answer is across seeds: the same corruption, metric and direction run
//! under several seeds (of the Gaussian noise, and of the generated dataset, so of STR's
//! substitutions) detects a set of components under each, and a reviewer asks whether those
//! sets agree. Two numbers answer for the whole set — the mean and the smallest Jaccard
//! similarity over every pair of seeds (1: the same set under every seed) — and one for each
//! component: the fraction of seeds that detect it (1: found under every seed).

use serde::Serialize;

use crate::analysis::results::precision;
use crate::analysis::stats::{jaccard, unravel};
use crate::sweep::plan::Axis;

/// One component and how often the seeds detect it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Frequency {
    /// Flat index into the grid.
    pub cell: usize,
    /// Index along each axis.
    pub index: Vec<usize>,
    /// Seeds that detect it, over all seeds.
    pub fraction: f64,
}

/// One setting's detected sets across its seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stability {
    /// The setting, without its seed: "GN S2 · logit_diff · denoising".
    pub setting: String,
    pub seeds: Vec<u64>,
    /// For each seed, the index of its case among the sensitivity's cases.
    pub cases: Vec<usize>,
    /// Mean Jaccard similarity of the detected sets over every pair of seeds.
    pub jaccard_mean: f64,
    /// The smallest Jaccard similarity of any pair of seeds.
    pub jaccard_min: f64,
    /// Every component some seed detects, most often detected first (then by cell).
    pub components: Vec<Frequency>,
}

impl Stability {
    /// The stability of `detected` (one set of flat cell indices per seed, at least two) in a
    /// grid of `shape`.
    pub fn of(
        setting: String,
        seeds: Vec<u64>,
        cases: Vec<usize>,
        detected: &[&[usize]],
        shape: &[usize],
    ) -> Self {
        let k = detected.len();
        let pairs: Vec<f64> = (0..k)
            .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
            .map(|(a, b)| jaccard(detected[a], detected[b]))
            .collect();
        let mut cells: Vec<usize> = detected.iter().flat_map(|d| d.iter().copied()).collect();
        cells.sort_unstable();
        cells.dedup();
        let mut components: Vec<Frequency> = cells
            .into_iter()
            .map(|cell| Frequency {
                cell,
                index: unravel(cell, shape),
                fraction: detected.iter().filter(|d| d.contains(&cell)).count() as f64 / k as f64,
            })
            .collect();
        components.sort_by(|a, b| b.fraction.total_cmp(&a.fraction).then(a.cell.cmp(&b.cell)));
        Stability {
            setting,
            seeds,
            cases,
            jaccard_mean: pairs.iter().sum::<f64>() / pairs.len() as f64,
            jaccard_min: pairs.iter().copied().fold(f64::INFINITY, f64::min),
            components,
        }
    }
}

impl Frequency {
    /// The component by its label along each axis, joined by dots: "1.0" for head 1.0 of a
    /// layer × head grid (stability.csv names components so too).
    pub fn name(&self, axes: &[Axis]) -> String {
        let labels: Vec<&str> = self
            .index
            .iter()
            .zip(axes)
            .map(|(&i, axis)| axis.labels.get(i).map_or("?", String::as_str))
            .collect();
        labels.join(".")
    }
}

impl Stability {
    /// Seeds that detect `f`.
    pub fn detecting(&self, f: &Frequency) -> usize {
        (f.fraction * self.seeds.len() as f64).round() as usize
    }

    /// The agreement of the seeds' detected sets in words: "Seeds 0, 1, 2: Jaccard similarity
    /// 0.667 on average over the pairs of seeds, 0.333 at the least."
    pub fn agreement(&self) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        format!(
            "Seeds {}: Jaccard similarity {} on average over the pairs of seeds, {} at the least.",
            seeds.join(", "),
            precision(self.jaccard_mean, 3),
            precision(self.jaccard_min, 3)
        )
    }

    /// Each component some seed detects, with how many: "1.0 (3 of 3 seeds)".
    pub fn component_texts(&self, axes: &[Axis]) -> Vec<String> {
        self.components
            .iter()
            .map(|f| {
                format!(
                    "{} ({} of {} seeds)",
                    f.name(axes),
                    self.detecting(f),
                    self.seeds.len()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_jaccard_and_how_often_each_component_is_found() {
        // Three seeds on a 2 × 3 grid: {0, 4}, {0, 4, 5}, {0}.
        let sets: [&[usize]; 3] = [&[0, 4], &[4, 0, 5], &[0]];
        let s = Stability::of("GN".into(), vec![0, 1, 2], vec![3, 4, 5], &sets, &[2, 3]);
        // Pairs: 2/3, 1/2, 1/3.
        assert!((s.jaccard_mean - (2.0 / 3.0 + 0.5 + 1.0 / 3.0) / 3.0).abs() < 1e-15);
        assert_eq!(s.jaccard_min, 1.0 / 3.0);
        let found: Vec<(usize, Vec<usize>, f64)> = s
            .components
            .iter()
            .map(|f| (f.cell, f.index.clone(), f.fraction))
            .collect();
        assert_eq!(
            found,
            vec![
                (0, vec![0, 0], 1.0),
                (4, vec![1, 1], 2.0 / 3.0),
                (5, vec![1, 2], 1.0 / 3.0)
            ]
        );
        // In words, by the grid's labels.
        let axes = [
            Axis {
                name: "layer".into(),
                labels: vec!["0".into(), "1".into()],
            },
            Axis {
                name: "head_index".into(),
                labels: vec!["0".into(), "1".into(), "2".into()],
            },
        ];
        assert_eq!(
            s.component_texts(&axes),
            vec!["0.0 (3 of 3 seeds)", "1.1 (2 of 3 seeds)", "1.2 (1 of 3 seeds)"]
        );
        assert_eq!(
            s.agreement(),
            "Seeds 0, 1, 2: Jaccard similarity 0.500 on average over the pairs of seeds, 0.333 at the least."
        );
        // Nothing detected under any seed is perfectly stable, and has no components.
        let none = Stability::of("STR".into(), vec![0, 1], vec![0, 1], &[&[], &[]], &[2, 3]);
        assert_eq!((none.jaccard_mean, none.jaccard_min), (1.0, 1.0));
        assert!(none.components.is_empty());
    }
}
