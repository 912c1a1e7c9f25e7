//! What the logit lens and direct logit attribution give, as `lens.json` holds it: for the
//! clean run, the corrupted run and their difference, the lens grids `[layer, pos]` and the
//! direct terms; decoded from JSON with the same bounds and checks as patching results.

use serde::{Deserialize, Serialize};

use crate::analysis::results::{Grid, MAX_LABEL_BYTES, decode_checked};
use crate::sweep::plan::Axis;
use crate::tasks::DatasetReport;
use crate::{ExperimentSpec, PatchingError};

/// The logit lens and the direct terms of one run (or of the difference of two), averaged over
/// prompts (and Gaussian noise's samples).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LensRun {
    /// logit(r) read from each accumulated residual stream through ln_f and the unembedding,
    /// `[layer, pos]` on [`LensResults::lens_axes`].
    pub lens_answer: Grid,
    /// logit(r′), the same way.
    pub lens_counter: Grid,
    /// logit(r) − logit(r′), the same way.
    pub lens_logit_diff: Grid,
    /// Each head's direct contribution to logit(r) − logit(r′) at the last position,
    /// `[layer, head_index]` on [`LensResults::head_axes`].
    pub dla_heads: Grid,
    /// Each MLP's, `[layer]` on [`LensResults::mlp_axes`].
    pub dla_mlp: Grid,
    /// The token embedding's (`hook_embed`).
    pub dla_embed: f64,
    /// The positional embedding's (`hook_pos_embed`).
    pub dla_pos_embed: f64,
    /// Every attention output bias b_O's, together (TransformerLens's `bias` term).
    pub dla_attn_bias: f64,
    /// The final LayerNorm's bias through the unembedding, β · (W_U[:, r] − W_U[:, r′]).
    pub dla_ln_final_bias: f64,
    /// The model's own logit(r) − logit(r′) at the last position, which the direct terms sum
    /// to.
    pub logit_diff: f64,
}

impl LensRun {
    /// Every direct term with TransformerLens's label (`get_full_resid_decomposition`'s `L0H0`,
    /// `0_mlp_out`, `embed`, `pos_embed`, `bias`, then `ln_final_bias`), in that order; they
    /// sum to [`LensRun::logit_diff`].
    pub fn dla_terms(&self) -> Vec<(String, f64)> {
        let n_head = self.dla_heads.shape[1];
        let mut terms: Vec<(String, f64)> = self
            .dla_heads
            .values
            .iter()
            .enumerate()
            .map(|(k, &v)| (format!("L{}H{}", k / n_head, k % n_head), v))
            .collect();
        terms.extend(
            self.dla_mlp
                .values
                .iter()
                .enumerate()
                .map(|(l, &v)| (format!("{l}_mlp_out"), v)),
        );
        terms.extend([
            ("embed".to_string(), self.dla_embed),
            ("pos_embed".to_string(), self.dla_pos_embed),
            ("bias".to_string(), self.dla_attn_bias),
            ("ln_final_bias".to_string(), self.dla_ln_final_bias),
        ]);
        terms
    }

    /// `self − other`, term by term.
    pub(crate) fn minus(&self, other: &LensRun) -> LensRun {
        let grid = |a: &Grid, b: &Grid| {
            Grid::new(
                a.shape.clone(),
                a.values.iter().zip(&b.values).map(|(x, y)| x - y).collect(),
            )
        };
        LensRun {
            lens_answer: grid(&self.lens_answer, &other.lens_answer),
            lens_counter: grid(&self.lens_counter, &other.lens_counter),
            lens_logit_diff: grid(&self.lens_logit_diff, &other.lens_logit_diff),
            dla_heads: grid(&self.dla_heads, &other.dla_heads),
            dla_mlp: grid(&self.dla_mlp, &other.dla_mlp),
            dla_embed: self.dla_embed - other.dla_embed,
            dla_pos_embed: self.dla_pos_embed - other.dla_pos_embed,
            dla_attn_bias: self.dla_attn_bias - other.dla_attn_bias,
            dla_ln_final_bias: self.dla_ln_final_bias - other.dla_ln_final_bias,
            logit_diff: self.logit_diff - other.logit_diff,
        }
    }
}

