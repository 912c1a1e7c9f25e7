//! The CPU warning's estimate counts the work the batched sweep plans: patches that change
//! nothing are free, later positions reuse more of the cached run, and the full distribution
//! costs more to read than two logits. (How close it comes to the page's time is a benchmark,
//! `bench/estimate.mjs`, not a test.)

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::prepare::CPU_FLOPS_PER_SECOND;
use patchbay_patching::{ExperimentSpec, prepare};
use serde_json::{Value, json};

/// The IOI spec on the tiny fixture (S2, position 10, corrupted), read by `metric`, resid_pre at
/// `positions`.
fn spec(metric: &str, positions: Value) -> Value {
    let mut spec = ioi_spec();
    spec["metric"] = json!({"kind": metric, "normalized": false});
    spec["target"]["positions"] = positions;
    spec
}

/// The estimated CPU seconds of `spec`, and the bound's: as if every patch were a full pass.
fn seconds(spec: &Value) -> (f64, f64) {
    let (model, tokenizer) = tiny(&backend::cpu());
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).unwrap();
    assert_eq!(prepared.prompts[0].first_changed(), 10);
    let size = prepared.size(&model).unwrap();
    (size.cpu_seconds, size.flops / CPU_FLOPS_PER_SECOND)
}

#[test]
fn patches_before_the_first_corrupted_token_cost_nothing() {
    // Positions listed are patched together, one patch per layer.
    let (none, bound) = seconds(&spec("logit_diff", json!([0, 3, 9])));
    let (one, same_bound) = seconds(&spec("logit_diff", json!([9, 10])));
    // The bound counts them alike, as full passes; the estimate as what they are.
    assert_eq!(bound, same_bound);
    assert!(one > none, "{one} > {none}");
    let (only_the_base_runs, _) = seconds(&spec("logit_diff", json!([0])));
    assert_eq!(none, only_the_base_runs);
}

#[test]
fn later_positions_reuse_more_of_the_cached_run() {
    let (s2, _) = seconds(&spec("logit_diff", json!([10])));
    let (last, _) = seconds(&spec("logit_diff", json!([14])));
    assert!(last < s2, "{last} < {s2}");
}

#[test]
fn the_whole_distribution_costs_more_to_read_than_two_logits() {
    let (logit_diff, _) = seconds(&spec("logit_diff", json!("each")));
    let (kl, _) = seconds(&spec("kl", json!("each")));
    assert!(kl > logit_diff, "{kl} > {logit_diff}");
}
