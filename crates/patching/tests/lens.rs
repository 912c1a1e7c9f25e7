//! The logit lens and direct logit attribution against TransformerLens 3.9.0 on the same
//! weights (tests/fixtures/reference/lens.json, from tests/reference/lens_reference.py): on the
//! fixture model (one IOI pair, a 4-prompt dataset, Gaussian noise replayed) and on the shipped
//! model (one pair, a dataset), within 1e-4 in float32, on the CPU and on wgpu. Also: the direct terms sum to the
//! model's own logit difference, prompts of different lengths align by role, and lens results
//! survive JSON and refuse malformed files.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::lens::{LensResults, LensRun, Quantity, Which, run_lens};
use patchbay_patching::{ExperimentSpec, PatchingError, Progress, RunOptions, prepare};
use serde_json::{Value, json};

fn lens(
    model: &patchbay_model::Gpt2,
    tokenizer: &patchbay_model::Gpt2Tokenizer,
    spec: &ExperimentSpec,
    options: &RunOptions,
) -> Result<LensResults, PatchingError> {
    pollster::block_on(run_lens(model, tokenizer, spec, options, &mut |_: &Progress| {
        true
    }))
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        v => vec![v.as_f64().unwrap()],
    }
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/reference/lens.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["cases"]
        .as_array()
        .unwrap()
        .clone()
}

/// A reference run's lens and direct terms as flat lists: (logit r, logit r′, their difference,
/// terms, logit difference).
struct Expected {
    answer: Vec<f64>,
    counter: Vec<f64>,
    diff: Vec<f64>,
    terms: Vec<f64>,
    logit_diff: f64,
}

impl Expected {
    fn of(run: &Value) -> Self {
        let (answer, counter) = (floats(&run["lens_answer"]), floats(&run["lens_counter"]));
        Expected {
            diff: answer.iter().zip(&counter).map(|(a, b)| a - b).collect(),
            answer,
            counter,
            terms: floats(&run["dla"]),
            logit_diff: run["logit_diff"].as_f64().unwrap(),
        }
    }

    fn minus(&self, other: &Expected) -> Expected {
        let sub = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect();
        Expected {
            answer: sub(&self.answer, &other.answer),
            counter: sub(&self.counter, &other.counter),
            diff: sub(&self.diff, &other.diff),
            terms: sub(&self.terms, &other.terms),
            logit_diff: self.logit_diff - other.logit_diff,
        }
    }
}

/// The largest errors of `ours` against `expected`: (lens, DLA), each asserted within TOL.
fn compare(name: &str, ours: &LensRun, expected: &Expected) -> (f64, f64) {
    let terms: Vec<f64> = ours.dla_terms().iter().map(|t| t.1).collect();
    let lens = [
        max_abs_diff(&ours.lens_answer.values, &expected.answer),
        max_abs_diff(&ours.lens_counter.values, &expected.counter),
        max_abs_diff(&ours.lens_logit_diff.values, &expected.diff),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    let dla = max_abs_diff(&terms, &expected.terms).max((ours.logit_diff - expected.logit_diff).abs());
    assert!(lens <= TOL, "{name}: lens off by {lens:e}");
    assert!(dla <= TOL, "{name}: direct terms off by {dla:e}");
    (lens, dla)
}

/// Every reference case on `backend`: the largest errors (lens, DLA), each within TOL.
fn check_cases(backend: &backend::Backend) -> (f64, f64) {
    let (tiny, tiny_tok) = common::tiny(backend);
    let (shipped, shipped_tok) = common::embedded(backend);
    let (mut worst_lens, mut worst_dla) = (0.0f64, 0.0f64);
    let cases = cases();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let name = format!(
            "{} {}",
            case["model"].as_str().unwrap(),
            case["name"].as_str().unwrap()
        );
        let (model, tokenizer) = match case["model"].as_str().unwrap() {
            "tiny" => (&tiny, &tiny_tok),
            _ => (&shipped, &shipped_tok),
        };
        let options = RunOptions {
            noise: case
                .get("noise")
                .map(|n| floats(n).iter().map(|&v| v as f32).collect()),
            ..RunOptions::default()
        };
        let results = lens(model, tokenizer, &spec_of(case), &options).unwrap();
        assert_eq!(
            results.lens_axes[0].labels,
            strings(&case["streams"]),
            "{name}: TransformerLens's stream labels"
        );
        let labels: Vec<String> = results.clean.dla_terms().into_iter().map(|t| t.0).collect();
        assert_eq!(labels, strings(&case["dla_labels"]), "{name}: term labels");
        let prompts = case["spec"]["prompts"].as_array().unwrap().len();
        assert_eq!(results.prompts, prompts);
        let (clean, corrupted) = (Expected::of(&case["clean"]), Expected::of(&case["corrupted"]));
        for (which, ours, expected) in [
            ("clean", &results.clean, &clean),
            ("corrupted", &results.corrupted, &corrupted),
            ("difference", &results.difference, &clean.minus(&corrupted)),
        ] {
            let (l, d) = compare(&format!("{name} {which}"), ours, expected);
            eprintln!("{name} {which}: lens {l:.1e}, DLA {d:.1e}");
            worst_lens = worst_lens.max(l);
            worst_dla = worst_dla.max(d);
        }
    }
    (worst_lens, worst_dla)
}

