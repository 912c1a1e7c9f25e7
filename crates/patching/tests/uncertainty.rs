//! The per-cell statistics against numpy, scipy and statsmodels: tests/fixtures/reference/stats.json,
//! written by tests/reference/stats_reference.py. All in f64 on both sides (no model, no f32).
//! One case ("n30_roles") has cells some prompts lack (NaN), as prompts aligned by role do: each
//! cell's statistics are over the prompts that have it.
//!
//! - grid value, standard error, exact sign-flip p-values (cells of 5, 12 and 16 prompts), Holm and BH:
//!   within 1e-9;
//! - Monte Carlo p-values (cells of 20 to 40 prompts, 9,999 patterns) against a 2,000,000-pattern numpy
//!   estimate: within
//!   4 binomial standard deviations of both estimates together, plus the 1/(m + 1) the (b + 1)/(m + 1)
//!   estimate may add;
//! - bootstrap endpoints (1,000 resamples): scipy's random numbers are not ours, so the fixture holds the
//!   mean and the standard deviation of each endpoint over 200 scipy runs with different seeds; our
//!   endpoint, one more draw of the same Monte Carlo experiment, must fall within 4 of those standard
//!   deviations of scipy's mean (scaled by √(1 + 1/200) for the error of that mean), plus 1e-12 for
//!   the cells whose bootstrap distribution is a single value;
//! - the same endpoints averaged over 50 of our seeds: a bias test, within 4 standard deviations of the
//!   difference of the two means (sd·√(1/50 + 1/200));
//! - the percentile rule against scipy.stats.quantile and the adjustments against multipletests on fixed
//!   vectors: within 1e-12.

use patchbay_patching::analysis::uncertainty::{
    DEFAULT_PERMUTATIONS, EXACT_MAX_PROMPTS, StatsSettings, benjamini_hochberg, cell_stats, holm,
    percentile_interval,
};
use serde_json::Value;
use std::path::PathBuf;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// JSON null is NaN.
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

/// Worst absolute error, with NaN required in the same places.
fn worst(what: &str, ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "{what}");
    ours.iter().zip(reference).fold(0.0f64, |w, (a, b)| {
        assert_eq!(a.is_nan(), b.is_nan(), "{what}: {a} vs {b}");
        if a.is_nan() { w } else { w.max((a - b).abs()) }
    })
}

#[test]
fn matches_numpy_scipy_statsmodels() {
    let doc = fixture();
    let settings = StatsSettings {
        level: doc["level"].as_f64().unwrap(),
        resamples: doc["resamples"].as_u64().unwrap() as usize,
        permutations: DEFAULT_PERMUTATIONS,
        seed: doc["seed"].as_u64().unwrap(),
    };
    let repeats = doc["boot_repeats"].as_f64().unwrap();
    let m = settings.permutations as f64;
    let (mut err_value, mut err_p, mut err_adjust) = (0.0f64, 0.0f64, 0.0f64);
    let (mut worst_ci_z, mut worst_mc_z) = (0.0f64, 0.0f64);
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let effects = matrix(&case["effects"]);
        let d = floats(&case["denominators"]);
        let prompts: Vec<usize> = floats(&case["prompts"]).iter().map(|&n| n as usize).collect();
        let exact = prompts.iter().all(|&n| n <= EXACT_MAX_PROMPTS);
        for (mode, denominators) in [("normalized", Some(d.as_slice())), ("raw", None)] {
            let s = cell_stats(&effects, denominators, &settings).unwrap();
            let r = &case[mode];
            assert_eq!(s.prompts, prompts, "{name}");
            err_value = err_value
                .max(worst(name, &s.estimate, &floats(&r["estimate"])))
                .max(worst(name, &s.se, &floats(&r["se"])));
            assert_eq!(s.undefined_resamples, 0, "{name}");

            let p_ref = floats(&case["p"]);
            if exact {
                err_p = err_p.max(worst(name, &s.p, &p_ref));
                err_adjust = err_adjust
                    .max(worst(name, &s.p_holm, &floats(&case["p_holm"])))
                    .max(worst(name, &s.p_bh, &floats(&case["p_bh"])));
            } else {
                let p_sd = floats(&case["p_sd"]);
                for c in 0..p_ref.len() {
                    if prompts[c] <= EXACT_MAX_PROMPTS {
                        err_p = err_p.max((s.p[c] - p_ref[c]).abs());
                        continue;
                    }
                    let q = p_ref[c].max(1.0 / m);
                    let sd = (q * (1.0 - q) / m + p_sd[c].powi(2)).sqrt();
                    let excess = ((s.p[c] - p_ref[c]).abs() - 1.0 / (m + 1.0)).max(0.0);
                    let z = if excess == 0.0 { 0.0 } else { excess / sd };
                    assert!(
                        z <= 4.0,
                        "{name} cell {c}: p {} vs {} (sd {sd})",
                        s.p[c],
                        p_ref[c]
                    );
                    worst_mc_z = worst_mc_z.max(z);
                }
            }
            // The adjustments are those of the p-values this run produced.
            assert_eq!(s.p_holm, holm(&s.p));
            assert_eq!(s.p_bh, benjamini_hochberg(&s.p));

            for (end, ours) in [("ci_low", &s.ci_low), ("ci_high", &s.ci_high)] {
                let mean = floats(&r[format!("{end}_mean").as_str()]);
                let sd = floats(&r[format!("{end}_sd").as_str()]);
                for c in 0..mean.len() {
                    let spread = sd[c] * (1.0 + 1.0 / repeats).sqrt();
                    let off = (ours[c] - mean[c]).abs();
                    assert!(
                        off <= 4.0 * spread + 1e-12,
                        "{name} {mode} {end} cell {c}: {} vs scipy {} ± {}",
                        ours[c],
                        mean[c],
                        sd[c]
                    );
                    if spread > 0.0 {
                        worst_ci_z = worst_ci_z.max(off / spread);
                    }
                }
            }
        }
    }
    // Holm and BH of the reference p-values themselves, for every case (the Monte Carlo one included).
    for case in doc["cases"].as_array().unwrap() {
        let p = floats(&case["p"]);
        err_adjust = err_adjust
            .max(worst("holm", &holm(&p), &floats(&case["p_holm"])))
            .max(worst("bh", &benjamini_hochberg(&p), &floats(&case["p_bh"])));
    }
    println!(
        "worst: estimate/se {err_value:.3e}, exact p {err_p:.3e}, holm/bh {err_adjust:.3e}, \
         Monte Carlo p {worst_mc_z:.2} sd, bootstrap endpoints {worst_ci_z:.2} sd"
    );
    assert!(err_value <= 1e-9 && err_p <= 1e-9 && err_adjust <= 1e-9);
}

