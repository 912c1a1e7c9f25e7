//! Circuit discovery (crates/patching/src/circuit): the graph's forward pass is the model's;
//! EAP against TransformerLens 4.3.0's edge-level `attribution_patch`, EAP-IG and EAP with
//! AtP*'s QK fix against the reference script's implementations on TransformerLens's hooks
//! (the QK fix is also closer to the exact effect of edges into queries and keys on the
//! shipped model than the linear score) and exact circuits against TransformerLens's
//! `faithfulness` (tests/fixtures/reference/eap.json, from tests/reference/eap_reference.py),
//! on the fixture model and a 4-prompt IOI dataset, within 1e-4 of the largest score; the exact
//! check of every edge is the clean run and of none the corrupted run; the `circuit` block of
//! the spec, its defaults and limits; on the shipped model the known path is found; and the
//! page's view of a circuit (the top k edges drawn, each edge described) says what it holds.

mod common;

use std::collections::HashMap;

use common::*;
use patchbay_model::backend;
use patchbay_model::{Hooks, LogitsAt, read_f32};
use patchbay_patching::circuit::discover::{log_grid, run_circuit};
use patchbay_patching::circuit::draw::{circuit_svg, top_svg};
use patchbay_patching::circuit::edge_runs::EdgeRuns;
use patchbay_patching::circuit::exact::circuit_m;
use patchbay_patching::circuit::forward::{forward, input_embedding};
use patchbay_patching::circuit::graph::Graph;
use patchbay_patching::circuit::results::CircuitResults;
use patchbay_patching::{ExperimentSpec, Progress, RunOptions, prepare};
use serde_json::{Value, json};

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/reference/eap.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reference's spec with `circuit` as its circuit block.
fn reference_spec(circuit: Value) -> ExperimentSpec {
    let mut spec = reference()["spec"].clone();
    spec["circuit"] = circuit;
    ExperimentSpec::from_json(&spec.to_string()).unwrap()
}

fn discover(
    model: &patchbay_model::Gpt2,
    tokenizer: &patchbay_model::Gpt2Tokenizer,
    spec: &ExperimentSpec,
) -> CircuitResults {
    let start = std::time::Instant::now();
    let results = pollster::block_on(run_circuit(
        model,
        tokenizer,
        spec,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap();
    eprintln!("{} in {:.2} s", results.method, start.elapsed().as_secs_f64());
    results
}

/// The largest error of `results`' edge scores against `expected` (by edge name), over the
/// largest |expected score|.
fn relative_error(results: &CircuitResults, expected: &Value) -> f64 {
    let expected: HashMap<String, f64> = expected
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    assert_eq!(expected.len(), results.edges.len(), "the same edges");
    let largest = expected.values().map(|v| v.abs()).fold(0.0, f64::max);
    results
        .edges
        .iter()
        .map(|e| (e.score - expected[&e.name]).abs() / largest)
        .fold(0.0, f64::max)
}

#[test]
fn the_graph_forward_is_the_model_forward() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let graph = Graph::new(model.config.n_layer, model.config.n_head);
    let tokens: Vec<Vec<u32>> = [
        "When Mary and John went to the store, John gave a drink to",
        "The Eiffel Tower is in Paris, the capital",
    ]
    .iter()
    .map(|t| tokenizer.encode(t, true).unwrap()[..10].to_vec())
    .collect();
    let input = input_embedding(&model, &tokens, None).unwrap();
    let (ours, writers) = forward(&model, &graph, input, None, None).unwrap();
    assert_eq!(writers.outputs.len(), graph.writers());
    let theirs = model
        .forward(&tokens, &mut Hooks::none(), LogitsAt::Last)
        .unwrap();
    let [rows, _, vocab] = theirs.dims();
    let gap = (ours - theirs.reshape([rows, vocab])).abs().max();
    let gap = pollster::block_on(read_f32(gap)).unwrap()[0];
    assert!(gap < 1e-4, "{gap}");
}

#[test]
fn eap_matches_transformer_lens_4() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let reference = reference();
    let results = discover(&model, &tokenizer, &reference_spec(json!({})));
    assert_eq!(results.method, "eap");
    assert_eq!(results.edges.len(), 262);
    let err = relative_error(&results, &reference["eap"]);
    eprintln!("EAP: max error {err:.2e} of the largest score");
    assert!(err < TOL, "{err}");
    let mean = |key: &str| {
        let v = reference[key].as_array().unwrap();
        v.iter().map(|x| x.as_f64().unwrap()).sum::<f64>() / v.len() as f64
    };
    assert!((results.clean_metric - mean("clean_m")).abs() < TOL);
    assert!((results.corrupted_metric - mean("corrupted_m")).abs() < TOL);
}

