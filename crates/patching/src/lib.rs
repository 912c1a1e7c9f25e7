//! Activation patching on GPT-2, after Zhang & Nanda, "Towards Best Practices of Activation
//! Patching" (ICLR 2024). No browser code: the CLI and the page's wasm layer both drive this.
//!
//! The folders follow the pipeline an experiment runs through:
//!
//! - [`spec`]: the input language, [`ExperimentSpec`] (versioned, what share links carry);
//! - [`prepare`]: a spec checked against a model, its dataset generated, its answers and noise
//!   resolved, once;
//! - [`corruption`]: symmetric token replacement and Gaussian noise;
//! - [`tasks`]: the dataset generators (IOI, greater-than, induction, factual recall);
//! - [`runs`]: the cached clean and corrupted runs; [`metric`]: what a run's logits say;
//! - [`sweep`]: the plan of a grid and the sweeps that fill it (batched, windows, path
//!   patching, attribution patching);
//! - [`circuit`]: checking a circuit by ablation, attention and accuracy;
//! - [`analysis`]: results, statistics, detection, method sensitivity, known circuits;
//! - [`export`]: heatmaps and TransformerLens scripts;
//! - [`experiment`]: the orchestration; [`inspect`]: looking inside one cell;
//! - [`lens`]: the logit lens and direct logit attribution of the clean and corrupted runs.

pub mod analysis;
pub mod circuit;
pub mod corruption;
mod error;
pub mod experiment;
pub mod export;
pub mod inspect;
pub mod lens;
pub mod metric;
pub mod prepare;
pub mod runs;
pub mod spec;
pub mod sweep;
pub mod tasks;

pub use analysis::results::{Grid, Results};
pub use error::PatchingError;
pub use experiment::{Observer, Progress, RunOptions, run_experiment};
pub use metric::MetricKind;
pub use prepare::{Prepared, prepare};
pub use spec::dataset::DatasetSpec;
pub use spec::target::{Choice, Component, HeadInput, Receivers, Target};
pub use spec::{
    Correction, Corruption, Detect, Direction, ExperimentSpec, GaussianNoise, MetricSpec, ModelSource,
    PromptPair, SPEC_VERSION, StatsSettings, Window,
};
pub use sweep::batched::{Budget, Strategy};
