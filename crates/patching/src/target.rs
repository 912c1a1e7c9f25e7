//! Patch targets: which activation is patched, at which layers, positions and heads, and the
//! grid of patches a sweep fills, with TransformerLens's layouts (`get_act_patch_resid_pre` is
//! `[layer, pos]`, `get_act_patch_attn_head_out_all_pos` is `[layer, head]`, and so on).

use patchbay_model::{Gpt2Config, HookPoint};
use serde::{Deserialize, Serialize};

use crate::{PatchingError, window};

/// The kind of activation a target patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    ResidPre,
    ResidMid,
    ResidPost,
    AttnOut,
    MlpOut,
    /// Each head's output (`attn.hook_z`): "attn_head_out" in TransformerLens's sweeps.
    Z,
    Q,
    K,
    V,
    Pattern,
    /// resid_pre, attn_out and mlp_out stacked (`get_act_patch_block_every`).
    BlockEvery,
    /// Path patching from each sender head (Wang et al.).
    Path,
}

impl Component {
    /// The hook this component patches at `layer`.
    pub fn hook(self, layer: usize) -> HookPoint {
        match self {
            Component::ResidPre | Component::BlockEvery => HookPoint::ResidPre(layer),
            Component::ResidMid => HookPoint::ResidMid(layer),
            Component::ResidPost => HookPoint::ResidPost(layer),
            Component::AttnOut => HookPoint::AttnOut(layer),
            Component::MlpOut => HookPoint::MlpOut(layer),
            Component::Z | Component::Path => HookPoint::Z(layer),
            Component::Q => HookPoint::Q(layer),
            Component::K => HookPoint::K(layer),
            Component::V => HookPoint::V(layer),
            Component::Pattern => HookPoint::Pattern(layer),
        }
    }

    /// Whether the component has a head axis.
    pub fn has_heads(self) -> bool {
        matches!(
            self,
            Component::Z | Component::Q | Component::K | Component::V | Component::Pattern | Component::Path
        )
    }

    fn is_residual(self) -> bool {
        matches!(
            self,
            Component::ResidPre | Component::ResidMid | Component::ResidPost
        )
    }

    /// The name used in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            Component::ResidPre => "resid_pre",
            Component::ResidMid => "resid_mid",
            Component::ResidPost => "resid_post",
            Component::AttnOut => "attn_out",
            Component::MlpOut => "mlp_out",
            Component::Z => "z",
            Component::Q => "q",
            Component::K => "k",
            Component::V => "v",
            Component::Pattern => "pattern",
            Component::BlockEvery => "block_every",
            Component::Path => "path",
        }
    }

    /// A description for titles and tooltips.
    pub fn describe(self) -> &'static str {
        match self {
            Component::ResidPre => "residual stream before each block",
            Component::ResidMid => "residual stream between attention and MLP",
            Component::ResidPost => "residual stream after each block",
            Component::AttnOut => "attention layer output",
            Component::MlpOut => "MLP output",
            Component::Z => "attention head output",
            Component::Q => "attention head queries",
            Component::K => "attention head keys",
            Component::V => "attention head values",
            Component::Pattern => "attention head pattern",
            Component::BlockEvery => "residual stream, attention output and MLP output",
            Component::Path => "path from each sender head",
        }
    }
}

/// Positions or heads: one patch for each, all together, or a chosen set together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    #[default]
    Each,
    All,
    These(Vec<usize>),
}

impl Serialize for Choice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Choice::Each => s.serialize_str("each"),
            Choice::All => s.serialize_str("all"),
            Choice::These(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<usize>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "each" => Ok(Choice::Each),
            Raw::Word(w) if w == "all" => Ok(Choice::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`{w}` is not a choice: use \"each\", \"all\" or a list of indices"
            ))),
            Raw::List(v) => Ok(Choice::These(v)),
        }
    }
}

/// What path patching patches into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Receivers {
    /// `"logits"`: the sender's effect through every path that avoids other heads.
    Logits(LogitsReceiver),
    /// The queries, keys or values of receiver heads.
    Heads {
        /// `[layer, head]` pairs.
        heads: Vec<[usize; 2]>,
        input: HeadInput,
        /// Receiver positions (default: all).
        #[serde(default)]
        positions: Option<Vec<usize>>,
    },
}

/// The literal `"logits"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogitsReceiver {
    Logits,
}

/// Which input of a receiver head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInput {
    Q,
    K,
    V,
}

/// What an experiment patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub component: Component,
    #[serde(default)]
    pub positions: Choice,
    #[serde(default)]
    pub heads: Choice,
    /// Path patching only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Receivers>,
}

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