#[test]
fn eap_ig_matches_the_autograd_reference() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let reference = reference();
    let steps = reference["eap_ig"]["steps"].as_u64().unwrap();
    let results = discover(
        &model,
        &tokenizer,
        &reference_spec(json!({"method": "eap_ig", "ig_steps": steps})),
    );
    assert_eq!(
        (results.method.as_str(), results.steps),
        ("eap_ig", steps as usize)
    );
    let err = relative_error(&results, &reference["eap_ig"]["scores"]);
    eprintln!("EAP-IG ({steps} steps): max error {err:.2e} of the largest score");
    assert!(err < TOL, "{err}");
}

#[test]
fn eap_with_the_qk_fix_matches_the_reference() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let reference = reference();
    let results = discover(&model, &tokenizer, &reference_spec(json!({"qk_fix": true})));
    let err = relative_error(&results, &reference["eap_qk_fix"]);
    eprintln!("EAP with the QK fix: max error {err:.2e} of the largest score");
    assert!(err < TOL, "{err}");
    // The fix moves the edges into queries and keys, and only those.
    let plain = relative_error(&results, &reference["eap"]);
    assert!(plain > 100.0 * TOL, "{plain}");
    for e in &results.edges {
        if !(e.name.ends_with("<q>") || e.name.ends_with("<k>")) {
            let expected = reference["eap"][&e.name].as_f64().unwrap();
            assert!((e.score - expected).abs() < TOL, "{}", e.name);
        }
    }
}

#[test]
fn on_the_shipped_model_the_qk_fix_is_closer_to_exact_patching() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let text = std::fs::read_to_string(root().join("examples/circuit_ioi.json")).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    let graph = Graph::new(model.config.n_layer, model.config.n_head);
    let n = graph.edges.len();
    let mut errors = Vec::new();
    let mut scores = Vec::new();
    for qk_fix in [false, true] {
        spec["circuit"] = json!({"method": "eap", "qk_fix": qk_fix, "checked": n});
        let results = discover(
            &model,
            &tokenizer,
            &ExperimentSpec::from_json(&spec.to_string()).unwrap(),
        );
        let qk: Vec<f64> = results
            .edges
            .iter()
            .filter(|e| e.name.ends_with("<q>") || e.name.ends_with("<k>"))
            .map(|e| (e.score - e.exact.unwrap()).abs())
            .collect();
        let mean = qk.iter().sum::<f64>() / qk.len() as f64;
        let worst = qk.iter().cloned().fold(0.0, f64::max);
        eprintln!(
            "qk_fix {qk_fix}: {} edges into queries and keys, mean |attribution − exact| {mean:.4}, largest {worst:.4}",
            qk.len()
        );
        errors.push(mean);
        let by_name: HashMap<String, f64> = results.edges.iter().map(|e| (e.name.clone(), e.score)).collect();
        scores.push(by_name);
    }
    assert!(errors[1] < errors[0], "{errors:?}");
    // The other edges keep their linear scores.
    for (name, score) in &scores[0] {
        if !(name.ends_with("<q>") || name.ends_with("<k>")) {
            assert!((score - scores[1][name]).abs() < 1e-9, "{name}");
        }
    }
}

