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

#[test]
fn ioi_over_every_template_has_a_role_axis() {
    let (model, tokenizer) = embedded();
    let mut spec = ioi_dataset(json!({"threshold": 0.2}));
    spec.dataset.as_mut().unwrap().n = 40;
    spec.dataset.as_mut().unwrap().template = patchbay_patching::spec::dataset::Templates::All;
    spec.target = serde_json::from_value(json!({"component": "resid_pre", "positions": "each"})).unwrap();
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    let lengths: std::collections::BTreeSet<usize> = results.prompts.iter().map(|p| p.tokens.len()).collect();
    assert!(lengths.len() > 3, "templates of several lengths: {lengths:?}");
    assert_eq!(results.axes[1].name, "role");
    let roles = &results.axes[1].labels;
    let at = |role: &str| roles.iter().position(|r| r == role).unwrap();
    for role in ["BOS", "IO", "S1", "S1+1", "S2", "END"] {
        assert!(roles.contains(&role.to_string()), "{roles:?}");
    }
    assert!(at("IO") < at("S2") && at("S2") < at("END"), "{roles:?}");
    // Patching the clean residual stream at S2 before layer 0 restores everything (every prompt
    // has S2); the last layer carries it at the end.
    let cell = |layer: usize, role: &str| results.grid.values[layer * roles.len() + at(role)];
    assert!((cell(0, "S2") - 1.0).abs() < 1e-4, "{}", cell(0, "S2"));
    assert!(cell(2, "END") > 0.5, "{}", cell(2, "END"));
    // A role only some templates have is averaged over those; every prompt has a value at END.
    assert!(
        results
            .prompt_grids
            .iter()
            .all(|g| g.values[at("END")].is_finite())
    );
    let lunch = at("␣lunch");
    assert!(results.prompt_grids.iter().any(|g| g.values[lunch].is_nan()));
    assert!(cell(0, "␣lunch").is_finite());
}

#[test]
fn prompts_of_different_lengths_without_roles_are_aligned_from_the_end() {
    let (model, tokenizer) = embedded();
    let spec = json!({
        "version": 1, "model": {"embedded": "patchbay-ioi"},
        "prompts": [
            {"clean": "When Mary and John went to the store, John gave a drink to",
             "corrupted": "When Mary and John went to the store, Mary gave a drink to",
             "answer": " Mary", "counter_answer": " John"},
            {"clean": "Then, Anna and Tom went to the park. Tom gave a ball to",
             "corrupted": "Then, Anna and Tom went to the park. Anna gave a ball to",
             "answer": " Anna", "counter_answer": " Tom"}
        ],
        "corruption": {"method": "str"}, "metric": {"kind": "logit_diff"},
        "target": {"component": "resid_pre", "positions": "each"}
    });
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let results = run(&model, &tokenizer, &spec, &RunOptions::default());
    let roles = &results.axes[1].labels;
    assert_eq!(roles.first().map(String::as_str), Some("BOS"));
    assert_eq!(roles.last().map(String::as_str), Some("END"));
    assert!(roles.contains(&"END-4".to_string()), "{roles:?}");
    // S2 is four tokens before the end in both.
    let s2 = roles.iter().position(|r| r == "END-4").unwrap();
    assert!((results.grid.values[s2] - 1.0).abs() < 1e-4);

    // Positions mean different tokens in prompts of different lengths: refused, with a reason.
    let mut listed = spec.clone();
    listed.target.positions = patchbay_patching::Choice::These(vec![3]);
    let err = pollster::block_on(patchbay_patching::run_experiment(
        &model,
        &tokenizer,
        &listed,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("different lengths"), "{err}");
}

#[test]
fn sensitivity_reports_how_stable_each_detected_set_is_across_seeds() {
    let (model, tokenizer) = embedded();
    let base = ioi_dataset(json!({"threshold": 0.2}));
    let choices = Choices {
        corruptions: vec![
            CorruptionChoice::Str(Some(IoiNames::S2)),
            CorruptionChoice::Gn(Some(IoiNames::S2)),
        ],
        metrics: vec![MetricKind::LogitDiff],
        directions: vec![Direction::Denoising],
        seeds: vec![0, 1, 2],
        samples: 4,
    };
    let result = pollster::block_on(sensitivity(
        &model,
        &tokenizer,
        &base,
        &choices,
        None,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap();
    assert_eq!(result.cases.len(), 6);
    let settings: Vec<&str> = result.stability.iter().map(|s| s.setting.as_str()).collect();
    assert_eq!(
        settings,
        [
            "STR S2 · logit_diff · denoising",
            "GN S2 · logit_diff · denoising"
        ]
    );
    for (g, s) in result.stability.iter().enumerate() {
        assert_eq!(s.seeds, vec![0, 1, 2]);
        assert_eq!(s.cases, vec![3 * g, 3 * g + 1, 3 * g + 2]);
        for (&i, seed) in s.cases.iter().zip(&s.seeds) {
            assert!(result.cases[i].label.ends_with(&format!("seed {seed}")));
        }
        // The pairwise Jaccard similarities are those of the sensitivity's own matrix.
        let pairs: Vec<f64> = [(0, 1), (0, 2), (1, 2)]
            .iter()
            .map(|&(a, b)| result.jaccard[s.cases[a]][s.cases[b]])
            .collect();
        assert!((s.jaccard_mean - pairs.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert_eq!(s.jaccard_min, pairs.iter().copied().fold(1.0, f64::min));
        // Each component's fraction is the share of seeds whose case detected it.
        for f in &s.components {
            let hits = s
                .cases
                .iter()
                .filter(|&&i| result.cases[i].detected.contains(&f.cell))
                .count();
            assert_eq!(f.fraction, hits as f64 / 3.0, "{:?}", f.index);
            assert_eq!(f.index, vec![f.cell / 2, f.cell % 2]);
        }
        let detected_somewhere: std::collections::BTreeSet<usize> = s
            .cases
            .iter()
            .flat_map(|&i| result.cases[i].detected.iter().copied())
            .collect();
        assert_eq!(detected_somewhere.len(), s.components.len());
    }
    // STR S2 with logit difference finds the three known heads under every seed.
    let str_s2 = &result.stability[0];
    let always: Vec<Vec<usize>> = str_s2
        .components
        .iter()
        .filter(|f| f.fraction == 1.0)
        .map(|f| f.index.clone())
        .collect();
    assert_eq!(always, vec![vec![0, 0], vec![1, 0], vec![1, 1]], "{str_s2:?}");
    assert_eq!(str_s2.jaccard_mean, 1.0);
    // One seed: nothing to compare.
    let one = Choices {
        seeds: vec![2],
        ..choices
    };
    let single = pollster::block_on(sensitivity(
        &model,
        &tokenizer,
        &base,
        &one,
        None,
        &RunOptions::default(),
        &mut |_: &Progress| true,
    ))
    .unwrap();
    assert!(single.stability.is_empty());
}
