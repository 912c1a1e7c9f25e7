//! The exported scripts, checked by having run them: tests/reference/exports_reference.py ran
//! each TransformerLens 3.9, TransformerLens 4.x and nnsight script of a set of specs on the
//! fixture models and committed the script text and its grid. Here each committed script must
//! be what the exporter writes today for that spec (so the text that ran is the text users get),
//! and each grid must be Patchbay's within 1e-4; each nnsight script that may run on NDIF also
//! ran with `REMOTE = "local"`, nnsight's dry run of the remote path, to the same grid.
//! Gaussian-noise scripts draw their noise from torch, not ChaCha8: their grids are checked for
//! shape only. No Python runs here.

mod common;

use std::collections::BTreeMap;

use common::*;
use patchbay_model::{Gpt2Tokenizer, backend, load_gpt2_dir};
use patchbay_patching::export::Library;
use patchbay_patching::{Corruption, ExperimentSpec, ModelSource, RunOptions, prepare};
use serde_json::Value;

#[test]
fn every_exported_script_ran_and_matches_patchbay() {
    let dir = root().join("tests/fixtures/reference/exports");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exports.json")).unwrap()).unwrap();
    let cpu = backend::cpu();
    let mut errors: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut compared = 0;
    let mut remote = 0;
    for case in index["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let spec = ExperimentSpec::from_json(&case["spec"].to_string()).unwrap();
        let ModelSource::Local(model_dir) = &spec.model else {
            panic!("{name}: the fixture specs load their model from the repository");
        };
        let model_dir = root().join(model_dir);
        let model = load_gpt2_dir(&model_dir, &cpu.device, cpu.max_binding_bytes).unwrap();
        let tokenizer = Gpt2Tokenizer::from_dir(&model_dir).unwrap();
        // What `patchbay export` writes: the script of the prepared spec.
        let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).unwrap();
        let results = run(&model, &tokenizer, &spec, &RunOptions::default());
        let scripts = case["scripts"].as_object().unwrap();
        assert_eq!(scripts.len(), Library::ALL.len(), "{name}: a script per library");
        for library in Library::ALL {
            let lib = library.name();
            let entry = &scripts[lib];
            let ran = std::fs::read_to_string(dir.join(entry["script"].as_str().unwrap())).unwrap();
            assert!(
                ran == library.script(&prepared.spec),
                "{name} {lib}: the committed script is not what the exporter writes now; rerun \
                 tests/reference/exports_reference.py"
            );
            let Some(grid) = entry["grid"].as_object() else {
                // The library has no sweep for the target, and the script says so.
                assert!(ran.contains("grid = None"), "{name} {lib}: no grid");
                continue;
            };
            let shape: Vec<usize> = serde_json::from_value(grid["shape"].clone()).unwrap();
            assert_eq!(shape, results.grid.shape, "{name} {lib}: grid shape");
            if matches!(spec.corruption, Corruption::Gn(_)) {
                continue;
            }
            // nnsight's dry run of the remote path (the session serialized, then run here)
            // gave the same grid.
            if let Some(diff) = entry["remote_local_max_abs_diff"].as_f64() {
                assert!(
                    diff <= 1e-6,
                    "{name} {lib}: REMOTE = \"local\" moved the grid by {diff:e}"
                );
                remote += 1;
            }
            let values: Vec<f64> = serde_json::from_value(grid["values"].clone()).unwrap();
            let err = max_abs_diff(&results.grid.values, &values);
            assert!(err <= TOL, "{name} {lib}: max abs error {err:e}");
            errors.insert((name.to_string(), lib.to_string()), err);
            compared += 1;
        }
    }
    println!("max abs error of each exported script's grid vs Patchbay's:");
    for ((name, lib), err) in &errors {
        println!("  {name:<40} {lib:<8} {err:.2e}");
    }
    assert!(compared >= 40, "only {compared} grids compared");
    assert!(
        remote >= 15,
        "only {remote} nnsight scripts ran through the remote path"
    );
}