#[test]
fn exact_circuits_match_transformer_lens_faithfulness() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let reference = reference();
    let spec = reference_spec(json!({}));
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).unwrap();
    let graph = Graph::new(model.config.n_layer, model.config.n_head);
    let inputs: Vec<_> = (0..prepared.prompts.len())
        .map(|i| prepared.input(&model, i, None))
        .collect();
    let runs = pollster::block_on(EdgeRuns::new(&model, &graph, &inputs, spec.metric.kind)).unwrap();
    let mut worst: f64 = 0.0;
    for circuit in reference["circuits"].as_array().unwrap() {
        let mut kept = vec![false; graph.edges.len()];
        for name in circuit["edges"].as_array().unwrap() {
            kept[graph.find(name.as_str().unwrap()).unwrap()] = true;
        }
        let ours = pollster::block_on(circuit_m(&model, &graph, &runs, &kept)).unwrap();
        for (a, b) in ours.iter().zip(circuit["m"].as_array().unwrap()) {
            let b = b.as_f64().unwrap();
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    eprintln!("exact circuits: max error {worst:.2e}");
    assert!(worst < TOL, "{worst}");
}

#[test]
fn every_edge_is_the_clean_run_and_none_the_corrupted_run() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let results = discover(&model, &tokenizer, &reference_spec(json!({"keep": {"top": 262}})));
    let grid: Vec<usize> = results.curve.iter().map(|p| p.edges).collect();
    assert_eq!(grid, log_grid(262));
    assert_eq!(grid, vec![0, 1, 2, 5, 10, 20, 50, 100, 200, 262]);
    let (none, all) = (&results.curve[0], results.curve.last().unwrap());
    eprintln!(
        "k = 0: {:.2e}, k = all: 1 {:+.2e}",
        none.faithfulness,
        all.faithfulness - 1.0
    );
    assert!(none.faithfulness.abs() < TOL, "{}", none.faithfulness);
    assert!((all.faithfulness - 1.0).abs() < TOL, "{}", all.faithfulness);
    assert!((none.metric - results.corrupted_metric).abs() < TOL);
    assert!((all.metric - results.clean_metric).abs() < TOL);
    assert_eq!(results.circuit.faithfulness, all.faithfulness);
    // The best-scored edges are checked exactly, and the disagreements are among them.
    let checked = results.edges.iter().filter(|e| e.exact.is_some()).count();
    assert_eq!(checked, 50);
    assert!(results.edges[..50].iter().all(|e| e.exact.is_some()));
    assert_eq!(results.disagreements.len(), 10);
    let d = &results.disagreements;
    assert!(
        d.windows(2)
            .all(|w| w[0].difference.abs() >= w[1].difference.abs())
    );
}

#[test]
fn the_circuit_block_round_trips_with_its_defaults_left_out() {
    let base = reference()["spec"].clone();
    let with = |circuit: Value| {
        let mut spec = base.clone();
        spec["circuit"] = circuit;
        spec.to_string()
    };
    for circuit in [
        json!({}),
        json!({"method": "eap_ig"}),
        json!({"method": "eap_ig", "ig_steps": 12}),
        json!({"keep": {"threshold": 0.5}, "checked": 3}),
        json!({"keep": {"top": 7}}),
        json!({"qk_fix": true, "checked": 0}),
    ] {
        let spec = ExperimentSpec::from_json(&with(circuit.clone())).unwrap();
        let text = spec.to_json();
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(written["circuit"], circuit, "canonical: defaults left out");
        assert_eq!(ExperimentSpec::from_json(&text).unwrap(), spec);
        assert_eq!(
            ExperimentSpec::from_json(&text).unwrap().to_json(),
            text,
            "byte for byte"
        );
    }
    // Defaults written out read back as the canonical spec.
    let spelled = ExperimentSpec::from_json(&with(
        json!({"method": "eap", "ig_steps": 5, "keep": {"top": 100}, "checked": 50, "qk_fix": false}),
    ))
    .unwrap();
    let written: Value = serde_json::from_str(&spelled.to_json()).unwrap();
    assert_eq!(written["circuit"], json!({}));
    // Without a block, none is written.
    let mut plain = base.clone();
    plain.as_object_mut().unwrap().remove("circuit");
    let plain = ExperimentSpec::from_json(&plain.to_string()).unwrap();
    assert!(!plain.to_json().contains("circuit"));
}

