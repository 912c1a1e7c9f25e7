//! Datasets named by a generator, and method sensitivity, on the model that ships with the app
//! (models/patchbay-ioi): the detection table finds its known heads under STR + logit
//! difference.

mod common;

use common::*;
use patchbay_model::{Gpt2Tokenizer, backend, load_gpt2_dir};
use patchbay_patching::analysis::known_circuits::KnownCircuit;
use patchbay_patching::analysis::sensitivity::{Choices, CorruptionChoice, sensitivity};
use patchbay_patching::spec::dataset::IoiNames;
use patchbay_patching::{Direction, ExperimentSpec, MetricKind, Progress, RunOptions};
use serde_json::json;

fn embedded() -> (patchbay_model::Gpt2, Gpt2Tokenizer) {
    let dir = root().join("models/patchbay-ioi");
    (
        load_gpt2_dir(&dir, &backend::cpu().device, None).unwrap(),
        Gpt2Tokenizer::from_dir(&dir).unwrap(),
    )
}

/// The known circuit that ships in patchbay-ioi's folder.
fn patchbay_ioi_circuit(model: &patchbay_model::Gpt2) -> KnownCircuit {
    let text = std::fs::read_to_string(root().join("models/patchbay-ioi/circuits.json")).unwrap();
    KnownCircuit::from_json(&text, &model.config).unwrap()
}

fn ioi_dataset(detect: serde_json::Value) -> ExperimentSpec {
    let spec = json!({
        "version": 1,
        "model": {"embedded": "patchbay-ioi"},
        "prompts": [],
        "dataset": {"task": "ioi", "n": 20, "seed": 2, "names": "s2", "template": 0},
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": true},
        "target": {"component": "z", "positions": "all"},
        "detect": detect
    });
    ExperimentSpec::from_json(&spec.to_string()).unwrap()
}

#[test]
fn a_generated_ioi_dataset_detects_the_known_heads() {
    let (model, tokenizer) = embedded();
    let spec = ioi_dataset(json!({"threshold": 0.2}));
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    assert_eq!(results.spec, spec, "results keep the generator, not 20 prompts");
    assert_eq!(results.dataset.as_ref().unwrap().prompts, 20);
    assert_eq!(results.prompts.len(), 20);
    assert_eq!(results.prompt_grids.len(), 20);
    let mut heads: Vec<Vec<usize>> = results.detected.iter().map(|d| d.index.clone()).collect();
    heads.sort();
    assert_eq!(heads, vec![vec![0, 0], vec![1, 0], vec![1, 1]]);
    // The same generator and seed give the same prompts, so the same numbers.
    assert_eq!(
        run(&model, &tokenizer, &spec, &RunOptions::default()).grid,
        results.grid
    );
    // With six heads, one dominant head inflates σ: the paper's 2σ rule finds nothing here.
    let sigma = run(
        &model,
        &tokenizer,
        &ioi_dataset(json!({"sigma": 2.0})),
        &RunOptions::default(),
    );
    assert!(sigma.detected.is_empty(), "{:?}", sigma.detected);
}

#[test]
fn method_sensitivity_table_jaccard_and_rank_correlation() {
    let (model, tokenizer) = embedded();
    let base = ioi_dataset(json!({"threshold": 0.2}));
    let choices = Choices {
        corruptions: vec![
            CorruptionChoice::Str(Some(IoiNames::S2)),
            CorruptionChoice::Str(Some(IoiNames::S1Io)),
            CorruptionChoice::Gn(Some(IoiNames::S2)),
        ],
        metrics: vec![MetricKind::LogitDiff, MetricKind::Prob],
        directions: vec![Direction::Denoising, Direction::Noising],
        seeds: vec![2],
        samples: 4,
    };
    let mut last = 0;
    let result = pollster::block_on(sensitivity(
        &model,
        &tokenizer,
        &base,
        &choices,
        Some(&patchbay_ioi_circuit(&model).classes),
        &RunOptions::default(),
        &mut |p: &Progress| {
            assert!(p.done >= last && p.done <= p.total, "{} of {}", p.done, p.total);
            last = p.done;
            true
        },
    ))
    .unwrap();
    assert_eq!(result.cases.len(), 12);
    assert_eq!(result.cases[0].label, "STR S2 · logit_diff · denoising");
    let n = result.cases.len();
    for i in 0..n {
        assert_eq!(result.jaccard[i][i], 1.0);
        assert_eq!(result.spearman[i][i], Some(1.0));
        for j in 0..n {
            assert_eq!(result.jaccard[i][j], result.jaccard[j][i]);
        }
    }
    let table = result.table.unwrap();
    assert_eq!(table.len(), 2);
    // STR S2 · logit difference · denoising finds every known head.
    assert_eq!(table[0].detected[0], vec![[0, 0]]);
    assert_eq!(table[1].detected[0], vec![[1, 0], [1, 1]]);
    // Noising finds the same heads (negative effects, same sets).
    assert_eq!(result.cases[1].label, "STR S2 · logit_diff · noising");
    assert_eq!(result.jaccard[0][1], 1.0);
    // GN runs on the S2 token the STR pair changes.
    let gn = &result.cases[8].spec;
    assert!(
        result.cases[8].label.starts_with("GN S2"),
        "{}",
        result.cases[8].label
    );
    assert!(matches!(gn.corruption, patchbay_patching::Corruption::Gn(_)));
}

#[test]
fn factual_recall_keeps_only_facts_the_model_knows() {
    let (model, tokenizer) = embedded();
    let spec = json!({
        "version": 1, "model": {"embedded": "patchbay-ioi"}, "prompts": [],
        "dataset": {"task": "factual", "n": 10},
        "corruption": {"method": "str"}, "metric": {"kind": "logit_diff"},
        "target": {"component": "mlp_out", "positions": "each"}
    });
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let err = pollster::block_on(patchbay_patching::run_experiment(
        &model,
        &tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("knows 0 of the 30 built-in facts"), "{err}");
}
