//! How lens results are shown, for the page and the CLI alike: every grid as a view with its
//! key, label, title, colour limit and axes, and a sentence for each cell.

use serde::Serialize;

use crate::analysis::results::{Grid, precision, symmetric_limit};
use crate::analysis::stats::unravel;
use crate::lens::results::{LensResults, LensRun};
use crate::sweep::plan::Axis;

/// Which run a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    Clean,
    Corrupted,
    /// Clean minus corrupted.
    Difference,
}

impl Which {
    pub const ALL: [Which; 3] = [Which::Clean, Which::Corrupted, Which::Difference];

    /// Its name in view keys: `clean`, `corrupted`, `difference`.
    pub fn name(self) -> &'static str {
        match self {
            Which::Clean => "clean",
            Which::Corrupted => "corrupted",
            Which::Difference => "difference",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Which::Clean => "the clean run",
            Which::Corrupted => "the corrupted run",
            Which::Difference => "clean minus corrupted",
        }
    }
}

/// What a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// The lens's logit(r) − logit(r′), `[layer, pos]`.
    LensLogitDiff,
    /// The lens's logit(r).
    LensAnswer,
    /// The lens's logit(r′).
    LensCounter,
    /// Each head's direct logit attribution, `[layer, head_index]`.
    DlaHeads,
    /// Each MLP's, `[layer]`.
    DlaMlp,
}

impl Quantity {
    pub const ALL: [Quantity; 5] = [
        Quantity::LensLogitDiff,
        Quantity::LensAnswer,
        Quantity::LensCounter,
        Quantity::DlaHeads,
        Quantity::DlaMlp,
    ];

    /// Its name in view keys, as the field of [`LensRun`] it shows.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::LensLogitDiff => "lens_logit_diff",
            Quantity::LensAnswer => "lens_answer",
            Quantity::LensCounter => "lens_counter",
            Quantity::DlaHeads => "dla_heads",
            Quantity::DlaMlp => "dla_mlp",
        }
    }

    fn grid(self, run: &LensRun) -> &Grid {
        match self {
            Quantity::LensLogitDiff => &run.lens_logit_diff,
            Quantity::LensAnswer => &run.lens_answer,
            Quantity::LensCounter => &run.lens_counter,
            Quantity::DlaHeads => &run.dla_heads,
            Quantity::DlaMlp => &run.dla_mlp,
        }
    }
}

/// One grid of lens results as it is shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LensView<'a> {
    /// `{quantity}_{which}`, such as `dla_heads_clean`: the file stem of its CSV and SVG.
    pub key: String,
    pub quantity: Quantity,
    pub which: Which,
    /// What the view shows, for a menu.
    pub label: String,
    /// The heatmap's title.
    pub title: String,
    /// What a value is, for the colour bar.
    pub value_label: String,
    pub axes: &'a [Axis],
    pub grid: &'a Grid,
    /// The colour scale's half-width, shared by a quantity's clean, corrupted and difference
    /// views so that they compare by eye.
    pub limit: f64,
}

/// `+0.123`, `-1.50`.
fn signed(v: f64) -> String {
    format!("{}{}", if v >= 0.0 { "+" } else { "" }, precision(v, 3))
}

impl LensResults {
    /// The run `which` names.
    pub fn run(&self, which: Which) -> &LensRun {
        match which {
            Which::Clean => &self.clean,
            Which::Corrupted => &self.corrupted,
            Which::Difference => &self.difference,
        }
    }

    /// The axes of `quantity`'s grids.
    pub fn axes(&self, quantity: Quantity) -> &[Axis] {
        match quantity {
            Quantity::LensLogitDiff | Quantity::LensAnswer | Quantity::LensCounter => &self.lens_axes,
            Quantity::DlaHeads => &self.head_axes,
            Quantity::DlaMlp => &self.mlp_axes,
        }
    }

