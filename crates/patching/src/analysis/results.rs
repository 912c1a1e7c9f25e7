//! An experiment's results: the grids with their axes, the baselines they are measured
//! against, a dataset's per-cell uncertainty, detections, window and attribution contrasts, and
//! the spec that produced them. `results.json` is this struct; grids serialize as nested arrays,
//! first axis outermost, with null for a value that is undefined (NaN).
//!
//! Also how results are shown, for the page and the CLI alike: the views a result holds, each
//! with its label and colour limit, the title, and a sentence for each cell.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::analysis::detect::Detection;
use crate::analysis::stats::unravel;
use crate::analysis::uncertainty::{CellStats, EXACT_MAX_PROMPTS, StatsSettings};
use crate::spec::Normalize;
use crate::sweep::plan::{Axis, COMPONENT, DEST_POS, HEAD_INDEX, LAYER, POS};
use crate::tasks::DatasetReport;
use crate::{
    Choice, Component, Correction, Corruption, Detect, Direction, ExperimentSpec, MetricKind, PatchingError,
};

/// A dense grid of values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Grid {
    pub fn new(shape: Vec<usize>, values: Vec<f64>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "grid shape and values disagree"
        );
        Grid { shape, values }
    }

    fn nested(shape: &[usize], values: &[f64]) -> Value {
        match shape {
            [] => Value::from(values[0]),
            [_] => Value::from(values.to_vec()),
            [n, rest @ ..] => {
                let step = values.len() / n;
                Value::Array(
                    (0..*n)
                        .map(|i| Grid::nested(rest, &values[i * step..(i + 1) * step]))
                        .collect(),
                )
            }
        }
    }

    /// Flattens nested arrays, recording each depth's length; every number must sit at the
    /// same depth, below every array.
    fn flatten(
        value: &Value,
        shape: &mut Vec<usize>,
        leaf: &mut Option<usize>,
        depth: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), String> {
        let mut at_leaf = || match *leaf {
            Some(d) if d != depth => Err("grid nesting is uneven".to_string()),
            _ => {
                *leaf = Some(depth);
                Ok(())
            }
        };
        match value {
            Value::Array(items) => {
                if leaf.is_some_and(|d| depth >= d) {
                    return Err("grid nesting is uneven".into());
                }
                if shape.len() == depth {
                    shape.push(items.len());
                } else if shape[depth] != items.len() {
                    return Err("grid rows have different lengths".into());
                }
                items
                    .iter()
                    .try_for_each(|item| Grid::flatten(item, shape, leaf, depth + 1, out))
            }
            Value::Number(n) => {
                at_leaf()?;
                out.push(n.as_f64().ok_or("not a number")?);
                Ok(())
            }
            // JSON has no NaN: a normalized value with a zero denominator is written as null.
            Value::Null => {
                at_leaf()?;
                out.push(f64::NAN);
                Ok(())
            }
            _ => Err("grids hold numbers only".into()),
        }
    }
}

impl Serialize for Grid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Grid::nested(&self.shape, &self.values).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Grid {
    /// A grid from nested arrays, checked: at least one axis, at most [`MAX_GRID_CELLS`]
    /// cells, every row as long as its siblings and every value at the same depth.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let (mut shape, mut values) = (Vec::new(), Vec::new());
        Grid::flatten(&value, &mut shape, &mut None, 0, &mut values).map_err(serde::de::Error::custom)?;
        let cells = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if shape.is_empty() || cells != Some(values.len()) || values.is_empty() {
            return Err(serde::de::Error::custom(format!(
                "a grid must be nested arrays of numbers, evenly: found shape {shape:?} with {} values",
                values.len()
            )));
        }
        if values.len() > MAX_GRID_CELLS {
            return Err(serde::de::Error::custom(format!(
                "a grid of {} cells is larger than Patchbay's {MAX_GRID_CELLS}",
                values.len()
            )));
        }
        Ok(Grid { shape, values })
    }
}

/// The largest grid results may hold, in cells.
pub const MAX_GRID_CELLS: usize = 1 << 20;
/// The largest results document read, in bytes.
pub const MAX_RESULTS_BYTES: usize = 64 << 20;
/// The longest axis label, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// The clean and corrupted runs of one prompt, as the page shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The metric's raw value.
    pub metric: f64,
    pub prob_answer: f64,
    pub prob_counter: f64,
    pub logit_diff: f64,
}

