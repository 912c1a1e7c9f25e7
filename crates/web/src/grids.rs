//! Heatmaps for the page: plotters draws a grid as SVG (which the page paints on a canvas), with
//! every cell's rectangle for hit-testing. Three-axis grids are shown one panel at a time: the
//! core's heatmap layout says which axis makes the panels, and [`slice`] cuts one out.

use patchbay_patching::Grid;
use patchbay_patching::export::heatmap;
use patchbay_patching::sweep::plan::Axis;
use serde::Serialize;
use wasm_bindgen::prelude::*;

pub(crate) fn json_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A drawn heatmap: the SVG, its size, where each cell is, and the grid and axes drawn.
#[derive(Serialize)]
pub(crate) struct Drawn {
    pub svg: String,
    pub width: u32,
    pub height: u32,
    /// `[x, y, w, h]` of each cell in the drawn grid's flat order.
    pub cells: Vec<[i32; 4]>,
    pub grid: Grid,
    pub axes: Vec<Axis>,
}

/// Draws `grid` with `axes`, coloured on ±`limit`.
pub(crate) fn draw(grid: Grid, axes: Vec<Axis>, title: &str, value_label: &str, limit: f64) -> Drawn {
    let layout = heatmap::layout(&grid, &axes);
    let svg = heatmap::svg(&grid, &axes, title, value_label, limit);
    Drawn {
        svg,
        width: layout.width,
        height: layout.height,
        cells: layout.cells.iter().map(|&(x, y, w, h)| [x, y, w, h]).collect(),
        grid,
        axes,
    }
}

/// One panel of a grid: two axes at most, and for each of its cells the cell of the full grid.
pub(crate) struct Slice {
    pub grid: Grid,
    pub axes: Vec<Axis>,
    /// The full grid's flat index of each cell.
    pub full: Vec<usize>,
}

/// The panel axis of a three-axis grid, as the core's heatmap lays it out.
pub(crate) fn panel_axis(axes: &[Axis]) -> Option<usize> {
    match heatmap::roles(axes) {
        (Some(panel), _, Some(_)) if axes.len() == 3 => Some(panel),
        _ => None,
    }
}

/// Panel `index` of `grid` (the last panel when `None` or out of range); a grid of two axes or
/// fewer is its own panel.
pub(crate) fn slice(grid: &Grid, axes: &[Axis], index: Option<usize>) -> Slice {
    let (Some(panel), row, Some(col)) = heatmap::roles(axes) else {
        return whole(grid, axes);
    };
    if axes.len() != 3 {
        return whole(grid, axes);
    }
    let last = grid.shape[panel].saturating_sub(1);
    let s = index.filter(|&i| i <= last).unwrap_or(last);
    let (rows, cols) = (grid.shape[row], grid.shape[col]);
    let mut values = Vec::with_capacity(rows * cols);
    let mut full = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let mut at = [0usize; 3];
            at[panel] = s;
            at[row] = r;
            at[col] = c;
            let flat = at.iter().zip(&grid.shape).fold(0, |acc, (i, n)| acc * n + i);
            values.push(grid.values[flat]);
            full.push(flat);
        }
    }
    Slice {
        grid: Grid::new(vec![rows, cols], values),
        axes: vec![axes[row].clone(), axes[col].clone()],
        full,
    }
}

fn whole(grid: &Grid, axes: &[Axis]) -> Slice {
    Slice {
        grid: grid.clone(),
        axes: axes.to_vec(),
        full: (0..grid.values.len()).collect(),
    }
}

/// Draws a grid (nested arrays) with its axes as an SVG heatmap scaled to ±`limit`: JSON of
/// `{svg, width, height, cells, grid, axes}`.
#[wasm_bindgen(js_name = renderHeatmap)]
pub fn render_heatmap(
    grid_json: &str,
    axes_json: &str,
    title: &str,
    value_label: &str,
    limit: f64,
) -> Result<String, JsValue> {
    let grid: Grid = serde_json::from_str(grid_json).map_err(json_err)?;
    let axes: Vec<Axis> = serde_json::from_str(axes_json).map_err(json_err)?;
    if axes.iter().map(|a| a.labels.len()).collect::<Vec<_>>() != grid.shape {
        return Err(json_err("the axes do not match the grid's shape"));
    }
    let drawn = draw(grid, axes, title, value_label, limit);
    serde_json::to_string(&drawn).map_err(json_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_patching::sweep::plan::{DEST_POS, HEAD_INDEX, LAYER, POS};

    fn axis(name: &str, n: usize) -> Axis {
        Axis {
            name: name.into(),
            labels: (0..n).map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn patterns_by_position_are_sliced_along_their_destination_position() {
        // [layer, head_index, dest_pos], as get_act_patch_attn_head_pattern_by_pos.
        let axes = vec![axis(LAYER, 2), axis(HEAD_INDEX, 3), axis(DEST_POS, 4)];
        let grid = Grid::new(vec![2, 3, 4], (0..24).map(f64::from).collect());
        assert_eq!(panel_axis(&axes), Some(2));
        let s = slice(&grid, &axes, Some(1));
        assert_eq!(s.grid.shape, vec![2, 3]);
        assert_eq!(s.axes[0].name, LAYER);
        assert_eq!(s.axes[1].name, HEAD_INDEX);
        // Layer 1, head 2, position 1: 1*12 + 2*4 + 1.
        assert_eq!(s.full[5], 21);
        assert_eq!(s.grid.values[5], 21.0);
    }

    #[test]
    fn heads_by_position_are_sliced_along_the_position() {
        let axes = vec![axis(LAYER, 2), axis(POS, 4), axis(HEAD_INDEX, 3)];
        let grid = Grid::new(vec![2, 4, 3], (0..24).map(f64::from).collect());
        let s = slice(&grid, &axes, None);
        assert_eq!(s.axes[1].name, HEAD_INDEX);
        // The last position by default: layer 0, position 3, head 0.
        assert_eq!(s.full[0], 9);
        let two = vec![axis(LAYER, 2), axis(HEAD_INDEX, 3)];
        assert_eq!(panel_axis(&two), None);
        assert_eq!(
            slice(&Grid::new(vec![2, 3], vec![0.0; 6]), &two, Some(1))
                .full
                .len(),
            6
        );
    }
}
