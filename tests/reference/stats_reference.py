#!/usr/bin/env python3
"""Reference values for the per-cell uncertainty of a dataset grid (crates/patching/src/analysis/uncertainty.rs).

Standalone: numpy, scipy and statsmodels only, no torch, no model. Run it from the repository root:

    python3 -m venv /tmp/venv-stats
    /tmp/venv-stats/bin/pip install -r tests/reference/requirements-stats.txt
    /tmp/venv-stats/bin/python tests/reference/stats_reference.py

It writes tests/fixtures/reference/stats.json (committed), which crates/patching/tests/uncertainty.rs reads.

What is in it, for each of several seeded inputs (per-prompt effects e[i][c], denominators d[i]):
  - the grid value: mean_i e[i][c] / mean_i d[i] ("normalized", the ratio of means) and mean_i e[i][c] ("raw");
    in the case "n30_roles" some prompts lack some cells (NaN, as prompts aligned by role lack a role), and
    every statistic of a cell is over the prompts that have it (the bootstrap still resamples all prompts);
  - the standard error: sd_i(e[i][c]) / sqrt(n) (ddof = 1), divided by |mean d| when normalized (numpy);
  - the two-sided sign-flip permutation p-value of |mean_i e[i][c]|: exact for n <= 16, by enumerating all
    2^n sign patterns in numpy and, as a cross-check, with scipy.stats.permutation_test (which must agree to
    the bit); for n = 40, a numpy Monte Carlo estimate from 2,000,000 random sign patterns, stored with its
    own standard error so the Rust test can allow for both Monte Carlo errors;
  - Holm and Benjamini-Hochberg adjusted p-values across the grid, from
    statsmodels.stats.multitest.multipletests(method='holm' / 'fdr_bh') on the finite p-values;
  - percentile bootstrap CIs from scipy.stats.bootstrap(method='percentile', paired=True so that e and d are
    resampled together, vectorized over cells), repeated with BOOT_REPEATS different seeds: the mean and the
    standard deviation of each endpoint over the repeats. scipy's random numbers are not Patchbay's, so the
    Rust endpoint (same resample count) is compared within 4 of those standard deviations.
Plus two exact checks that need no random numbers: scipy.stats.quantile (the percentile rule
scipy.stats.bootstrap uses) on fixed vectors, and multipletests on fixed p-value vectors with ties and gaps
(null = NaN, left out of the family).
"""

import json
import math
from pathlib import Path

import numpy as np
import scipy
import scipy.stats as st
import statsmodels
from statsmodels.stats.multitest import multipletests

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/reference/stats.json"

LEVEL = 0.95
RESAMPLES = 1000  # bootstrap resamples, as in Step 7's acceptance and Patchbay's default
BOOT_REPEATS = 200  # independent scipy bootstrap runs per input, for the Monte Carlo spread
MC_REFERENCE_PATTERNS = 2_000_000  # sign patterns for the n = 40 reference p-values
SEED = 20240117  # the seed the Rust test passes to cell_stats


def cells(rng, n):
    """Columns of e: clearly nonzero, clearly null, constant, all zero, negative, ties, heavy-tailed."""
    cols = [
        rng.normal(0.8, 0.4, n),  # clearly positive
        rng.normal(0.0, 0.5, n),  # null
        np.full(n, 0.5),  # constant, nonzero
        np.zeros(n),  # all zero
        rng.normal(-0.6, 0.3, n),  # clearly negative
        rng.integers(-2, 4, n) * 0.25,  # exact multiples of 1/4: many tied |sums|
        rng.standard_t(2, n) * 0.3 + 0.1,  # heavy tails, small shift
        rng.normal(0.15, 0.5, n),  # borderline
    ]
    return np.stack(cols, axis=1)  # prompt-major: [n, cells]


