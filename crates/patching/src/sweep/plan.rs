//! The plan of a sweep: the grid a target fills, with TransformerLens's axis names and layouts
//! (`get_act_patch_resid_pre` is `[layer, pos]`, `get_act_patch_attn_head_out_all_pos` is
//! `[layer, head_index]`, `get_act_patch_attn_head_pattern_by_pos` is
//! `[layer, head_index, dest_pos]`, and so on), and the patch of each cell: the hooks it edits,
//! at which positions and heads, over which layers of a window.

use patchbay_model::HookPoint;
use serde::{Deserialize, Serialize};

use crate::PatchingError;
use crate::spec::target::{Choice, Component, Target};
use crate::sweep::window;

/// The layer axis.
pub const LAYER: &str = "layer";
/// The position axis of stream and head activations.
pub const POS: &str = "pos";
/// The head axis.
pub const HEAD_INDEX: &str = "head_index";
/// The position axis of attention patterns: the query (destination) position.
pub const DEST_POS: &str = "dest_pos";
/// The component axis of `block_every`.
pub const COMPONENT: &str = "component";
/// The position axis of prompts of different lengths, aligned by the role of each token.
pub const ROLE: &str = "role";

/// One hook edited by a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub hook: HookPoint,
    /// `None`: every position.
    pub positions: Option<Vec<usize>>,
    /// `None`: every head (or no head axis).
    pub heads: Option<Vec<usize>>,
}

/// One cell of a grid: the edits made together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub edits: Vec<Edit>,
}

/// A named axis of a result grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub name: String,
    pub labels: Vec<String>,
}

/// The patches of a sweep, in row-major order of the grid's axes.
#[derive(Clone, Debug)]
pub struct Plan {
    pub axes: Vec<Axis>,
    pub patches: Vec<Patch>,
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn axis(name: &str, labels: Vec<String>) -> Axis {
    Axis {
        name: name.into(),
        labels,
    }
}

impl Plan {
    /// The grid's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.labels.len()).collect()
    }

    /// The patches of `target`, for a model of `n_layer` layers and `n_head` heads and a prompt
    /// whose tokens read `tokens`, with an optional window of layers. Path patching has one cell
    /// per sender head and runs its own sweep ([`crate::sweep::path`]): its plan has axes only.
    pub fn new(
        target: &Target,
        n_layer: usize,
        n_head: usize,
        tokens: &[String],
        window_size: Option<usize>,
    ) -> Result<Plan, PatchingError> {
        let component = target.component;
        if let Some(size) = window_size {
            window::check(size, n_layer)?;
            if !component.takes_window() {
                return Err(PatchingError::Target(format!(
                    "windows patch several layers of a component at once, which is meaningless for {}: \
                     use attn_out, mlp_out or a head component",
                    component.name()
                )));
            }
        }
        if component == Component::Path {
            return Ok(Plan {
                axes: vec![axis(LAYER, numbered(n_layer)), axis(HEAD_INDEX, numbered(n_head))],
                patches: Vec::new(),
            });
        }
        let layers_of = |layer: usize| match window_size {
            Some(size) => window::layers(layer, size, n_layer),
            None => vec![layer],
        };
        let joint = |choice: &Choice| match choice {
            Choice::All => None,
            Choice::These(v) => Some(v.clone()),
            Choice::Each => unreachable!("joint choices only"),
        };
        let components = match component {
            Component::BlockEvery => vec![Component::ResidPre, Component::AttnOut, Component::MlpOut],
            c => vec![c],
        };
        let per_position = target.positions == Choice::Each;
        let per_head = component.has_heads() && target.heads == Choice::Each;
        // TransformerLens's layouts: [component,] layer, then pos and head_index, except that
        // patterns put the head before their destination position.
        let mut axes = Vec::new();
        if component == Component::BlockEvery {
            axes.push(axis(
                COMPONENT,
                components.iter().map(|c| c.name().to_string()).collect(),
            ));
        }
        axes.push(axis(LAYER, numbered(n_layer)));
        let head_first = component == Component::Pattern;
        let pos_axis = axis(if head_first { DEST_POS } else { POS }, tokens.to_vec());
        let head_axis = axis(HEAD_INDEX, numbered(n_head));
        let position_sets: Vec<Option<Vec<usize>>> = if per_position {
            (0..tokens.len()).map(|p| Some(vec![p])).collect()
        } else {
            vec![joint(&target.positions)]
        };
        let head_sets = |c: Component| -> Vec<Option<Vec<usize>>> {
            if per_head {
                (0..n_head).map(|h| Some(vec![h])).collect()
            } else if c.has_heads() {
                vec![joint(&target.heads)]
            } else {
                vec![None]
            }
        };
        match (head_first, per_position, per_head) {
            (true, true, true) => axes.extend([head_axis, pos_axis]),
            (_, true, true) => axes.extend([pos_axis, head_axis]),
            (_, true, false) => axes.push(pos_axis),
            (_, false, true) => axes.push(head_axis),
            (_, false, false) => {}
        }
        let mut patches = Vec::new();
        for &c in &components {
            for layer in 0..n_layer {
                let mut cell = |positions: &Option<Vec<usize>>, heads: &Option<Vec<usize>>| {
                    let edits = layers_of(layer)
                        .into_iter()
                        .map(|l| Edit {
                            hook: c.hook(l),
                            positions: positions.clone(),
                            heads: heads.clone(),
                        })
                        .collect();
                    patches.push(Patch { edits });
                };
                if head_first {
                    for heads in &head_sets(c) {
                        for positions in &position_sets {
                            cell(positions, heads);
                        }
                    }
                } else {
                    for positions in &position_sets {
                        for heads in &head_sets(c) {
                            cell(positions, heads);
                        }
                    }
                }
            }
        }
        Ok(Plan { axes, patches })
    }
}

impl Plan {
    /// Where the position axis is, if the grid has one.
    fn position_axis(&self) -> Option<usize> {
        self.axes.iter().position(|a| a.name == POS || a.name == DEST_POS)
    }

    /// The axes of the grid these cells fill when prompts are aligned by role: the position
    /// axis becomes a `role` axis over `roles`.
    pub fn role_axes(&self, roles: &[String]) -> Vec<Axis> {
        let mut axes = self.axes.clone();
        if let Some(a) = self.position_axis() {
            axes[a] = axis(ROLE, roles.to_vec());
        }
        axes
    }

    /// For each cell of this plan (over one prompt's positions), the cell of the role grid it
    /// fills: the prompt's position `p` has role `role_of[p]` of `n_roles`.
    pub fn role_cells(&self, role_of: &[usize], n_roles: usize) -> Vec<usize> {
        let shape = self.shape();
        let Some(a) = self.position_axis() else {
            return (0..shape.iter().product()).collect();
        };
        let mut global = shape.clone();
        global[a] = n_roles;
        (0..shape.iter().product())
            .map(|cell| {
                let mut index = crate::analysis::stats::unravel(cell, &shape);
                index[a] = role_of[index[a]];
                index.iter().zip(&global).fold(0, |acc, (i, n)| acc * n + i)
            })
            .collect()
    }
}
