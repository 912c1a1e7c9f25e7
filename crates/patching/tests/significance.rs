//! Uncertainty on real runs, on the model that ships with the app (models/patchbay-ioi): a
//! 40-prompt IOI dataset over every template detects its known heads 0.0, 1.0 and 1.1, each
//! significant after Holm's correction (p < 0.01), and a role-axis grid's statistics are, cell by
//! cell, those of the prompts that have the role, as its grid is. The statistics are computed in
//! f64 from the model's f32 effects; they are compared here with a recomputation from the
//! results' own per-prompt grids (within 1e-9, the rounding of recovering effects from them).

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::analysis::uncertainty::{EXACT_MAX_PROMPTS, cell_stats};
use patchbay_patching::{ExperimentSpec, Results, RunOptions};
use serde_json::{Value, json};

/// 40 IOI prompts over every template (of several token lengths), STR S2, logit difference.
fn ioi_all_templates(target: Value, detect: Value) -> ExperimentSpec {
    let spec = json!({
        "version": 1,
        "model": {"embedded": "patchbay-ioi"},
        "prompts": [],
        "dataset": {"task": "ioi", "n": 40, "seed": 2, "names": "s2", "template": "all"},
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": true},
        "target": target,
        "detect": detect
    });
    ExperimentSpec::from_json(&spec.to_string()).unwrap()
}

#[test]
fn the_known_heads_are_significant_after_holm() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let spec = ioi_all_templates(
        json!({"component": "z", "positions": "all"}),
        json!({"significant": {"alpha": 0.01, "correction": "holm", "min_effect": 0.2}}),
    );
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    let lengths: std::collections::BTreeSet<usize> = results.prompts.iter().map(|p| p.tokens.len()).collect();
    assert!(lengths.len() > 3, "templates of several lengths: {lengths:?}");
    let stats = results.stats.as_ref().expect("a dataset has statistics");
    let n_head = model.config.n_head;
    for (i, p) in stats.p_holm.values.iter().enumerate() {
        println!(
            "head {}.{}: effect {:+.4}, se {:.4}, CI [{:+.4}, {:+.4}], p {:.2e}, Holm {:.2e}, BH {:.2e}",
            i / n_head,
            i % n_head,
            results.grid.values[i],
            stats.se.values[i],
            stats.ci_low.values[i],
            stats.ci_high.values[i],
            stats.p.values[i],
            p,
            stats.p_bh.values[i]
        );
    }
    let heads = |results: &Results| {
        let mut heads: Vec<Vec<usize>> = results.detected.iter().map(|d| d.index.clone()).collect();
        heads.sort();
        heads
    };
    assert_eq!(heads(&results), vec![vec![0, 0], vec![1, 0], vec![1, 1]]);
    for d in &results.detected {
        assert!(stats.p_holm.values[d.cell] < 0.01, "{:?}", d.index);
        // Each known head's interval lies above the least effect.
        assert!(stats.ci_low.values[d.cell] > 0.2, "{:?}", d.index);
    }
    // The same heads as the absolute threshold alone finds.
    let threshold = ioi_all_templates(
        json!({"component": "z", "positions": "all"}),
        json!({"threshold": 0.2}),
    );
    assert_eq!(
        heads(&run(&model, &tokenizer, &threshold, &RunOptions::default())),
        heads(&results)
    );
    // Significance alone flags every cell whose Holm p-value is at most 0.01: over 40 prompts a
    // small consistent effect is not noise either.
    let alone = ioi_all_templates(
        json!({"component": "z", "positions": "all"}),
        json!({"significant": {"alpha": 0.01}}),
    );
    let significant = run(&model, &tokenizer, &alone, &RunOptions::default());
    let expected: Vec<Vec<usize>> = (0..stats.p_holm.values.len())
        .filter(|&c| stats.p_holm.values[c] <= 0.01)
        .map(|c| vec![c / n_head, c % n_head])
        .collect();
    assert_eq!(heads(&significant), expected);
    assert!(expected.len() >= 3);
    // 40 prompts: Monte Carlo sign flips, whose smallest p-value is 1/(m + 1).
    assert!(stats.prompts.values.iter().all(|&n| n == 40.0));
    let floor = 1.0 / (spec.stats.permutations as f64 + 1.0);
    assert!(results.detected.iter().all(|d| stats.p.values[d.cell] >= floor));

    // The statistics are those of the numbers the grid averages: the ratio of means of each
    // prompt's effect (its prompt grid times the mean denominator) over the denominators.
    let effects: Vec<Vec<f64>> = results
        .prompt_grids
        .iter()
        .map(|g| g.values.iter().map(|v| v * results.denominator).collect())
        .collect();
    let spans: Vec<f64> = results.prompts.iter().map(|p| p.denominator).collect();
    let again = cell_stats(&effects, Some(&spans), &spec.stats).unwrap();
    for c in 0..results.grid.values.len() {
        assert!((again.estimate[c] - results.grid.values[c]).abs() < 1e-9);
        assert!((again.se[c] - stats.se.values[c]).abs() < 1e-9);
        assert_eq!(again.p[c], stats.p.values[c]);
    }

    // results.json carries them, the checked decoder reads them back, and every view shows them.
    let text = serde_json::to_string(&results).unwrap();
    let back = Results::from_json(&text).unwrap();
    assert_eq!(back.stats, results.stats);
    let keys: Vec<&str> = back.views().iter().map(|v| v.key).collect();
    for key in ["se", "ci_low", "ci_high", "p", "p_holm", "p_bh"] {
        assert!(keys.contains(&key), "{keys:?}");
        let view = back.view(key).unwrap();
        assert_eq!(view.grid.shape, back.grid.shape);
        assert!(!back.meaning(key, 0, view.grid.values[0]).is_empty());
    }
    let hover = back.uncertainty(0).unwrap();
    assert!(
        hover.starts_with("95% CI [") && hover.contains("40 prompts"),
        "{hover}"
    );

    // 2σ stays the default rule, and with six heads one dominant head inflates σ.
    let sigma = ioi_all_templates(
        json!({"component": "z", "positions": "all"}),
        json!({"sigma": 2.0}),
    );
    assert!(
        run(&model, &tokenizer, &sigma, &RunOptions::default())
            .detected
            .len()
            < 3
    );
}