/// What each prompt contributed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptSummary {
    /// Readable tokens of the clean prompt.
    pub tokens: Vec<String>,
    /// Positions where the corrupted prompt differs (STR) or the noise goes (GN).
    pub corrupted_positions: Vec<usize>,
    pub answer: u32,
    pub counter_answer: Option<u32>,
    pub clean: RunSummary,
    pub corrupted: RunSummary,
    /// M_clean − M_corrupted: what this prompt's normalized effects are divided by under
    /// `per_prompt`.
    pub denominator: f64,
}

/// A window's joint effect next to the sum of its single layers'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowContrast {
    pub size: usize,
    /// The same target patched one layer at a time.
    pub single_layer: Grid,
    /// For each layer, the sum of the single-layer effects over its window.
    pub summed_single_layer: Grid,
    /// Largest |window effect| over largest |summed single-layer effect|.
    pub peak_ratio: Option<f64>,
}

/// Attribution patching beside exact patching.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionContrast {
    pub grid: Grid,
    /// Spearman's rank correlation with the exact grid.
    pub spearman: Option<f64>,
}

/// How sure each cell of a dataset's grid is (two prompts or more): every grid has the shape of
/// `grid`; see [`crate::analysis::uncertainty`] for the formulas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uncertainty {
    /// The level, resamples, Monte Carlo sign patterns and seed they were drawn with.
    pub settings: StatsSettings,
    /// Prompts that have a value in each cell: all of them, unless prompts of different
    /// lengths are aligned by role. A cell's p-value is exact (all 2^n sign patterns) when this
    /// is at most [`EXACT_MAX_PROMPTS`], Monte Carlo above.
    pub prompts: Grid,
    /// Standard error of each cell (null for a cell of one prompt).
    pub se: Grid,
    /// The percentile bootstrap interval over prompts, at `settings.level`.
    pub ci_low: Grid,
    pub ci_high: Grid,
    /// Two-sided sign-flip permutation p-value of each cell's mean effect.
    pub p: Grid,
    /// `p` adjusted across the grid's cells by Holm's method (family-wise error).
    pub p_holm: Grid,
    /// `p` adjusted across the grid's cells by Benjamini–Hochberg (false discovery rate).
    pub p_bh: Grid,
    /// The most bootstrap resamples any cell had no value in (dropped from its interval).
    pub undefined_resamples: usize,
}

impl Uncertainty {
    /// The statistics of a grid of `shape`.
    pub fn new(stats: CellStats, shape: &[usize]) -> Self {
        let grid = |values: Vec<f64>| Grid::new(shape.to_vec(), values);
        Uncertainty {
            settings: stats.settings,
            prompts: grid(stats.prompts.iter().map(|&n| n as f64).collect()),
            se: grid(stats.se),
            ci_low: grid(stats.ci_low),
            ci_high: grid(stats.ci_high),
            p: grid(stats.p),
            p_holm: grid(stats.p_holm),
            p_bh: grid(stats.p_bh),
            undefined_resamples: stats.undefined_resamples,
        }
    }

    fn grids(&self) -> [(&'static str, &Grid); 7] {
        [
            ("stats.prompts", &self.prompts),
            ("stats.se", &self.se),
            ("stats.ci_low", &self.ci_low),
            ("stats.ci_high", &self.ci_high),
            ("stats.p", &self.p),
            ("stats.p_holm", &self.p_holm),
            ("stats.p_bh", &self.p_bh),
        ]
    }
}

/// Which cells of a dataset's grid are significant after correction ([`Results::significance`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Significance {
    pub alpha: f64,
    pub correction: Correction,
    /// Per cell of the grid, in its flat order: whether its adjusted p-value is at most `alpha`.
    pub significant: Vec<bool>,
    /// The test in words: "significant at α = 0.05 after Holm's correction".
    pub rule: String,
    /// "4 of 6 cells are significant at α = 0.05 after Holm's correction."
    pub summary: String,
}

/// Gaussian-noise settings as run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseSummary {
    pub sigma: f64,
    pub nu: f64,
    pub samples: usize,
}

