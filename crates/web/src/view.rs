//! Results as the page shows them, all from the core's `Results`: the views a result holds (each
//! with its label, title and colour limit, the limits the CLI's SVGs use too), one panel of a
//! three-axis view, the sentence under the pointer, the detected components, what a click on a
//! cell opens, known head classes outlined, CSV, and the comparison of two results.

use patchbay_patching::analysis::known_circuits::HeadClass;
use patchbay_patching::analysis::reproduce::Digest;
use patchbay_patching::analysis::results::symmetric_limit;
use patchbay_patching::analysis::stability::Stability;
use patchbay_patching::analysis::stats::{self, unravel};
use patchbay_patching::sweep::plan::{Axis, DEST_POS, HEAD_INDEX, LAYER, POS, ROLE};
use patchbay_patching::{Component, Grid, PatchingError, Results};
use serde::Serialize;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::grids::{Drawn, draw, json_err, panel_axis, slice};

/// Results through the core's checked decoder: a link's results are as untrusted as its spec.
fn parse_results(json: &str) -> Result<Results, JsValue> {
    Results::from_json(json).map_err(json_err)
}

/// One set of results, held by the worker while the page shows it.
#[wasm_bindgen]
pub struct Shown {
    results: Results,
    classes: Vec<HeadClass>,
}

#[derive(Serialize)]
struct ViewEntry {
    key: &'static str,
    label: String,
}

#[derive(Serialize)]
struct SliceAxis {
    name: String,
    /// What the selector is called: "Position", "Query position", "Role", "Component".
    label: &'static str,
    labels: Vec<String>,
    /// The panel shown first: the last (the final position, where the answer is read).
    default: usize,
}

#[derive(Serialize)]
struct Detected {
    text: String,
    positive: bool,
}

#[derive(Serialize)]
struct Drawing {
    #[serde(flatten)]
    drawn: Drawn,
    /// The full grid's flat index of each drawn cell.
    full: Vec<usize>,
    /// `[drawn cell, class]` outlines of known head classes.
    marks: Vec<[usize; 2]>,
    /// One line per class outlined: "movers (S2 to the end): 1.0, 1.1".
    legend: Vec<String>,
    /// The drawn cells that are not significant after correction ([`Results::significance`]),
    /// which the page greys out when asked; empty without statistics.
    greyed: Vec<usize>,
}

/// The link's grid digest, checked: its JSON, and the grid it decodes to.
fn parse_digest(json: &str) -> Result<(Digest, usize), String> {
    let digest: Digest =
        serde_json::from_str(json).map_err(|e| format!("the link's grid digest is malformed: {e}"))?;
    let grid = digest.grid().map_err(about_the_link)?;
    Ok((digest, grid.values.len()))
}

/// A digest's error as the core words it, without "the spec is malformed" (the spec is fine).
fn about_the_link(e: PatchingError) -> String {
    match e {
        PatchingError::Spec(message) => message,
        e => e.to_string(),
    }
}

fn slice_label(name: &str) -> &'static str {
    match name {
        POS => "Position",
        DEST_POS => "Query position",
        // Prompts of different lengths aligned by role (IOI over every template).
        ROLE => "Role",
        _ => "Component",
    }
}

#[wasm_bindgen]
impl Shown {
    /// Holds `results_json` (results.json); `classes_json` is the loaded model's known head
    /// classes (`[{name, heads}]`), outlined on layer × head views.
    #[wasm_bindgen(constructor)]
    pub fn new(results_json: &str, classes_json: Option<String>) -> Result<Shown, JsValue> {
        let results = parse_results(results_json)?;
        let classes = match classes_json.as_deref() {
            None | Some("null") => Vec::new(),
            Some(json) => serde_json::from_str(json).map_err(json_err)?,
        };
        Ok(Shown { results, classes })
    }

