//! The experiment spec, the input language of Patchbay: every choice an experiment makes
//! (model, prompts, corruption, answers, metric, direction, target, window, seed, dataset,
//! detection, statistics, circuit discovery), versioned. The CLI runs it, and the page's share links carry it, so that a link
//! reopens exactly the same experiment. Nothing here runs a model: [`crate::prepare`] checks a
//! spec against one.

pub mod circuit;
pub mod dataset;
pub mod limits;
pub mod target;

use serde::{Deserialize, Serialize};

pub use crate::analysis::uncertainty::StatsSettings;
pub use crate::corruption::gn::GaussianNoise;
use crate::{MetricKind, PatchingError};
use circuit::CircuitSpec;
use dataset::DatasetSpec;
pub use limits::MAX_SPEC_BYTES;
use target::Target;

/// The spec version this build writes. Older versions it can still read are converted on load.
pub const SPEC_VERSION: u64 = 1;

/// A complete, reproducible experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Always [`SPEC_VERSION`] when written by this build.
    pub version: u64,
    pub model: ModelSource,
    /// Prepend `<|endoftext|>`, as TransformerLens does by default.
    #[serde(default = "yes")]
    pub prepend_bos: bool,
    /// The prompt pairs: one for a single experiment, several for a dataset.
    pub prompts: Vec<PromptPair>,
    pub corruption: Corruption,
    pub metric: MetricSpec,
    #[serde(default)]
    pub direction: Direction,
    pub target: Target,
    /// Patch this many adjacent layers together, centred on each layer.
    #[serde(default)]
    pub window: Option<Window>,
    /// Seeds everything random (the Gaussian noise).
    #[serde(default)]
    pub seed: u64,
    /// Also compute attribution patching (the gradient approximation) beside exact patching.
    #[serde(default)]
    pub attribution: bool,
    /// A generated dataset, expanded into `prompts` when the experiment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSpec>,
    /// How components are detected in the grid (default: the paper's 2σ).
    #[serde(default)]
    pub detect: Detect,
    /// How a dataset's per-cell statistics are drawn: the bootstrap's level and resamples, the
    /// Monte Carlo sign flips, and their seed (left out when they are the defaults).
    #[serde(default, skip_serializing_if = "StatsSettings::is_default")]
    pub stats: StatsSettings,
    /// How `patchbay circuit` scores edges and checks the circuit (left out when absent; that
    /// command then uses the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<CircuitSpec>,
}

/// The rule that flags a cell as a detected component.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Detect {
    /// More than this many standard deviations from the mean of all cells (the paper: 2).
    Sigma(f64),
    /// An absolute effect at least this large (for small models, where one dominant cell
    /// inflates σ).
    Threshold(f64),
    /// A sign-flip p-value, adjusted across the grid's cells, of at most `alpha` (a dataset of
    /// two prompts or more), and an absolute effect of at least `min_effect` (default 0):
    /// `{"significant": {"alpha": 0.01, "correction": "holm", "min_effect": 0.2}}`. Over many
    /// prompts a small but consistent effect is significant too: significance says an effect is
    /// not noise, `min_effect` that it is large enough to count.
    Significant {
        alpha: f64,
        #[serde(default)]
        correction: Correction,
        #[serde(default)]
        min_effect: f64,
    },
}

/// How p-values are adjusted for the grid's many cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down method: controls the family-wise error rate.
    #[default]
    Holm,
    /// Benjamini–Hochberg: controls the false discovery rate.
    Bh,
}

impl Default for Detect {
    fn default() -> Self {
        Detect::Sigma(2.0)
    }
}

/// The significance level a rule or a view uses when the spec names none (the usual 5%).
pub const DEFAULT_ALPHA: f64 = 0.05;

impl Detect {
    /// "Significant after correction" with the defaults: α = [`DEFAULT_ALPHA`] after Holm's
    /// correction, with no least effect.
    pub const SIGNIFICANT: Detect = Detect::Significant {
        alpha: DEFAULT_ALPHA,
        correction: Correction::Holm,
        min_effect: 0.0,
    };

    /// The significance test a grid's cells are read by: the rule's own α and correction when
    /// it is a significance rule, else α = [`DEFAULT_ALPHA`] after Holm's correction.
    pub fn significance(&self) -> (f64, Correction) {
        match *self {
            Detect::Significant {
                alpha, correction, ..
            } => (alpha, correction),
            _ => (DEFAULT_ALPHA, Correction::Holm),
        }
    }
}

impl Detect {
    /// The rule in words, after "Components …": "over 2σ from the mean", "with an effect of at
    /// least 0.2", "significant at α = 0.01 after Holm's correction, with an effect of at least
    /// 0.2".
    pub fn describe(&self) -> String {
        match self {
            Detect::Sigma(k) => format!("over {k}σ from the mean"),
            Detect::Threshold(t) => format!("with an effect of at least {t}"),
            Detect::Significant {
                alpha,
                correction,
                min_effect,
            } => {
                let correction = match correction {
                    Correction::Holm => "Holm's correction",
                    Correction::Bh => "Benjamini–Hochberg's correction",
                };
                let effect = if *min_effect > 0.0 {
                    format!(", with an effect of at least {min_effect}")
                } else {
                    String::new()
                };
                format!("significant at α = {alpha} after {correction}{effect}")
            }
        }
    }
}

/// Whether this build computes attribution patching (`"attribution": true`): it needs burn's
/// autodiff, which the browser bundle leaves out.
pub const ATTRIBUTION_AVAILABLE: bool = cfg!(feature = "autodiff");

