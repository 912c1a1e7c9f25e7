//! Statistics of grids: the mean and spread of a cell over a dataset's prompts, top
//! components, and how two grids agree (rank correlation, Jaccard similarity of detected sets:
//! the paper's central comparison).

/// Mean and (sample) standard deviation of each cell over several grids of the same shape.
pub fn mean_sd(grids: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = grids.len() as f64;
    let cells = grids.first().map_or(0, Vec::len);
    let mean: Vec<f64> = (0..cells)
        .map(|i| grids.iter().map(|g| g[i]).sum::<f64>() / n)
        .collect();
    let sd = (0..cells)
        .map(|i| {
            if grids.len() < 2 {
                return 0.0;
            }
            (grids.iter().map(|g| (g[i] - mean[i]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        })
        .collect();
    (mean, sd)
}

/// The index along each axis of a row-major flat index.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (axis, &n) in shape.iter().enumerate().rev() {
        index[axis] = flat % n;
        flat /= n;
    }
    index
}

/// The `k` cells with the largest absolute values, largest first.
pub fn top_k(grid: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..grid.len()).collect();
    order.sort_by(|&a, &b| grid[b].abs().total_cmp(&grid[a].abs()).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Ranks with ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of two grids (`None` when either is constant).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Jaccard similarity of two sets of cells (1 when both are empty).
pub fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let union = a.iter().chain(b).collect::<std::collections::BTreeSet<_>>().len();
    let both = a.iter().filter(|x| b.contains(x)).count();
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_known_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 0.8207826816681233
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((rho - 0.8207826816681233).abs() < 1e-12);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn mean_and_sd_per_cell() {
        let (m, s) = mean_sd(&[vec![1.0, 0.0], vec![3.0, 0.0]]);
        assert_eq!(m, vec![2.0, 0.0]);
        assert!((s[0] - 2f64.sqrt()).abs() < 1e-12 && s[1] == 0.0);
        assert_eq!(jaccard(&[1, 2], &[2, 3]), 1.0 / 3.0);
        assert_eq!(top_k(&[0.1, -3.0, 2.0], 2), vec![1, 2]);
    }
}
