//! Taking results out of Patchbay: heatmaps drawn with plotters ([`heatmap`], behind the
//! `plot` feature) and Python scripts that reproduce an experiment in TransformerLens 3.9 or
//! 4.x ([`transformer_lens`]) or in nnsight, here or on NDIF ([`nnsight`]), sharing what they
//! can ([`python`]). [`Library`] names the three.

#[cfg(feature = "plot")]
pub mod heatmap;
pub mod nnsight;
mod python;
pub mod transformer_lens;

use crate::ExperimentSpec;

/// The libraries an experiment exports to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    /// TransformerLens 3.9, the last release with `HookedTransformer`.
    TransformerLens3,
    /// TransformerLens 4.x and its `TransformerBridge`.
    TransformerLens4,
    /// nnsight, locally or on NDIF.
    Nnsight,
}

impl Library {
    /// Every library, in the order the page and the CLI list them.
    pub const ALL: [Library; 3] = [
        Library::TransformerLens3,
        Library::TransformerLens4,
        Library::Nnsight,
    ];

    /// The name the CLI's `--to` and the page use.
    pub fn name(self) -> &'static str {
        match self {
            Library::TransformerLens3 => "tl3",
            Library::TransformerLens4 => "tl4",
            Library::Nnsight => "nnsight",
        }
    }

    pub fn from_name(name: &str) -> Option<Library> {
        Library::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The script that reproduces `spec` (prepared: a generated dataset's prompts written out).
    pub fn script(self, spec: &ExperimentSpec) -> String {
        match self {
            Library::TransformerLens3 => transformer_lens::transformer_lens_script(spec),
            Library::TransformerLens4 => transformer_lens::transformer_lens4_script(spec),
            Library::Nnsight => nnsight::nnsight_script(spec),
        }
    }
}