    /// The answers as a formula names them: the prompt's own tokens for one prompt, r and r′
    /// for several.
    fn answers(&self) -> (String, String) {
        match self.spec.prompts.as_slice() {
            [pair] if self.prompts == 1 => (
                format!("{:?}", pair.answer),
                format!("{:?}", pair.counter_answer.clone().unwrap_or_default()),
            ),
            _ => ("r".into(), "r′".into()),
        }
    }

    /// What `quantity` measures: `logit(" Mary") − logit(" John")`.
    fn value_label(&self, quantity: Quantity) -> String {
        let (r, rp) = self.answers();
        match quantity {
            Quantity::LensAnswer => format!("logit({r})"),
            Quantity::LensCounter => format!("logit({rp})"),
            _ => format!("logit({r}) − logit({rp})"),
        }
    }

    /// Every grid, quantity by quantity, each as clean, corrupted and difference.
    pub fn views(&self) -> Vec<LensView<'_>> {
        let prompts = if self.prompts > 1 {
            format!(" · {} prompts", self.prompts)
        } else {
            String::new()
        };
        let mut views = Vec::new();
        for quantity in Quantity::ALL {
            let limit = Which::ALL
                .iter()
                .map(|&w| symmetric_limit(&quantity.grid(self.run(w)).values))
                .fold(0.0f64, f64::max);
            let value_label = self.value_label(quantity);
            let label = match quantity {
                Quantity::DlaHeads => "Direct logit attribution of each head".to_string(),
                Quantity::DlaMlp => "Direct logit attribution of each MLP".to_string(),
                _ => format!("Logit lens: {value_label}"),
            };
            for which in Which::ALL {
                views.push(LensView {
                    key: format!("{}_{}", quantity.name(), which.name()),
                    quantity,
                    which,
                    label: format!("{label} ({})", which.text()),
                    title: format!("{label} · {}{prompts}", which.text()),
                    value_label: value_label.clone(),
                    axes: self.axes(quantity),
                    grid: quantity.grid(self.run(which)),
                    limit,
                });
            }
        }
        views
    }

    /// The view with this key, if there is one.
    pub fn view(&self, key: &str) -> Option<LensView<'_>> {
        self.views().into_iter().find(|v| v.key == key)
    }

    /// One sentence saying what `value` at cell `cell` (a flat index) of view `key` means.
    pub fn meaning(&self, key: &str, cell: usize, value: f64) -> Option<String> {
        let view = self.view(key)?;
        if cell >= view.grid.values.len() {
            return None;
        }
        let index = unravel(cell, &view.grid.shape);
        let label = |a: usize| view.axes[a].labels[index[a]].as_str();
        let of = view.which.text();
        let what = &view.value_label;
        Some(match view.quantity {
            _ if !value.is_finite() => {
                let last = view.axes.len() - 1;
                format!("No prompt has the {} \"{}\".", view.axes[last].name, label(last))
            }
            Quantity::DlaHeads => format!(
                "Head {}.{} writes {} directly into {what} at the last position ({of}), through ln_f with its scale frozen.",
                label(0),
                label(1),
                signed(value)
            ),
            Quantity::DlaMlp => format!(
                "MLP {} writes {} directly into {what} at the last position ({of}), through ln_f with its scale frozen.",
                label(0),
                signed(value)
            ),
            _ => {
                let stream = match label(0) {
                    "0_pre" => "the embeddings".to_string(),
                    "final_post" => "the final residual stream (the model's own logits)".to_string(),
                    pre => match pre
                        .strip_suffix("_pre")
                        .and_then(|l| l.parse::<usize>().ok())
                        .filter(|&l| l > 0)
                    {
                        Some(l) => format!("the residual stream after layer {}", l - 1),
                        None => format!("the stream {pre}"),
                    },
                };
                format!(
                    "Read from {stream} at \"{}\" through ln_f and the unembedding, {what} is {} ({of}).",
                    label(1),
                    signed(value)
                )
            }
        })
    }
}
