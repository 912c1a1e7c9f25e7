//! Known circuits to read detections against. They are data that ship with a model: a
//! `circuits.json` in its folder (the app's patchbay-ioi has one), read when the model is
//! loaded. GPT-2 small, whose Hub folder has none, gets the IOI circuit of Wang et al. (2023).

use patchbay_model::Gpt2Config;
use serde::{Deserialize, Serialize};

use crate::PatchingError;

/// The name of the known-circuits file in a model's folder.
pub const FILE: &str = "circuits.json";
/// The largest `circuits.json` read, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// A named class of heads, as `[layer, head]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadClass {
    pub name: String,
    pub heads: Vec<[usize; 2]>,
}

/// A model's known circuit: where it comes from, and its head classes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownCircuit {
    /// Where the classes were found (a paper, a test).
    pub source: String,
    pub classes: Vec<HeadClass>,
}

/// Wang et al. (2023), "Interpretability in the Wild": the IOI circuit of GPT-2 small.
pub fn gpt2_small_ioi() -> KnownCircuit {
    let class = |name: &str, heads: &[[usize; 2]]| HeadClass {
        name: name.into(),
        heads: heads.to_vec(),
    };
    KnownCircuit {
        source: "Wang et al. (2023), Interpretability in the Wild".into(),
        classes: vec![
            class("name movers", &[[9, 6], [9, 9], [10, 0]]),
            class("negative name movers", &[[10, 7], [11, 10]]),
            class("S-inhibition", &[[7, 3], [7, 9], [8, 6], [8, 10]]),
            class("induction", &[[5, 5], [6, 9]]),
            class("duplicate token", &[[0, 1], [3, 0]]),
            class("previous token", &[[2, 2], [4, 11]]),
        ],
    }
}

impl KnownCircuit {
    /// Parses a model folder's `circuits.json` and checks every head against the model.
    pub fn from_json(text: &str, config: &Gpt2Config) -> Result<Self, PatchingError> {
        let bad = |m: String| PatchingError::Spec(format!("{FILE}: {m}"));
        if text.len() > MAX_FILE_BYTES {
            return Err(bad(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let circuit: KnownCircuit = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        for class in &circuit.classes {
            if let Some([l, h]) = class
                .heads
                .iter()
                .find(|[l, h]| *l >= config.n_layer || *h >= config.n_head)
            {
                return Err(bad(format!(
                    "class `{}` names head {l}.{h}, which a {}-layer, {}-head model does not have",
                    class.name, config.n_layer, config.n_head
                )));
            }
        }
        Ok(circuit)
    }

    /// The known circuit of a model: its folder's file when it has one, else GPT-2 small's for a
    /// model of GPT-2 small's shape (12 layers × 12 heads × 768).
    pub fn for_model(config: &Gpt2Config, file: Option<&str>) -> Result<Option<Self>, PatchingError> {
        match file {
            Some(text) => Self::from_json(text, config).map(Some),
            None if (config.n_layer, config.n_head, config.n_embd) == (12, 12, 768) => {
                Ok(Some(gpt2_small_ioi()))
            }
            None => Ok(None),
        }
    }
}
