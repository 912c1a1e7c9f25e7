//! Heatmaps of result grids, drawn with plotters on any of its backends (SVG for the CLI and
//! exports). A diverging, colour-blind-safe colormap (ColorBrewer RdBu) centred at 0, token
//! labels on the position axis, layer and head labels, a colour bar, and a title naming the
//! settings. Three-axis grids are drawn as small multiples, one panel per position (or per
//! component for `block_every`). [`Layout`] gives every cell's rectangle, for hit-testing.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::results::Grid;
use crate::sweep::plan::{Axis, COMPONENT, DEST_POS, LAYER, POS};

/// ColorBrewer RdBu (11 classes), from strongest negative (blue) to strongest positive (red).
const RDBU: [(u8, u8, u8); 11] = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];

/// The colour of `value` on a scale from `-limit` (blue) through 0 (white) to `limit` (red).
pub fn color(value: f64, limit: f64) -> RGBColor {
    if !value.is_finite() {
        return RGBColor(160, 160, 160);
    }
    let t = if limit > 0.0 {
        ((value / limit).clamp(-1.0, 1.0) + 1.0) / 2.0
    } else {
        0.5
    };
    let x = t * (RDBU.len() - 1) as f64;
    let (i, f) = (
        (x.floor() as usize).min(RDBU.len() - 2),
        x - x.floor().min((RDBU.len() - 2) as f64),
    );
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (RDBU[i], RDBU[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Pixel geometry of a heatmap: where each cell is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// `(x, y, w, h)` of each cell, in the grid's flat order.
    pub cells: Vec<(i32, i32, i32, i32)>,
    panels: Vec<Panel>,
    colorbar: (i32, i32, i32, i32),
}

#[derive(Clone, Debug, PartialEq)]
struct Panel {
    title: Option<String>,
    origin: (i32, i32),
    rows: Vec<String>,
    cols: Vec<String>,
    row_axis: String,
    col_axis: String,
}

const TITLE: i32 = 34;
const MARGIN: i32 = 12;
const CELL_H: i32 = 22;
const CHAR_W: i32 = 7;

/// Which axis of a grid makes the panels, the rows and the columns: three-axis grids get a
/// panel per component (`block_every`) or per position, with layers as rows.
pub fn roles(axes: &[Axis]) -> (Option<usize>, usize, Option<usize>) {
    let find = |name: &str| axes.iter().position(|a| a.name == name);
    match axes.len() {
        1 => (None, 0, None),
        2 => (None, 0, Some(1)),
        _ => {
            let panel = find(COMPONENT).or(find(POS)).or(find(DEST_POS)).unwrap_or(1);
            let row = find(LAYER)
                .filter(|&r| r != panel)
                .unwrap_or(if panel == 0 { 1 } else { 0 });
            let col = (0..axes.len()).find(|&a| a != panel && a != row);
            (Some(panel), row, col)
        }
    }
}

/// Lays out `grid` with `axes`.
pub fn layout(grid: &Grid, axes: &[Axis]) -> Layout {
    let (panel_axis, row_axis, col_axis) = roles(axes);
    let labels = |axis: Option<usize>| axis.map_or(vec![String::new()], |a| axes[a].labels.clone());
    let rows = axes[row_axis].labels.clone();
    let cols = labels(col_axis);
    let widest = |v: &[String]| v.iter().map(|s| s.chars().count() as i32).max().unwrap_or(1);
    let cell_w = (560 / cols.len().max(1) as i32).clamp(22, 56);
    let left = 16 + CHAR_W * widest(&rows).max(3);
    let bottom = 32 + CHAR_W * widest(&cols).min(18);
    let panel_w = left + cell_w * cols.len() as i32;
    let panel_h = CELL_H * rows.len() as i32 + bottom + 18;
    let panel_names = panel_axis.map_or(vec![None], |a| {
        axes[a].labels.iter().map(|l| Some(l.clone())).collect()
    });
    let per_row = ((900 / panel_w).max(1) as usize).min(panel_names.len());
    let mut panels = Vec::new();
    let mut cells = vec![(0, 0, 0, 0); grid.values.len()];
    for (k, name) in panel_names.iter().enumerate() {
        let origin = (
            MARGIN + (k % per_row) as i32 * (panel_w + MARGIN),
            TITLE + (k / per_row) as i32 * (panel_h + MARGIN),
        );
        for r in 0..rows.len() {
            for c in 0..cols.len() {
                let mut index = vec![0; axes.len()];
                index[row_axis] = r;
                if let Some(a) = col_axis {
                    index[a] = c;
                }
                if let Some(a) = panel_axis {
                    index[a] = k;
                }
                let flat = index.iter().zip(&grid.shape).fold(0, |acc, (i, n)| acc * n + i);
                cells[flat] = (
                    origin.0 + left + c as i32 * cell_w,
                    origin.1 + 18 + r as i32 * CELL_H,
                    cell_w,
                    CELL_H,
                );
            }
        }
        panels.push(Panel {
            title: name
                .as_ref()
                .map(|n| format!("{} {n}", axes[panel_axis.expect("named panels")].name)),
            origin,
            rows: rows.clone(),
            cols: cols.clone(),
            row_axis: axes[row_axis].name.clone(),
            col_axis: col_axis.map_or(String::new(), |a| axes[a].name.clone()),
        });
    }
    let panel_rows = panel_names.len().div_ceil(per_row) as i32;
    let width = (MARGIN + per_row as i32 * (panel_w + MARGIN) + 90) as u32;
    let height = (TITLE + panel_rows * (panel_h + MARGIN) + MARGIN) as u32;
    let colorbar = (
        width as i32 - 80,
        TITLE + 18,
        16,
        (CELL_H * rows.len() as i32).max(120),
    );
    Layout {
        width,
        height: height.max((colorbar.1 + colorbar.3 + 30) as u32),
        cells,
        panels,
        colorbar,
    }
}

/// Draws the heatmap of `grid` on `area`, colours scaled to ±`limit`.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    grid: &Grid,
    axes: &[Axis],
    title: &str,
    value_label: &str,
    limit: f64,
) -> Result<Layout, DrawingAreaErrorKind<DB::ErrorType>> {
    let layout = layout(grid, axes);
    area.fill(&WHITE)?;
    let font = |size: u32| ("sans-serif", size).into_font();
    area.draw(&Text::new(
        title.to_string(),
        (MARGIN, 8),
        font(16).style(FontStyle::Bold),
    ))?;
    for (cell, &(x, y, w, h)) in layout.cells.iter().enumerate() {
        let fill = color(grid.values[cell], limit);
        area.draw(&Rectangle::new([(x, y), (x + w, y + h)], fill.filled()))?;
    }
    for panel in &layout.panels {
        let (ox, oy) = panel.origin;
        let first = layout
            .cells
            .iter()
            .filter(|c| c.0 >= ox && c.1 >= oy)
            .min_by_key(|c| (c.1, c.0))
            .copied();
        let Some((x0, y0, cw, ch)) = first else { continue };
        if let Some(t) = &panel.title {
            area.draw(&Text::new(t.clone(), (x0, oy), font(13)))?;
        }
        let right = TextStyle::from(font(12)).pos(Pos::new(HPos::Right, VPos::Center));
        for (r, label) in panel.rows.iter().enumerate() {
            area.draw(&Text::new(
                label.clone(),
                (x0 - 6, y0 + r as i32 * ch + ch / 2),
                right.clone(),
            ))?;
        }
        area.draw(&Text::new(panel.row_axis.clone(), (ox, y0 - 14), font(11)))?;
        let below = y0 + ch * panel.rows.len() as i32 + 4;
        let rotated = TextStyle::from(font(12).transform(FontTransform::Rotate90))
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (c, label) in panel.cols.iter().enumerate() {
            let label: String = label.chars().take(18).collect();
            area.draw(&Text::new(
                label,
                (x0 + c as i32 * cw + cw / 2, below),
                rotated.clone(),
            ))?;
        }
        if !panel.col_axis.is_empty() {
            let longest = panel
                .cols
                .iter()
                .map(|c| c.chars().count().min(18) as i32)
                .max()
                .unwrap_or(1);
            area.draw(&Text::new(
                panel.col_axis.clone(),
                (x0, below + CHAR_W * longest + 4),
                font(11),
            ))?;
        }
    }
    // Colour bar, +limit at the top.
    let (bx, by, bw, bh) = layout.colorbar;
    for i in 0..bh {
        let v = limit * (1.0 - 2.0 * i as f64 / (bh - 1) as f64);
        area.draw(&Rectangle::new(
            [(bx, by + i), (bx + bw, by + i + 1)],
            color(v, limit).filled(),
        ))?;
    }
    area.draw(&Rectangle::new(
        [(bx, by), (bx + bw, by + bh)],
        BLACK.stroke_width(1),
    ))?;
    let left = TextStyle::from(font(11)).pos(Pos::new(HPos::Left, VPos::Center));
    for (frac, v) in [(0.0, limit), (0.5, 0.0), (1.0, -limit)] {
        let y = by + (frac * (bh - 1) as f64) as i32;
        area.draw(&Text::new(format!("{v:+.3}"), (bx + bw + 4, y), left.clone()))?;
    }
    area.draw(&Text::new(
        value_label.to_string(),
        (bx - 10, by + bh + 14),
        font(11),
    ))?;
    Ok(layout)
}

/// The heatmap as an SVG document, wide enough for its title and the colour bar's label.
pub fn svg(grid: &Grid, axes: &[Axis], title: &str, value_label: &str, limit: f64) -> String {
    let size = layout(grid, axes);
    let text = |s: &str, char_w: i32| s.chars().count() as i32 * char_w;
    let width = (size.width as i32)
        .max(MARGIN + text(title, 10) + MARGIN)
        .max(size.colorbar.0 - 10 + text(value_label, 7) + MARGIN) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, size.height)).into_drawing_area();
        draw(&root, grid, axes, title, value_label, limit).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_is_diverging_and_centred() {
        assert_eq!(color(0.0, 1.0), RGBColor(247, 247, 247));
        assert_eq!(color(1.0, 1.0), RGBColor(103, 0, 31));
        assert_eq!(color(-1.0, 1.0), RGBColor(5, 48, 97));
        assert_eq!(color(5.0, 1.0), color(1.0, 1.0), "clamped");
    }

    #[test]
    fn svg_has_every_cell_label_and_title() {
        let axes = vec![
            Axis {
                name: "layer".into(),
                labels: vec!["0".into(), "1".into()],
            },
            Axis {
                name: "pos".into(),
                labels: vec!["<|endoftext|>".into(), "␣Mary".into(), "<x>&".into()],
            },
        ];
        let grid = Grid::new(vec![2, 3], vec![0.0, 0.5, -1.0, 1.0, 0.25, 0.0]);
        let svg = svg(&grid, &axes, "resid_pre · STR", "effect", 1.0);
        assert_eq!(svg.matches("<rect").count() >= 6, true);
        assert!(svg.contains("␣Mary") && svg.contains("resid_pre · STR"));
        // Labels are escaped, never markup.
        assert!(svg.contains("&lt;x&gt;&amp;") && !svg.contains("<x>&"));
        let layout = layout(&grid, &axes);
        assert_eq!(layout.cells.len(), 6);
        // A title longer than the grid is wide widens the picture rather than being cut off.
        let title = "A title much longer than a grid of three columns is wide, as lens titles are";
        let wide = super::svg(&grid, &axes, title, "effect", 1.0);
        let width = |svg: &str| -> u32 {
            let at = svg.find("width=\"").unwrap() + 7;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert_eq!(width(&svg), layout.width);
        assert!(
            width(&wide) >= 10 * title.chars().count() as u32,
            "{}",
            width(&wide)
        );
        assert!(layout.cells[1].0 > layout.cells[0].0 && layout.cells[3].1 > layout.cells[0].1);
    }
}
