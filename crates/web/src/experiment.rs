//! Experiments in the page: checking a spec as the user edits it, running it with progress and
//! cancellation, and looking inside one patch. Errors reach JavaScript as `Error` objects with a
//! `field` naming the control at fault.

use js_sys::{Function, Promise, Reflect};
use patchbay_patching::analysis::sensitivity::{self, Choices};
use patchbay_patching::{
    ExperimentSpec, Grid, Observer, PatchingError, Progress, RunOptions, prepare, run_experiment,
};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::session::{Session, Token};

/// A JavaScript `Error` with the spec field it concerns.
pub(crate) fn field_error(e: PatchingError) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&error, &"field".into(), &e.field().into());
    error.into()
}

fn parse(spec_json: &str) -> Result<ExperimentSpec, JsValue> {
    ExperimentSpec::from_json(spec_json).map_err(field_error)
}

/// A spec's JSON after parsing and re-serialising: unknown versions and fields are errors.
#[wasm_bindgen(js_name = parseSpec)]
pub fn parse_spec(spec_json: &str) -> Result<String, JsValue> {
    Ok(parse(spec_json)?.to_json())
}

#[derive(Serialize)]
struct PromptCheck {
    clean: Vec<Token>,
    corrupted: Option<Vec<Token>>,
    corrupted_positions: Vec<usize>,
    answer: u32,
    counter_answer: Option<u32>,
}

/// Calls the page's progress function, which answers (through a promise, after yielding to the
/// worker's event loop so that a Cancel message can arrive) whether to go on.
struct JsObserver(Function);

impl Observer for JsObserver {
    async fn progress(&mut self, p: &Progress) -> bool {
        // After each group of prompts, the mean so far: `{grid, axes}` as JSON.
        let partial = match &p.partial {
            Some((values, axes)) => {
                let shape: Vec<usize> = axes.iter().map(|a| a.labels.len()).collect();
                let grid = Grid::new(shape, values.clone());
                JsValue::from(serde_json::json!({ "grid": grid, "axes": axes }).to_string())
            }
            None => JsValue::NULL,
        };
        let args = js_sys::Array::of4(&p.done.into(), &p.total.into(), &p.stage.clone().into(), &partial);
        let answer = self.0.apply(&JsValue::NULL, &args);
        match answer {
            Ok(value) => match value.dyn_into::<Promise>() {
                Ok(promise) => JsFuture::from(promise)
                    .await
                    .map(|v| v.is_truthy())
                    .unwrap_or(false),
                Err(value) => value.is_truthy(),
            },
            Err(_) => false,
        }
    }
}

#[wasm_bindgen]
impl Session {
    /// Checks a spec against the loaded model without running it: tokens of each prompt (a
    /// generated dataset is generated), the corrupted positions, the answers' ids.
    pub async fn check(&self, spec_json: String) -> Result<JsValue, JsValue> {
        let spec = parse(&spec_json)?;
        let prepared = prepare(&self.model, &self.tokenizer, &spec)
            .await
            .map_err(field_error)?;
        let checks: Vec<PromptCheck> = prepared
            .prompts
            .into_iter()
            .map(|p| PromptCheck {
                clean: self.tokens(&p.clean),
                corrupted: p.corrupted.as_deref().map(|c| self.tokens(c)),
                corrupted_positions: p.corrupted_positions,
                answer: p.answers.answer,
                counter_answer: p.answers.counter,
            })
            .collect();
        serde_wasm_bindgen::to_value(&checks).map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// Runs a spec; `progress(done, total, stage)` is called between batches and returns a
    /// promise of whether to go on. Resolves to results.json.
    pub async fn run(&self, spec_json: String, progress: Function) -> Result<String, JsValue> {
        let spec = parse(&spec_json)?;
        let mut observer = JsObserver(progress);
        let options = RunOptions {
            budget: self.budget(),
            ..RunOptions::default()
        };
        let results = run_experiment(&self.model, &self.tokenizer, &spec, &options, &mut observer)
            .await
            .map_err(field_error)?;
        serde_json::to_string(&results).map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// The spec's dataset under every combination of `choices` (JSON of
    /// `patchbay_patching::sensitivity::Choices`), with progress as for `run`.
    pub async fn sensitivity(
        &self,
        spec_json: String,
        choices_json: String,
        progress: Function,
    ) -> Result<String, JsValue> {
        let spec = parse(&spec_json)?;
        let choices: Choices = serde_json::from_str(&choices_json)
            .map_err(|e| field_error(PatchingError::Spec(e.to_string())))?;
        let classes = self.circuit.as_ref().map(|c| c.classes.as_slice());
        let options = RunOptions {
            budget: self.budget(),
            ..RunOptions::default()
        };
        let result = sensitivity::sensitivity(
            &self.model,
            &self.tokenizer,
            &spec,
            &choices,
            classes,
            &options,
            &mut JsObserver(progress),
        )
        .await
        .map_err(field_error)?;
        serde_json::to_string(&result).map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// The known head classes of the loaded model, if any: JSON `[{name, heads}]` or null.
    pub fn classes(&self) -> Result<String, JsValue> {
        let classes = self.circuit.as_ref().map(|c| &c.classes);
        serde_json::to_string(&classes).map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// A head's attention pattern in the clean, corrupted and patched runs of one grid cell.
    #[wasm_bindgen(js_name = headPatterns)]
    pub async fn head_patterns(
        &self,
        spec_json: String,
        cell: usize,
        layer: usize,
        head: usize,
    ) -> Result<String, JsValue> {
        let spec = parse(&spec_json)?;
        let patterns =
            patchbay_patching::inspect::head_patterns(&self.model, &self.tokenizer, &spec, cell, layer, head)
                .await
                .map_err(field_error)?;
        serde_json::to_string(&patterns).map_err(|e| JsError::new(&e.to_string()).into())
    }
}
