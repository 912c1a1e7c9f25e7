//! Shared by the patching tests: the fixture model and the TransformerLens reference cases.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use patchbay_model::backend::Backend;
use patchbay_model::{Gpt2, Gpt2Tokenizer, load_gpt2_dir};
use patchbay_patching::{ExperimentSpec, Progress, Results, RunOptions, run_experiment};
use safetensors::SafeTensors;
use serde_json::{Value, json};

pub const TOL: f64 = 1e-4;

/// IOI on the tiny fixture (15 tokens with BOS, S2 at position 10 corrupted by STR): normalized
/// logit difference, resid_pre at each position.
pub fn ioi_spec() -> Value {
    json!({
        "version": 1,
        "model": {"local": "tests/fixtures/models/tiny"},
        "prompts": [{
            "clean": "When Mary and John went to the store, John gave a drink to",
            "corrupted": "When Mary and John went to the store, Mary gave a drink to",
            "answer": " Mary",
            "counter_answer": " John"
        }],
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": true},
        "direction": "denoising",
        "target": {"component": "resid_pre", "positions": "each"}
    })
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(dir: PathBuf, backend: &Backend) -> (Gpt2, Gpt2Tokenizer) {
    (
        load_gpt2_dir(&dir, &backend.device, backend.max_binding_bytes).unwrap(),
        Gpt2Tokenizer::from_dir(&dir).unwrap(),
    )
}

pub fn tiny(backend: &Backend) -> (Gpt2, Gpt2Tokenizer) {
    load(root().join("tests/fixtures/models/tiny"), backend)
}

/// The model the app ships (trained by `patchbay train`).
pub fn embedded(backend: &Backend) -> (Gpt2, Gpt2Tokenizer) {
    load(root().join("models/patchbay-ioi"), backend)
}

/// The reference cases of tests/reference/patching_reference.py.
pub struct Cases {
    pub cases: Vec<Value>,
    bytes: Vec<u8>,
}

impl Cases {
    /// The cases of the fixture model `tiny`.
    pub fn load() -> Self {
        Self::of("tiny")
    }

    /// The cases of one model: tests/fixtures/reference/{model}-patching.{json,safetensors}.
    pub fn of(model: &str) -> Self {
        let dir = root().join("tests/fixtures/reference");
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{model}-patching.json"))).unwrap(),
        )
        .unwrap();
        Cases {
            cases: meta["cases"].as_array().unwrap().clone(),
            bytes: std::fs::read(dir.join(format!("{model}-patching.safetensors"))).unwrap(),
        }
    }

    pub fn tensor(&self, key: &str) -> (Vec<usize>, Vec<f64>) {
        let file = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = file
            .tensor(key)
            .unwrap_or_else(|_| panic!("no reference tensor {key}"));
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect();
        (view.shape().to_vec(), values)
    }

    pub fn named(&self, name: &str) -> &Value {
        self.cases
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    }
}

pub fn spec_of(case: &Value) -> ExperimentSpec {
    ExperimentSpec::from_json(&case["spec"].to_string()).unwrap()
}

pub fn run(model: &Gpt2, tokenizer: &Gpt2Tokenizer, spec: &ExperimentSpec, options: &RunOptions) -> Results {
    pollster::block_on(run_experiment(
        model,
        tokenizer,
        spec,
        options,
        &mut |_: &Progress| true,
    ))
    .unwrap()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "grid sizes differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