/// The logit lens and direct logit attribution of an experiment's clean and corrupted runs:
/// `lens.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LensResults {
    /// The spec as given (a generated dataset stays a generator).
    pub spec: ExperimentSpec,
    /// What generating the dataset did, when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetReport>,
    /// The lens grids' axes: `layer`, labelled as TransformerLens's
    /// `accumulated_resid(return_labels=True)` (`0_pre` … `{n-1}_pre`, `final_post`), and `pos`
    /// (the first prompt's tokens) or, for prompts of different lengths, `role`.
    pub lens_axes: Vec<Axis>,
    /// The heads' axes: `layer`, `head_index`.
    pub head_axes: Vec<Axis>,
    /// The MLPs' axis: `layer`.
    pub mlp_axes: Vec<Axis>,
    pub clean: LensRun,
    pub corrupted: LensRun,
    /// Clean minus corrupted, term by term.
    pub difference: LensRun,
    /// How many prompts each run averages.
    pub prompts: usize,
}

impl LensResults {
    /// Lens results from JSON (a file's, a link's), checked as patching results are: bounded,
    /// with a valid spec, and every grid of the shape its axes give.
    pub fn from_json(text: &str) -> Result<Self, PatchingError> {
        decode_checked(text, "lens results", LensResults::check)
    }

    /// Every direct term of the clean run, the corrupted run and their difference as CSV
    /// (`component,clean,corrupted,difference`, TransformerLens's labels), then their sum's row,
    /// `logit_diff`: the model's own logit difference.
    pub fn dla_terms_csv(&self) -> String {
        let mut out = String::from("component,clean,corrupted,difference\n");
        let runs = [&self.clean, &self.corrupted, &self.difference].map(LensRun::dla_terms);
        for (k, (label, clean)) in runs[0].iter().enumerate() {
            out.push_str(&format!("{label},{clean},{},{}\n", runs[1][k].1, runs[2][k].1));
        }
        let (a, b, c) = (
            self.clean.logit_diff,
            self.corrupted.logit_diff,
            self.difference.logit_diff,
        );
        out.push_str(&format!("logit_diff,{a},{b},{c}\n"));
        out
    }

    /// The axes against each other and every grid against its axes.
    fn check(&self) -> Result<(), String> {
        let axes = [
            ("lens_axes", &self.lens_axes, 2),
            ("head_axes", &self.head_axes, 2),
            ("mlp_axes", &self.mlp_axes, 1),
        ];
        for (name, axes, rank) in axes {
            if axes.len() != rank || axes.iter().any(|a| a.labels.is_empty()) {
                return Err(format!("`{name}` needs {rank} axes, each with labels"));
            }
            if let Some(long) = axes
                .iter()
                .flat_map(|a| &a.labels)
                .find(|l| l.len() > MAX_LABEL_BYTES)
            {
                return Err(format!(
                    "an axis label is longer than {MAX_LABEL_BYTES} bytes: {long:.40}…"
                ));
            }
        }
        let layers = self.mlp_axes[0].labels.len();
        if self.head_axes[0].labels.len() != layers || self.lens_axes[0].labels.len() != layers + 1 {
            return Err(format!(
                "{layers} MLP layers, but {} head layers and {} accumulated streams (one more than the layers)",
                self.head_axes[0].labels.len(),
                self.lens_axes[0].labels.len()
            ));
        }
        if self.prompts == 0 {
            return Err("they average no prompts".into());
        }
        let shape = |axes: &[Axis]| axes.iter().map(|a| a.labels.len()).collect::<Vec<_>>();
        let (lens, heads, mlp) = (
            shape(&self.lens_axes),
            shape(&self.head_axes),
            shape(&self.mlp_axes),
        );
        for (run, r) in [
            ("clean", &self.clean),
            ("corrupted", &self.corrupted),
            ("difference", &self.difference),
        ] {
            let grids = [
                ("lens_answer", &r.lens_answer, &lens),
                ("lens_counter", &r.lens_counter, &lens),
                ("lens_logit_diff", &r.lens_logit_diff, &lens),
                ("dla_heads", &r.dla_heads, &heads),
                ("dla_mlp", &r.dla_mlp, &mlp),
            ];
            if let Some((name, g, want)) = grids.iter().find(|(_, g, want)| &g.shape != *want) {
                return Err(format!(
                    "`{run}.{name}` has shape {:?} but its axes give {want:?}",
                    g.shape
                ));
            }
        }
        Ok(())
    }
}
