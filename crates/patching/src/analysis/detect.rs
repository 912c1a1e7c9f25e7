//! Detection: which cells of a grid stand out, by the paper's rule (more than kσ from the mean
//! of all cells; the paper uses 2σ), by an absolute threshold, or by significance: a sign-flip
//! p-value over the dataset's prompts, Holm- or BH-adjusted across the grid, of at most α
//! ([`crate::analysis::uncertainty`]).

use serde::{Deserialize, Serialize};

use crate::analysis::stats::{mean_sd, unravel};
use crate::analysis::uncertainty::CellStats;
use crate::spec::{Correction, Detect};

/// A cell that stands out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Flat index into the grid.
    pub cell: usize,
    /// Index along each axis.
    pub index: Vec<usize>,
    pub value: f64,
    /// Standard deviations from the grid's mean; negative for a harmful component.
    pub z: f64,
}

/// The cells `rule` flags, strongest first. Significance needs the grid's `stats` (a dataset);
/// without them it flags nothing.
pub fn detect_with(rule: Detect, grid: &[f64], shape: &[usize], stats: Option<&CellStats>) -> Vec<Detection> {
    match rule {
        Detect::Sigma(k) => detect(grid, shape, k),
        Detect::Threshold(t) => detect_threshold(grid, shape, t),
        Detect::Significant {
            alpha,
            correction,
            min_effect,
        } => match stats {
            Some(stats) => detect_significant(grid, shape, stats, alpha, correction, min_effect),
            None => Vec::new(),
        },
    }
}

/// Cells more than `k` standard deviations from the mean of all cells (the paper detects a head
/// when its effect is over 2σ from the mean), strongest first.
pub fn detect(grid: &[f64], shape: &[usize], k: f64) -> Vec<Detection> {
    detect_by(grid, shape, |_, _, z| z.abs() > k)
}

/// Cells whose value is at least `threshold` in absolute value, strongest first.
pub fn detect_threshold(grid: &[f64], shape: &[usize], threshold: f64) -> Vec<Detection> {
    detect_by(grid, shape, |_, v, _| v.abs() >= threshold)
}

/// Cells whose adjusted p-value is at most `alpha` (statsmodels' `multipletests` rejects the
/// same cells) and whose value is at least `min_effect` in absolute value, strongest first.
pub fn detect_significant(
    grid: &[f64],
    shape: &[usize],
    stats: &CellStats,
    alpha: f64,
    correction: Correction,
    min_effect: f64,
) -> Vec<Detection> {
    let adjusted = match correction {
        Correction::Holm => &stats.p_holm,
        Correction::Bh => &stats.p_bh,
    };
    detect_by(grid, shape, |cell, v, _| {
        adjusted[cell] <= alpha && v.abs() >= min_effect
    })
}

/// Cells for which `keep(cell, value, z)` holds, z being standard deviations from the mean.
fn detect_by(grid: &[f64], shape: &[usize], keep: impl Fn(usize, f64, f64) -> bool) -> Vec<Detection> {
    let (mean, sd) = mean_sd(&grid.iter().map(|&v| vec![v]).collect::<Vec<_>>());
    let (mu, sigma) = (mean[0], sd[0]);
    let z = |v: f64| if sigma > 0.0 { (v - mu) / sigma } else { 0.0 };
    let mut found: Vec<Detection> = grid
        .iter()
        .enumerate()
        .map(|(cell, &value)| Detection {
            cell,
            index: unravel(cell, shape),
            value,
            z: z(value),
        })
        .filter(|d| d.value.is_finite() && keep(d.cell, d.value, d.z))
        .collect();
    found.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::uncertainty::{StatsSettings, cell_stats};

    #[test]
    fn significance_after_correction_and_a_least_effect() {
        // 12 prompts, four cells: a large consistent effect, a small consistent one, noise, and
        // a large effect of one prompt only.
        let effects: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let x = i as f64;
                vec![
                    0.8 + 0.1 * (x * 0.7).sin(),
                    0.05 + 0.01 * x.cos(),
                    (x * 1.3).sin(),
                    if i == 0 { 3.0 } else { 0.0 },
                ]
            })
            .collect();
        let stats = cell_stats(&effects, None, &StatsSettings::default()).unwrap();
        let grid = &stats.estimate;
        let cells = |found: Vec<Detection>| found.iter().map(|d| d.cell).collect::<Vec<_>>();
        for (correction, adjusted) in [(Correction::Holm, &stats.p_holm), (Correction::Bh, &stats.p_bh)] {
            let expected: Vec<usize> = (0..4).filter(|&c| adjusted[c] <= 0.01).collect();
            let mut found = cells(detect_significant(grid, &[2, 2], &stats, 0.01, correction, 0.0));
            found.sort();
            assert_eq!(found, expected);
        }
        // Exact over 12 prompts: the two consistent cells have p = 2/4096, the others do not.
        let found = detect_significant(grid, &[2, 2], &stats, 0.01, Correction::Holm, 0.0);
        assert_eq!(cells(found.clone()), vec![0, 1], "strongest first");
        assert_eq!(found[0].index, vec![0, 0]);
        // The least effect keeps only the large one.
        assert_eq!(
            cells(detect_significant(
                grid,
                &[2, 2],
                &stats,
                0.01,
                Correction::Holm,
                0.2
            )),
            vec![0]
        );
        // Without statistics (one prompt) significance flags nothing.
        let rule = Detect::Significant {
            alpha: 0.01,
            correction: Correction::Holm,
            min_effect: 0.0,
        };
        assert!(detect_with(rule, grid, &[2, 2], None).is_empty());
        // The rule in the page's words.
        assert_eq!(rule.describe(), "significant at α = 0.01 after Holm's correction");
        let bh = Detect::Significant {
            alpha: 0.05,
            correction: Correction::Bh,
            min_effect: 0.2,
        };
        assert_eq!(
            bh.describe(),
            "significant at α = 0.05 after Benjamini–Hochberg's correction, with an effect of at least 0.2"
        );
        assert_eq!(Detect::default().describe(), "over 2σ from the mean");
        assert_eq!(
            Detect::Threshold(0.2).describe(),
            "with an effect of at least 0.2"
        );
    }

    #[test]
    fn detection_flags_cells_beyond_two_sigma_both_ways() {
        let mut grid = vec![0.0; 20];
        grid[3] = 5.0;
        grid[17] = -5.0;
        let found = detect(&grid, &[4, 5], 2.0);
        assert_eq!(found.iter().map(|d| d.cell).collect::<Vec<_>>().len(), 2);
        assert!(found.iter().any(|d| d.index == vec![0, 3] && d.z > 2.0));
        assert!(found.iter().any(|d| d.index == vec![3, 2] && d.z < -2.0));
    }
}
