//! Model-free work on result grids for the page: heatmaps drawn with plotters (SVG, which the
//! page paints on a canvas), comparisons of two grids, CSV, and the TransformerLens script.

use patchbay_patching::analysis::stats;
use patchbay_patching::export::{heatmap, snippet};
use patchbay_patching::sweep::plan::Axis;
use patchbay_patching::{ExperimentSpec, Grid, Results};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::experiment::field_error;

fn json_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

#[derive(Serialize)]
struct Drawn {
    svg: String,
    width: u32,
    height: u32,
    /// `[x, y, w, h]` of each cell in the grid's flat order.
    cells: Vec<[i32; 4]>,
}

/// Draws a grid (nested arrays) with its axes as an SVG heatmap scaled to ±`limit`.
#[wasm_bindgen(js_name = renderHeatmap)]
pub fn render_heatmap(
    grid_json: &str,
    axes_json: &str,
    title: &str,
    value_label: &str,
    limit: f64,
) -> Result<JsValue, JsValue> {
    let grid: Grid = serde_json::from_str(grid_json).map_err(json_err)?;
    let axes: Vec<Axis> = serde_json::from_str(axes_json).map_err(json_err)?;
    if axes.iter().map(|a| a.labels.len()).collect::<Vec<_>>() != grid.shape {
        return Err(json_err("the axes do not match the grid's shape"));
    }
    let layout = heatmap::layout(&grid, &axes);
    let svg = heatmap::svg(&grid, &axes, title, value_label, limit);
    let drawn = Drawn {
        svg,
        width: layout.width,
        height: layout.height,
        cells: layout.cells.iter().map(|&(x, y, w, h)| [x, y, w, h]).collect(),
    };
    serde_wasm_bindgen::to_value(&drawn).map_err(json_err)
}

#[derive(Serialize)]
struct Comparison {
    spearman: Option<f64>,
    /// a - b, cell by cell.
    difference: Grid,
    top_a: Vec<usize>,
    top_b: Vec<usize>,
    /// Jaccard similarity of the two top-k sets.
    jaccard: f64,
}

/// Compares two grids of the same shape: rank correlation, difference, top-k of each.
#[wasm_bindgen(js_name = compareGrids)]
pub fn compare_grids(a_json: &str, b_json: &str, k: usize) -> Result<JsValue, JsValue> {
    let a: Grid = serde_json::from_str(a_json).map_err(json_err)?;
    let b: Grid = serde_json::from_str(b_json).map_err(json_err)?;
    if a.shape != b.shape {
        return Err(json_err(format!(
            "the grids have different shapes ({:?} and {:?})",
            a.shape, b.shape
        )));
    }
    let (top_a, top_b) = (stats::top_k(&a.values, k), stats::top_k(&b.values, k));
    let comparison = Comparison {
        spearman: stats::spearman(&a.values, &b.values),
        difference: Grid::new(
            a.shape.clone(),
            a.values.iter().zip(&b.values).map(|(x, y)| x - y).collect(),
        ),
        jaccard: stats::jaccard(&top_a, &top_b),
        top_a,
        top_b,
    };
    serde_wasm_bindgen::to_value(&comparison).map_err(json_err)
}

/// One grid of results.json as CSV: `grid`, `raw_grid`, `sd_grid` or `attribution`.
#[wasm_bindgen(js_name = resultsCsv)]
pub fn results_csv(results_json: &str, which: &str) -> Result<String, JsValue> {
    let results: Results = serde_json::from_str(results_json).map_err(json_err)?;
    let view = results
        .view(which)
        .ok_or_else(|| json_err(format!("these results have no {which}")))?;
    Ok(results.csv(view.grid))
}

/// A TransformerLens script that reproduces the spec.
#[wasm_bindgen(js_name = transformerLensScript)]
pub fn transformer_lens_script(spec_json: &str) -> Result<String, JsValue> {
    let spec = ExperimentSpec::from_json(spec_json).map_err(field_error)?;
    Ok(snippet::transformer_lens_script(&spec))
}

/// The title of a results object, naming its settings.
#[wasm_bindgen(js_name = resultsTitle)]
pub fn results_title(results_json: &str) -> Result<String, JsValue> {
    let results: Results = serde_json::from_str(results_json).map_err(json_err)?;
    Ok(results.title())
}