    /// What the results panel shows besides the heatmap, as JSON: the title, the views, the
    /// panel selector of three-axis grids, the detections, and the metric's label.
    pub fn summary(&self) -> String {
        let r = &self.results;
        let views: Vec<ViewEntry> = r
            .views()
            .into_iter()
            .map(|v| ViewEntry {
                key: v.key,
                label: v.label,
            })
            .collect();
        let slice_axis = panel_axis(&r.axes).map(|a| {
            let axis = &r.axes[a];
            SliceAxis {
                name: axis.name.clone(),
                label: slice_label(&axis.name),
                labels: axis.labels.clone(),
                default: axis.labels.len().saturating_sub(1),
            }
        });
        let detected: Vec<Detected> = r
            .detected
            .iter()
            .map(|d| Detected {
                text: r.detection_text(d),
                positive: d.z > 0.0,
            })
            .collect();
        json!({
            "title": r.title(),
            "metric_label": r.metric.label(),
            "prompts": r.prompts.len(),
            "views": views,
            "slice": slice_axis,
            "detected_heading": r.detection_heading(),
            "detected": detected,
            "denominator_warning": r.small_denominator_warning(),
            "significance": r.significance().map(|s| json!({
                "label": format!("Grey out the cells that are not {}", s.rule),
                "summary": s.summary,
            })),
            "attribution": r.attribution_text(),
            "spec": r.spec.to_json(),
        })
        .to_string()
    }

    /// The digest of the grid, computed on `backend` (named as the page names it), for a link
    /// that proves it reproduced: JSON of [`Digest`].
    pub fn digest(&self, backend: &str) -> String {
        serde_json::to_string(&Digest::of(&self.results.grid, backend)).unwrap_or_default()
    }

    /// This grid against a link's digest (`digest_json`), `backend` naming this run's: JSON of
    /// [`patchbay_patching::analysis::reproduce::Reproduction`] (with its `summary`).
    pub fn reproduce(&self, digest_json: &str, backend: &str) -> Result<String, JsValue> {
        let (digest, _) = parse_digest(digest_json).map_err(json_err)?;
        let reproduction = self
            .results
            .reproduce(&digest, backend)
            .map_err(|e| json_err(about_the_link(e)))?;
        serde_json::to_string(&reproduction).map_err(json_err)
    }

    /// Checks a link's grid digest before anything runs: a sentence saying what it holds
    /// ("The link carries a digest of its 6-cell grid, computed on …"), or an error saying why
    /// it cannot be read.
    #[wasm_bindgen(js_name = checkDigest)]
    pub fn check_digest(digest_json: &str) -> Result<String, JsValue> {
        let (digest, cells) = parse_digest(digest_json).map_err(json_err)?;
        Ok(digest_note(&digest, cells))
    }

    /// View `key` drawn (panel `panel` of a three-axis grid), on the view's colour limit, titled
    /// with its label: JSON.
    pub fn draw(&self, key: &str, panel: Option<usize>) -> Result<String, JsValue> {
        let view = self
            .results
            .view(key)
            .ok_or_else(|| json_err(format!("these results have no {key}")))?;
        let s = slice(view.grid, &self.results.axes, panel);
        let (marks, legend) = self.marks(&s.axes);
        let greyed = self.results.significance().map_or_else(Vec::new, |sig| {
            (0..s.full.len())
                .filter(|&i| !sig.significant[s.full[i]])
                .collect()
        });
        // The page names the view above the map (the full title is the results' heading).
        let drawing = Drawing {
            drawn: draw(s.grid, s.axes, &view.label, &view.value_label, view.limit),
            full: s.full,
            marks,
            legend,
            greyed,
        };
        serde_json::to_string(&drawing).map_err(json_err)
    }

    /// The sentence for cell `cell` (a flat index into the full grid) of view `key`.
    pub fn hover(&self, key: &str, cell: usize) -> String {
        self.results.hover_text(key, cell).unwrap_or_default()
    }

    /// What cell `cell` patches, in words.
    pub fn describe(&self, cell: usize) -> String {
        self.results.describe_cell(cell)
    }

