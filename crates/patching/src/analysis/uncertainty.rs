//! Uncertainty on every cell of a dataset grid: standard errors, seeded percentile bootstrap
//! intervals, sign-flip permutation p-values and Holm / Benjamini–Hochberg adjustments across the
//! grid. Pure functions of per-prompt numbers: no model, no tensors, no forward passes.
//!
//! # Inputs
//!
//! A dataset experiment gives, for prompt `i` and grid cell `c`, the un-normalized effect
//! `e[i][c] = M_patched − M_base` (averaged over the prompt's noise samples: the prompt is the
//! unit of every statistic here) and, per prompt, the denominator `d[i] = M_clean − M_corrupted`.
//! The statistics describe the grid the results report ([`crate::analysis::aggregate`]):
//!
//! - the ratio of means (the default): `grid[c] = mean_i e[i][c] / mean_i d[i]`, given as the
//!   effects with their denominators;
//! - per prompt (`"normalize": "per_prompt"`): `grid[c] = mean_i (e[i][c] / d[i])`, given as the
//!   per-prompt normalized values without denominators: the statistics of a plain mean;
//! - un-normalized: `grid[c] = mean_i e[i][c]`, the effects without denominators.
//!
//! A NaN effect means the prompt has no value in that cell (prompts of different lengths aligned
//! by role, where a prompt lacks the role), as in `aggregate`: every statistic of cell `c` is
//! over the `n_c` prompts that have it, `P_c`, and the ratio of means of a cell divides by the
//! mean denominator of those prompts. An infinite effect spoils its cell: every statistic of it
//! is NaN.
//!
//! # What TransformerLens defines
//!
//! Nothing here. TransformerLens's `transformer_lens/patching.py` (main and `dev-4.x`) returns a
//! bare tensor of the metric per patch from `generic_activation_patch`; no branch of
//! TransformerLensOrg/TransformerLens (1,443 refs in the snapshot searched) defines a
//! `PatchingResult`, a bootstrap or a permutation test. So each convention below follows scipy
//! and statsmodels, which the tests compare against (`tests/reference/stats_reference.py`).
//!
//! # Standard error
//!
//! `se[c] = sd_{P_c}(e[·][c]) / √n_c / |mean_{P_c} d|` (sample sd, ddof = 1), and `sd / √n_c`
//! without denominators. The denominator mean is treated as a fixed scale: the intervals below
//! do account for its sampling variability. (A delta-method SE of the ratio would add the
//! denominator's variance; the bootstrap interval is the statistic to read when the denominators
//! vary a lot.) With `n_c = 1` the SE is undefined: NaN (JSON null, "n/a").
//!
//! # Bootstrap interval
//!
//! Percentile bootstrap over prompts, as `scipy.stats.bootstrap(method='percentile', paired=True)`:
//! each resample draws `n` prompt indices with replacement (ChaCha8 seeded with
//! [`StatsSettings::seed`], stream 0, one `u32` in `0..n` per draw) and recomputes every cell's
//! grid value on the resampled dataset exactly as the grid itself is computed: with `w_i` the
//! times prompt `i` was drawn, `Σ_{P_c} w_i e_i / Σ_{P_c} w_i d_i` (ratio of means) or
//! `Σ_{P_c} w_i e_i / Σ_{P_c} w_i` (a mean). The same indices serve every cell, so the cells of
//! one resample stay jointly consistent, and a cell some prompts lack sees as many of its prompts
//! as the resample happened to draw. The interval is the `α = (1 − level)/2` and `1 − α` quantiles
//! of the resampled values by the rule scipy uses (`scipy.stats.quantile`, method `linear`,
//! Hyndman–Fan type 7, numpy's default): [`percentile_interval`].
//!
//! A resample in which a cell has no value (its denominator sum is exactly 0, or it drew none of
//! the cell's prompts) is dropped for that cell; scipy would put an infinity or a NaN into the
//! bootstrap distribution instead. [`CellStats::undefined_resamples`] counts the most any cell
//! dropped; a large count says the ratio of means is itself ill-defined for this dataset (or the
//! cell rests on very few prompts). If `mean d` over a cell's prompts is 0 or not finite, that
//! cell's grid value is undefined and its estimate, SE and interval are NaN.
//!
//! The resampled values are kept for at most [`BOOTSTRAP_BUFFER`] values at a time: a larger
//! grid is done a block of cells at a time, each block replaying the same random draws.
//!
//! # Permutation p-value
//!
//! H0: each prompt's effect is symmetric around 0. Statistic `|mean_{P_c} e[·][c]|` (two-sided),
//! null distribution from flipping the sign of each prompt's effect; the denominators are left
//! alone (a common positive — or negative — scale changes neither `|mean|` nor the test, so the
//! p-value is the same for the ratio of means and the un-normalized grid). As in
//! `scipy.stats.permutation_test(permutation_type='samples', alternative='greater')`:
//!
//! - a null value counts as at least as extreme when `T* ≥ T − γ`, `γ = 100·ε·|T|` (scipy's
//!   tolerance for values that are equal in exact arithmetic);
//! - `n_c ≤` [`EXACT_MAX_PROMPTS`] (16): exact, all `2^n_c` sign patterns, `p = count / 2^n_c`.
//!   The patterns are enumerated meet-in-the-middle: the `2^⌊n_c/2⌋` signed sums of the first
//!   half and the `2^⌈n_c/2⌉` of the second are built once per cell and every pattern is one
//!   addition of the two, so no sum accumulates rounding over thousands of steps;
//! - above: Monte Carlo with [`StatsSettings::permutations`] random patterns (ChaCha8, same seed,
//!   stream 1, bit `i % 64` of `next_u64` number `i / 64` of each pattern for prompt `i`; a cell
//!   uses the bits of its own prompts, which are as random), `p = (b + 1)/(m + 1)` with `b` the
//!   patterns at least as extreme (Phipson & Smyth 2010; scipy's adjustment), never 0.
//!
//! A cell whose effects are all 0 gets `p = 1` (every pattern ties). A constant non-zero cell gets
//! the smallest p-value possible (`2/2^n_c` exact: a pattern and its negation tie).
//!
//! # Multiple comparisons
//!
//! [`holm`] and [`benjamini_hochberg`] compute exactly what statsmodels'
//! `multipletests(method='holm')` and `method='fdr_bh'` do: sort; Holm `p_(k)·(m − k + 1)` with a
//! running maximum, BH `p_(k)·m/k` with a running minimum from the top; capped at 1. The family
//! is the grid's finite p-values: NaN p-values (cells with an infinite effect or no prompt) are
//! left out of the family (`m` counts only the others, as R's `p.adjust` does) and stay NaN.

