//! SVG drawings of circuit discovery's results, written as text: the circuit (nodes laid out by
//! layer, the input at the bottom and the logits at the top; each kept edge a line whose width
//! grows with |score|, blue when the score is positive and red when negative, ending at the
//! left, middle or right of a head for its query, key or value input, and carrying its rank as
//! `data-rank` for the page's hover), the top k edges drawn the same way, and the faithfulness
//! curve (faithfulness against edges kept, on a log scale of k + 1).

use std::fmt::Write;

use crate::circuit::results::CircuitResults;

const POSITIVE: &str = "#2166ac";
const NEGATIVE: &str = "#b2182b";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The circuit: its kept edges over every node of the graph.
pub fn circuit_svg(results: &CircuitResults) -> String {
    let title = format!(
        "{} circuit: {} edges, faithfulness {:.3}",
        method(results),
        results.circuit.edges,
        results.circuit.faithfulness
    );
    edges_svg(results, results.circuit.edges, &title)
}

/// The `k` best-scored edges (`k` at most every edge), titled with their faithfulness where
/// exact patching measured it (the circuit, or a point of the curve).
pub fn top_svg(results: &CircuitResults, k: usize) -> String {
    let faithfulness = match results.faithfulness_at(k) {
        Some(f) => format!("faithfulness {f:.3}"),
        None => "faithfulness not measured".into(),
    };
    let title = format!(
        "{}: top {k} of {} edges, {faithfulness}",
        method(results),
        results.edges.len()
    );
    edges_svg(results, k, &title)
}

/// `EAP` or `EAP-IG`.
fn method(results: &CircuitResults) -> String {
    results.method.to_uppercase().replace('_', "-")
}

/// The best `k` edges over every node of the graph, under `title`.
fn edges_svg(results: &CircuitResults, k: usize, title: &str) -> String {
    let n_layer = results
        .nodes
        .iter()
        .filter_map(|n| n.layer)
        .max()
        .map_or(0, |l| l + 1);
    let n_head = results
        .nodes
        .iter()
        .filter_map(|n| n.head)
        .max()
        .map_or(0, |h| h + 1);
    let (dx, dy, r, margin) = (56.0, 90.0, 14.0, 40.0);
    let columns = (n_head + 1) as f64;
    let width = 2.0 * margin + columns * dx + 80.0;
    let height = 2.0 * margin + (n_layer as f64 + 1.0) * dy + 30.0;
    // Row 0 is the input, row l + 1 layer l, row n_layer + 1 the logits.
    let y_of = |row: usize| height - margin - row as f64 * dy;
    let center = (columns - 1.0) * dx / 2.0 + margin + 40.0;
    let place = |name: &str| -> (f64, f64) {
        let node = results.nodes.iter().find(|n| n.name == name);
        match node.map(|n| (n.kind, n.layer, n.head)) {
            Some(("head", Some(l), Some(h))) => (margin + 40.0 + h as f64 * dx, y_of(l + 1)),
            Some(("mlp", Some(l), _)) => (margin + 40.0 + n_head as f64 * dx, y_of(l + 1)),
            Some(("logits", ..)) => (center, y_of(n_layer + 1)),
            _ => (center, y_of(0)),
        }
    };
    let kept: Vec<_> = results.edges.iter().take(k).collect();
    let largest = kept.iter().map(|e| e.score.abs()).fold(0.0, f64::max);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{margin}" y="20" font-size="13">{} (blue: positive score, red: negative; width: |score|)</text>"##,
        escape(title)
    );
    for layer in 0..n_layer {
        let _ = writeln!(
            svg,
            r##"<text x="8" y="{:.0}" fill="#666">layer {layer}</text>"##,
            y_of(layer + 1) + 4.0
        );
    }
    // Edges first, the strongest on top.
    for e in kept.iter().rev() {
        let (x1, y1) = place(&e.from);
        let (mut x2, y2) = place(&e.to);
        x2 += match e.input {
            "q" => -r * 0.6,
            "v" => r * 0.6,
            _ => 0.0,
        };
        let w = if largest > 0.0 {
            0.5 + 5.5 * e.score.abs() / largest
        } else {
            1.0
        };
        let colour = if e.score >= 0.0 { POSITIVE } else { NEGATIVE };
        let _ = writeln!(
            svg,
            r##"<line data-rank="{}" x1="{x1:.1}" y1="{:.1}" x2="{x2:.1}" y2="{:.1}" stroke="{colour}" stroke-width="{w:.2}" stroke-opacity="0.75"><title>{} score {:.4e}{}</title></line>"##,
            e.rank,
            y1 - r,
            y2 + r,
            escape(&e.name),
            e.score,
            e.exact.map(|x| format!(", exact {x:.4e}")).unwrap_or_default()
        );
    }
    for node in &results.nodes {
        let (x, y) = place(&node.name);
        let used = kept.iter().any(|e| e.from == node.name || e.to == node.name);
        let (fill, stroke) = if used {
            ("#fff7d6", "#333")
        } else {
            ("#f4f4f4", "#bbb")
        };
        let label = match node.kind {
            "head" => format!("{}.{}", node.layer.unwrap_or(0), node.head.unwrap_or(0)),
            "mlp" => format!("m{}", node.layer.unwrap_or(0)),
            _ => node.name.clone(),
        };
        let _ = writeln!(
            svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"##,
            y + 3.0,
            escape(&label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The faithfulness curve.
pub fn curve_svg(results: &CircuitResults) -> String {
    let (width, height, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 40.0, 50.0);
    let points = &results.curve;
    let most = points.iter().map(|p| p.edges).max().unwrap_or(0) as f64;
    let lo = points.iter().map(|p| p.faithfulness).fold(0.0, f64::min);
    let hi = points.iter().map(|p| p.faithfulness).fold(1.0, f64::max);
    let x_of = |k: f64| left + (width - left - right) * (k + 1.0).log10() / (most + 1.0).log10().max(1e-9);
    let y_of = |f: f64| top + (height - top - bottom) * (hi - f) / (hi - lo).max(1e-9);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="22" font-size="13">Faithfulness of the top k edges ({}, exact patching)</text>"##,
        escape(&method(results))
    );
    for f in [0.0, 1.0] {
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{f}</text>"##,
            width - right,
            left - 6.0,
            y_of(f) + 4.0,
            y = y_of(f)
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#333"/>"##,
        width - right,
        y = height - bottom
    );
    for p in points {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"##,
            x_of(p.edges as f64),
            height - bottom + 14.0,
            p.edges
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">edges kept (k)</text>"##,
        (left + width - right) / 2.0,
        height - 12.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x_of(p.edges as f64), y_of(p.faithfulness)))
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{POSITIVE}" stroke-width="2"/>"##,
        path.join(" ")
    );
    for p in points {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{POSITIVE}"><title>k = {}: faithfulness {:.4}</title></circle>"##,
            x_of(p.edges as f64),
            y_of(p.faithfulness),
            p.edges,
            p.faithfulness
        );
    }
    let k = results.circuit.edges as f64;
    let _ = writeln!(
        svg,
        r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="none" stroke="{NEGATIVE}" stroke-width="2"><title>the circuit: {} edges, faithfulness {:.4}</title></circle>"##,
        x_of(k),
        y_of(results.circuit.faithfulness),
        results.circuit.edges,
        results.circuit.faithfulness
    );
    svg.push_str("</svg>\n");
    svg
}