    /// What clicking cell `cell` opens, as JSON: `{"head": [layer, head]}` (its attention
    /// patterns), `{"position": index, "label": token}` (the heads at that position), or null.
    pub fn inspect(&self, cell: usize) -> String {
        let r = &self.results;
        let shape: Vec<usize> = r.axes.iter().map(|a| a.labels.len()).collect();
        if cell >= r.grid.values.len() {
            return "null".into();
        }
        let index = unravel(cell, &shape);
        let find = |name: &str| r.axes.iter().position(|a| a.name == name);
        let path = r.spec.target.component == Component::Path;
        if let (Some(l), Some(h), false) = (find(LAYER), find(HEAD_INDEX), path) {
            return json!({"head": [index[l], index[h]]}).to_string();
        }
        if let Some(p) = find(POS).or(find(DEST_POS)) {
            return json!({"position": index[p], "label": r.axes[p].labels[index[p]]}).to_string();
        }
        "null".into()
    }

    /// View `key` as CSV.
    pub fn csv(&self, key: &str) -> Result<String, JsValue> {
        let view = self
            .results
            .view(key)
            .ok_or_else(|| json_err(format!("these results have no {key}")))?;
        Ok(self.results.csv(view.grid))
    }
}

impl Shown {
    /// Known head classes outlined on a layer × head panel.
    fn marks(&self, axes: &[Axis]) -> (Vec<[usize; 2]>, Vec<String>) {
        let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
        if self.classes.is_empty() || names != [LAYER, HEAD_INDEX] {
            return (Vec::new(), Vec::new());
        }
        let (layers, heads) = (axes[0].labels.len(), axes[1].labels.len());
        let mut marks = Vec::new();
        let mut legend = Vec::new();
        for (i, class) in self.classes.iter().enumerate() {
            for &[l, h] in &class.heads {
                if l < layers && h < heads {
                    marks.push([l * heads + h, i]);
                }
            }
            let list: Vec<String> = class.heads.iter().map(|[l, h]| format!("{l}.{h}")).collect();
            legend.push(format!("{}: {}", class.name, list.join(", ")));
        }
        (marks, legend)
    }
}

/// The same experiment under two choices: rank correlation, difference, each side's top `k`
/// cells in words, and the last panel of each drawn on one colour scale (the difference on its
/// own). Captions title the two maps.
#[wasm_bindgen(js_name = compareResults)]
pub fn compare_results(
    a_json: &str,
    b_json: &str,
    k: usize,
    caption_a: &str,
    caption_b: &str,
) -> Result<String, JsValue> {
    let (a, b) = (parse_results(a_json)?, parse_results(b_json)?);
    if a.grid.shape != b.grid.shape {
        return Err(json_err(format!(
            "the grids have different shapes ({:?} and {:?})",
            a.grid.shape, b.grid.shape
        )));
    }
    let (top_a, top_b) = (stats::top_k(&a.grid.values, k), stats::top_k(&b.grid.values, k));
    let difference = Grid::new(
        a.grid.shape.clone(),
        a.grid
            .values
            .iter()
            .zip(&b.grid.values)
            .map(|(x, y)| x - y)
            .collect(),
    );
    let shared = symmetric_limit(&a.grid.values).max(symmetric_limit(&b.grid.values));
    let drawn = |grid: &Grid, title: &str, label: &str, limit: f64| {
        let s = slice(grid, &a.axes, None);
        draw(s.grid, s.axes, title, label, limit)
    };
    let words = |r: &Results, top: &[usize]| -> Vec<String> {
        top.iter()
            .map(|&c| format!("{}: {:.3}", r.describe_cell(c), r.grid.values[c]))
            .collect()
    };
    let out = json!({
        "spearman": stats::spearman(&a.grid.values, &b.grid.values),
        "jaccard": stats::jaccard(&top_a, &top_b),
        "cells": a.grid.values.len(),
        "difference": difference,
        "top_a_text": words(&a, &top_a),
        "top_b_text": words(&b, &top_b),
        "top_a": top_a,
        "top_b": top_b,
        "a": drawn(&a.grid, caption_a, "effect", shared),
        "b": drawn(&b.grid, caption_b, "effect", shared),
        "diff": drawn(&difference, "difference", "left − right", symmetric_limit(&difference.values)),
    });
    Ok(out.to_string())
}

