//! Named hook points: every activation a researcher can read or replace, named exactly as
//! TransformerLens names it (`blocks.3.attn.hook_z`, `ln_final.hook_normalized`, ...).

use std::fmt;
use std::str::FromStr;

use crate::ModelError;

/// One activation site of GPT-2. Layer-indexed sites carry their layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`: the token embedding (wte output), before positions are added. `[batch, pos, d_model]`
    Embed,
    /// `hook_pos_embed`: the positional embedding. `[batch, pos, d_model]`
    PosEmbed,
    /// `blocks.{l}.hook_resid_pre`. `[batch, pos, d_model]`
    ResidPre(usize),
    /// `blocks.{l}.attn.hook_q`. `[batch, pos, head, d_head]`
    Q(usize),
    /// `blocks.{l}.attn.hook_k`. `[batch, pos, head, d_head]`
    K(usize),
    /// `blocks.{l}.attn.hook_v`. `[batch, pos, head, d_head]`
    V(usize),
    /// `blocks.{l}.attn.hook_pattern`. `[batch, head, query_pos, key_pos]`
    Pattern(usize),
    /// `blocks.{l}.attn.hook_z`: each head's output before the output projection. `[batch, pos, head, d_head]`
    Z(usize),
    /// `blocks.{l}.hook_attn_out`. `[batch, pos, d_model]`
    AttnOut(usize),
    /// `blocks.{l}.hook_resid_mid`. `[batch, pos, d_model]`
    ResidMid(usize),
    /// `blocks.{l}.mlp.hook_post`: the MLP's hidden activation after GELU. `[batch, pos, d_mlp]`
    MlpPost(usize),
    /// `blocks.{l}.hook_mlp_out`. `[batch, pos, d_model]`
    MlpOut(usize),
    /// `blocks.{l}.hook_resid_post`. `[batch, pos, d_model]`
    ResidPost(usize),
    /// `ln_final.hook_normalized`. `[batch, pos, d_model]`
    LnFinal,
}

/// How a hook's activation is laid out, which decides how a selection of positions and heads
/// applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookLayout {
    /// `[batch, pos, features]`: residual-stream-like, no head axis.
    Stream,
    /// `[batch, pos, head, d_head]`.
    Heads,
    /// `[batch, head, query_pos, key_pos]`: positions select query (destination) rows.
    Pattern,
}

/// The per-layer hooks, in the order a forward pass reaches them.
const LAYER_HOOKS: [fn(usize) -> HookPoint; 11] = [
    HookPoint::ResidPre,
    HookPoint::Q,
    HookPoint::K,
    HookPoint::V,
    HookPoint::Pattern,
    HookPoint::Z,
    HookPoint::AttnOut,
    HookPoint::ResidMid,
    HookPoint::MlpPost,
    HookPoint::MlpOut,
    HookPoint::ResidPost,
];

impl HookPoint {
    /// Every hook of a model with `n_layer` layers, in forward order.
    pub fn all(n_layer: usize) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for l in 0..n_layer {
            hooks.extend(LAYER_HOOKS.iter().map(|make| make(l)));
        }
        hooks.push(HookPoint::LnFinal);
        hooks
    }

    /// The layer this hook belongs to, if any.
    pub fn layer(&self) -> Option<usize> {
        use HookPoint::*;
        match *self {
            Embed | PosEmbed | LnFinal => None,
            ResidPre(l) | Q(l) | K(l) | V(l) | Pattern(l) | Z(l) | AttnOut(l) | ResidMid(l) | MlpPost(l)
            | MlpOut(l) | ResidPost(l) => Some(l),
        }
    }

    /// The layout of this hook's activation.
    pub fn layout(&self) -> HookLayout {
        match self {
            HookPoint::Q(_) | HookPoint::K(_) | HookPoint::V(_) | HookPoint::Z(_) => HookLayout::Heads,
            HookPoint::Pattern(_) => HookLayout::Pattern,
            _ => HookLayout::Stream,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HookPoint::*;
        match self {
            Embed => write!(f, "hook_embed"),
            PosEmbed => write!(f, "hook_pos_embed"),
            LnFinal => write!(f, "ln_final.hook_normalized"),
            ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            Q(l) => write!(f, "blocks.{l}.attn.hook_q"),
            K(l) => write!(f, "blocks.{l}.attn.hook_k"),
            V(l) => write!(f, "blocks.{l}.attn.hook_v"),
            Pattern(l) => write!(f, "blocks.{l}.attn.hook_pattern"),
            Z(l) => write!(f, "blocks.{l}.attn.hook_z"),
            AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            MlpPost(l) => write!(f, "blocks.{l}.mlp.hook_post"),
            MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = ModelError;

    /// Parses a TransformerLens hook name such as `blocks.2.attn.hook_z`.
    fn from_str(name: &str) -> Result<Self, ModelError> {
        let unknown = || ModelError::UnknownHook(name.to_string());
        match name {
            "hook_embed" => return Ok(HookPoint::Embed),
            "hook_pos_embed" => return Ok(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Ok(HookPoint::LnFinal),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.").ok_or_else(unknown)?;
        let (layer, _) = rest.split_once('.').ok_or_else(unknown)?;
        let layer: usize = layer.parse().map_err(|_| unknown())?;
        LAYER_HOOKS
            .iter()
            .map(|make| make(layer))
            .find(|hook| hook.to_string() == name)
            .ok_or_else(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_transformer_lens() {
        let hooks = HookPoint::all(2);
        assert_eq!(hooks.len(), 2 + 2 * 11 + 1);
        for hook in &hooks {
            assert_eq!(hook.to_string().parse::<HookPoint>().unwrap(), *hook);
        }
        assert_eq!(HookPoint::Z(1).to_string(), "blocks.1.attn.hook_z");
        assert_eq!(HookPoint::MlpPost(0).to_string(), "blocks.0.mlp.hook_post");
        assert_eq!(
            "blocks.11.hook_resid_pre".parse::<HookPoint>().unwrap(),
            HookPoint::ResidPre(11)
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        for bad in [
            "blocks.x.hook_resid_pre",
            "blocks.1.hook_nope",
            "blocks.1.hook_z",
            "hook_z",
            "blocks.1",
        ] {
            let err = bad.parse::<HookPoint>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