#[test]
fn lens_and_dla_match_transformer_lens() {
    let (lens, dla) = check_cases(&backend::cpu());
    eprintln!("largest errors against TransformerLens on the CPU: lens {lens:.1e}, DLA {dla:.1e}");
}

#[test]
fn lens_and_dla_match_transformer_lens_on_wgpu() {
    let gpu =
        pollster::block_on(backend::gpu(None)).expect("a Vulkan driver (mesa-vulkan-drivers) for wgpu tests");
    let (lens, dla) = check_cases(&gpu);
    eprintln!("largest errors against TransformerLens on wgpu: lens {lens:.1e}, DLA {dla:.1e}");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Σ terms against the model's logit difference (computed by the forward pass, not from the
/// hooks), and the lens's last stream at the last position against it too.
fn check_sum(name: &str, run: &LensRun, lens_too: bool) -> f64 {
    let sum: f64 = run.dla_terms().iter().map(|t| t.1).sum();
    let err = (sum - run.logit_diff).abs();
    assert!(
        err <= TOL,
        "{name}: the direct terms sum to {sum}, the logit difference is {}",
        run.logit_diff
    );
    if lens_too {
        let last = run.lens_logit_diff.values[run.lens_logit_diff.values.len() - 1];
        assert!(
            (last - run.logit_diff).abs() <= TOL,
            "{name}: final_post {last} vs {}",
            run.logit_diff
        );
    }
    err
}

#[test]
fn the_direct_terms_sum_to_the_logit_difference() {
    let cpu = backend::cpu();
    let (model, tokenizer) = common::embedded(&cpu);
    for case in cases().iter().filter(|c| c["model"] == "patchbay-ioi") {
        let results = lens(&model, &tokenizer, &spec_of(case), &RunOptions::default()).unwrap();
        for which in Which::ALL {
            let run = results.run(which);
            check_sum(&format!("{} {which:?}", case["name"]), run, true);
            // Not a trivial identity: several terms matter.
            let big = run
                .dla_terms()
                .iter()
                .filter(|t| t.1.abs() > 0.05 * run.logit_diff.abs())
                .count();
            assert!(big >= 3, "{which:?}: only {big} terms carry the logit difference");
        }
        // Head 0.0, which patching finds, writes under a tenth of it directly: it acts through
        // layer 1 (an indirect effect).
        let (heads, ld) = (&results.clean.dla_heads.values, results.clean.logit_diff);
        let layer1 = heads[2] + heads[3];
        assert!(layer1 > 0.5 * ld, "heads 1.0 and 1.1 write {layer1} of {ld}");
        assert!(heads[0].abs() < 0.1 * ld, "head 0.0 writes {} of {ld}", heads[0]);
    }
}

fn ioi_all_templates(n: usize) -> ExperimentSpec {
    let spec = json!({
        "version": 1,
        "model": {"embedded": "patchbay-ioi"},
        "prompts": [],
        "dataset": {"task": "ioi", "n": n, "seed": 3, "names": "s2", "template": "all"},
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": true},
        "target": {"component": "resid_pre", "positions": "each"}
    });
    ExperimentSpec::from_json(&spec.to_string()).unwrap()
}

#[test]
fn prompts_of_different_lengths_align_by_role() {
    let cpu = backend::cpu();
    let (model, tokenizer) = common::embedded(&cpu);
    let spec = ioi_all_templates(8);
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).unwrap();
    let lengths: std::collections::BTreeSet<usize> = prepared.prompts.iter().map(|p| p.clean.len()).collect();
    assert!(lengths.len() > 2, "templates of several lengths: {lengths:?}");
    let results = lens(&model, &tokenizer, &spec, &RunOptions::default()).unwrap();
    assert_eq!(results.lens_axes[1].name, "role");
    assert_eq!(results.lens_axes[1].labels, prepared.labels);
    let roles = prepared.labels.len();
    let streams = model.config.n_layer + 1;

    // Each prompt alone, then averaged by hand over the prompts that have each role.
    let mut sums = vec![0.0; streams * roles];
    let mut counts = vec![0usize; roles];
    let mut heads = vec![0.0; results.clean.dla_heads.values.len()];
    for (pair, p) in prepared.spec.prompts.iter().zip(&prepared.prompts) {
        let mut one = prepared.spec.clone();
        one.prompts = vec![pair.clone()];
        let alone = lens(&model, &tokenizer, &one, &RunOptions::default()).unwrap();
        check_sum("one prompt", &alone.clean, true);
        check_sum("one prompt, corrupted", &alone.corrupted, true);
        let len = p.clean.len();
        for s in 0..streams {
            for (pos, &role) in p.role_of.iter().enumerate() {
                sums[s * roles + role] += alone.clean.lens_logit_diff.values[s * len + pos];
            }
        }
        for &role in &p.role_of {
            counts[role] += 1;
        }
        for (h, v) in heads.iter_mut().zip(&alone.clean.dla_heads.values) {
            *h += v / prepared.prompts.len() as f64;
        }
    }
    let expected: Vec<f64> = (0..streams * roles)
        .map(|cell| sums[cell] / counts[cell % roles] as f64)
        .collect();
    assert!(counts.iter().all(|&c| c > 0));
    assert!(
        counts.iter().any(|&c| c < prepared.prompts.len()),
        "some role is template-only"
    );
    let err = max_abs_diff(&results.clean.lens_logit_diff.values, &expected);
    assert!(err <= TOL, "role-aligned lens off by {err:e}");
    let err = max_abs_diff(&results.clean.dla_heads.values, &heads);
    assert!(err <= TOL, "dataset DLA off by {err:e}");
    check_sum("by role", &results.clean, false);
}

