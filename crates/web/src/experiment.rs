//! Experiments in the page: checking a spec as the user edits it, running it (or its logit lens
//! and direct logit attribution) with progress and cancellation, alone or shared by a pool of
//! workers, and looking inside one patch. Errors reach JavaScript as `Error` objects with a
//! `field` naming the control at fault.

use js_sys::{Float32Array, Function, Object, Promise, Reflect, Uint32Array};
use patchbay_model::{Hooks, LogitsAt, read_f32};
use patchbay_patching::analysis::sensitivity::{self, Choices};
use patchbay_patching::experiment::run_prepared;
use patchbay_patching::export::Library;
use patchbay_patching::lens::run_prepared_lens;
use patchbay_patching::prepare::{CPU_WARNING_SECONDS, Prepared, RunSize};
use patchbay_patching::sweep::share::{Shard, Share};
use patchbay_patching::{ExperimentSpec, Observer, PatchingError, Progress, prepare};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::session::{Session, Token};
use crate::view;

/// A JavaScript `Error` with the spec field it concerns.
pub(crate) fn field_error(e: PatchingError) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&error, &"field".into(), &e.field().into());
    error.into()
}

pub(crate) fn parse(spec_json: &str) -> Result<ExperimentSpec, JsValue> {
    ExperimentSpec::from_json(spec_json).map_err(field_error)
}

/// A spec's JSON after parsing and re-serialising: unknown versions and fields are errors.
#[wasm_bindgen(js_name = parseSpec)]
pub fn parse_spec(spec_json: &str) -> Result<String, JsValue> {
    Ok(parse(spec_json)?.to_json())
}

#[derive(Serialize)]
struct SizeInfo {
    #[serde(flatten)]
    size: RunSize,
    prompts: usize,
    warning_seconds: f64,
}

/// Tells the page a stage has begun (no patch done yet); errs when it answers to stop.
pub(crate) async fn stage(observer: &mut JsObserver, stage: &str) -> Result<(), JsValue> {
    let progress = Progress {
        done: 0,
        total: 0,
        stage: stage.to_string(),
        partial: None,
    };
    if observer.progress(&progress).await {
        Ok(())
    } else {
        Err(field_error(PatchingError::Cancelled))
    }
}

/// The script's own words, when it loads the model from a folder because the library has no
/// name for it: its comment lines from "This experiment ran on" up to the folder's path.
fn folder_note(script: &str) -> Option<String> {
    let lines: Vec<&str> = script.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("# This experiment ran on"))?;
    let note: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| l.starts_with("# "))
        .map(|l| l.trim_start_matches("# "))
        .collect();
    Some(note.join(" "))
}

#[derive(Serialize)]
struct PromptCheck {
    clean: Vec<Token>,
    corrupted: Option<Vec<Token>>,
    corrupted_positions: Vec<usize>,
    answer: u32,
    counter_answer: Option<u32>,
}

/// What a promise from the page resolves to, or `None` when the call throws or it rejects.
async fn settle(answer: Result<JsValue, JsValue>) -> Option<JsValue> {
    match answer.ok()?.dyn_into::<Promise>() {
        Ok(promise) => JsFuture::from(promise).await.ok(),
        Err(value) => Some(value),
    }
}

/// This worker's place in a pool of Web Workers that share a run: `{index, count, exchange}`
/// from the page, where `exchange(call, patches, values)` posts this worker's shard of sweep
/// `call` (a `Uint32Array` of patch indices and a `Float32Array` of their readings) to the
/// others and resolves to theirs, `[{patches, values}]`, or to null once the run is cancelled.
pub(crate) struct JsPool {
    share: Share,
    exchange: Function,
}

impl JsPool {
    fn from_js(pool: &Object) -> Result<JsPool, JsValue> {
        let number = |key: &str| -> Result<usize, JsValue> {
            let x = Reflect::get(pool, &key.into())?.as_f64().unwrap_or(f64::NAN);
            if x.is_finite() && x >= 0.0 && x.fract() == 0.0 {
                Ok(x as usize)
            } else {
                Err(JsError::new(&format!("the pool's {key} is not a whole number")).into())
            }
        };
        let share = Share::new(number("index")?, number("count")?).map_err(field_error)?;
        let exchange = Reflect::get(pool, &"exchange".into())?
            .dyn_into::<Function>()
            .map_err(|_| JsError::new("the pool has no exchange function"))?;
        Ok(JsPool { share, exchange })
    }
}

