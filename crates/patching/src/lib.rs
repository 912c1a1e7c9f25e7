//! Activation patching on GPT-2, after Zhang & Nanda, "Towards Best Practices of Activation
//! Patching" (ICLR 2024). No browser code: the CLI and the page's wasm layer both drive this.
//!
//! - [`ExperimentSpec`]: every choice of an experiment, versioned; [`run_experiment`] runs it.
//! - [`corruption`]: STR pairs and Gaussian noise.
//! - [`MetricKind`]: probability, logit difference, KL divergence, raw and normalized.
//! - [`Target`]: components, positions, heads; [`window`]: sliding windows of layers.
//! - [`Sweep`]: batched sweeps that reuse everything a patch cannot change.
//! - [`path`] patching and [`attribution`] patching; [`compare`]: statistics across grids.

#[cfg(feature = "autodiff")]
pub mod attribution;
pub mod circuits;
pub mod compare;
pub mod corruption;
pub mod dataset;
mod error;
mod experiment;
pub mod facts;
pub mod generate;
#[cfg(feature = "plot")]
pub mod heatmap;
pub mod inspect;
mod metric;
pub mod path;
mod results;
mod run;
pub mod sensitivity;
pub mod snippet;
mod spec;
mod sweep;
mod target;
pub mod window;

pub use compare::Detection;
pub use error::PatchingError;
pub use experiment::{Observer, Prepared, Progress, RunOptions, prepare, run_experiment};
pub use metric::{Baselines, MetricKind, Reading, Scorer, logits_to_logit_diff};
pub use results::{
    AttributionContrast, Grid, NoiseSummary, PromptSummary, Results, RunSummary, WindowContrast,
};
pub use run::{CachedRun, Corrupted, PromptRuns};
pub use spec::{
    Corruption, Detect, Direction, ExperimentSpec, GaussianNoise, MetricSpec, ModelSource, PromptPair,
    SPEC_VERSION, Window,
};
pub use sweep::{Budget, Strategy, Sweep};
pub use target::{Axis, Choice, Component, Edit, HeadInput, Patch, Plan, Receivers, Target};