fn yes() -> bool {
    true
}

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSource {
    /// A Hugging Face Hub repository id, such as `openai-community/gpt2`.
    Hub(String),
    /// A folder URL in the Hub layout, or the URL of a `.safetensors` file.
    Url(String),
    /// A local folder (CLI) or file (page).
    Local(String),
    /// A model that ships with the app, by name.
    Embedded(String),
}

/// One clean prompt, its corruption and its answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptPair {
    pub clean: String,
    /// The corrupted prompt, for symmetric token replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupted: Option<String>,
    /// The answer r (one token, usually with its leading space: `" Mary"`).
    pub answer: String,
    /// The other answer r' (one token), needed by logit difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_answer: Option<String>,
    /// The answers R whose probabilities `prob_diff` sums (one token each), as Hanna et al. sum
    /// P(YY' > YY) for greater-than; empty means {r}.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answer_set: Vec<String>,
    /// The other answers R' that `prob_diff` subtracts; empty means {r'}.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counter_set: Vec<String>,
    /// A name for each token of the clean prompt (not counting `<|endoftext|>`, which is
    /// `BOS`), such as `IO`, `S1`, `S2` and `END` for IOI: prompts of different lengths are
    /// aligned by these roles. Generated datasets name them; without them, prompts of different
    /// lengths are aligned from the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// How the corrupted run is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Corruption {
    /// Symmetric token replacement: each pair's `corrupted` prompt.
    Str,
    /// Gaussian noise on the token embeddings (ROME's causal tracing).
    Gn(GaussianNoise),
}

/// The metric, whether it is normalized, and how a dataset is normalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub kind: MetricKind,
    #[serde(default = "yes")]
    pub normalized: bool,
    #[serde(default, skip_serializing_if = "Normalize::is_default")]
    pub normalize: Normalize,
}

/// How a dataset's normalized grid is formed from its prompts (one prompt: both are the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// (mean M_patched − mean M_base) / (mean M_clean − mean M_corrupted): the ratio of means,
    /// as Wang et al., ARENA and the TransformerLens demos compute it.
    #[default]
    RatioOfMeans,
    /// The mean over prompts of each prompt's own normalized effect, which a prompt with a
    /// near-zero M_clean − M_corrupted can dominate.
    PerPrompt,
}

impl Normalize {
    /// Both rules, in the order the page lists them.
    pub const ALL: [Normalize; 2] = [Normalize::RatioOfMeans, Normalize::PerPrompt];

    fn is_default(&self) -> bool {
        *self == Normalize::RatioOfMeans
    }

    /// The name used in specs.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::RatioOfMeans => "ratio_of_means",
            Normalize::PerPrompt => "per_prompt",
        }
    }

    /// The name of a choice list.
    pub fn label(self) -> &'static str {
        match self {
            Normalize::RatioOfMeans => "Ratio of means over the prompts (as TransformerLens demos)",
            Normalize::PerPrompt => "Mean of each prompt's normalized effect",
        }
    }

    /// The grid's formula over prompts i, in the README's notation (its "How prompts become
    /// one grid"): e_i(c) = M_patched − M_base in cell c, d_i = M_clean − M_corrupted.
    pub fn formula(self) -> &'static str {
        match self {
            Normalize::RatioOfMeans => "grid(c) = mean_i e_i(c) / mean_i d_i",
            Normalize::PerPrompt => "grid(c) = mean_i (e_i(c) / d_i)",
        }
    }

    /// What the formulas' terms are.
    pub const TERMS: &'static str = "e_i(c) = M_patched − M_base is prompt i's effect in cell c; d_i = M_clean − M_corrupted its denominator";
}

/// Which run is patched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Clean activations into the corrupted run: is the component sufficient to restore?
    #[default]
    Denoising,
    /// Corrupted activations into the clean run: is the component necessary?
    Noising,
}

impl Direction {
    /// Both directions, in the order the page lists them.
    pub const ALL: [Direction; 2] = [Direction::Denoising, Direction::Noising];

    /// The name used in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Denoising => "denoising",
            Direction::Noising => "noising",
        }
    }

    /// The name of a choice list: what the direction patches and what it tests.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Denoising => "Denoising: clean into corrupted (sufficiency)",
            Direction::Noising => "Noising: corrupted into clean (necessity)",
        }
    }
}

/// Patch `size` adjacent layers together, centred on each layer and clipped at the ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub size: usize,
}

impl ExperimentSpec {
    /// Parses a spec from JSON: an unknown version, an unknown field or a missing one is an
    /// error that names it.
    pub fn from_json(text: &str) -> Result<Self, PatchingError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(PatchingError::Spec(format!(
                "it is {} bytes long; specs may be at most {MAX_SPEC_BYTES} bytes",
                text.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PatchingError::Spec(format!("not JSON: {e}")))?;
        let version = value
            .get("version")
            .ok_or_else(|| PatchingError::Spec("it has no `version` field".into()))?
            .as_u64()
            .ok_or_else(|| PatchingError::Spec("`version` must be a whole number".into()))?;
        if version != SPEC_VERSION {
            return Err(PatchingError::Version {
                found: version,
                supported: SPEC_VERSION.to_string(),
            });
        }
        let spec: ExperimentSpec =
            serde_json::from_value(value).map_err(|e| PatchingError::Spec(e.to_string()))?;
        limits::check(&spec)?;
        Ok(spec)
    }

    /// The spec as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("specs serialize")
    }
}