#[test]
fn bootstrap_endpoints_are_unbiased_over_seeds() {
    const SEEDS: u64 = 50;
    let doc = fixture();
    let repeats = doc["boot_repeats"].as_f64().unwrap();
    let mut worst_z = 0.0f64;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let effects = matrix(&case["effects"]);
        let d = floats(&case["denominators"]);
        for (mode, denominators) in [("normalized", Some(d.as_slice())), ("raw", None)] {
            let r = &case[mode];
            let cells = effects[0].len();
            let (mut low, mut high) = (vec![0.0; cells], vec![0.0; cells]);
            for seed in 0..SEEDS {
                let settings = StatsSettings {
                    level: doc["level"].as_f64().unwrap(),
                    resamples: doc["resamples"].as_u64().unwrap() as usize,
                    permutations: 1,
                    seed,
                };
                let s = cell_stats(&effects, denominators, &settings).unwrap();
                for c in 0..cells {
                    low[c] += s.ci_low[c] / SEEDS as f64;
                    high[c] += s.ci_high[c] / SEEDS as f64;
                }
            }
            for (end, ours) in [("ci_low", &low), ("ci_high", &high)] {
                let mean = floats(&r[format!("{end}_mean").as_str()]);
                let sd = floats(&r[format!("{end}_sd").as_str()]);
                for c in 0..cells {
                    let spread = sd[c] * (1.0 / SEEDS as f64 + 1.0 / repeats).sqrt();
                    let off = (ours[c] - mean[c]).abs();
                    assert!(
                        off <= 4.0 * spread + 1e-12,
                        "{name} {mode} {end} cell {c}: mean over seeds {} vs scipy {} (sd of the difference {spread})",
                        ours[c],
                        mean[c]
                    );
                    if spread > 0.0 {
                        worst_z = worst_z.max(off / spread);
                    }
                }
            }
        }
    }
    println!("worst: bootstrap endpoints averaged over {SEEDS} seeds {worst_z:.2} sd");
}

#[test]
fn percentile_rule_and_adjustments_match_exactly() {
    let doc = fixture();
    let mut err = 0.0f64;
    for q in doc["quantiles"].as_array().unwrap() {
        let (lo, hi) = percentile_interval(&floats(&q["values"]), q["level"].as_f64().unwrap());
        err = err
            .max((lo - q["low"].as_f64().unwrap()).abs())
            .max((hi - q["high"].as_f64().unwrap()).abs());
    }
    for t in doc["multitest"].as_array().unwrap() {
        let p = floats(&t["p"]);
        err = err.max(worst("holm", &holm(&p), &floats(&t["holm"]))).max(worst(
            "bh",
            &benjamini_hochberg(&p),
            &floats(&t["bh"]),
        ));
    }
    println!("worst: percentile and adjustments {err:.3e}");
    assert!(err <= 1e-12);
}