/// Everything an experiment produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The spec as given (a generated dataset stays a generator).
    pub spec: ExperimentSpec,
    /// What generating the dataset did, when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetReport>,
    pub metric: MetricKind,
    pub normalized: bool,
    pub direction: Direction,
    pub axes: Vec<Axis>,
    /// The effect of each patch (normalized if asked), averaged over prompts.
    pub grid: Grid,
    /// The metric's raw value in each patched run, averaged over prompts.
    pub raw_grid: Grid,
    /// Per-cell standard deviation over prompts (datasets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sd_grid: Option<Grid>,
    /// Standard errors, bootstrap intervals and permutation p-values of every cell of `grid`
    /// (datasets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Uncertainty>,
    /// Each prompt's grid (datasets), in the grid's units: under the ratio of means each
    /// prompt's effect over the mean denominator, so that they average to the grid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_grids: Vec<Grid>,
    /// The mean over prompts of M_clean − M_corrupted: the ratio of means' denominator.
    pub denominator: f64,
    /// Prompts whose own denominator is under 5% of the mean (in absolute value): alone, they
    /// would divide by almost nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub small_denominators: Vec<usize>,
    /// Mean raw metric of the clean runs.
    pub clean_metric: f64,
    /// Mean raw metric of the corrupted runs.
    pub corrupted_metric: f64,
    pub prompts: Vec<PromptSummary>,
    /// Cells the spec's detection rule flags, strongest first.
    pub detected: Vec<Detection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowContrast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<AttributionContrast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseSummary>,
}