def inputs():
    out = []
    for name, n, seed, mixed in [("n5", 5, 5, False), ("n12", 12, 12, False), ("n16_mixed_sign", 16, 16, True), ("n40", 40, 40, False)]:
        rng = np.random.default_rng(seed)
        e = cells(rng, n)
        if mixed:
            # mixed-sign denominators with a mean clearly away from zero
            d = rng.normal(1.0, 1.2, n)
            d[:3] = [-0.7, -0.3, -1.1]
        else:
            d = rng.uniform(0.5, 3.0, n)
        out.append((name, e, d))
    # Prompts aligned by role: a cell some prompts lack (NaN). Cell 1 is in 12 of 30 prompts (an exact
    # permutation test), cell 0 in 20 and cell 4 in 25 (Monte Carlo); the others are in every prompt.
    rng = np.random.default_rng(30)
    e = cells(rng, 30)
    d = rng.uniform(0.5, 3.0, 30)
    for c, keep in [(1, 12), (0, 20), (4, 25)]:
        lacking = rng.choice(30, 30 - keep, replace=False)
        e[lacking, c] = np.nan
    out.append(("n30_roles", e, d))
    return out


def standard_error(e, d):
    if not np.isnan(e).any():
        n = e.shape[0]
        if n < 2:
            return np.full(e.shape[1], np.nan)
        se = e.std(axis=0, ddof=1) / math.sqrt(n)
        return se if d is None else se / abs(d.mean())
    return np.array([standard_error(e[~np.isnan(e[:, c]), c][:, None], None if d is None else d[~np.isnan(e[:, c])])[0]
                     for c in range(e.shape[1])])


def estimate(e, d):
    """The grid value of each cell over the prompts that have it."""
    present = ~np.isnan(e)
    if present.all():
        return e.mean(axis=0) if d is None else e.mean(axis=0) / d.mean()
    mean = np.nanmean(e, axis=0)
    if d is None:
        return mean
    return mean / (np.where(present, d[:, None], 0).sum(axis=0) / present.sum(axis=0))


def gamma(observed):
    # scipy.stats.permutation_test's tolerance for theoretically equal values
    return np.abs(np.finfo(np.float64).eps * 100 * observed)


def exact_p(e):
    """Enumerate all 2^n sign patterns in numpy; p = #{|mean(s*e)| >= |mean(e)| - gamma} / 2^n."""
    n = e.shape[0]
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    signs = 1.0 - 2.0 * bits  # [2^n, n], pattern 0 = identity
    null = np.abs(signs @ e / n)  # [2^n, cells]
    observed = np.abs(e.mean(axis=0))
    p = (null >= observed - gamma(observed)).sum(axis=0) / 2**n
    # cross-check against scipy's own sign-flip test
    for c in range(e.shape[1]):
        ps = st.permutation_test(
            (e[:, c],),
            lambda x, axis: np.abs(np.mean(x, axis=axis)),
            permutation_type="samples",
            alternative="greater",
            n_resamples=np.inf,
            vectorized=True,
        ).pvalue
        assert ps == p[c], (c, ps, p[c])
    return p


def monte_carlo_p(e, patterns, seed):
    """The reference for n > 16: the fraction of random sign patterns at least as extreme (no +1: an
    estimate of the exact p-value, not a test)."""
    n, ncell = e.shape
    rng = np.random.default_rng(seed)
    observed = np.abs(e.mean(axis=0))
    hits = np.zeros(ncell)
    chunk = 100_000
    for start in range(0, patterns, chunk):
        k = min(chunk, patterns - start)
        signs = rng.choice([-1.0, 1.0], size=(k, n))
        hits += (np.abs(signs @ e / n) >= observed - gamma(observed)).sum(axis=0)
    return hits / patterns


def adjust(p, method):
    """multipletests on the finite p-values; NaN entries stay NaN and do not count in the family."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


def nan_mean(x, axis):
    return np.nanmean(x, axis=axis)


def nan_ratio_of_means(x, y, axis):
    """Per cell, the effects' sum over the drawn prompts that have the cell over their denominators' sum."""
    return np.nansum(x, axis=axis) / np.sum(np.where(np.isnan(x), 0.0, y), axis=axis)


def bootstrap_spread(e, d):
    """Mean and sd of scipy's percentile endpoints over BOOT_REPEATS seeds."""
    lows, highs = [], []
    et = e.T  # [cells, n]; axis=-1 is the prompt axis, the same indices for every cell
    for r in range(BOOT_REPEATS):
        if np.isnan(e).any():
            samples = (et,) if d is None else (et, d)
            res = st.bootstrap(
                samples, nan_mean if d is None else nan_ratio_of_means, paired=d is not None, vectorized=True,
                n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile", axis=-1, rng=1000 + r,
            )
        elif d is None:
            res = st.bootstrap(
                (et,), lambda x, axis: np.mean(x, axis=axis), vectorized=True, n_resamples=RESAMPLES,
                confidence_level=LEVEL, method="percentile", axis=-1, rng=1000 + r,
            )
        else:
            res = st.bootstrap(
                (et, d), lambda x, y, axis: np.mean(x, axis=axis) / np.mean(y, axis=axis), paired=True,
                vectorized=True, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                axis=-1, rng=1000 + r,
            )
        lows.append(res.confidence_interval.low)
        highs.append(res.confidence_interval.high)
    lows, highs = np.array(lows), np.array(highs)
    return {
        "ci_low_mean": lows.mean(axis=0),
        "ci_low_sd": lows.std(axis=0, ddof=1),
        "ci_high_mean": highs.mean(axis=0),
        "ci_high_sd": highs.std(axis=0, ddof=1),
    }