#[test]
fn a_role_axis_grid_has_statistics_over_the_prompts_that_have_each_role() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let spec = ioi_all_templates(
        json!({"component": "resid_pre", "positions": "each"}),
        json!({"threshold": 0.2}),
    );
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    assert_eq!(results.axes[1].name, "role");
    let stats = results.stats.as_ref().unwrap();
    let n = results.prompts.len();
    // Every cell's prompt count is the number of prompts with a value there.
    let present = |c: usize| -> Vec<usize> {
        (0..n)
            .filter(|&i| !results.prompt_grids[i].values[c].is_nan())
            .collect()
    };
    let cells = results.grid.values.len();
    let partial: Vec<usize> = (0..cells).filter(|&c| present(c).len() < n).collect();
    assert!(!partial.is_empty(), "some role only some templates have");
    assert!(
        partial.iter().any(|&c| present(c).len() <= EXACT_MAX_PROMPTS),
        "a role few templates have: an exact test"
    );
    for c in 0..cells {
        assert_eq!(stats.prompts.values[c], present(c).len() as f64);
    }
    // A partial cell's statistics are those of its own prompts alone (the bootstrap aside, which
    // resamples every prompt), and its value is the grid's.
    for &c in &partial {
        let keep = present(c);
        // Under the ratio of means a prompt's grid is its effect over the cell's mean
        // denominator, the mean over the prompts that have the cell.
        let spans: Vec<f64> = keep.iter().map(|&i| results.prompts[i].denominator).collect();
        let cell_span = spans.iter().sum::<f64>() / spans.len() as f64;
        let effects: Vec<Vec<f64>> = keep
            .iter()
            .map(|&i| vec![results.prompt_grids[i].values[c] * cell_span])
            .collect();
        let alone = cell_stats(&effects, Some(&spans), &spec.stats).unwrap();
        let grid = results.grid.values[c];
        assert!((alone.estimate[0] - grid).abs() < 1e-9, "cell {c}");
        let se = stats.se.values[c];
        assert!(
            (alone.se[0] - se).abs() < 1e-9 || (alone.se[0].is_nan() && se.is_nan()),
            "cell {c}"
        );
        if keep.len() <= EXACT_MAX_PROMPTS {
            assert_eq!(alone.p[0], stats.p.values[c], "cell {c}");
        }
        if grid.is_finite() && keep.len() > 1 {
            assert!(
                stats.ci_low.values[c] <= grid + 1e-12 && grid <= stats.ci_high.values[c] + 1e-12,
                "cell {c}: {grid} outside [{}, {}]",
                stats.ci_low.values[c],
                stats.ci_high.values[c]
            );
        }
    }
}

#[test]
fn per_prompt_normalization_has_the_statistics_of_its_mean() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let mut spec = ioi_all_templates(
        json!({"component": "z", "positions": "all"}),
        json!({"sigma": 2.0}),
    );
    spec.metric.normalize = patchbay_patching::spec::Normalize::PerPrompt;
    spec.stats.seed = 7;
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    let stats = results.stats.as_ref().unwrap();
    assert_eq!(stats.settings.seed, 7);
    let values: Vec<Vec<f64>> = results.prompt_grids.iter().map(|g| g.values.clone()).collect();
    let again = cell_stats(&values, None, &spec.stats).unwrap();
    for c in 0..results.grid.values.len() {
        assert!((again.estimate[c] - results.grid.values[c]).abs() < 1e-12);
        assert_eq!(
            (again.se[c], again.ci_low[c], again.ci_high[c], again.p[c]),
            (
                stats.se.values[c],
                stats.ci_low.values[c],
                stats.ci_high.values[c],
                stats.p.values[c]
            )
        );
    }
}

#[test]
fn one_prompt_has_no_statistics_and_cannot_be_tested() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let case = Cases::load();
    let single = spec_of(case.named("str.z.all.logit_diff"));
    let results = run(&model, &tokenizer, &single, &RunOptions::default());
    assert!(results.stats.is_none() && results.uncertainty(0).is_none());
    assert!(!serde_json::to_string(&results).unwrap().contains("\"stats\""));
    let mut tested = single.clone();
    tested.detect = serde_json::from_value(json!({"significant": {"alpha": 0.05}})).unwrap();
    let err = pollster::block_on(patchbay_patching::run_experiment(
        &model,
        &tokenizer,
        &tested,
        &RunOptions::default(),
        &mut |_: &patchbay_patching::Progress| true,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`detect.significant`") && err.contains("at least 2"),
        "{err}"
    );
}