/// Results of any kind (`what`: "results", "lens results") from JSON, checked as a spec is:
/// bounded by [`MAX_RESULTS_BYTES`], with a valid spec, then `check` on what was decoded.
pub(crate) fn decode_checked<T: DeserializeOwned>(
    text: &str,
    what: &str,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, PatchingError> {
    let bad = |m: String| PatchingError::Spec(format!("these {what} are malformed: {m}"));
    if text.len() > MAX_RESULTS_BYTES {
        return Err(bad(format!("they are larger than {MAX_RESULTS_BYTES} bytes")));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let spec = value
        .get("spec")
        .ok_or_else(|| bad("they have no `spec`".into()))?;
    ExperimentSpec::from_json(&spec.to_string())?;
    let decoded: T = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    check(&decoded).map_err(bad)?;
    Ok(decoded)
}

impl Results {
    /// Results from JSON (a link's, a file's), checked as a spec is: bounded, with a valid spec,
    /// every grid of the shape its axes give, and detections inside the grid.
    pub fn from_json(text: &str) -> Result<Self, PatchingError> {
        decode_checked(text, "results", Results::check)
    }

    /// The grids' shapes against the axes, and the detections against the grid.
    fn check(&self) -> Result<(), String> {
        if self.axes.is_empty() || self.axes.iter().any(|a| a.labels.is_empty()) {
            return Err("every axis needs labels".into());
        }
        if let Some(long) = self
            .axes
            .iter()
            .flat_map(|a| &a.labels)
            .find(|l| l.len() > MAX_LABEL_BYTES)
        {
            return Err(format!(
                "an axis label is longer than {MAX_LABEL_BYTES} bytes: {long:.40}…"
            ));
        }
        let shape: Vec<usize> = self.axes.iter().map(|a| a.labels.len()).collect();
        let mut grids: Vec<(&str, &Grid)> = vec![("grid", &self.grid), ("raw_grid", &self.raw_grid)];
        grids.extend(self.sd_grid.iter().map(|g| ("sd_grid", g)));
        grids.extend(self.stats.iter().flat_map(Uncertainty::grids));
        grids.extend(self.prompt_grids.iter().map(|g| ("prompt_grids", g)));
        grids.extend(self.attribution.iter().map(|a| ("attribution", &a.grid)));
        if let Some(w) = &self.window {
            grids.extend([("window", &w.single_layer), ("window", &w.summed_single_layer)]);
        }
        if let Some((name, g)) = grids.iter().find(|(_, g)| g.shape != shape) {
            return Err(format!(
                "`{name}` has shape {:?} but the axes give {shape:?}",
                g.shape
            ));
        }
        if !self.prompt_grids.is_empty() && self.prompt_grids.len() != self.prompts.len() {
            return Err(format!(
                "{} prompt grids for {} prompts",
                self.prompt_grids.len(),
                self.prompts.len()
            ));
        }
        let cells = self.grid.values.len();
        for d in &self.detected {
            if d.cell >= cells
                || d.index.len() != shape.len()
                || d.index.iter().zip(&shape).any(|(i, n)| i >= n)
            {
                return Err(format!("a detection points outside the grid (cell {})", d.cell));
            }
        }
        Ok(())
    }

    /// A title naming every setting, for heatmaps.
    pub fn title(&self) -> String {
        let spec = &self.spec;
        let corruption = match &spec.corruption {
            Corruption::Str => "STR".to_string(),
            Corruption::Gn(gn) => format!("GN {}σ ×{} seed {}", gn.scale, gn.samples, spec.seed),
        };
        let window = spec
            .window
            .map(|w| format!(", window {}", w.size))
            .unwrap_or_default();
        let prompts = if self.prompts.len() > 1 {
            format!(", {} prompts", self.prompts.len())
        } else {
            String::new()
        };
        let direction = match self.direction {
            Direction::Denoising => "denoising",
            Direction::Noising => "noising",
        };
        format!(
            "{} · {} · {}{} · {direction}{window}{prompts}",
            spec.target.component.describe(),
            corruption,
            if self.normalized { "normalized " } else { "" },
            self.metric.label(),
        )
    }

    /// One grid as CSV: a column per axis index, then the value.
    pub fn csv(&self, grid: &Grid) -> String {
        csv(grid, &self.axes)
    }
}

/// `grid` on `axes` as CSV: a column per axis index, a label naming the cell, then the value.
pub fn csv(grid: &Grid, axes: &[Axis]) -> String {
    let mut out = axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(",");
    out.push_str(",label,value\n");
    for (cell, value) in grid.values.iter().enumerate() {
        let index = unravel(cell, &grid.shape);
        let label = index
            .iter()
            .zip(axes)
            .map(|(&i, axis)| axis.labels[i].replace('"', "\"\""))
            .collect::<Vec<_>>()
            .join(" / ");
        let index: Vec<String> = index.iter().map(usize::to_string).collect();
        out.push_str(&format!("{},\"{label}\",{value}\n", index.join(",")));
    }
    out
}

/// The colour scale's half-width for `values`: the largest absolute finite value, 1 for an
/// all-zero grid.
pub fn symmetric_limit(values: &[f64]) -> f64 {
    let max = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if max > 0.0 { max } else { 1.0 }
}

/// Which colour scale a view uses.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// The effects' common one.
    Shared,
    /// The bootstrap interval's two ends'.
    Interval,
    /// 0 to 1.
    Probability,
    /// Its own.
    Own,
}

/// `level` as a percentage: "95%", "97.5%".
fn percent(level: f64) -> String {
    format!("{}%", (level * 1e8).round() / 1e6)
}

/// One grid of the results as it is shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct View<'a> {
    /// `grid`, `raw_grid`, `window_single_layer`, `window_summed_single_layer`, `attribution`,
    /// `sd_grid`, and for datasets `se`, `ci_low`, `ci_high`, `p`, `p_holm` and `p_bh`: the file
    /// stem of its CSV and SVG.
    pub key: &'static str,
    /// What the view shows, for a menu.
    pub label: String,
    /// The heatmap's title.
    pub title: String,
    /// What a value is, for the colour bar.
    pub value_label: String,
    pub grid: &'a Grid,
    /// The colour scale's half-width. Effects share one scale, so that their views compare by
    /// eye; the interval's ends share theirs; p-values have 1; raw values and spreads each have
    /// their own.
    pub limit: f64,
}

