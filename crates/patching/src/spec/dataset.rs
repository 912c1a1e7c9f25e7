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

impl Task {
    /// Every task, in the order the page lists them.
    pub const ALL: [Task; 4] = [Task::Ioi, Task::GreaterThan, Task::Induction, Task::Factual];

    /// The name used in specs.
    pub fn name(self) -> &'static str {
        match self {
            Task::Ioi => "ioi",
            Task::GreaterThan => "greater_than",
            Task::Induction => "induction",
            Task::Factual => "factual",
        }
    }

    /// The name of a choice list.
    pub fn label(self) -> &'static str {
        match self {
            Task::Ioi => "Generated IOI sentences",
            Task::GreaterThan => "Generated greater-than sentences",
            Task::Induction => "Generated repeated sequences (induction)",
            Task::Factual => "Built-in facts the model knows (GPT-2 small)",
        }
    }
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

impl IoiNames {
    /// Every choice, in the order the page lists them.
    pub const ALL: [IoiNames; 3] = [IoiNames::S2, IoiNames::S1Io, IoiNames::Abc];

    /// The name used in specs.
    pub fn name(self) -> &'static str {
        match self {
            IoiNames::S2 => "s2",
            IoiNames::S1Io => "s1_io",
            IoiNames::Abc => "abc",
        }
    }

    /// The name of a choice list.
    pub fn label(self) -> &'static str {
        match self {
            IoiNames::S2 => "S2 (the paper's STR)",
            IoiNames::S1Io => "S1 and IO",
            IoiNames::Abc => "all three (ABC)",
        }
    }
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
    /// IOI: the template, or `"all"` to mix every template (of different token lengths:
    /// per-position grids then have a role axis).
    #[serde(default)]
    pub template: Templates,
}

/// Which IOI templates a dataset draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Templates {
    /// One template (one token length).
    One(usize),
    /// Every template.
    All,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::One(0)
    }
}

impl Serialize for Templates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Templates::One(i) => s.serialize_u64(*i as u64),
            Templates::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Templates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Index(usize),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Index(i) => Ok(Templates::One(i)),
            Raw::Word(w) if w == "all" => Ok(Templates::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`{w}` is not a template: use a template's number or \"all\""
            ))),
        }
    }
}