use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Two-sided confidence level of the bootstrap interval (scipy's default).
pub const DEFAULT_LEVEL: f64 = 0.95;
/// Bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 1000;
/// Random sign patterns of the Monte Carlo permutation test (scipy's `permutation_test` default).
pub const DEFAULT_PERMUTATIONS: usize = 9999;
/// Seed of both the bootstrap and the Monte Carlo sign flips.
pub const DEFAULT_SEED: u64 = 0;
/// Up to this many prompts in a cell the permutation test enumerates all `2^n` sign patterns.
pub const EXACT_MAX_PROMPTS: usize = 16;
/// The most resampled values the bootstrap holds at once (32 MiB of f64).
pub const BOOTSTRAP_BUFFER: usize = 1 << 22;

/// How the statistics are drawn: the spec's `"stats"` (every field optional; the defaults are
/// left out of a spec that is written back).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsSettings {
    /// Two-sided level of the bootstrap interval, in (0, 1).
    pub level: f64,
    /// Bootstrap resamples, at least 1.
    pub resamples: usize,
    /// Random sign patterns when a cell's permutation test is Monte Carlo (more than
    /// [`EXACT_MAX_PROMPTS`] prompts), at least 1.
    pub permutations: usize,
    /// Seeds the bootstrap's draws and the Monte Carlo sign patterns.
    pub seed: u64,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            level: DEFAULT_LEVEL,
            resamples: DEFAULT_RESAMPLES,
            permutations: DEFAULT_PERMUTATIONS,
            seed: DEFAULT_SEED,
        }
    }
}

impl StatsSettings {
    /// Whether these are the defaults (which a written spec leaves out).
    pub fn is_default(&self) -> bool {
        *self == StatsSettings::default()
    }
}

/// The statistics of every cell of one grid, in the grid's flat cell order. NaN marks a value
/// that is undefined; show it as "n/a".
#[derive(Clone, Debug, PartialEq)]
pub struct CellStats {
    /// Prompts in all.
    pub n_prompts: usize,
    /// Per cell, the prompts that have a value there (all of them unless prompts are aligned by
    /// role). Its p-value is exact when this is at most [`EXACT_MAX_PROMPTS`].
    pub prompts: Vec<usize>,
    /// Whether the grid is the ratio of means (denominators given) or a mean.
    pub normalized: bool,
    /// The grid value itself: `mean e / mean d`, or `mean e`.
    pub estimate: Vec<f64>,
    /// Standard error of the estimate (NaN for one prompt).
    pub se: Vec<f64>,
    /// Percentile bootstrap interval at the settings' level.
    pub ci_low: Vec<f64>,
    pub ci_high: Vec<f64>,
    /// Two-sided sign-flip permutation p-value of `|mean e|`.
    pub p: Vec<f64>,
    /// Holm-adjusted across the grid's cells.
    pub p_holm: Vec<f64>,
    /// Benjamini–Hochberg-adjusted across the grid's cells.
    pub p_bh: Vec<f64>,
    /// The most bootstrap resamples any cell dropped because it had no value in them.
    pub undefined_resamples: usize,
    pub settings: StatsSettings,
}

