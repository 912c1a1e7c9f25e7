//! Each bad input gets its own clear error, never a panic or a silent wrong answer.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::{ExperimentSpec, PatchingError, Progress, RunOptions, run_experiment};
use serde_json::{Value, json};

fn base() -> Value {
    ioi_spec()
}

fn error_of(spec: Value) -> String {
    let (model, tokenizer) = tiny(&backend::cpu());
    let spec = match ExperimentSpec::from_json(&spec.to_string()) {
        Ok(spec) => spec,
        Err(e) => return e.to_string(),
    };
    let result = pollster::block_on(run_experiment(
        &model,
        &tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ));
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn with(path: &[&str], value: Value) -> Value {
    let mut spec = base();
    let mut at = &mut spec;
    for key in &path[..path.len() - 1] {
        at = if let Ok(i) = key.parse::<usize>() {
            &mut at[i]
        } else {
            &mut at[*key]
        };
    }
    at[path[path.len() - 1]] = value;
    spec
}

#[test]
fn the_base_spec_runs() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let spec = ExperimentSpec::from_json(&base().to_string()).unwrap();
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    assert_eq!(results.grid.shape, vec![3, 15]);
    // The spec round-trips through JSON unchanged.
    assert_eq!(ExperimentSpec::from_json(&spec.to_json()).unwrap(), spec);
}

#[test]
fn unequal_token_lengths_for_str() {
    let e = error_of(with(
        &["prompts", "0", "corrupted"],
        json!("When Mary and John went to the store, Colosseum gave a drink to"),
    ));
    assert!(
        e.contains("same number of tokens")
            && e.contains("clean one has 15")
            && e.contains("corrupted one 18"),
        "{e}"
    );
    assert!(e.contains("␣Col|os|se|um"), "shows the tokens: {e}");
}

#[test]
fn an_answer_of_more_than_one_token() {
    let e = error_of(with(&["prompts", "0", "answer"], json!(" Eiffel")));
    assert!(
        e.contains("answer \" Eiffel\" must be a single token") && e.contains("3 tokens (␣E | iff | el)"),
        "{e}"
    );
    let e = error_of(with(&["prompts", "0", "counter_answer"], json!("")));
    assert!(e.contains("counter-answer \"\" must be a single token"), "{e}");
}

#[test]
fn the_same_answer_twice() {
    let e = error_of(with(&["prompts", "0", "counter_answer"], json!(" Mary")));
    assert!(
        e.contains("answer and the counter-answer are the same token"),
        "{e}"
    );
    let mut spec = base();
    spec["prompts"][0]
        .as_object_mut()
        .unwrap()
        .remove("counter_answer");
    assert!(error_of(spec).contains("logit difference metric needs a counter-answer"));
}

#[test]
fn answer_sets_of_probability_difference() {
    let mut spec = with(&["metric", "kind"], json!("prob_diff"));
    spec["prompts"][0]["answer_set"] = json!([" Mary", " Anna"]);
    spec["prompts"][0]["counter_set"] = json!([" John", " Anna"]);
    let e = error_of(spec.clone());
    assert!(
        e.contains("\"␣Anna\" is in both the answer set R and the counter set R'"),
        "{e}"
    );
    spec["prompts"][0]["counter_set"] = json!([" John", " Johnathan"]);
    let e = error_of(spec.clone());
    assert!(
        e.contains("counter set \" Johnathan\" must be a single token"),
        "{e}"
    );
    spec["prompts"][0]["counter_set"] = json!([]);
    spec["prompts"][0]
        .as_object_mut()
        .unwrap()
        .remove("counter_answer");
    let e = error_of(spec);
    assert!(
        e.contains("probability difference metric needs a counter-answer"),
        "{e}"
    );
}

#[test]
fn a_window_wider_than_the_model() {
    let spec = with(&["target"], json!({"component": "mlp_out"}));
    let mut spec = spec;
    spec["window"] = json!({"size": 4});
    assert_eq!(
        error_of(spec),
        "a window of 4 layers is wider than the model's 3 layers"
    );
    let mut spec = base();
    spec["window"] = json!({"size": 3});
    assert!(error_of(spec).contains("meaningless for resid_pre"));
}

#[test]
fn layers_heads_and_positions_out_of_range() {
    let e = error_of(with(&["target"], json!({"component": "z", "heads": [1, 4]})));
    assert_eq!(e, "head 4 is out of range: there are 4 heads (0..4)");
    let e = error_of(with(
        &["target"],
        json!({"component": "mlp_out", "positions": [15]}),
    ));
    assert_eq!(e, "position 15 is out of range: there are 15 positions (0..15)");
    let e = error_of(with(
        &["target"],
        json!({"component": "path", "receivers": {"heads": [[3, 0]], "input": "q"}}),
    ));
    assert_eq!(e, "receiver layer 3 is out of range: the model has 3 layers");
    let e = error_of(with(&["target"], json!({"component": "resid_pre", "heads": [0]})));
    assert!(e.contains("resid_pre has no heads"), "{e}");
    let mut spec = with(&["corruption"], json!({"method": "gn", "positions": [2, 20]}));
    spec["prompts"][0].as_object_mut().unwrap().remove("corrupted");
    assert_eq!(
        error_of(spec),
        "noise position 20 is out of range: the prompt has 15 positions"
    );
}

#[test]
fn an_empty_prompt_and_one_longer_than_the_context() {
    let e = error_of(with(&["prompts", "0", "clean"], json!("")));
    assert_eq!(e, "the prompt is empty");
    let long = "word ".repeat(40);
    let mut spec = with(&["prompts", "0", "clean"], json!(long));
    spec["prompts"][0]["corrupted"] = json!(long.replacen("word", "text", 1));
    let e = error_of(spec);
    assert!(e.contains("42 tokens but the model's context holds 32"), "{e}");
    let e = error_of(with(&["prompts"], json!([])));
    assert_eq!(e, "the experiment has no prompts");
}

#[test]
fn malformed_specs() {
    assert!(error_of(json!("not an object")).contains("no `version` field"));
    let e = ExperimentSpec::from_json("{\"version\": 1,").unwrap_err();
    assert!(
        matches!(e, PatchingError::Spec(_)) && e.to_string().contains("not JSON"),
        "{e}"
    );
    assert_eq!(
        error_of(with(&["version"], json!(7))),
        "spec version 7 is not supported: this Patchbay reads versions 1"
    );
    let e = error_of(with(&["metric", "kind"], json!("loss")));
    assert!(
        e.contains("unknown variant `loss`") && e.contains("logit_diff"),
        "{e}"
    );
    let e = error_of(with(&["colour"], json!("red")));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = error_of(with(&["target", "positions"], json!("some")));
    assert!(e.contains("`some` is not a choice"), "{e}");
    let mut spec = base();
    spec.as_object_mut().unwrap().remove("metric");
    assert!(error_of(spec).contains("missing field `metric`"));
    let mut spec = base();
    spec["prompts"][0].as_object_mut().unwrap().remove("corrupted");
    assert!(error_of(spec).contains("prompt 0 has no `corrupted` prompt, which STR needs"));
    let e = error_of(with(
        &["prompts", "0", "corrupted"],
        json!("When Mary and John went to the store, John gave a drink to"),
    ));
    assert!(e.contains("identical"), "{e}");
}