impl Results {
    /// Every grid these results hold, in the order a reader wants them.
    pub fn views(&self) -> Vec<View<'_>> {
        let title = self.title();
        let effect = format!("{}effect", if self.normalized { "normalized " } else { "" });
        let metric = self.metric.label();
        let mut views: Vec<(&'static str, String, String, String, &Grid)> = vec![(
            "grid",
            if self.normalized {
                "Effect (normalized)"
            } else {
                "Effect"
            }
            .to_string(),
            title.clone(),
            effect.clone(),
            &self.grid,
        )];
        views.push((
            "raw_grid",
            format!("Raw {metric}"),
            format!("{title} (raw {})", self.metric.name()),
            self.metric.name().to_string(),
            &self.raw_grid,
        ));
        if let Some(w) = &self.window {
            views.push((
                "window_single_layer",
                "Single layers (no window)".into(),
                format!("{title} (single layers)"),
                effect.clone(),
                &w.single_layer,
            ));
            views.push((
                "window_summed_single_layer",
                "Summed single layers over each window".into(),
                format!("{title} (summed single layers)"),
                effect.clone(),
                &w.summed_single_layer,
            ));
        }
        if let Some(a) = &self.attribution {
            views.push((
                "attribution",
                "Attribution patching".into(),
                format!("{title} (attribution patching)"),
                effect.clone(),
                &a.grid,
            ));
        }
        if let Some(sd) = &self.sd_grid {
            views.push((
                "sd_grid",
                "Spread over prompts (sd)".into(),
                format!("{title} (sd over prompts)"),
                "sd".into(),
                sd,
            ));
        }
        if let Some(stats) = &self.stats {
            let level = percent(stats.settings.level);
            views.push((
                "se",
                "Standard error over prompts".into(),
                format!("{title} (standard error)"),
                "se".into(),
                &stats.se,
            ));
            for (key, end, grid) in [
                ("ci_low", "lower", &stats.ci_low),
                ("ci_high", "upper", &stats.ci_high),
            ] {
                views.push((
                    key,
                    format!("{level} bootstrap interval, {end} end"),
                    format!("{title} ({level} bootstrap interval, {end} end)"),
                    effect.clone(),
                    grid,
                ));
            }
            for (key, label, grid) in [
                ("p", "p-value (sign-flip, uncorrected)", &stats.p),
                ("p_holm", "p-value, Holm-adjusted", &stats.p_holm),
                ("p_bh", "p-value, Benjamini–Hochberg-adjusted", &stats.p_bh),
            ] {
                views.push((key, label.into(), format!("{title} ({label})"), "p".into(), grid));
            }
        }
        // Effects share one scale, so that their views compare by eye; the interval's two ends
        // share theirs; p-values run from 0 to 1; raw values and spreads each have their own.
        let scale_of = |key: &str| match key {
            "raw_grid" | "sd_grid" | "se" => Scale::Own,
            "ci_low" | "ci_high" => Scale::Interval,
            "p" | "p_holm" | "p_bh" => Scale::Probability,
            _ => Scale::Shared,
        };
        let widest = |scale: Scale| {
            views
                .iter()
                .filter(|v| scale_of(v.0) == scale)
                .map(|v| symmetric_limit(&v.4.values))
                .fold(0.0f64, f64::max)
        };
        let (shared, interval) = (widest(Scale::Shared), widest(Scale::Interval));
        views
            .into_iter()
            .map(|(key, label, title, value_label, grid)| View {
                key,
                label,
                title,
                value_label,
                limit: match scale_of(key) {
                    Scale::Shared => shared,
                    Scale::Interval => interval,
                    Scale::Probability => 1.0,
                    Scale::Own => symmetric_limit(&grid.values),
                },
                grid,
            })
            .collect()
    }

    /// The view with this key, if these results have it.
    pub fn view(&self, key: &str) -> Option<View<'_>> {
        self.views().into_iter().find(|v| v.key == key)
    }

    /// What cell `cell` (a flat index into the grid) patches: "the output of head 9.6 at
    /// position \"␣John\"".
    pub fn describe_cell(&self, cell: usize) -> String {
        let shape: Vec<usize> = self.axes.iter().map(|a| a.labels.len()).collect();
        let index = unravel(cell, &shape);
        let at = |name: &str| {
            self.axes
                .iter()
                .position(|a| a.name == name)
                .map(|a| self.axes[a].labels[index[a]].as_str())
        };
        let spec = &self.spec;
        let component = at(COMPONENT)
            .and_then(|name| Component::ALL.into_iter().find(|c| c.name() == name))
            .unwrap_or(spec.target.component);
        let layer = at(LAYER).unwrap_or("?");
        let mut out = match at(HEAD_INDEX) {
            Some(head) => format!("{} {layer}.{head}", component.cell_text()),
            None => format!("{} {layer}", component.cell_text()),
        };
        match at(POS).or(at(DEST_POS)) {
            Some(pos) => out.push_str(&format!(" at position \"{pos}\"")),
            None if spec.target.positions == Choice::All => out.push_str(" at every position"),
            None => {}
        }
        if let Some(w) = spec.window {
            out.push_str(&format!(" (with its {}-layer window)", w.size));
        }
        out
    }

    /// One sentence saying what `value` in view `key` at cell `cell` means.
    pub fn meaning(&self, key: &str, cell: usize, value: f64) -> String {
        let patch = self.describe_cell(cell);
        if !value.is_finite() {
            return format!("{patch}: no value.");
        }
        let metric = self.metric.label();
        let pct = |v: f64| format!("{:.0}%", 100.0 * v.abs());
        let signed = |v: f64| format!("{}{}", if v >= 0.0 { "+" } else { "" }, precision(v, 3));
        match key {
            "raw_grid" => return format!("With {patch} patched, the {metric} is {}.", precision(value, 4)),
            "sd_grid" => {
                return format!(
                    "Across prompts, patching {patch} varies with standard deviation {}.",
                    precision(value, 3)
                );
            }
            "se" => {
                return format!(
                    "The standard error over prompts of patching {patch} is {}.",
                    precision(value, 3)
                );
            }
            "ci_low" | "ci_high" => {
                let level = self
                    .stats
                    .as_ref()
                    .map_or(String::new(), |s| percent(s.settings.level));
                let end = if key == "ci_low" { "starts" } else { "ends" };
                return format!(
                    "Resampling the prompts, the {level} bootstrap interval of patching {patch} {end} at {}.",
                    signed(value)
                );
            }
            "p" | "p_holm" | "p_bh" => {
                let after = match key {
                    "p" => "before correction".to_string(),
                    "p_holm" => format!("after Holm's correction across {} cells", self.grid.values.len()),
                    _ => format!(
                        "after Benjamini–Hochberg's correction across {} cells",
                        self.grid.values.len()
                    ),
                };
                return format!(
                    "If patching {patch} did nothing on average, flipping the sign of each prompt's effect gives an effect this large with probability {} ({after}).",
                    precision(value, 2)
                );
            }
            _ => {}
        }
        let prefix = if key == "attribution" {
            "Attribution patching estimates that patching"
        } else {
            "Patching"
        };
        let denoising = self.direction == Direction::Denoising;
        let from = if denoising {
            "the clean run into the corrupted run"
        } else {
            "the corrupted run into the clean run"
        };
        if !self.normalized {
            return format!(
                "{prefix} {patch} from {from} changes the {metric} by {}.",
                signed(value)
            );
        }
        match (denoising, value >= 0.0, value <= 0.0) {
            (true, true, _) => format!(
                "{prefix} {patch} from {from} restores {} of the clean run's {metric}.",
                pct(value)
            ),
            (true, false, _) => format!(
                "{prefix} {patch} from {from} moves the {metric} {} further from the clean run: a harmful component.",
                pct(value)
            ),
            (false, _, true) => format!(
                "{prefix} {patch} from {from} removes {} of its {metric}.",
                pct(value)
            ),
            (false, _, false) => format!(
                "{prefix} {patch} from {from} pushes the {metric} {} beyond the clean run.",
                pct(value)
            ),
        }
    }
}

