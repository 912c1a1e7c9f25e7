//! Patch targets: which activation is patched, at which positions and heads, and, for path
//! patching, into what. The grid a target's sweep fills is [`crate::sweep::plan`]'s.

use patchbay_model::{Gpt2Config, HookPoint};
use serde::{Deserialize, Serialize};

use crate::PatchingError;

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
    /// Every component, in the order the page lists them.
    pub const ALL: [Component; 12] = [
        Component::ResidPre,
        Component::ResidMid,
        Component::ResidPost,
        Component::AttnOut,
        Component::MlpOut,
        Component::Z,
        Component::Q,
        Component::K,
        Component::V,
        Component::Pattern,
        Component::BlockEvery,
        Component::Path,
    ];

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

    /// Whether attribution patching (the gradient approximation of each patch) is defined for
    /// the component: for every node, not for path patching's edges.
    pub fn has_attribution(self) -> bool {
        self != Component::Path
    }

    /// Whether a sliding window of layers means anything for this component: not for the
    /// residual stream (each layer's carries every earlier one), nor for path patching.
    pub fn takes_window(self) -> bool {
        !matches!(
            self,
            Component::ResidPre
                | Component::ResidMid
                | Component::ResidPost
                | Component::BlockEvery
                | Component::Path
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

    /// The name of a choice list: "Residual stream (resid_pre)".
    pub fn label(self) -> &'static str {
        match self {
            Component::ResidPre => "Residual stream (resid_pre)",
            Component::ResidMid => "Residual stream (resid_mid)",
            Component::ResidPost => "Residual stream (resid_post)",
            Component::AttnOut => "Attention output (attn_out)",
            Component::MlpOut => "MLP output (mlp_out)",
            Component::Z => "Head outputs (z)",
            Component::Q => "Head queries (q)",
            Component::K => "Head keys (k)",
            Component::V => "Head values (v)",
            Component::Pattern => "Head attention patterns",
            Component::BlockEvery => "resid_pre, attn_out and mlp_out",
            Component::Path => "Path patching from each head",
        }
    }

    /// What one cell patches, before its layer (and head): "the attention output of layer".
    pub fn cell_text(self) -> &'static str {
        match self {
            Component::ResidPre => "the residual stream entering layer",
            Component::ResidMid => "the residual stream between attention and MLP of layer",
            Component::ResidPost => "the residual stream leaving layer",
            Component::AttnOut => "the attention output of layer",
            Component::MlpOut => "the MLP output of layer",
            Component::Z => "the output of head",
            Component::Q => "the queries of head",
            Component::K => "the keys of head",
            Component::V => "the values of head",
            Component::Pattern => "the attention pattern of head",
            Component::BlockEvery => "layer",
            Component::Path => "the path from head",
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
}
