//! Circuit discovery in the page: `Session.circuit` finds and checks the circuit of a spec (its
//! `circuit` block) with progress and cancellation, as `patchbay circuit` does, and hands back a
//! [`CircuitView`] that holds the results for the page to draw: circuit.json as the CLI writes
//! it, the SVG of the top k edges (`draw.rs`, the CLI's drawing), each edge's hover text, the
//! faithfulness curve and the disagreements in words. The page draws nothing itself.

use js_sys::Function;
use patchbay_patching::PatchingError;
use patchbay_patching::circuit::discover::run_prepared_circuit;
use patchbay_patching::circuit::draw::{curve_svg, top_svg};
use patchbay_patching::circuit::results::CircuitResults;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::experiment::field_error;
use crate::session::Session;

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A circuit found in the page, kept for drawing it at any k.
#[wasm_bindgen]
pub struct CircuitView {
    results: CircuitResults,
}

#[wasm_bindgen]
impl Session {
    /// Finds the circuit of the spec by edge attribution and checks it by exact patching, with
    /// progress as for `run`; the same results as `patchbay circuit --json`.
    pub async fn circuit(&self, spec_json: String, progress: Function) -> Result<CircuitView, JsValue> {
        let (spec, prepared, mut observer) = self.start(&spec_json, progress).await?;
        let results = run_prepared_circuit(&self.model, &spec, &prepared, &self.run_options(), &mut observer)
            .await
            .map_err(field_error)?;
        Ok(CircuitView { results })
    }
}

#[wasm_bindgen]
impl CircuitView {
    /// circuit.json as `patchbay circuit --json` prints it.
    pub fn json(&self) -> Result<String, JsValue> {
        serde_json::to_string_pretty(&self.results).map_err(js_err)
    }

    /// JSON `{results, text, edges, kept, curve_svg, disagreements}`: the results, the circuit's
    /// check in words, how many edges the graph has and the circuit keeps, the faithfulness
    /// curve drawn, and each disagreement between attribution and exact patching in words.
    pub fn summary(&self) -> Result<String, JsValue> {
        let r = &self.results;
        let steps = if r.method == "eap_ig" {
            format!(" ({} steps)", r.steps)
        } else {
            String::new()
        };
        let text = format!(
            "{}{steps} over {} prompt{}: the circuit keeps {} of {} edges, faithfulness {:.4} (mean {} {:.4} clean, {:.4} corrupted, {:.4} with every edge outside the circuit corrupted).",
            r.method.to_uppercase().replace('_', "-"),
            r.prompts,
            if r.prompts == 1 { "" } else { "s" },
            r.circuit.edges,
            r.edges.len(),
            r.circuit.faithfulness,
            r.metric,
            r.clean_metric,
            r.corrupted_metric,
            r.circuit.metric
        );
        Ok(json!({
            "results": r,
            "text": text,
            "edges": r.edges.len(),
            "kept": r.circuit.edges,
            "curve_svg": curve_svg(r),
            "disagreements": r.disagreements.iter().map(|d| d.describe()).collect::<Vec<_>>(),
        })
        .to_string())
    }

    /// JSON `{svg, k, caption}`: the top `k` edges drawn (1 to every edge), and their
    /// faithfulness in words where exact patching measured it.
    pub fn draw(&self, k: usize) -> Result<String, JsValue> {
        let r = &self.results;
        let n = r.edges.len();
        if !(1..=n).contains(&k) {
            return Err(field_error(PatchingError::Spec(format!(
                "k is {k}; the circuit view draws 1 to {n} edges"
            ))));
        }
        let caption = match r.faithfulness_at(k) {
            Some(f) => format!(
                "The top {k} of {n} edges{}: faithfulness {f:.4} (measured by exact patching).",
                if k == r.circuit.edges {
                    " (the circuit)"
                } else {
                    ""
                }
            ),
            None => {
                let measured: Vec<String> = r.curve.iter().map(|p| p.edges.to_string()).collect();
                format!(
                    "The top {k} of {n} edges: faithfulness not measured (exact patching measured k = {} and the circuit's {}).",
                    measured.join(", "),
                    r.circuit.edges
                )
            }
        };
        Ok(json!({"svg": top_svg(r, k), "k": k, "caption": caption}).to_string())
    }

    /// What the edge of rank `rank` (1 for the best) connects, its score and its exact effect.
    pub fn hover(&self, rank: usize) -> Result<String, JsValue> {
        rank.checked_sub(1)
            .and_then(|i| self.results.edges.get(i))
            .map(|e| e.describe())
            .ok_or_else(|| js_err(format!("no edge of rank {rank}")))
    }
}
