//! Taking results out of Patchbay: heatmaps drawn with plotters ([`heatmap`], behind the
//! `plot` feature) and a TransformerLens script that reproduces an experiment ([`snippet`]).

#[cfg(feature = "plot")]
pub mod heatmap;
pub mod snippet;