impl Results {
    /// How sure cell `cell` of the grid is, in one line for a hover: "95% CI [+0.412, +0.623];
    /// p = 0.00010 (Holm 0.00060, BH 0.00020); 40 prompts, 9999 random sign flips". `None`
    /// without statistics (one prompt).
    pub fn uncertainty(&self, cell: usize) -> Option<String> {
        let stats = self.stats.as_ref()?;
        let at = |g: &Grid| g.values.get(cell).copied().unwrap_or(f64::NAN);
        let show = |v: f64, f: &dyn Fn(f64) -> String| if v.is_finite() { f(v) } else { "n/a".into() };
        let signed = |v: f64| format!("{}{}", if v >= 0.0 { "+" } else { "" }, precision(v, 3));
        let p = |v: f64| precision(v, 2);
        let n = at(&stats.prompts) as usize;
        let test = if n <= EXACT_MAX_PROMPTS {
            format!("all {} sign flips", 1u64 << n)
        } else {
            format!("{} random sign flips", stats.settings.permutations)
        };
        Some(format!(
            "{} CI [{}, {}]; p = {} (Holm {}, BH {}); {n} prompts, {test}",
            percent(stats.settings.level),
            show(at(&stats.ci_low), &signed),
            show(at(&stats.ci_high), &signed),
            show(at(&stats.p), &p),
            show(at(&stats.p_holm), &p),
            show(at(&stats.p_bh), &p),
        ))
    }