/// Inputs the statistics cannot be computed from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("no prompts: the statistics need at least one prompt's effects")]
    NoPrompts,
    #[error(
        "prompt {prompt} has {found} cells but prompt 0 has {expected}; every prompt needs the whole grid"
    )]
    RaggedEffects {
        prompt: usize,
        found: usize,
        expected: usize,
    },
    #[error("{found} denominators for {expected} prompts; give one per prompt")]
    Denominators { found: usize, expected: usize },
    #[error("the confidence level must be strictly between 0 and 1, not {0}")]
    Level(f64),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Standard error, bootstrap interval, permutation p-value and its Holm and BH adjustments for
/// every cell. `effects` is prompt-major (`effects[i][c]`, NaN where prompt `i` has no value in
/// cell `c`); with `denominators` (one per prompt) the grid is the ratio of means, without them
/// the mean. See the module's documentation for every formula.
pub fn cell_stats(
    effects: &[Vec<f64>],
    denominators: Option<&[f64]>,
    settings: &StatsSettings,
) -> Result<CellStats, StatsError> {
    let n = effects.len();
    if n == 0 {
        return Err(StatsError::NoPrompts);
    }
    let cells = effects[0].len();
    if let Some((prompt, row)) = effects.iter().enumerate().find(|(_, r)| r.len() != cells) {
        return Err(StatsError::RaggedEffects {
            prompt,
            found: row.len(),
            expected: cells,
        });
    }
    if let Some(d) = denominators
        && d.len() != n
    {
        return Err(StatsError::Denominators {
            found: d.len(),
            expected: n,
        });
    }
    if !(settings.level > 0.0 && settings.level < 1.0) {
        return Err(StatsError::Level(settings.level));
    }
    if settings.resamples == 0 {
        return Err(StatsError::Zero("resamples"));
    }
    if settings.permutations == 0 {
        return Err(StatsError::Zero("permutations"));
    }

    let columns: Vec<Column> = (0..cells).map(|c| Column::of(effects, denominators, c)).collect();
    let estimate: Vec<f64> = columns.iter().map(|col| col.mean / col.scale).collect();
    let se: Vec<f64> = columns
        .iter()
        .map(|col| {
            let k = col.values.len();
            if k < 2 {
                return f64::NAN;
            }
            let kf = k as f64;
            let ss: f64 = col.values.iter().map(|v| (v - col.mean).powi(2)).sum();
            (ss / (kf - 1.0)).sqrt() / kf.sqrt() / col.scale.abs()
        })
        .collect();
    let (ci_low, ci_high, undefined_resamples) = bootstrap(effects, denominators, &columns, settings);
    let p = sign_flip(effects, &columns, settings);
    let p_holm = holm(&p);
    let p_bh = benjamini_hochberg(&p);

    Ok(CellStats {
        n_prompts: n,
        prompts: columns.iter().map(|col| col.values.len()).collect(),
        normalized: denominators.is_some(),
        estimate,
        se,
        ci_low,
        ci_high,
        p,
        p_holm,
        p_bh,
        undefined_resamples,
        settings: *settings,
    })
}

/// One cell's values over the prompts that have it.
struct Column {
    /// The effects of the prompts that have the cell, in prompt order.
    values: Vec<f64>,
    /// Whether every prompt has the cell.
    complete: bool,
    /// Whether every value is finite (an infinite one spoils the cell).
    finite: bool,
    /// Mean of `values` (NaN if there are none or the cell is spoiled).
    mean: f64,
    /// The divisor of the grid value: 1 without denominators, else the mean denominator over
    /// the cell's prompts (NaN when it is 0 or not finite, or the cell is spoiled).
    scale: f64,
}

impl Column {
    fn of(effects: &[Vec<f64>], denominators: Option<&[f64]>, c: usize) -> Self {
        let present: Vec<usize> = (0..effects.len()).filter(|&i| !effects[i][c].is_nan()).collect();
        let values: Vec<f64> = present.iter().map(|&i| effects[i][c]).collect();
        let finite = values.iter().all(|v| v.is_finite());
        let k = values.len() as f64;
        let mean = values.iter().sum::<f64>() / k;
        let scale = match denominators {
            None => 1.0,
            Some(d) => {
                let m = present.iter().map(|&i| d[i]).sum::<f64>() / k;
                if m.is_finite() && m != 0.0 { m } else { f64::NAN }
            }
        };
        let spoiled = !finite || values.is_empty();
        Column {
            complete: values.len() == effects.len(),
            finite,
            mean: if spoiled { f64::NAN } else { mean },
            scale: if spoiled { f64::NAN } else { scale },
            values,
        }
    }

