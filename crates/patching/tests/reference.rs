//! Every patching grid against TransformerLens 3.9.0 on the same weights, within 1e-4: each
//! `get_act_patch_*` sweep under normalized logit difference, probability and KL; Gaussian noise
//! with the reference's own noise replayed; noising; a window of 3; a 4-prompt dataset; path
//! patching; attribution patching; greater-than's probability difference on the shipped model.
//! Each reference case carries the spec it was made from.

mod common;

use std::collections::BTreeMap;

use common::*;
use patchbay_model::backend;
use patchbay_patching::{Direction, MetricKind, Results, RunOptions};
use serde_json::Value;

/// The normalized effect the reference's raw grid implies, when its denominator is not tiny:
/// dividing by M_clean - M_corrupted amplifies float rounding, so below 0.1 only raw values are
/// compared ("where a normalized grid has a tiny denominator, compare the raw values").
fn normalized_from_raw(
    case: &Value,
    kind: MetricKind,
    direction: Direction,
    raw: &[f64],
) -> Option<Vec<f64>> {
    let sign = if kind == MetricKind::Kl { -1.0 } else { 1.0 };
    let clean = sign * case["clean_metric"].as_f64()?;
    let corrupted = sign * case["corrupted_metric"].as_f64()?;
    let span = clean - corrupted;
    let base = if direction == Direction::Denoising {
        corrupted
    } else {
        clean
    };
    (span.abs() >= 0.1).then(|| raw.iter().map(|r| (sign * r - base) / span).collect())
}

/// Compares one case; returns the largest error per grid label.
fn check_case(cases: &Cases, case: &Value, results: &Results) -> BTreeMap<String, f64> {
    let name = case["name"].as_str().unwrap();
    let mut errors = BTreeMap::new();
    let mut compare = |label: &str, ours: &[f64], expected: &[f64]| {
        let err = max_abs_diff(ours, expected);
        assert!(err <= TOL, "{name} {label}: max abs error {err:e}");
        errors.insert(label.to_string(), err);
    };
    let has_normalized = case["grids"].as_object().unwrap().contains_key("normalized");
    for (label, key) in case["grids"].as_object().unwrap() {
        let (shape, expected) = cases.tensor(key.as_str().unwrap());
        if label == "single_layer" && !has_normalized {
            // A raw single-layer reference: our single-layer grid is in effect units.
            if let Some(expected) = normalized_from_raw(case, results.metric, results.direction, &expected) {
                compare(
                    label,
                    &results.window.as_ref().unwrap().single_layer.values,
                    &expected,
                );
            }
            continue;
        }
        let ours: Vec<f64> = match label.as_str() {
            "raw" => results.raw_grid.values.clone(),
            "normalized" => results.grid.values.clone(),
            "single_layer" => results.window.as_ref().unwrap().single_layer.values.clone(),
            "attribution" => results.attribution.as_ref().unwrap().grid.values.clone(),
            "per_prompt" => results
                .prompt_grids
                .iter()
                .flat_map(|g| g.values.clone())
                .collect(),
            other => panic!("unknown grid {other}"),
        };
        if label != "per_prompt" {
            let shape_ours = if label == "single_layer" {
                &results.window.as_ref().unwrap().single_layer.shape
            } else {
                &results.grid.shape
            };
            assert_eq!(shape_ours, &shape, "{name} {label} shape");
        }
        compare(label, &ours, &expected);
        if label == "raw" && !has_normalized {
            // The normalized grid follows from the raw one and the baselines.
            if let Some(expected) = normalized_from_raw(case, results.metric, results.direction, &expected) {
                compare("normalized (from raw)", &results.grid.values, &expected);
            }
        }
    }
    if let Some(clean) = case["clean_metric"].as_f64() {
        assert!((results.clean_metric - clean).abs() <= TOL, "{name} clean metric");
        assert!(
            (results.corrupted_metric - case["corrupted_metric"].as_f64().unwrap()).abs() <= TOL,
            "{name} corrupted"
        );
    }
    errors
}

