//! The results decoder a link's results go through: real results round-trip, and every shape a
//! probe found crashing the page is refused with a message; small denominators are warned of.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::spec::Normalize;
use patchbay_patching::{Results, RunOptions};
use serde_json::{Value, json};

#[test]
fn results_round_trip_and_malformed_ones_are_refused() {
    let b = backend::cpu();
    let (model, tokenizer) = tiny(&b);
    let spec = spec_of(Cases::load().named("dataset4.z.all"));
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    let text = serde_json::to_string(&results).unwrap();
    assert_eq!(Results::from_json(&text).unwrap(), results);

    let value: Value = serde_json::from_str(&text).unwrap();
    let with = |path: &[&str], v: Value| {
        let mut doc = value.clone();
        let mut at = &mut doc;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = v;
        Results::from_json(&doc.to_string()).unwrap_err().to_string()
    };
    let scalar = {
        let mut doc = value.clone();
        doc["grid"] = json!(5);
        doc["axes"] = json!([]);
        Results::from_json(&doc.to_string()).unwrap_err().to_string()
    };
    assert!(scalar.contains("malformed"), "{scalar}");
    assert!(with(&["grid"], json!([[1], [[2, 3]]])).contains("uneven"));
    assert!(with(&["grid"], json!([5, []])).contains("malformed"));
    let short = with(&["axes"], json!([{"name": "layer", "labels": ["0", "1"]}]));
    assert!(short.contains("axes give [2]"), "{short}");
    let outside = with(
        &["detected"],
        json!([{"cell": 99, "index": [9, 9], "value": 1.0, "z": 3.0}]),
    );
    assert!(outside.contains("outside the grid"), "{outside}");
    // A dataset's statistics: every grid of the grid's shape.
    assert!(value["stats"]["p_holm"].is_array() && value["stats"]["settings"]["resamples"] == 1000);
    let se = with(&["stats", "se"], json!([[0.1, 0.2]]));
    assert!(se.contains("`stats.se` has shape [1, 2]"), "{se}");
    let p = with(&["stats", "p_bh"], json!([1.0]));
    assert!(p.contains("`stats.p_bh` has shape [1]"), "{p}");
    let missing = {
        let mut doc = value.clone();
        doc["stats"].as_object_mut().unwrap().remove("ci_low");
        Results::from_json(&doc.to_string()).unwrap_err().to_string()
    };
    assert!(missing.contains("missing field `ci_low`"), "{missing}");
    let version = with(&["spec", "version"], json!(7));
    assert!(version.contains("version 7"), "{version}");
    assert!(
        Results::from_json("{")
            .unwrap_err()
            .to_string()
            .contains("malformed")
    );
}

#[test]
fn prompts_with_small_denominators_are_named_in_a_warning() {
    let b = backend::cpu();
    let (model, tokenizer) = tiny(&b);
    let spec = spec_of(Cases::load().named("dataset4.z.all"));
    let mut results = run(&model, &tokenizer, &spec, &RunOptions::default());
    results.small_denominators = Vec::new();
    assert_eq!(results.small_denominator_warning(), None);
    results.small_denominators = vec![1, 3];
    results.normalized = true;
    results.spec.metric.normalize = Normalize::RatioOfMeans;
    let warning = results.small_denominator_warning().unwrap();
    assert!(
        warning.starts_with(
            "2 of the 4 prompts (1, 3) have a denominator M_clean − M_corrupted under 5% of the mean"
        ),
        "{warning}"
    );
    assert!(warning.contains("so they do not dominate the grid"), "{warning}");
    results.spec.metric.normalize = Normalize::PerPrompt;
    let warning = results.small_denominator_warning().unwrap();
    assert!(warning.contains("can dominate the grid"), "{warning}");
    results.normalized = false;
    assert_eq!(
        results.small_denominator_warning(),
        None,
        "an unnormalized grid divides by nothing"
    );
}