/// Calls the page's progress function, which answers (through a promise, after yielding to the
/// worker's event loop so that a Cancel message can arrive) whether to go on; and, in a pool,
/// swaps shards through it.
pub(crate) struct JsObserver {
    progress: Function,
    pool: Option<JsPool>,
}

impl JsObserver {
    pub(crate) fn new(progress: Function) -> JsObserver {
        JsObserver { progress, pool: None }
    }
}

impl Observer for JsObserver {
    async fn progress(&mut self, p: &Progress) -> bool {
        // After each group of prompts, the mean so far, drawn (by the pool's first worker: the
        // others hold the same).
        let partial = match &p.partial {
            Some((values, axes)) if self.share().counts_common() => {
                JsValue::from(view::partial(values.clone(), axes.clone(), &p.stage))
            }
            _ => JsValue::NULL,
        };
        let args = js_sys::Array::of4(&p.done.into(), &p.total.into(), &p.stage.clone().into(), &partial);
        settle(self.progress.apply(&JsValue::NULL, &args))
            .await
            .is_some_and(|v| v.is_truthy())
    }

    fn share(&self) -> Share {
        self.pool.as_ref().map_or(Share::ALONE, |p| p.share)
    }

    async fn exchange(&mut self, call: usize, mine: Shard) -> Result<Vec<Shard>, PatchingError> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| PatchingError::Peer("this run has no pool to exchange with".into()))?;
        let (patches, values) = mine.to_flat();
        let answer = pool.exchange.call3(
            &JsValue::NULL,
            &call.into(),
            &Uint32Array::from(&patches[..]),
            &Float32Array::from(&values[..]),
        );
        // Null: the run was cancelled; a throw or a rejection: the page could not pass shards.
        let shards = match settle(answer).await {
            None => {
                return Err(PatchingError::Peer(
                    "the page could not pass this worker's shard to the others".into(),
                ));
            }
            Some(v) if v.is_null() || v.is_undefined() => return Err(PatchingError::Cancelled),
            Some(v) => v,
        };
        let shards = shards
            .dyn_into::<js_sys::Array>()
            .map_err(|_| PatchingError::Peer("the shards are not a list".into()))?;
        let array = |shard: &JsValue, key: &str| Reflect::get(shard, &key.into()).ok();
        shards
            .iter()
            .map(|shard| {
                let patches = array(&shard, "patches").and_then(|a| a.dyn_into::<Uint32Array>().ok());
                let values = array(&shard, "values").and_then(|a| a.dyn_into::<Float32Array>().ok());
                match (patches, values) {
                    (Some(p), Some(v)) => Shard::from_flat(&p.to_vec(), &v.to_vec()),
                    _ => Err(PatchingError::Peer(
                        "a shard is not {patches: Uint32Array, values: Float32Array}".into(),
                    )),
                }
            })
            .collect()
    }
}

