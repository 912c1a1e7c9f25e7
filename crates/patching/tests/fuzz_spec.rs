//! Fuzz tests (scripts/fuzz.sh runs them longer): the spec parser, `prepare` on the tiny model
//! and the results decoder take mutated inputs — JSON-aware mutations of real specs and results
//! (numbers to 0, −1, huge and non-finite-looking values, arrays reshaped, fields dropped or
//! duplicated) and byte-level mutations — and answer each with a value or an error, never a
//! panic. `prepare` must also stay bounded: whatever it accepts stays within the limits.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_model::fuzz::{Fuzz, mutate_bytes, mutate_json};
use patchbay_patching::spec::limits::{MAX_GN_SAMPLES, MAX_PERMUTATIONS, MAX_PROMPTS, MAX_RESAMPLES};
use patchbay_patching::{Corruption, ExperimentSpec, Results, RunOptions, prepare};
use serde_json::Value;

/// Words the JSON mutator splices in: the spec's own vocabulary.
const DICTIONARY: &[&str] = &[
    "version",
    "prompts",
    "clean",
    "corrupted",
    "answer",
    "counter_answer",
    "answer_set",
    "counter_set",
    "roles",
    "corruption",
    "method",
    "str",
    "gn",
    "positions",
    "scale",
    "samples",
    "sigma_texts",
    "metric",
    "kind",
    "logit_diff",
    "prob",
    "kl",
    "prob_diff",
    "normalized",
    "normalize",
    "per_prompt",
    "direction",
    "noising",
    "target",
    "component",
    "resid_pre",
    "z",
    "pattern",
    "path",
    "block_every",
    "heads",
    "each",
    "all",
    "receivers",
    "logits",
    "input",
    "window",
    "size",
    "dataset",
    "task",
    "ioi",
    "greater_than",
    "induction",
    "n",
    "template",
    "detect",
    "sigma",
    "threshold",
    "significant",
    "alpha",
    "correction",
    "holm",
    "bh",
    "min_effect",
    "stats",
    "level",
    "resamples",
    "permutations",
    "attribution",
    " Mary",
    " John",
    "<|endoftext|>",
];

/// Every spec of the reference cases, as seeds for mutation.
fn corpus() -> Vec<Value> {
    let mut specs: Vec<Value> = Cases::load().cases.iter().map(|c| c["spec"].clone()).collect();
    for file in std::fs::read_dir(root().join("examples")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        specs.push(serde_json::from_str(&text).unwrap());
    }
    specs
}

fn mutated_spec_text(case: &mut patchbay_model::fuzz::Case, corpus: &[Value]) -> String {
    let mut spec = corpus[case.below(corpus.len())].clone();
    if case.chance(0.8) {
        for _ in 0..1 + case.below(4) {
            mutate_json(case, &mut spec, DICTIONARY);
        }
        spec.to_string()
    } else {
        let mut bytes = spec.to_string().into_bytes();
        let seeds: Vec<Vec<u8>> = corpus
            .iter()
            .take(4)
            .map(|s| s.to_string().into_bytes())
            .collect();
        let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        mutate_bytes(case, &mut bytes, &seeds);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What a parsed spec may never exceed.
fn within_limits(spec: &ExperimentSpec) -> Result<(), String> {
    if spec.prompts.len() > MAX_PROMPTS || spec.dataset.as_ref().is_some_and(|d| d.n > MAX_PROMPTS) {
        return Err("accepted more prompts than the limit".into());
    }
    if let Corruption::Gn(gn) = &spec.corruption
        && (gn.samples > MAX_GN_SAMPLES || !gn.scale.is_finite())
    {
        return Err(format!(
            "accepted noise of {} samples, scale {}",
            gn.samples, gn.scale
        ));
    }
    let stats = &spec.stats;
    if stats.resamples > MAX_RESAMPLES
        || stats.permutations > MAX_PERMUTATIONS
        || !(stats.level > 0.0 && stats.level < 1.0)
    {
        return Err(format!("accepted statistics {stats:?}"));
    }
    Ok(())
}

#[test]
fn fuzz_spec_parser() {
    let corpus = corpus();
    Fuzz::new("fuzz_spec_parser").run(|case| {
        let text = mutated_spec_text(case, &corpus);
        case.note(text.clone());
        match ExperimentSpec::from_json(&text) {
            Ok(spec) => {
                within_limits(&spec)?;
                // What parses re-serializes to a spec that parses to itself.
                let again = ExperimentSpec::from_json(&spec.to_json()).map_err(|e| e.to_string())?;
                (again == spec)
                    .then_some(())
                    .ok_or("did not round-trip".to_string())
            }
            Err(e) if e.to_string().is_empty() => Err("an empty message".into()),
            Err(_) => Ok(()),
        }
    });
}

#[test]
fn fuzz_prepare_on_the_tiny_model() {
    let b = backend::cpu();
    let (model, tokenizer) = tiny(&b);
    let corpus = corpus();
    Fuzz::new("fuzz_prepare_on_the_tiny_model").run(|case| {
        let text = mutated_spec_text(case, &corpus);
        let Ok(spec) = ExperimentSpec::from_json(&text) else {
            return Ok(());
        };
        case.note(text);
        match pollster::block_on(prepare(&model, &tokenizer, &spec)) {
            Ok(prepared) => {
                let size = prepared.size(&model).map_err(|e| e.to_string())?;
                (size.flops <= patchbay_patching::prepare::MAX_RUN_FLOPS)
                    .then_some(())
                    .ok_or_else(|| format!("prepared a run of {:e} flops", size.flops))
            }
            Err(e) if e.to_string().is_empty() => Err("an empty message".into()),
            Err(_) => Ok(()),
        }
    });
}

#[test]
fn fuzz_results_decoder() {
    let b = backend::cpu();
    let (model, tokenizer) = tiny(&b);
    let cases = Cases::load();
    let seeds: Vec<Value> = [
        "dataset4.z.all",
        "str.z.each.logit_diff",
        "window3.mlp_out.prob",
        "attribution.z.all",
    ]
    .iter()
    .map(|name| {
        serde_json::to_value(run(
            &model,
            &tokenizer,
            &spec_of(cases.named(name)),
            &RunOptions::default(),
        ))
        .unwrap()
    })
    .collect();
    Fuzz::new("fuzz_results_decoder").run(|case| {
        let mut doc = seeds[case.below(seeds.len())].clone();
        for _ in 0..1 + case.below(4) {
            mutate_json(
                case,
                &mut doc,
                &[
                    "grid", "axes", "labels", "name", "shape", "detected", "cell", "index", "stats", "se",
                    "ci_low", "p_holm", "prompts",
                ],
            );
        }
        let text = doc.to_string();
        case.note(text.chars().take(400).collect::<String>());
        match Results::from_json(&text) {
            // What decodes can be shown: every view, title and cell sentence.
            Ok(results) => {
                for view in results.views() {
                    let _ = results.csv(view.grid);
                    let _ = patchbay_patching::export::heatmap::svg(
                        view.grid,
                        &results.axes,
                        &view.title,
                        &view.value_label,
                        view.limit,
                    );
                }
                for cell in [0, results.grid.values.len() - 1] {
                    let _ = results.meaning("grid", cell, results.grid.values[cell]);
                    let _ = results.uncertainty(cell);
                }
                Ok(())
            }
            Err(e) if e.to_string().is_empty() => Err("an empty message".into()),
            Err(_) => Ok(()),
        }
    });
}