/// How stable each setting's detected set is across seeds, as the sensitivity panel shows it:
/// per setting its name, the agreement of its seeds in words and each component with the seeds
/// that detect it, by the grid's labels.
pub(crate) fn stability_view(stability: &[Stability], axes: &[Axis]) -> serde_json::Value {
    stability
        .iter()
        .map(|s| {
            json!({
                "setting": s.setting,
                "agreement": s.agreement(),
                "components": s.component_texts(axes),
            })
        })
        .collect()
}

/// What a link's digest holds, in words.
fn digest_note(digest: &Digest, cells: usize) -> String {
    format!(
        "This link carries a digest of its grid ({cells} cell{}, computed on {}): running the experiment checks that every cell reproduces within {:.0e}.",
        if cells == 1 { "" } else { "s" },
        digest.backend,
        patchbay_patching::analysis::reproduce::TOLERANCE
    )
}

/// A dataset's mean so far, drawn: its last panel, on its own colour limit.
pub(crate) fn partial(values: Vec<f64>, axes: Vec<Axis>, stage: &str) -> String {
    let shape: Vec<usize> = axes.iter().map(|a| a.labels.len()).collect();
    let grid = Grid::new(shape, values);
    let s = slice(&grid, &axes, None);
    let limit = symmetric_limit(&s.grid.values);
    serde_json::to_string(&draw(
        s.grid,
        s.axes,
        &format!("mean so far ({stage})"),
        "effect",
        limit,
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_patching::analysis::stability::Stability;

    /// A 2 × 2 layer × head grid of a 40-prompt dataset, with statistics, under `detect`.
    fn dataset(detect: &str) -> String {
        format!(
            r#"{{"spec": {{"version": 1, "model": {{"embedded": "patchbay-ioi"}},
                "prompts": [{{"clean": "a b", "corrupted": "a c", "answer": " b", "counter_answer": " c"}}],
                "corruption": {{"method": "str"}}, "metric": {{"kind": "logit_diff", "normalized": true}},
                "target": {{"component": "z", "positions": "all"}}, "detect": {detect}}},
              "metric": "logit_diff", "normalized": true, "direction": "denoising",
              "axes": [{{"name": "layer", "labels": ["0", "1"]}}, {{"name": "head_index", "labels": ["0", "1"]}}],
              "grid": [[0.9, 0.01], [0.5, -0.3]], "raw_grid": [[1, 0], [0.5, -0.3]],
              "stats": {{"settings": {{}}, "prompts": [[40, 40], [40, 40]],
                "se": [[0.1, 0.1], [0.1, 0.1]], "ci_low": [[0.7, -0.2], [0.3, -0.5]],
                "ci_high": [[1.1, 0.2], [0.7, -0.1]], "p": [[0.0001, 0.5], [0.01, 0.02]],
                "p_holm": [[0.0004, 0.5], [0.03, 0.06]], "p_bh": [[0.0004, 0.5], [0.02, 0.027]],
                "undefined_resamples": 0}},
              "denominator": 1.0, "clean_metric": 1.0, "corrupted_metric": 0.0, "prompts": [], "detected": []}}"#
        )
    }

    fn shown(detect: &str) -> Shown {
        Shown::new(&dataset(detect), None).unwrap_or_else(|_| panic!("the results decode"))
    }

    fn value(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_core_says_which_drawn_cells_to_grey_out() {
        let s = shown(r#"{"sigma": 2.0}"#);
        let summary = value(&s.summary());
        assert_eq!(
            summary["significance"]["label"],
            "Grey out the cells that are not significant at α = 0.05 after Holm's correction"
        );
        assert_eq!(
            summary["significance"]["summary"],
            "2 of 4 cells are significant at α = 0.05 after Holm's correction."
        );
        let drawn = value(&s.draw("grid", None).unwrap_or_else(|_| panic!("drawn")));
        assert_eq!(drawn["greyed"], json!([1, 3]));
        // Every view of the results greys the same cells; the spec's BH rule at 0.03 fewer.
        let se = value(&s.draw("se", None).unwrap_or_else(|_| panic!("drawn")));
        assert_eq!(se["greyed"], json!([1, 3]));
        let bh = shown(r#"{"significant": {"alpha": 0.03, "correction": "bh"}}"#);
        let drawn = value(&bh.draw("grid", None).unwrap_or_else(|_| panic!("drawn")));
        assert_eq!(drawn["greyed"], json!([1]));
        // Without statistics, nothing to grey and no toggle.
        let mut one = value(&dataset(r#"{"sigma": 2.0}"#));
        one.as_object_mut().unwrap().remove("stats");
        let one = Shown::new(&one.to_string(), None).unwrap_or_else(|_| panic!("decoded"));
        assert!(value(&one.summary())["significance"].is_null());
        let drawn = value(&one.draw("grid", None).unwrap_or_else(|_| panic!("drawn")));
        assert_eq!(drawn["greyed"], json!([]));
    }

    #[test]
    fn a_rerun_reproduces_its_digest_and_a_tampered_one_differs() {
        let s = shown(r#"{"sigma": 2.0}"#);
        let digest = s.digest("the CPU (burn flex, pure Rust)");
        let note = Shown::check_digest(&digest).unwrap_or_else(|_| panic!("a good digest"));
        assert!(
            note.contains("its grid (4 cells, computed on the CPU (burn flex, pure Rust))"),
            "{note}"
        );
        let same = value(
            &s.reproduce(&digest, "the CPU (burn flex, pure Rust)")
                .unwrap_or_else(|_| panic!("compared")),
        );
        assert_eq!(same["differing"], 0);
        assert_eq!(
            same["summary"],
            "Reproduced: every cell within 1e-5 of the link (on the CPU (burn flex, pure Rust), as the link was)."
        );
        // One value changed in the link: head 1.0's 0.5 becomes 0.25.
        let mut d: Digest = serde_json::from_str(&digest).unwrap();
        let mut grid = d.grid().unwrap();
        grid.values[2] = 0.25;
        d.values = Digest::of(&grid, "x").values;
        let tampered = serde_json::to_string(&d).unwrap();
        let differs = value(
            &s.reproduce(&tampered, "WebGPU on test")
                .unwrap_or_else(|_| panic!("compared")),
        );
        assert_eq!(differs["differing"], 1);
        assert_eq!(differs["largest_cell"], 2);
        let summary = differs["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("Differs at 1 of 4 cells (largest 2.50e-1, at "),
            "{summary}"
        );
        assert!(
            summary
                .ends_with("(on WebGPU on test; the link's grid came from the CPU (burn flex, pure Rust))."),
            "{summary}"
        );
        assert!(
            parse_digest("{\"shape\": [2, 2], \"values\": \"!!\", \"backend\": \"x\"}")
                .unwrap_err()
                .starts_with("the link's grid digest is not base64")
        );
        assert!(
            parse_digest("{\"shape\": [2, 2]}")
                .unwrap_err()
                .contains("malformed")
        );
    }

    #[test]
    fn stability_is_shown_by_the_grids_labels() {
        let axes = vec![
            Axis {
                name: LAYER.into(),
                labels: vec!["0".into(), "1".into()],
            },
            Axis {
                name: HEAD_INDEX.into(),
                labels: vec!["0".into(), "1".into()],
            },
        ];
        let sets: [&[usize]; 2] = [&[0, 3], &[0]];
        let s = Stability::of(
            "STR S2 · logit_diff · denoising".into(),
            vec![0, 1],
            vec![0, 1],
            &sets,
            &[2, 2],
        );
        let shown = stability_view(&[s], &axes);
        assert_eq!(shown[0]["setting"], "STR S2 · logit_diff · denoising");
        assert_eq!(
            shown[0]["agreement"],
            "Seeds 0, 1: Jaccard similarity 0.500 on average over the pairs of seeds, 0.500 at the least."
        );
        assert_eq!(
            shown[0]["components"],
            json!(["0.0 (2 of 2 seeds)", "1.1 (1 of 2 seeds)"])
        );
    }
}