#[test]
fn the_circuit_block_is_bounded_where_it_is_parsed() {
    let base = reference()["spec"].clone();
    for (circuit, field, limit) in [
        (
            json!({"method": "eap_ig", "ig_steps": 0}),
            "circuit.ig_steps",
            "1 to 100",
        ),
        (
            json!({"method": "eap_ig", "ig_steps": 101}),
            "circuit.ig_steps",
            "1 to 100",
        ),
        (json!({"ig_steps": 3}), "circuit.ig_steps", "eap_ig"),
        (json!({"keep": {"top": 2_000_000}}), "circuit.keep.top", "1048576"),
        (
            json!({"keep": {"threshold": -1.0}}),
            "circuit.keep.threshold",
            "at least 0",
        ),
        (json!({"checked": 5000}), "circuit.checked", "1024"),
        (
            json!({"method": "eap_ig", "qk_fix": true}),
            "circuit.qk_fix",
            "`\"method\": \"eap\"` only",
        ),
    ] {
        let mut spec = base.clone();
        spec["circuit"] = circuit.clone();
        let err = ExperimentSpec::from_json(&spec.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("`{field}`")) && err.contains(limit),
            "{circuit}: {err}"
        );
    }
    let mut spec = base.clone();
    spec["circuit"] = json!({"method": "acdc"});
    assert!(ExperimentSpec::from_json(&spec.to_string()).is_err());
    spec["circuit"] = json!({"qk": true});
    let err = ExperimentSpec::from_json(&spec.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("qk"), "{err}");
    // More edges than the model's graph has: refused when the model is known.
    let (model, tokenizer) = tiny(&backend::cpu());
    let spec = reference_spec(json!({"keep": {"top": 263}}));
    let err = pollster::block_on(run_circuit(
        &model,
        &tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`circuit.keep.top`") && err.contains("262 edges"),
        "{err}"
    );
}

/// Faithfulness of the circuit `names` over the prompts of `spec` (ratio of means).
fn faithfulness_of(
    model: &patchbay_model::Gpt2,
    tokenizer: &patchbay_model::Gpt2Tokenizer,
    spec: &ExperimentSpec,
    circuits: &[Vec<usize>],
) -> Vec<f64> {
    let prepared = pollster::block_on(prepare(model, tokenizer, spec)).unwrap();
    let graph = Graph::new(model.config.n_layer, model.config.n_head);
    let inputs: Vec<_> = (0..prepared.prompts.len())
        .map(|i| prepared.input(model, i, None))
        .collect();
    let runs = pollster::block_on(EdgeRuns::new(model, &graph, &inputs, spec.metric.kind)).unwrap();
    circuits
        .iter()
        .map(|edges| {
            let mut kept = vec![false; graph.edges.len()];
            for &e in edges {
                kept[e] = true;
            }
            let m = pollster::block_on(circuit_m(model, &graph, &runs, &kept)).unwrap();
            patchbay_patching::circuit::discover::faithfulness(
                spec.metric.normalize,
                &m,
                &runs.clean.m,
                &runs.corrupted.m,
            )
        })
        .collect()
}

