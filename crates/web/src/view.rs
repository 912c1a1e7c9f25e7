//! Results as the page shows them, all from the core's `Results`: the views a result holds (each
//! with its label, title and colour limit, the limits the CLI's SVGs use too), one panel of a
//! three-axis view, the sentence under the pointer, the detected components, what a click on a
//! cell opens, known head classes outlined, CSV, and the comparison of two results.

use patchbay_patching::analysis::known_circuits::HeadClass;
use patchbay_patching::analysis::results::symmetric_limit;
use patchbay_patching::analysis::stats::{self, unravel};
use patchbay_patching::sweep::plan::{Axis, DEST_POS, HEAD_INDEX, LAYER, POS};
use patchbay_patching::{Component, Grid, Results};
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
    /// What the selector is called: "Position", "Query position", "Component".
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
}

fn slice_label(name: &str) -> &'static str {
    match name {
        POS => "Position",
        DEST_POS => "Query position",
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
            "attribution": r.attribution_text(),
            "spec": r.spec.to_json(),
        })
        .to_string()
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
        // The page names the view above the map (the full title is the results' heading).
        let drawing = Drawing {
            drawn: draw(s.grid, s.axes, &view.label, &view.value_label, view.limit),
            full: s.full,
            marks,
            legend,
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