    /// Whether the cell's grid value, and so its interval, is defined.
    fn defined(&self) -> bool {
        self.mean.is_finite() && self.scale.is_finite()
    }
}

/// Percentile bootstrap over prompts: per cell the interval, and the most resamples any cell
/// dropped.
fn bootstrap(
    effects: &[Vec<f64>],
    denominators: Option<&[f64]>,
    columns: &[Column],
    settings: &StatsSettings,
) -> (Vec<f64>, Vec<f64>, usize) {
    let n = effects.len();
    let cells = columns.len();
    let (mut low, mut high) = (vec![f64::NAN; cells], vec![f64::NAN; cells]);
    let mut undefined = 0;
    let block = (BOOTSTRAP_BUFFER / settings.resamples).max(1);
    let mut weights = vec![0u32; n];
    let mut start = 0;
    while start < cells {
        let end = (start + block).min(cells);
        let width = end - start;
        // Per cell of the block, its resampled values.
        let mut theta: Vec<Vec<f64>> = (start..end)
            .map(|c| {
                Vec::with_capacity(if columns[c].defined() {
                    settings.resamples
                } else {
                    0
                })
            })
            .collect();
        let mut sum_e = vec![0.0f64; width];
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        for _ in 0..settings.resamples {
            weights.fill(0);
            for _ in 0..n {
                weights[rng.random_range(0..n as u32) as usize] += 1;
            }
            // The denominator sum and the drawn count of a cell every prompt has.
            let all_d: f64 = denominators.map_or(0.0, |d| {
                weights.iter().zip(d).map(|(&w, &d)| f64::from(w) * d).sum()
            });
            sum_e.fill(0.0);
            for (row, &w) in effects.iter().zip(&weights) {
                if w > 0 {
                    let w = f64::from(w);
                    // A prompt without the cell adds nothing (its NaN is skipped).
                    sum_e.iter_mut().zip(&row[start..end]).for_each(|(a, &x)| {
                        if !x.is_nan() {
                            *a += w * x;
                        }
                    });
                }
            }
            for (k, c) in (start..end).enumerate() {
                let column = &columns[c];
                if !column.defined() {
                    continue;
                }
                let (drawn, sum_d) = if column.complete {
                    (n as f64, all_d)
                } else {
                    effects.iter().zip(&weights).enumerate().fold(
                        (0.0, 0.0),
                        |(drawn, sum_d), (i, (row, &w))| {
                            if w == 0 || row[c].is_nan() {
                                (drawn, sum_d)
                            } else {
                                let w = f64::from(w);
                                (drawn + w, sum_d + denominators.map_or(0.0, |d| w * d[i]))
                            }
                        },
                    )
                };
                let value = match denominators {
                    None if drawn > 0.0 => sum_e[k] / drawn,
                    Some(_) if drawn > 0.0 && sum_d != 0.0 => sum_e[k] / drawn / (sum_d / drawn),
                    _ => continue,
                };
                theta[k].push(value);
            }
        }
        for (k, c) in (start..end).enumerate() {
            if columns[c].defined() {
                undefined = undefined.max(settings.resamples - theta[k].len());
                (low[c], high[c]) = percentile_interval(&theta[k], settings.level);
            }
        }
        start = end;
    }
    (low, high, undefined)
}

/// The two-sided percentile interval at `level` of `values`: the `α = (1 − level)/2` and `1 − α`
/// quantiles by `scipy.stats.quantile`'s default rule (method `linear`, Hyndman–Fan type 7), which
/// `scipy.stats.bootstrap(method='percentile')` applies to its bootstrap distribution. NaN if
/// `values` is empty or holds a NaN (scipy propagates NaN).
pub fn percentile_interval(values: &[f64], level: f64) -> (f64, f64) {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    (
        quantile_linear(&sorted, alpha),
        quantile_linear(&sorted, 1.0 - alpha),
    )
}

/// scipy's `_quantile_hf` for method `linear` (m = 1 − p) on sorted, NaN-free values, written as
/// scipy writes it so the result matches to the last bit.
fn quantile_linear(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len() as f64;
    let jg = p * n + (1.0 - p);
    let jp1 = jg.floor();
    let j = jp1 - 1.0;
    let g = if j < 0.0 { 0.0 } else { jg.rem_euclid(1.0) };
    let last = n - 1.0;
    let at = |k: f64| sorted[k.clamp(0.0, last) as usize];
    (1.0 - g) * at(j) + g * at(jp1)
}