def clean(x):
    """JSON: arrays to lists, NaN to null."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def main():
    cases = []
    for name, e, d in inputs():
        n = e.shape[0]
        present = ~np.isnan(e)
        if present.all() and n <= 16:
            p, p_sd = exact_p(e), np.zeros(e.shape[1])
        elif present.all():
            p = monte_carlo_p(e, MC_REFERENCE_PATTERNS, seed=n)
            p_sd = np.sqrt(p * (1 - p) / MC_REFERENCE_PATTERNS)
        else:
            # Each cell over its own prompts: exact up to 16 of them, Monte Carlo above.
            p, p_sd = np.zeros(e.shape[1]), np.zeros(e.shape[1])
            for c in range(e.shape[1]):
                x = e[present[:, c], c][:, None]
                if len(x) <= 16:
                    p[c] = exact_p(x)[0]
                else:
                    p[c] = monte_carlo_p(x, MC_REFERENCE_PATTERNS, seed=100 + c)[0]
                    p_sd[c] = math.sqrt(p[c] * (1 - p[c]) / MC_REFERENCE_PATTERNS)
        case = {
            "name": name,
            "effects": e,
            "denominators": d,
            "prompts": present.sum(axis=0),
            "p": p,
            "p_sd": p_sd,
            "p_holm": adjust(p, "holm"),
            "p_bh": adjust(p, "fdr_bh"),
        }
        for mode, dd in [("normalized", d), ("raw", None)]:
            case[mode] = {"estimate": estimate(e, dd), "se": standard_error(e, dd), **bootstrap_spread(e, dd)}
        cases.append(case)
        print(name, "p =", np.round(p, 5))

    rng = np.random.default_rng(7)
    quantiles = []
    for size, level in [(1000, 0.95), (999, 0.9), (37, 0.8), (2, 0.95), (1, 0.95), (10, 0.5)]:
        x = rng.normal(0, 1, size)
        a = (1 - level) / 2
        q = st.quantile(x, np.array([a, 1 - a]))
        assert np.allclose(q, np.percentile(x, [100 * a, 100 * (1 - a)]), rtol=0, atol=1e-12)  # np.percentile: a different lerp, ulps apart
        quantiles.append({"values": x, "level": level, "low": q[0], "high": q[1]})

    nan = float("nan")
    pvecs = [
        [0.01, 0.04, 0.03, 0.005, 0.2, 0.9, 0.04],
        [0.5, 0.5, 0.5, 0.5],
        [1e-6, nan, 0.02, 0.02, 0.6, nan, 0.049, 1.0],
        [0.3, 0.8, 0.95],
        [nan, nan],
        [0.0001],
    ]
    multitest = [{"p": pv, "holm": adjust(pv, "holm"), "bh": adjust(pv, "fdr_bh")} for pv in pvecs]

    doc = {
        "generator": "tests/reference/stats_reference.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__},
        "level": LEVEL,
        "resamples": RESAMPLES,
        "boot_repeats": BOOT_REPEATS,
        "mc_reference_patterns": MC_REFERENCE_PATTERNS,
        "seed": SEED,
        "cases": cases,
        "quantiles": quantiles,
        "multitest": multitest,
    }
    OUT.write_text(json.dumps(clean(doc), separators=(",", ":")) + "\n")
    print("wrote", OUT.relative_to(ROOT), OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
