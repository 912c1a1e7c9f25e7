//! Detection: which cells of a grid stand out, by the paper's rule (more than kσ from the mean
//! of all cells; the paper uses 2σ) or by an absolute threshold.

use serde::{Deserialize, Serialize};

use crate::analysis::stats::{mean_sd, unravel};
use crate::spec::Detect;

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

/// The cells `rule` flags, strongest first.
pub fn detect_with(rule: Detect, grid: &[f64], shape: &[usize]) -> Vec<Detection> {
    match rule {
        Detect::Sigma(k) => detect(grid, shape, k),
        Detect::Threshold(t) => detect_threshold(grid, shape, t),
    }
}

/// Cells more than `k` standard deviations from the mean of all cells (the paper detects a head
/// when its effect is over 2σ from the mean), strongest first.
pub fn detect(grid: &[f64], shape: &[usize], k: f64) -> Vec<Detection> {
    detect_by(grid, shape, |_, z| z.abs() > k)
}

/// Cells whose value is at least `threshold` in absolute value, strongest first.
pub fn detect_threshold(grid: &[f64], shape: &[usize], threshold: f64) -> Vec<Detection> {
    detect_by(grid, shape, |v, _| v.abs() >= threshold)
}

/// Cells for which `keep(value, z)` holds, z being standard deviations from the mean.
fn detect_by(grid: &[f64], shape: &[usize], keep: impl Fn(f64, f64) -> bool) -> Vec<Detection> {
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
        .filter(|d| d.value.is_finite() && keep(d.value, d.z))
        .collect();
    found.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