/// Sign-flip permutation p-values of `|mean e|` per cell: exact for a cell of at most
/// [`EXACT_MAX_PROMPTS`] prompts, Monte Carlo above (NaN where the cell is spoiled or empty).
fn sign_flip(effects: &[Vec<f64>], columns: &[Column], settings: &StatsSettings) -> Vec<f64> {
    // Compare sums, not means: the factor 1/n_c is common to the observed and every null value.
    let sums: Vec<f64> = columns.iter().map(|col| col.values.iter().sum()).collect();
    let threshold: Vec<f64> = sums
        .iter()
        .map(|s| s.abs() - (f64::EPSILON * 100.0 * s.abs()))
        .collect();
    let tested = |col: &Column| col.finite && !col.values.is_empty();
    let m = settings.permutations;
    let counts = columns
        .iter()
        .any(|col| tested(col) && col.values.len() > EXACT_MAX_PROMPTS)
        .then(|| monte_carlo_counts(effects, &sums, &threshold, m, settings.seed));
    columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            if !tested(col) {
                f64::NAN
            } else if col.values.len() <= EXACT_MAX_PROMPTS {
                let patterns = (1u64 << col.values.len()) as f64;
                exact_count(&col.values, threshold[c]) as f64 / patterns
            } else {
                let b = counts.as_ref().expect("Monte Carlo counts")[c];
                (b + 1) as f64 / (m as f64 + 1.0)
            }
        })
        .collect()
}

/// All signed sums `Σ ±x_i` of `x` (2^len of them), built by doubling in prompt order.
fn signed_sums(x: &[f64]) -> Vec<f64> {
    let mut sums = Vec::with_capacity(1 << x.len());
    sums.push(0.0);
    for &v in x {
        let len = sums.len();
        for k in 0..len {
            let s = sums[k];
            sums[k] = s + v;
            sums.push(s - v);
        }
    }
    sums
}

/// Of all 2^n sign patterns of `x`, how many have `|Σ ±x_i| ≥ threshold`: meet in the middle,
/// one addition per pattern.
fn exact_count(x: &[f64], threshold: f64) -> u64 {
    let (first, second) = x.split_at(x.len() / 2);
    let (a, b) = (signed_sums(first), signed_sums(second));
    a.iter()
        .map(|&s| {
            b.iter()
                .map(|&t| u64::from((s + t).abs() >= threshold))
                .sum::<u64>()
        })
        .sum()
}

/// Per cell, how many of `m` random sign patterns have `|Σ s_i e_i| ≥ threshold` over the
/// prompts that have the cell. A pattern's sum is `2·Σ_{s_i = +1} e_i − Σ e_i`, so only the
/// flipped-up prompts are added; a prompt without the cell (NaN) adds nothing.
fn monte_carlo_counts(
    effects: &[Vec<f64>],
    sums: &[f64],
    threshold: &[f64],
    m: usize,
    seed: u64,
) -> Vec<u64> {
    let n = effects.len();
    let cells = sums.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut words = vec![0u64; n.div_ceil(64)];
    let mut plus = vec![0.0f64; cells];
    let mut counts = vec![0u64; cells];
    for _ in 0..m {
        words.iter_mut().for_each(|w| *w = rng.next_u64());
        plus.fill(0.0);
        for (i, row) in effects.iter().enumerate() {
            if (words[i / 64] >> (i % 64)) & 1 == 1 {
                plus.iter_mut().zip(row).for_each(|(a, &x)| {
                    if !x.is_nan() {
                        *a += x;
                    }
                });
            }
        }
        for c in 0..cells {
            counts[c] += u64::from((2.0 * plus[c] - sums[c]).abs() >= threshold[c]);
        }
    }
    counts
}

/// The finite entries of `p`, in increasing order, with their positions.
fn sorted_finite(p: &[f64]) -> Vec<(usize, f64)> {
    let mut order: Vec<(usize, f64)> = p
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    order
}

/// Holm step-down adjusted p-values, as statsmodels' `multipletests(p, method='holm')`:
/// `max_{j ≤ k} p_(j)·(m − j + 1)`, capped at 1. Non-finite entries are left out of the family
/// and come back NaN.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let order = sorted_finite(p);
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = f64::NEG_INFINITY;
    for (k, &(i, v)) in order.iter().enumerate() {
        running = running.max(v * (m - k) as f64);
        out[i] = running.min(1.0);
    }
    out
}

