//! An experiment's results: the grids with their axes, the baselines they are measured
//! against, detections, window and attribution contrasts, and the spec that produced them.
//! `results.json` is this struct; grids serialize as nested arrays, first axis outermost.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{Axis, Detection, Direction, ExperimentSpec, MetricKind};

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

    fn flatten(
        value: &Value,
        shape: &mut Vec<usize>,
        depth: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), String> {
        match value {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                } else if shape[depth] != items.len() {
                    return Err("grid rows have different lengths".into());
                }
                items
                    .iter()
                    .try_for_each(|item| Grid::flatten(item, shape, depth + 1, out))
            }
            Value::Number(n) => {
                if shape.len() != depth {
                    return Err("grid nesting is uneven".into());
                }
                out.push(n.as_f64().ok_or("not a number")?);
                Ok(())
            }
            // JSON has no NaN: a normalized value with a zero denominator is written as null.
            Value::Null => {
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
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let (mut shape, mut values) = (Vec::new(), Vec::new());
        Grid::flatten(&value, &mut shape, 0, &mut values).map_err(serde::de::Error::custom)?;
        Ok(Grid { shape, values })
    }
}

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
    pub dataset: Option<crate::dataset::DatasetReport>,
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
    /// Each prompt's grid (datasets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_grids: Vec<Grid>,
    /// Mean raw metric of the clean runs.
    pub clean_metric: f64,
    /// Mean raw metric of the corrupted runs.
    pub corrupted_metric: f64,
    pub prompts: Vec<PromptSummary>,
    /// Cells over 2σ from the grid's mean.
    pub detected: Vec<Detection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowContrast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<AttributionContrast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseSummary>,
}

impl Results {
    /// A title naming every setting, for heatmaps.
    pub fn title(&self) -> String {
        let spec = &self.spec;
        let corruption = match &spec.corruption {
            crate::Corruption::Str => "STR".to_string(),
            crate::Corruption::Gn(gn) => format!("GN {}σ ×{} seed {}", gn.scale, gn.samples, spec.seed),
        };
        let window = spec
            .window
            .map(|w| format!(", window {}", w.size))
            .unwrap_or_default();
        let prompts = if spec.prompts.len() > 1 {
            format!(", {} prompts", spec.prompts.len())
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
        let mut out = self
            .axes
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(",label,value\n");
        for (cell, value) in grid.values.iter().enumerate() {
            let index = crate::compare::unravel(cell, &grid.shape);
            let label = index
                .iter()
                .zip(&self.axes)
                .map(|(&i, axis)| axis.labels[i].replace('"', "\"\""))
                .collect::<Vec<_>>()
                .join(" / ");
            let index: Vec<String> = index.iter().map(usize::to_string).collect();
            out.push_str(&format!("{},\"{label}\",{value}\n", index.join(",")));
        }
        out
    }
}