impl Plan {
    /// The grid's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.labels.len()).collect()
    }
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn check_indices(what: &str, indices: &[usize], len: usize) -> Result<(), PatchingError> {
    if indices.is_empty() {
        return Err(PatchingError::Target(format!("the list of {what}s is empty")));
    }
    match indices.iter().find(|&&i| i >= len) {
        Some(i) => Err(PatchingError::Target(format!(
            "{what} {i} is out of range: there are {len} {what}s (0..{len})"
        ))),
        None => Ok(()),
    }
}

impl Target {
    /// Checks the target against the model and the prompt's length.
    pub fn check(&self, config: &Gpt2Config, len: usize) -> Result<(), PatchingError> {
        if let Choice::These(p) = &self.positions {
            check_indices("position", p, len)?;
        }
        if let Choice::These(h) = &self.heads {
            check_indices("head", h, config.n_head)?;
        }
        if !self.component.has_heads() && self.heads != Choice::Each {
            return Err(PatchingError::Target(format!(
                "{} has no heads; leave `heads` out",
                self.component.name()
            )));
        }
        match (&self.component, &self.receivers) {
            (Component::Path, None) => Err(PatchingError::Target(
                "path patching needs `receivers`: \"logits\" or receiver heads".into(),
            )),
            (Component::Path, Some(Receivers::Heads { heads, positions, .. })) => {
                if heads.is_empty() {
                    return Err(PatchingError::Target(
                        "path patching needs at least one receiver head".into(),
                    ));
                }
                for [layer, head] in heads {
                    if *layer >= config.n_layer {
                        return Err(PatchingError::Target(format!(
                            "receiver layer {layer} is out of range: the model has {} layers",
                            config.n_layer
                        )));
                    }
                    check_indices("head", &[*head], config.n_head)?;
                }
                if let Some(p) = positions {
                    check_indices("position", p, len)?;
                }
                Ok(())
            }
            (Component::Path, Some(_)) => Ok(()),
            (_, Some(_)) => Err(PatchingError::Target(
                "`receivers` is for path patching only".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The patches of this target, for a model of `n_layer` layers and `n_head` heads and a
    /// prompt whose tokens read `tokens`, with an optional window of layers.
    pub fn plan(
        &self,
        n_layer: usize,
        n_head: usize,
        tokens: &[String],
        window_size: Option<usize>,
    ) -> Result<Plan, PatchingError> {
        let component = self.component;
        if let Some(size) = window_size {
            window::check(size, n_layer)?;
            if component.is_residual() || component == Component::BlockEvery || component == Component::Path {
                return Err(PatchingError::Target(format!(
                    "windows patch several layers of a component at once, which is meaningless for {}: \
                     use attn_out, mlp_out or a head component",
                    component.name()
                )));
            }
        }
        let layers_of = |layer: usize| match window_size {
            Some(size) => window::layers(layer, size, n_layer),
            None => vec![layer],
        };
        let layer_axis = Axis {
            name: "layer".into(),
            labels: numbered(n_layer),
        };
        let pos_axis = Axis {
            name: "position".into(),
            labels: tokens.to_vec(),
        };
        let head_axis = Axis {
            name: "head".into(),
            labels: numbered(n_head),
        };
        let joint = |choice: &Choice| match choice {
            Choice::All => None,
            Choice::These(v) => Some(v.clone()),
            Choice::Each => unreachable!("joint choices only"),
        };

        let components = match component {
            Component::BlockEvery => vec![Component::ResidPre, Component::AttnOut, Component::MlpOut],
            Component::Path => {
                return Err(PatchingError::Target("path patching has its own planner".into()));
            }
            c => vec![c],
        };
        let mut axes = Vec::new();
        if component == Component::BlockEvery {
            axes.push(Axis {
                name: "component".into(),
                labels: components.iter().map(|c| c.name().to_string()).collect(),
            });
        }
        axes.push(layer_axis);
        let per_position = self.positions == Choice::Each;
        let per_head = component.has_heads() && self.heads == Choice::Each;
        if per_position {
            axes.push(pos_axis);
        }
        if per_head {
            axes.push(head_axis);
        }

        let mut patches = Vec::new();
        for &c in &components {
            for layer in 0..n_layer {
                let position_sets: Vec<Option<Vec<usize>>> = if per_position {
                    (0..tokens.len()).map(|p| Some(vec![p])).collect()
                } else {
                    vec![joint(&self.positions)]
                };
                for positions in position_sets {
                    let head_sets: Vec<Option<Vec<usize>>> = if per_head {
                        (0..n_head).map(|h| Some(vec![h])).collect()
                    } else if c.has_heads() {
                        vec![joint(&self.heads)]
                    } else {
                        vec![None]
                    };
                    for heads in head_sets {
                        let edits = layers_of(layer)
                            .into_iter()
                            .map(|l| Edit {
                                hook: c.hook(l),
                                positions: positions.clone(),
                                heads: heads.clone(),
                            })
                            .collect();
                        patches.push(Patch { edits });
                    }
                }
            }
        }
        Ok(Plan { axes, patches })
    }
}