    /// Which cells of the grid are significant after correction: by the spec's significance
    /// rule (its α and correction) or, under another rule, at α = [`crate::spec::DEFAULT_ALPHA`]
    /// after Holm's correction. A cell is significant when its adjusted p-value is at most α, as
    /// the significance rule detects (a NaN p-value is not); no least effect applies. `None`
    /// without statistics (one prompt).
    pub fn significance(&self) -> Option<Significance> {
        let stats = self.stats.as_ref()?;
        let (alpha, correction) = self.spec.detect.significance();
        let adjusted = match correction {
            Correction::Holm => &stats.p_holm,
            Correction::Bh => &stats.p_bh,
        };
        let significant: Vec<bool> = adjusted.values.iter().map(|&p| p <= alpha).collect();
        let rule = Detect::Significant {
            alpha,
            correction,
            min_effect: 0.0,
        }
        .describe();
        let count = significant.iter().filter(|&&s| s).count();
        let summary = format!("{count} of {} cells are {rule}.", significant.len());
        Some(Significance {
            alpha,
            correction,
            significant,
            rule,
            summary,
        })
    }

    /// The labels of flat cell `cell` along every axis.
    pub fn cell_labels(&self, cell: usize) -> Vec<&str> {
        let shape: Vec<usize> = self.axes.iter().map(|a| a.labels.len()).collect();
        unravel(cell, &shape)
            .iter()
            .zip(&self.axes)
            .map(|(&i, axis)| axis.labels[i].as_str())
            .collect()
    }

    /// How cell `cell` of the effect grid varies across a dataset's prompts: "Across the 40
    /// prompts: sd 0.120, from 0.0100 to 0.900." `None` for a single prompt.
    pub fn spread(&self, cell: usize) -> Option<String> {
        let sd = self.sd_grid.as_ref()?.values.get(cell)?;
        let values: Vec<f64> = self
            .prompt_grids
            .iter()
            .filter_map(|g| g.values.get(cell).copied())
            .collect();
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(format!(
            "Across the {} prompts: sd {}, from {} to {}.",
            values.len(),
            precision(*sd, 3),
            precision(min, 3),
            precision(max, 3)
        ))
    }

    /// What a reader sees for cell `cell` of view `key`: its labels and value, what the value
    /// means, and for a dataset's effect grid its spread across prompts and how sure it is
    /// ([`Results::uncertainty`]). `None` for a view these results lack or a cell beyond the grid.
    pub fn hover_text(&self, key: &str, cell: usize) -> Option<String> {
        let view = self.view(key)?;
        let value = *view.grid.values.get(cell)?;
        let mut text = format!(
            "{} = {}. {}",
            self.cell_labels(cell).join(" · "),
            precision(value, 4),
            self.meaning(key, cell, value)
        );
        if key == "grid" {
            if let Some(spread) = self.spread(cell) {
                text.push(' ');
                text.push_str(&spread);
            }
            if let Some(sure) = self.uncertainty(cell) {
                text.push_str(&format!(" {sure}."));
            }
        }
        Some(text)
    }

    /// A warning when the grid is normalized and some prompts' own denominators (M_clean −
    /// M_corrupted) are under 5% of the mean: "2 of the 40 prompts (3, 17) have …". `None`
    /// otherwise.
    pub fn small_denominator_warning(&self) -> Option<String> {
        let small = &self.small_denominators;
        if small.is_empty() || !self.normalized {
            return None;
        }
        let list: Vec<String> = small.iter().map(usize::to_string).collect();
        let rule = match self.spec.metric.normalize {
            Normalize::PerPrompt => {
                "normalized per prompt, each divides its effects by almost nothing and can \
                 dominate the grid (the ratio of means does not)"
            }
            Normalize::RatioOfMeans => {
                "the ratio of means divides by the mean, so they do not dominate the grid, \
                 but per prompt they would"
            }
        };
        Some(format!(
            "{} of the {} prompts ({}) have a denominator M_clean − M_corrupted under 5% of the \
             mean ({}): {rule}.",
            small.len(),
            self.prompts.len(),
            list.join(", "),
            precision(self.denominator, 3),
        ))
    }