#[test]
fn on_the_shipped_model_eap_ig_finds_the_known_path() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let text = std::fs::read_to_string(root().join("examples/circuit_ioi.json")).unwrap();
    let spec = ExperimentSpec::from_json(&text).unwrap();
    let results = discover(&model, &tokenizer, &spec);
    let graph = Graph::new(model.config.n_layer, model.config.n_head);
    let top: Vec<&str> = results.edges[..20].iter().map(|e| e.name.as_str()).collect();
    eprintln!("top 20: {top:?}");
    eprintln!(
        "circuit of {}: faithfulness {:.3}; curve {:?}",
        results.circuit.edges,
        results.circuit.faithfulness,
        results
            .curve
            .iter()
            .map(|p| (p.edges, (p.faithfulness * 1000.0).round() / 1000.0))
            .collect::<Vec<_>>()
    );
    // Head 0.0 into the values of the movers 1.0 and 1.1, and the movers into the logits.
    for edge in [
        "a0.h0->a1.h0<v>",
        "a0.h0->a1.h1<v>",
        "a1.h0->logits",
        "a1.h1->logits",
    ] {
        assert!(top.contains(&edge), "{edge} not in {top:?}");
    }
    assert!(
        results.circuit.faithfulness >= 0.8,
        "{}",
        results.circuit.faithfulness
    );
    // Random circuits of the same size recover far less.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut random = Vec::new();
    for _ in 0..20 {
        let mut edges: Vec<usize> = (0..graph.edges.len()).collect();
        for i in (1..edges.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            edges.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        edges.truncate(results.circuit.edges);
        random.push(edges);
    }
    let scores = faithfulness_of(&model, &tokenizer, &spec, &random);
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let best = scores.iter().cloned().fold(f64::MIN, f64::max);
    eprintln!(
        "random circuits of {} edges: mean faithfulness {mean:.3}, best {best:.3}",
        results.circuit.edges
    );
    assert!(
        mean < 0.3 && best < results.circuit.faithfulness - 0.3,
        "{scores:?}"
    );
}

#[test]
fn the_top_k_drawing_and_the_edge_descriptions_say_what_was_measured() {
    let (model, tokenizer) = embedded(&backend::cpu());
    let text = std::fs::read_to_string(root().join("examples/circuit_ioi.json")).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    spec["dataset"]["n"] = json!(4);
    spec["circuit"] = json!({"keep": {"top": 12}, "checked": 6});
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let results = discover(&model, &tokenizer, &spec);
    let n = results.edges.len();
    let ranks = |svg: &str| -> Vec<usize> {
        svg.split("<line data-rank=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
            .collect()
    };
    for k in [1, 3, 5, 12, n] {
        let svg = top_svg(&results, k);
        let mut drawn = ranks(&svg);
        drawn.sort();
        assert_eq!(drawn, (1..=k).collect::<Vec<_>>(), "k = {k}");
        let measured = results.faithfulness_at(k);
        match measured {
            Some(f) => assert!(
                svg.contains(&format!("top {k} of {n} edges, faithfulness {f:.3}")),
                "k = {k}"
            ),
            None => assert!(svg.contains("faithfulness not measured"), "k = {k}"),
        }
        // On the curve (0, 1, 2, 5, 10, 20, 50, 100) or the circuit's 12, and nowhere else.
        assert_eq!(measured.is_some(), [1, 5, 12, n].contains(&k), "k = {k}");
    }
    assert_eq!(results.faithfulness_at(12), Some(results.circuit.faithfulness));
    // The circuit's own drawing is the top k's at its k, under its own title.
    assert_eq!(ranks(&circuit_svg(&results)), ranks(&top_svg(&results, 12)));
    for e in &results.edges {
        let text = e.describe();
        assert!(text.starts_with(&format!("{} → {}", e.from, e.to)), "{text}");
        assert!(text.contains(&format!("score {:.4e}", e.score)), "{text}");
        match e.exact {
            Some(x) => assert!(text.contains(&format!("exact effect {x:.4e}")), "{text}"),
            None => assert!(text.contains("exact effect not checked"), "{text}"),
        }
        assert_eq!(text.contains("not in the circuit"), !e.in_circuit, "{text}");
        assert_eq!(e.exact.is_some(), e.rank <= 6, "{text}");
    }
    let v = results.edges.iter().find(|e| e.input == "v").unwrap();
    assert!(v.describe().contains("(its value input)"), "{}", v.describe());
    for d in &results.disagreements {
        assert!(d.describe().starts_with(&format!("{}: attribution", d.edge)));
    }
}