/// Benjamini–Hochberg adjusted p-values, as statsmodels' `multipletests(p, method='fdr_bh')`:
/// `min_{j ≥ k} p_(j)/(j/m)`, capped at 1. Non-finite entries are left out of the family and come
/// back NaN.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let order = sorted_finite(p);
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = f64::INFINITY;
    for (k, &(i, v)) in order.iter().enumerate().rev() {
        running = running.min(v / ((k + 1) as f64 / m as f64));
        out[i] = running.min(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StatsSettings {
        StatsSettings {
            permutations: 999,
            ..StatsSettings::default()
        }
    }

    /// `n` prompts, three cells: a clear positive effect, noise around 0, and all zero.
    fn grid(n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                let x = i as f64;
                vec![1.0 + 0.1 * (x * 0.7).sin(), (x * 1.3).sin(), 0.0]
            })
            .collect()
    }

    fn same(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn one_prompt_has_no_standard_error() {
        let s = cell_stats(&[vec![0.4, 0.0]], Some(&[2.0]), &settings()).unwrap();
        assert!(s.se.iter().all(|v| v.is_nan()));
        assert_eq!(s.estimate, vec![0.2, 0.0]);
        // Every resample is the one prompt; both sign patterns tie with it.
        assert_eq!(
            (s.ci_low.clone(), s.ci_high.clone()),
            (vec![0.2, 0.0], vec![0.2, 0.0])
        );
        assert_eq!(s.p, vec![1.0, 1.0]);
        assert_eq!(s.prompts, vec![1, 1]);
    }

    #[test]
    fn all_zero_and_constant_cells() {
        let effects: Vec<Vec<f64>> = (0..10).map(|_| vec![0.0, 0.5]).collect();
        let s = cell_stats(&effects, None, &settings()).unwrap();
        assert_eq!(s.se, vec![0.0, 0.0]);
        assert_eq!(
            (s.ci_low.clone(), s.ci_high.clone()),
            (vec![0.0, 0.5], vec![0.0, 0.5])
        );
        // All zero: every pattern ties, p = 1. Constant: only the identity and its negation.
        assert_eq!(s.p, vec![1.0, 2.0 / 1024.0]);
        assert_eq!(s.p_holm, vec![1.0, 4.0 / 1024.0]);
        assert_eq!(s.p_bh, vec![1.0, 4.0 / 1024.0]);
    }

    #[test]
    fn an_infinite_effect_spoils_only_its_cell() {
        let clean = grid(12);
        let mut dirty = clean.clone();
        dirty[5][2] = f64::INFINITY;
        let d: Vec<f64> = (0..12).map(|i| 1.0 + i as f64 * 0.1).collect();
        let a = cell_stats(&clean, Some(&d), &settings()).unwrap();
        let b = cell_stats(&dirty, Some(&d), &settings()).unwrap();
        for v in [
            &b.estimate,
            &b.se,
            &b.ci_low,
            &b.ci_high,
            &b.p,
            &b.p_holm,
            &b.p_bh,
        ] {
            assert!(v[2].is_nan() && v[0].is_finite() && v[1].is_finite());
        }
        // The other cells are untouched (the same resample indices), but the family is smaller.
        for c in 0..2 {
            assert_eq!(
                (a.estimate[c], a.se[c], a.ci_low[c], a.ci_high[c], a.p[c]),
                (b.estimate[c], b.se[c], b.ci_low[c], b.ci_high[c], b.p[c])
            );
        }
        assert_eq!(b.p_holm[..2], holm(&b.p[..2])[..]);
    }

    #[test]
    fn a_cell_some_prompts_lack_is_over_the_prompts_that_have_it() {
        // 20 prompts; cell 1 only in the even ones, cell 2 in the first three.
        let n = 20;
        let effects: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let x = i as f64;
                vec![
                    0.5 + 0.2 * (x * 0.9).sin(),
                    if i % 2 == 0 {
                        0.3 + (x * 1.7).cos()
                    } else {
                        f64::NAN
                    },
                    if i < 3 { 0.2 + 0.05 * x } else { f64::NAN },
                ]
            })
            .collect();
        let d: Vec<f64> = (0..n).map(|i| 1.0 + 0.3 * (i % 4) as f64).collect();
        let s = cell_stats(&effects, Some(&d), &settings()).unwrap();
        assert_eq!(s.prompts, vec![20, 10, 3]);
        for (c, keep) in [(1, (0..n).step_by(2).collect::<Vec<_>>()), (2, (0..3).collect())] {
            // The estimate, SE and exact p-value are those of the prompts that have the cell.
            let sub: Vec<Vec<f64>> = keep.iter().map(|&i| vec![effects[i][c]]).collect();
            let sub_d: Vec<f64> = keep.iter().map(|&i| d[i]).collect();
            let alone = cell_stats(&sub, Some(&sub_d), &settings()).unwrap();
            assert!((s.estimate[c] - alone.estimate[0]).abs() < 1e-15);
            assert!((s.se[c] - alone.se[0]).abs() < 1e-15);
            assert_eq!(s.p[c], alone.p[0]);
            // The interval comes from resampling all prompts: it is not the subset's, but it
            // brackets the estimate.
            assert!(s.ci_low[c] <= s.estimate[c] && s.estimate[c] <= s.ci_high[c]);
        }
        // Cell 0 has every prompt: 20 > 16, Monte Carlo.
        assert_eq!(s.p[0], 1.0 / 1000.0);
        // A resample that draws none of cell 2's three prompts has no value there:
        // (17/20)^20 ≈ 3.9% of the 1,000.
        assert!(
            (10..100).contains(&s.undefined_resamples),
            "{}",
            s.undefined_resamples
        );
        // Without the missing cells, cell 0 is unchanged, bit for bit.
        let full: Vec<Vec<f64>> = effects.iter().map(|r| vec![r[0]]).collect();
        let f = cell_stats(&full, Some(&d), &settings()).unwrap();
        assert_eq!(
            (f.estimate[0], f.se[0], f.ci_low[0], f.ci_high[0], f.p[0]),
            (s.estimate[0], s.se[0], s.ci_low[0], s.ci_high[0], s.p[0])
        );
    }

    #[test]
    fn a_cell_no_prompt_has_is_undefined_and_out_of_the_family() {
        let effects = vec![vec![1.0, f64::NAN], vec![1.2, f64::NAN], vec![0.9, f64::NAN]];
        let s = cell_stats(&effects, None, &settings()).unwrap();
        assert_eq!(s.prompts, vec![3, 0]);
        for v in [&s.estimate, &s.se, &s.ci_low, &s.ci_high, &s.p, &s.p_holm] {
            assert!(v[1].is_nan() && v[0].is_finite());
        }
        assert_eq!(s.p_holm[0], s.p[0]);
    }

    #[test]
    fn a_bad_denominator_leaves_only_the_p_values() {
        let effects = grid(8);
        let mut d = vec![1.0; 8];
        d[2] = f64::NAN;
        let bad = cell_stats(&effects, Some(&d), &settings()).unwrap();
        let raw = cell_stats(&effects, None, &settings()).unwrap();
        for v in [&bad.estimate, &bad.se, &bad.ci_low, &bad.ci_high] {
            assert!(v.iter().all(|x| x.is_nan()));
        }
        assert_eq!((bad.p.clone(), bad.p_holm.clone()), (raw.p, raw.p_holm));
        // A zero mean denominator: the ratio of means is undefined.
        let zero = cell_stats(
            &effects,
            Some(&[1.0, -1.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5]),
            &settings(),
        )
        .unwrap();
        assert!(zero.estimate.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn resamples_with_a_zero_mean_denominator_are_dropped() {
        let effects = vec![vec![1.0], vec![0.5], vec![0.8], vec![1.2]];
        let s = cell_stats(&effects, Some(&[1.0, -1.0, 1.0, 2.0]), &settings()).unwrap();
        assert!(s.undefined_resamples > 0 && s.undefined_resamples < s.settings.resamples);
        assert!(s.ci_low[0].is_finite() && s.ci_low[0] <= s.ci_high[0]);
    }

    #[test]
    fn a_large_grid_is_bootstrapped_in_blocks_with_the_same_draws() {
        // More resampled values than the buffer holds: several blocks of cells, each replaying
        // the same draws, so each cell's interval is the one it has alone.
        let resamples = 2000;
        let cells = BOOTSTRAP_BUFFER / resamples + 3;
        let effects: Vec<Vec<f64>> = (0..6)
            .map(|i| (0..cells).map(|c| ((i * 7 + c) % 11) as f64 / 10.0).collect())
            .collect();
        let s = StatsSettings {
            resamples,
            ..settings()
        };
        let all = cell_stats(&effects, None, &s).unwrap();
        for c in [0, cells - 1] {
            let one: Vec<Vec<f64>> = effects.iter().map(|r| vec![r[c]]).collect();
            let alone = cell_stats(&one, None, &s).unwrap();
            assert_eq!(
                (all.ci_low[c], all.ci_high[c]),
                (alone.ci_low[0], alone.ci_high[0])
            );
        }
    }

    #[test]
    fn exact_up_to_sixteen_prompts_then_monte_carlo() {
        let s16 = cell_stats(&grid(16), None, &settings()).unwrap();
        assert_eq!(s16.p[0], 2.0 / 65536.0);
        let s17 = cell_stats(&grid(17), None, &settings()).unwrap();
        // (b + 1)/(m + 1): a clear effect gets the floor 1/1000, never 0; all zero gets 1.
        assert_eq!((s17.p[0], s17.p[2]), (1.0 / 1000.0, 1.0));
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        // Cell 1 shifted off 0 so that its Monte Carlo p-value is neither tiny nor 1.
        let effects: Vec<Vec<f64>> = grid(30)
            .into_iter()
            .map(|mut row| {
                row[1] += 0.25;
                row
            })
            .collect();
        let d: Vec<f64> = (0..30).map(|i| 0.5 + (i % 7) as f64 * 0.3).collect();
        let a = cell_stats(&effects, Some(&d), &settings()).unwrap();
        assert_eq!(a, cell_stats(&effects, Some(&d), &settings()).unwrap());
        let other = StatsSettings {
            seed: 1,
            ..settings()
        };
        let b = cell_stats(&effects, Some(&d), &other).unwrap();
        assert_ne!(a.p[1], b.p[1]);
        assert_ne!((a.ci_low[0], a.ci_high[0]), (b.ci_low[0], b.ci_high[0]));
        assert_eq!((a.estimate.clone(), a.se.clone()), (b.estimate, b.se));
        // Exact p-values do not depend on the seed.
        let (e1, e2) = (
            cell_stats(&grid(10), None, &settings()).unwrap(),
            cell_stats(&grid(10), None, &other).unwrap(),
        );
        assert_eq!(e1.p, e2.p);
    }

    #[test]
    fn exact_count_matches_brute_force() {
        let x = [0.3, -1.2, 0.25, 0.25, 0.7, -0.1, 0.05];
        let observed: f64 = x.iter().sum::<f64>().abs();
        let brute = (0..1u32 << x.len())
            .filter(|mask| {
                let s: f64 = x
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if (mask >> i) & 1 == 1 { -v } else { *v })
                    .sum();
                s.abs() >= observed * (1.0 - 100.0 * f64::EPSILON)
            })
            .count() as u64;
        assert_eq!(exact_count(&x, observed * (1.0 - 100.0 * f64::EPSILON)), brute);
    }

    #[test]
    fn percentile_rule() {
        // scipy.stats.quantile([1, 2, 3, 4], [0.025, 0.975]) = [1.075, 3.925]
        let (lo, hi) = percentile_interval(&[4.0, 1.0, 3.0, 2.0], 0.95);
        assert!((lo - 1.075).abs() < 1e-12 && (hi - 3.925).abs() < 1e-12);
        assert_eq!(percentile_interval(&[2.5], 0.9), (2.5, 2.5));
        assert!(percentile_interval(&[], 0.9).0.is_nan());
        assert!(percentile_interval(&[1.0, f64::NAN], 0.9).1.is_nan());
    }

    #[test]
    fn holm_and_bh_by_hand() {
        let p = [0.01, 0.04, f64::NAN, 0.03, 0.5];
        // m = 4: sorted 0.01, 0.03, 0.04, 0.5.
        let expect_holm = [0.04, 0.09, f64::NAN, 0.09, 0.5];
        let expect_bh = [0.04, 0.04 * 4.0 / 3.0, f64::NAN, 0.04 * 4.0 / 3.0, 0.5];
        let (h, b) = (holm(&p), benjamini_hochberg(&p));
        for k in 0..5 {
            assert!(same(h[k], expect_holm[k]) || (h[k] - expect_holm[k]).abs() < 1e-15);
            assert!(same(b[k], expect_bh[k]) || (b[k] - expect_bh[k]).abs() < 1e-15);
        }
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty() && benjamini_hochberg(&[f64::NAN])[0].is_nan());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let s = settings();
        assert_eq!(cell_stats(&[], None, &s), Err(StatsError::NoPrompts));
        assert_eq!(
            cell_stats(&[vec![1.0, 2.0], vec![1.0]], None, &s),
            Err(StatsError::RaggedEffects {
                prompt: 1,
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            cell_stats(&[vec![1.0]], Some(&[1.0, 2.0]), &s),
            Err(StatsError::Denominators {
                found: 2,
                expected: 1
            })
        );
        for level in [0.0, 1.0, f64::NAN] {
            let bad = StatsSettings { level, ..s };
            assert!(matches!(
                cell_stats(&[vec![1.0]], None, &bad),
                Err(StatsError::Level(_))
            ));
        }
        let bad = StatsSettings { resamples: 0, ..s };
        assert_eq!(
            cell_stats(&[vec![1.0]], None, &bad),
            Err(StatsError::Zero("resamples"))
        );
    }

    #[test]
    fn settings_are_optional_and_left_out_when_default() {
        let s: StatsSettings = serde_json::from_str(r#"{"seed": 3}"#).unwrap();
        assert_eq!(
            s,
            StatsSettings {
                seed: 3,
                ..StatsSettings::default()
            }
        );
        assert!(!s.is_default() && StatsSettings::default().is_default());
        assert!(serde_json::from_str::<StatsSettings>(r#"{"sed": 3}"#).is_err());
    }
}