    /// Attribution patching set against the exact grid, when it ran: how alike they rank the
    /// cells, and where they differ most. `None` otherwise.
    pub fn attribution_text(&self) -> Option<String> {
        let a = self.attribution.as_ref()?;
        let rho = a
            .spearman
            .map_or("undefined (a constant grid)".to_string(), |r| format!("{r:.3}"));
        let largest = a
            .grid
            .values
            .iter()
            .zip(&self.grid.values)
            .enumerate()
            .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
            .map(|(cell, (x, y))| (cell, (x - y).abs()))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut text = format!(
            "Attribution patching (one backward pass: the gradient's first-order estimate of each \
             patch) ranks the cells as exact patching does with Spearman's ρ = {rho}"
        );
        if let Some((cell, diff)) = largest {
            text.push_str(&format!(
                "; they differ most at {} ({} apart)",
                self.describe_cell(cell),
                precision(diff, 3)
            ));
        }
        text.push('.');
        Some(text)
    }

    /// The heading of the detected components: "Components over 2σ from the mean (3)".
    pub fn detection_heading(&self) -> String {
        format!(
            "Components {} ({})",
            self.spec.detect.describe(),
            self.detected.len()
        )
    }

    /// One detected component in words: "the output of head 0.0 at every position: 0.912
    /// (+2.3σ)".
    pub fn detection_text(&self, d: &Detection) -> String {
        format!(
            "{}: {:.3} ({}{:.1}σ)",
            self.describe_cell(d.cell),
            d.value,
            if d.z > 0.0 { "+" } else { "" },
            d.z
        )
    }
}

/// `v` with `digits` significant digits, as JavaScript's `toPrecision` writes it.
pub(crate) fn precision(v: f64, digits: usize) -> String {
    if v == 0.0 {
        return format!("{:.*}", digits - 1, 0.0);
    }
    let magnitude = v.abs().log10().floor() as i32;
    if magnitude < -6 || magnitude >= digits as i32 {
        format!("{:.*e}", digits - 1, v)
    } else {
        format!("{:.*}", (digits as i32 - 1 - magnitude).max(0) as usize, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 × 2 layer × head grid of a 40-prompt dataset, with statistics, under `detect`.
    pub(crate) fn dataset_results(detect: &str) -> Results {
        let text = format!(
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
        );
        Results::from_json(&text).unwrap()
    }

    #[test]
    fn significance_reads_the_rule_or_holm_at_five_percent() {
        // Under 2σ: Holm at α = 0.05.
        let s = dataset_results(r#"{"sigma": 2.0}"#).significance().unwrap();
        assert_eq!((s.alpha, s.correction), (0.05, Correction::Holm));
        assert_eq!(s.significant, vec![true, false, true, false]);
        assert_eq!(
            s.summary,
            "2 of 4 cells are significant at α = 0.05 after Holm's correction."
        );
        // The spec's own rule: BH at α = 0.03 (its least effect does not grey a cell).
        let bh =
            dataset_results(r#"{"significant": {"alpha": 0.03, "correction": "bh", "min_effect": 0.6}}"#)
                .significance()
                .unwrap();
        assert_eq!(bh.significant, vec![true, false, true, true]);
        assert_eq!(
            bh.rule,
            "significant at α = 0.03 after Benjamini–Hochberg's correction"
        );
        // No statistics, no significance.
        let mut one = dataset_results(r#"{"threshold": 0.2}"#);
        one.stats = None;
        assert!(one.significance().is_none());
    }

    #[test]
    fn the_colour_limit_ignores_non_finite_values() {
        assert_eq!(symmetric_limit(&[0.1, -0.4, f64::NAN]), 0.4);
        assert_eq!(symmetric_limit(&[0.0, f64::NAN]), 1.0);
    }

    #[test]
    fn grids_must_be_even_and_have_an_axis() {
        let grid = |text: &str| serde_json::from_str::<Grid>(text).map_err(|e| e.to_string());
        assert_eq!(grid("[[1, 2], [3, null]]").unwrap().shape, vec![2, 2]);
        for bad in [
            "5",
            "[[1], [[2, 3]]]",
            "[5, []]",
            "[]",
            "[[1, 2], [3]]",
            "[[null], [[1]]]",
            "[\"x\"]",
        ] {
            assert!(grid(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn precision_writes_as_javascript_does() {
        assert_eq!(precision(0.123456, 3), "0.123");
        assert_eq!(precision(-1.5, 3), "-1.50");
        assert_eq!(precision(1234.5, 3), "1.23e3");
        assert_eq!(precision(0.0, 3), "0.00");
    }
}