#[test]
fn lens_results_round_trip_and_refuse_malformed_files() {
    let cpu = backend::cpu();
    let (model, tokenizer) = common::tiny(&cpu);
    let case = &cases()[0];
    let results = lens(&model, &tokenizer, &spec_of(case), &RunOptions::default()).unwrap();
    let text = serde_json::to_string(&results).unwrap();
    assert_eq!(LensResults::from_json(&text).unwrap(), results);

    let value: Value = serde_json::from_str(&text).unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = value.clone();
        edit(&mut v);
        LensResults::from_json(&v.to_string()).unwrap_err().to_string()
    };
    let err = broken(&|v| v["corrupted"]["dla_heads"] = json!([[1.0, 2.0], [3.0, 4.0]]));
    assert!(
        err.contains("corrupted.dla_heads") && err.contains("[2, 2]"),
        "{err}"
    );
    let err = broken(&|v| v["lens_axes"][0]["labels"] = json!(["0_pre"]));
    assert!(err.contains("accumulated streams"), "{err}");
    let err = broken(&|v| v["clean"]["lens_answer"] = json!([[1.0], [[2.0]]]));
    assert!(err.contains("uneven"), "{err}");
    let err = broken(&|v| v.as_object_mut().unwrap().remove("spec").map(|_| ()).unwrap());
    assert!(err.contains("no `spec`"), "{err}");
    let err = broken(&|v| v["spec"]["version"] = json!(99));
    assert!(err.contains("version 99"), "{err}");
    let long = format!(
        "\"{}\"",
        "x".repeat(patchbay_patching::analysis::results::MAX_RESULTS_BYTES)
    );
    assert!(
        LensResults::from_json(&long)
            .unwrap_err()
            .to_string()
            .contains("larger than")
    );
}

#[test]
fn views_name_every_grid_and_say_what_a_cell_means() {
    let cpu = backend::cpu();
    let (model, tokenizer) = common::embedded(&cpu);
    let case = cases()
        .into_iter()
        .find(|c| c["model"] == "patchbay-ioi")
        .unwrap();
    let results = lens(&model, &tokenizer, &spec_of(&case), &RunOptions::default()).unwrap();
    let views = results.views();
    assert_eq!(views.len(), Quantity::ALL.len() * Which::ALL.len());
    for quantity in Quantity::ALL {
        let of: Vec<_> = views.iter().filter(|v| v.quantity == quantity).collect();
        // One colour scale for clean, corrupted and difference, wide enough for all three.
        assert!(of.iter().all(|v| v.limit == of[0].limit));
        for v in &of {
            let shape: Vec<usize> = v.axes.iter().map(|a| a.labels.len()).collect();
            assert_eq!(v.grid.shape, shape, "{}", v.key);
            assert!(v.grid.values.iter().all(|x| x.abs() <= v.limit), "{}", v.key);
        }
    }
    let view = results.view("lens_logit_diff_difference").unwrap();
    assert_eq!(view.value_label, "logit(\" Mary\") − logit(\" John\")");
    let last = view.grid.values.len() - 1;
    let text = results.meaning(&view.key, last, view.grid.values[last]).unwrap();
    assert!(text.starts_with("Read from the final residual stream"), "{text}");
    assert!(text.contains("clean minus corrupted"), "{text}");
    let head = results.view("dla_heads_clean").unwrap();
    let text = results.meaning(&head.key, 3, head.grid.values[3]).unwrap();
    assert!(text.starts_with("Head 1.1 writes +"), "{text}");
    assert_eq!(results.meaning("dla_heads_clean", 99, 0.0), None);
    assert_eq!(results.meaning("no_such_view", 0, 0.0), None);
}

#[test]
fn both_views_need_a_counter_answer() {
    let cpu = backend::cpu();
    let (model, tokenizer) = common::tiny(&cpu);
    let mut spec = spec_of(&cases()[0]);
    spec.metric.kind = patchbay_patching::MetricKind::Prob;
    spec.prompts[0].counter_answer = None;
    let err = lens(&model, &tokenizer, &spec, &RunOptions::default()).unwrap_err();
    assert!(
        matches!(err, PatchingError::MissingCounterAnswer { prompt: 0, .. }),
        "{err}"
    );
    assert_eq!(err.field(), "counter_answer");
}