impl Session {
    /// The first steps of every long command: the spec parsed and its prompts prepared (a stage
    /// reported through `progress`), with the observer that reports the rest.
    pub(crate) async fn start(
        &self,
        spec_json: &str,
        progress: Function,
    ) -> Result<(ExperimentSpec, Prepared, JsObserver), JsValue> {
        let spec = parse(spec_json)?;
        let mut observer = JsObserver::new(progress);
        stage(&mut observer, "preparing the prompts").await?;
        let prepared = prepare(&self.model, &self.tokenizer, &spec)
            .await
            .map_err(field_error)?;
        Ok((spec, prepared, observer))
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

    /// How big the run of a spec is (patches, rows, tokens, estimated CPU seconds), to warn
    /// before a long run on the CPU: JSON.
    pub async fn size(&self, spec_json: String) -> Result<String, JsValue> {
        let spec = parse(&spec_json)?;
        let prepared = prepare(&self.model, &self.tokenizer, &spec)
            .await
            .map_err(field_error)?;
        let size = prepared.size(&self.model).map_err(field_error)?;
        serde_json::to_string(&SizeInfo {
            size,
            prompts: prepared.prompts.len(),
            warning_seconds: CPU_WARNING_SECONDS,
        })
        .map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// Runs a spec; `progress(done, total, stage, partial)` is called between batches and
    /// returns a promise of whether to go on. Before the first patch it reports its own stages:
    /// preparing the prompts, and on WebGPU's first run compiling the GPU kernels (a warm-up
    /// pass). With `pool` (`{index, count, exchange}`, see `JsPool`) this worker runs its part
    /// of each sweep and reports its own progress; every worker of the pool resolves to the
    /// same results.json as a run alone.
    pub async fn run(
        &self,
        spec_json: String,
        progress: Function,
        pool: Option<Object>,
    ) -> Result<String, JsValue> {
        let pool = pool.as_ref().map(JsPool::from_js).transpose()?;
        let (spec, prepared, mut observer) = self.start(&spec_json, progress).await?;
        observer.pool = pool;
        if self.on_gpu && !self.warm.get() {
            stage(&mut observer, "compiling GPU kernels (the first run only)").await?;
            let tokens = prepared.prompts[0].clean.clone();
            let logits = self
                .model
                .forward(&[tokens], &mut Hooks::none(), LogitsAt::Last)
                .map_err(|e| field_error(e.into()))?;
            read_f32(logits).await.map_err(|e| field_error(e.into()))?;
            self.warm.set(true);
        }
        stage(&mut observer, "clean and corrupted runs").await?;
        let results = run_prepared(
            &self.model,
            &self.tokenizer,
            &spec,
            &prepared,
            &self.run_options(),
            &mut observer,
        )
        .await
        .map_err(field_error)?;
        serde_json::to_string(&results).map_err(|e| JsError::new(&e.to_string()).into())
    }

    /// A Python script that reproduces the spec in `to`: "tl3" (TransformerLens 3.9), "tl4"
    /// (TransformerLens 4.x) or "nnsight" (locally or on NDIF), written from the prepared spec
    /// (a generated dataset's prompts written out). JSON `{script, named, note}`: `named` is
    /// false when the library cannot load the model by name, and `note` then says how the
    /// script loads it.
    #[wasm_bindgen(js_name = exportScript)]
    pub async fn export_script(&self, spec_json: String, to: String) -> Result<String, JsValue> {
        let library = Library::from_name(&to).ok_or_else(|| {
            JsValue::from(JsError::new(&format!(
                "no export to `{to}`: use tl3, tl4 or nnsight"
            )))
        })?;
        let spec = parse(&spec_json)?;
        let prepared = prepare(&self.model, &self.tokenizer, &spec)
            .await
            .map_err(field_error)?;
        let script = library.script(&prepared.spec);
        let note = folder_note(&script);
        Ok(serde_json::json!({
            "script": script,
            "named": note.is_none(),
            "note": note,
        })
        .to_string())
    }

    /// The logit lens and direct logit attribution of the spec's clean and corrupted runs, with
    /// progress as for `run`. Resolves to JSON `{results, views}`: lens.json as the CLI writes
    /// it, and each of its views with its grid, axes, label, title and colour limit.
    pub async fn lens(&self, spec_json: String, progress: Function) -> Result<String, JsValue> {
        let (spec, prepared, mut observer) = self.start(&spec_json, progress).await?;
        let results = run_prepared_lens(&self.model, &spec, &prepared, &self.run_options(), &mut observer)
            .await
            .map_err(field_error)?;
        serde_json::to_string(&serde_json::json!({
            "results": &results,
            "views": results.views(),
        }))
        .map_err(|e| JsError::new(&e.to_string()).into())
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
        let result = sensitivity::sensitivity(
            &self.model,
            &self.tokenizer,
            &spec,
            &choices,
            classes,
            &self.run_options(),
            &mut JsObserver::new(progress),
        )
        .await
        .map_err(field_error)?;
        let mut out = serde_json::to_value(&result).map_err(|e| JsError::new(&e.to_string()))?;
        out["stability_view"] = view::stability_view(&result.stability, &result.axes);
        Ok(out.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_patching::ModelSource;

    fn spec(model: ModelSource) -> ExperimentSpec {
        let mut spec = ExperimentSpec::from_json(
            r#"{"version":1,"model":{"embedded":"patchbay-ioi"},"prompts":[{"clean":"a b","corrupted":"a c","answer":" b","counter_answer":" c"}],"corruption":{"method":"str"},"metric":{"kind":"logit_diff"},"target":{"component":"resid_pre"}}"#,
        )
        .unwrap();
        spec.model = model;
        spec
    }

    #[test]
    fn the_export_says_when_the_library_cannot_name_the_model() {
        for library in Library::ALL {
            let shipped = library.script(&spec(ModelSource::Embedded("patchbay-ioi".into())));
            let note = folder_note(&shipped).expect("a folder note");
            assert!(note.starts_with("This experiment ran on patchbay-ioi"), "{note}");
            assert!(note.contains("cannot load it by name"), "{note}");
            let gpt2 = library.script(&spec(ModelSource::Hub("openai-community/gpt2".into())));
            assert_eq!(folder_note(&gpt2), None, "{}", library.name());
        }
    }
}
