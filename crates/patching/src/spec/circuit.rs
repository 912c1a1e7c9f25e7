//! The spec's `circuit` block: how `patchbay circuit` finds a circuit and checks it, as
//! `{"method": "eap_ig", "ig_steps": 5, "keep": {"top": 50}, "checked": 20}`. Every field has a
//! default and is left out of the spec's JSON when it has it; `ig_steps` belongs to EAP-IG
//! alone, and so does `"qk_fix": true` (AtP*'s QK fix) to EAP. Its limits are in
//! [`crate::spec::limits`].

use serde::{Deserialize, Serialize};

/// EAP-IG's steps when the spec does not say (TransformerLens 4.x's planned default).
pub const DEFAULT_IG_STEPS: usize = 5;
/// Edges kept when the spec does not say.
pub const DEFAULT_TOP: usize = 100;
/// Edges whose exact effect is measured one by one when the spec does not say.
pub const DEFAULT_CHECKED: usize = 50;

/// How edges are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitMethod {
    /// Edge attribution patching: one gradient, at the base run.
    #[default]
    Eap,
    /// Integrated gradients over edges: the gradient averaged along `ig_steps` points from the
    /// base run's input to the source run's.
    EapIg,
}

impl CircuitMethod {
    pub const ALL: [CircuitMethod; 2] = [CircuitMethod::Eap, CircuitMethod::EapIg];

    /// What the page's menu calls it.
    pub fn label(self) -> &'static str {
        match self {
            CircuitMethod::Eap => "EAP: one gradient, at the base run",
            CircuitMethod::EapIg => "EAP-IG: gradients averaged along the path",
        }
    }

    /// The name used in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            CircuitMethod::Eap => "eap",
            CircuitMethod::EapIg => "eap_ig",
        }
    }
}

/// Which edges form the circuit, by the size of their score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Keep {
    /// The `k` edges of largest |score|.
    Top(usize),
    /// Every edge whose |score| is at least this.
    Threshold(f64),
}

impl Default for Keep {
    fn default() -> Self {
        Keep::Top(DEFAULT_TOP)
    }
}

impl Keep {
    fn is_default(&self) -> bool {
        *self == Keep::default()
    }
}

/// Circuit discovery by edge attribution, checked by exact patching.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    #[serde(default, skip_serializing_if = "is_default_method")]
    pub method: CircuitMethod,
    /// EAP-IG's points along the path (`eap_ig` only).
    #[serde(default = "default_ig_steps", skip_serializing_if = "is_default_ig_steps")]
    pub ig_steps: usize,
    #[serde(default, skip_serializing_if = "Keep::is_default")]
    pub keep: Keep,
    /// How many of the best-scored edges also get their exact effect, one patched run each.
    #[serde(default = "default_checked", skip_serializing_if = "is_default_checked")]
    pub checked: usize,
    /// AtP*'s QK fix (Kramár et al. 2024, `eap` only): edges into heads' queries and keys are
    /// scored through the exact attention pattern ([`crate::circuit::qk_fix`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub qk_fix: bool,
}

impl Default for CircuitSpec {
    fn default() -> Self {
        CircuitSpec {
            method: CircuitMethod::default(),
            ig_steps: DEFAULT_IG_STEPS,
            keep: Keep::default(),
            checked: DEFAULT_CHECKED,
            qk_fix: false,
        }
    }
}

impl CircuitSpec {
    /// Gradient points per prompt: 1 for EAP.
    pub fn steps(&self) -> usize {
        match self.method {
            CircuitMethod::Eap => 1,
            CircuitMethod::EapIg => self.ig_steps,
        }
    }
}

fn is_default_method(m: &CircuitMethod) -> bool {
    *m == CircuitMethod::default()
}

fn default_ig_steps() -> usize {
    DEFAULT_IG_STEPS
}

fn is_default_ig_steps(n: &usize) -> bool {
    *n == DEFAULT_IG_STEPS
}

fn default_checked() -> usize {
    DEFAULT_CHECKED
}

fn is_default_checked(n: &usize) -> bool {
    *n == DEFAULT_CHECKED
}

fn is_false(b: &bool) -> bool {
    !b
}
