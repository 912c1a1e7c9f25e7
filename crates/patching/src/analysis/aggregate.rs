//! How a dataset's prompts become one grid. Each prompt contributes its effect in every cell
//! (M_patched − M_base, averaged over its noise samples) and its denominator
//! d = M_clean − M_corrupted. Normalized, the grid is the ratio of means,
//! mean(effect) / mean(d), as Wang et al., ARENA and the TransformerLens demos compute it, or,
//! with `"normalize": "per_prompt"`, the mean of effect / d over prompts. Each prompt's values
//! are kept in the grid's units (effect / mean(d), or effect / d), so that they average to the
//! grid and their spread is the grid's. A prompt that has no value in a cell (NaN: prompts of
//! different lengths, aligned by role, where it lacks the role) is left out of that cell.

use crate::analysis::stats::mean_sd;
use crate::spec::Normalize;

/// A prompt's denominator under this fraction of the mean denominator (in absolute value) is
/// flagged: divided by it alone, its effects explode.
pub const SMALL_DENOMINATOR: f64 = 0.05;

/// A dataset's grid and what it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub grid: Vec<f64>,
    /// Each prompt's values, in the grid's units.
    pub per_prompt: Vec<Vec<f64>>,
    /// Their sample standard deviation, cell by cell.
    pub sd: Vec<f64>,
}

/// The grid of `effects` (prompt-major, un-normalized) with each prompt's denominator `spans`.
pub fn aggregate(effects: &[Vec<f64>], spans: &[f64], normalized: bool, rule: Normalize) -> Aggregate {
    let cells = effects.first().map_or(0, Vec::len);
    // The ratio of means' denominator in each cell: over the prompts that have a value there.
    let cell_span: Vec<f64> = (0..cells)
        .map(|c| {
            let present: Vec<f64> = effects
                .iter()
                .zip(spans)
                .filter(|(e, _)| !e[c].is_nan())
                .map(|(_, &d)| d)
                .collect();
            mean(&present)
        })
        .collect();
    let per_prompt: Vec<Vec<f64>> = effects
        .iter()
        .zip(spans)
        .map(|(e, &d)| {
            e.iter()
                .enumerate()
                .map(|(c, v)| match (normalized, rule) {
                    (false, _) => *v,
                    (true, Normalize::RatioOfMeans) => v / cell_span[c],
                    (true, Normalize::PerPrompt) => v / d,
                })
                .collect()
        })
        .collect();
    let (grid, sd) = present_mean_sd(&per_prompt);
    Aggregate { grid, per_prompt, sd }
}

/// The mean and sample standard deviation of each cell over the grids that have a value there.
pub fn present_mean_sd(grids: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let cells = grids.first().map_or(0, Vec::len);
    if grids.iter().all(|g| g.iter().all(|v| !v.is_nan())) {
        return mean_sd(grids);
    }
    (0..cells)
        .map(|c| {
            let present: Vec<Vec<f64>> = grids
                .iter()
                .map(|g| vec![g[c]])
                .filter(|v| !v[0].is_nan())
                .collect();
            let (m, s) = mean_sd(&present);
            (
                m.first().copied().unwrap_or(f64::NAN),
                s.first().copied().unwrap_or(f64::NAN),
            )
        })
        .unzip()
}

/// The mean of `values` (NaN for none).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The prompts whose denominator is under [`SMALL_DENOMINATOR`] of the mean denominator.
pub fn small_denominators(spans: &[f64]) -> Vec<usize> {
    let bar = SMALL_DENOMINATOR * mean(spans).abs();
    (0..spans.len()).filter(|&i| spans[i].abs() < bar).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_of_means_differs_from_the_mean_of_ratios() {
        let effects = vec![vec![1.0], vec![0.1]];
        let spans = [2.0, 0.1];
        let rom = aggregate(&effects, &spans, true, Normalize::RatioOfMeans);
        assert!((rom.grid[0] - 1.1 / 2.1).abs() < 1e-12);
        assert!((rom.per_prompt[1][0] - 0.1 / 1.05).abs() < 1e-12);
        let per = aggregate(&effects, &spans, true, Normalize::PerPrompt);
        assert!((per.grid[0] - 0.75).abs() < 1e-12);
        let raw = aggregate(&effects, &spans, false, Normalize::RatioOfMeans);
        assert!((raw.grid[0] - 0.55).abs() < 1e-12);
        assert_eq!(small_denominators(&[1.0, 0.01, -1.0, 2.0]), vec![1]);
        // A prompt without a value in a cell is left out of it, numerator and denominator.
        let gaps = aggregate(
            &[vec![1.0, 2.0], vec![f64::NAN, 4.0]],
            &[1.0, 3.0],
            true,
            Normalize::RatioOfMeans,
        );
        assert_eq!(gaps.grid, vec![1.0, 3.0 / 2.0]);
        assert!(gaps.per_prompt[1][0].is_nan());
    }
}
