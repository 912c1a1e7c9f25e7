//! Datasets named by a generator in the spec (`"dataset": {"task": "ioi", "n": 100, "seed": 0}`),
//! generated into prompt pairs (by [`crate::tasks`]) when the experiment is prepared: a share
//! link stays short and reopens the very same prompts.

use serde::{Deserialize, Serialize};

/// The tasks with generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Ioi,
    GreaterThan,
    Induction,
    /// Factual recall (GPT-2 small): built-in facts the model knows.
    Factual,
}

/// Which IOI names the corrupted prompt changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoiNames {
    /// S2 becomes IO (the paper's STR).
    #[default]
    S2,
    /// S1 and IO become two other names.
    S1Io,
    /// All three names change (Wang et al.'s ABC).
    Abc,
}

/// A generated dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub task: Task,
    /// Number of prompt pairs.
    pub n: usize,
    #[serde(default)]
    pub seed: u64,
    /// IOI: the names STR changes, and under GN the names noised.
    #[serde(default)]
    pub names: IoiNames,
    /// IOI: the template (one template gives one token length, which a grid needs).
    #[serde(default)]
    pub template: usize,
}