fn options_for(cases: &Cases, case: &Value) -> RunOptions {
    let noise = case["noise"]
        .as_str()
        .map(|key| cases.tensor(key).1.iter().map(|&v| v as f32).collect());
    RunOptions {
        noise,
        ..RunOptions::default()
    }
}

#[test]
fn every_grid_matches_transformer_lens_on_the_cpu() {
    let cases = Cases::load();
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for case in &cases.cases {
        let spec = spec_of(case);
        let results = run(&model, &tokenizer, &spec, &options_for(&cases, case));
        let family = case["name"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_string();
        for (label, err) in check_case(&cases, case, &results) {
            let entry = worst.entry(format!("{family} {label}")).or_default();
            *entry = entry.max(err);
        }
        if let Some(sigma) = case["sigma"].as_f64() {
            let ours = results.noise.as_ref().unwrap().sigma;
            assert!((ours - sigma).abs() <= 1e-6 * sigma, "σ {ours} vs {sigma}");
        }
    }
    println!(
        "{} reference cases; max abs error vs TransformerLens:",
        cases.cases.len()
    );
    for (what, err) in &worst {
        println!("  {what:<40} {err:.2e}");
    }
    assert!(cases.cases.len() >= 70);
}

/// Greater-than's probability difference P(R) - P(R') (Hanna et al.: R the year tokens after
/// the start year YY, R' those up to it) on the shipped model, which learned the task.
#[test]
fn greater_than_probability_difference_matches_transformer_lens() {
    let cases = Cases::of("patchbay-ioi");
    let (model, tokenizer) = embedded(&backend::cpu());
    for case in &cases.cases {
        let results = run(&model, &tokenizer, &spec_of(case), &RunOptions::default());
        assert_eq!(results.metric, MetricKind::ProbDiff);
        let errors = check_case(&cases, case, &results);
        println!("{}: {errors:?}", case["name"].as_str().unwrap());
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["normalized", "raw"]);
    }
    assert_eq!(cases.cases.len(), 3);
}

/// The same numbers on the GPU backend (lavapipe here), for a sample of cases.
#[test]
fn a_sample_of_grids_matches_transformer_lens_on_wgpu() {
    let cases = Cases::load();
    let gpu =
        pollster::block_on(backend::gpu(None)).expect("a Vulkan driver (mesa-vulkan-drivers) for wgpu tests");
    let (model, tokenizer) = tiny(&gpu);
    for name in [
        "str.resid_pre.each.logit_diff",
        "str.z.each.kl",
        "str.pattern.each.prob",
        "gn.z.all.logit_diff",
        "noising.mlp_out.each.logit_diff",
        "window3.mlp_out.logit_diff",
        "dataset4.z.all",
        "path.q.noising",
    ] {
        let case = cases.named(name);
        let results = run(&model, &tokenizer, &spec_of(case), &options_for(&cases, case));
        let errors = check_case(&cases, case, &results);
        println!("wgpu {name}: {errors:?}");
    }
}

/// Attribution agrees with exact patching where patching is nearly linear: the rank
/// correlation the results report is the one computed from the two grids.
#[test]
fn attribution_reports_its_rank_correlation_with_exact_patching() {
    let cases = Cases::load();
    let (model, tokenizer) = tiny(&backend::cpu());
    let case = cases.named("attribution.z.all");
    let results = run(&model, &tokenizer, &spec_of(case), &RunOptions::default());
    let attribution = results.attribution.as_ref().unwrap();
    let expected =
        patchbay_patching::analysis::stats::spearman(&attribution.grid.values, &results.grid.values);
    assert_eq!(attribution.spearman, expected);
    println!(
        "attribution vs exact, z all positions: Spearman {:.3}",
        expected.unwrap()
    );
}
