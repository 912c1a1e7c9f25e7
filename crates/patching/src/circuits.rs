//! Known circuits to read detections against: Wang et al.'s IOI head classes in GPT-2 small,
//! and the heads this repository's patchbay-ioi was found to use (crates/cli/tests/embedded.rs).

use patchbay_model::Gpt2Config;
use serde::Serialize;

/// A named class of heads, as `[layer, head]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeadClass {
    pub name: &'static str,
    pub heads: &'static [[usize; 2]],
}

/// Wang et al. (2023), "Interpretability in the Wild": the IOI circuit of GPT-2 small.
pub const GPT2_SMALL_IOI: &[HeadClass] = &[
    HeadClass {
        name: "name movers",
        heads: &[[9, 6], [9, 9], [10, 0]],
    },
    HeadClass {
        name: "negative name movers",
        heads: &[[10, 7], [11, 10]],
    },
    HeadClass {
        name: "S-inhibition",
        heads: &[[7, 3], [7, 9], [8, 6], [8, 10]],
    },
    HeadClass {
        name: "induction",
        heads: &[[5, 5], [6, 9]],
    },
    HeadClass {
        name: "duplicate token",
        heads: &[[0, 1], [3, 0]],
    },
    HeadClass {
        name: "previous token",
        heads: &[[2, 2], [4, 11]],
    },
];

/// patchbay-ioi: head 0.0 writes IO's identity at S2, and heads 1.0 and 1.1 move it to the end.
pub const PATCHBAY_IOI: &[HeadClass] = &[
    HeadClass {
        name: "IO writer at S2",
        heads: &[[0, 0]],
    },
    HeadClass {
        name: "movers (S2 to the end)",
        heads: &[[1, 0], [1, 1]],
    },
];

/// The known IOI classes of a model: by its name when it ships with the app, else by shape
/// (GPT-2 small is 12 layers × 12 heads × 768).
pub fn ioi_classes(config: &Gpt2Config, embedded: Option<&str>) -> Option<&'static [HeadClass]> {
    match embedded {
        Some("patchbay-ioi") => Some(PATCHBAY_IOI),
        _ if (config.n_layer, config.n_head, config.n_embd) == (12, 12, 768) => Some(GPT2_SMALL_IOI),
        _ => None,
    }
}
