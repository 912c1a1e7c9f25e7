//! What the page offers, from the core's own lists: the GPT-2 family on the Hub (shape,
//! parameters, where its files are and their size when the Hub's headers cannot be read), and
//! for the editor the components (and which
//! controls each has), metrics, directions, dataset tasks and IOI corruptions, windows,
//! detection rules, Gaussian noise's defaults, the circuit block's methods, defaults and limits,
//! and what a share link may carry. `index.html` holds none of these lists.

use patchbay_model::GPT2_FAMILY;
use patchbay_patching::corruption::gn::{DEFAULT_SAMPLES, DEFAULT_SCALE};
use patchbay_patching::spec::circuit::{CircuitMethod, DEFAULT_CHECKED, DEFAULT_IG_STEPS, DEFAULT_TOP};
use patchbay_patching::spec::dataset::{IoiNames, Task};
use patchbay_patching::spec::limits::{MAX_CHECKED_EDGES, MAX_IG_STEPS, MAX_SPEC_BYTES};
use patchbay_patching::spec::{ATTRIBUTION_AVAILABLE, Normalize, SPEC_VERSION};
use patchbay_patching::tasks::ioi::IOI_TEMPLATES;
use patchbay_patching::{Component, Detect, Direction, MetricKind};
use serde::Serialize;
use serde_json::json;
use wasm_bindgen::prelude::*;

/// The effect the page's "threshold" detection option asks for (the paper's 2σ finds nothing
/// on a model with six heads, where one dominant head inflates σ).
pub const DETECT_THRESHOLD: f64 = 0.2;

/// The most a share link's results may inflate to. A browser's URL holds about 2 MB, which
/// deflated grids of printed floats fill at about 4 MB: a link past this was not made by
/// Patchbay, and the page stops inflating it there (a few hundred kilobytes of zeros inflate
/// to gigabytes).
pub const MAX_LINK_RESULTS_BYTES: usize = 8 << 20;

/// The windows the page's menu offers; a link may name any other size.
const WINDOWS: [(usize, &str); 4] = [
    (0, "Single layer"),
    (3, "3 layers"),
    (5, "5 layers"),
    (10, "10 layers (ROME)"),
];

#[derive(Serialize)]
struct ComponentInfo {
    name: &'static str,
    label: &'static str,
    /// Whether the component's patches choose positions (path patching sweeps sender heads and
    /// names its receivers' positions instead).
    positions: bool,
    /// Whether the component's patches choose heads.
    heads: bool,
    takes_window: bool,
    /// Whether attribution patching can run beside the exact grid.
    attribution: bool,
}

#[derive(Serialize)]
struct Named {
    name: &'static str,
    label: &'static str,
}

fn named(name: &'static str, label: &'static str) -> Named {
    Named { name, label }
}

/// The IOI templates a dataset can draw from: one by its index, labelled with its words ("0: When
/// A and B went to the P, S gave a O to"), the spec's default first, or every one (of different
/// lengths, aligned by role).
fn ioi_templates() -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = IOI_TEMPLATES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let words = t.replace('{', " ").replace('}', "").replace("  ", " ");
            json!({"value": i, "label": format!("{i}: {}", words.trim())})
        })
        .collect();
    out.push(json!({"value": "all", "label": "All templates (different lengths, aligned by role)"}));
    out
}

/// A rule's value as a spec writes it: `{"significant": VALUE}`'s VALUE.
fn rule_value(rule: Detect) -> serde_json::Value {
    let written = serde_json::to_value(rule).expect("a rule serialises");
    written
        .as_object()
        .and_then(|o| o.values().next().cloned())
        .expect("a rule is written as {name: value}")
}

/// The page's choices, as JSON.
#[wasm_bindgen]
pub fn catalog() -> String {
    let components: Vec<ComponentInfo> = Component::ALL
        .into_iter()
        .map(|c| ComponentInfo {
            name: c.name(),
            label: c.label(),
            positions: c != Component::Path,
            heads: c.has_heads() && c != Component::Path,
            takes_window: c.takes_window(),
            attribution: c.has_attribution(),
        })
        .collect();
    let sigma = Detect::default();
    let Detect::Sigma(k) = sigma else {
        unreachable!("the default rule is kσ")
    };
    let hub_models: Vec<serde_json::Value> = GPT2_FAMILY
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "label": m.label,
                "n_layer": m.n_layer,
                "n_head": m.n_head,
                "n_embd": m.n_embd,
                "parameters": m.config().parameters(),
                "base": m.base_url(),
                "weights_bytes": m.weights_bytes(),
            })
        })
        .collect();
    json!({
        "version": SPEC_VERSION,
        "hub_models": hub_models,
        "components": components,
        "metrics": MetricKind::ALL.map(|m| named(m.name(), m.choice_label())),
        "metric_labels": MetricKind::ALL.map(|m| named(m.name(), m.label())),
        "directions": Direction::ALL.map(|d| named(d.name(), d.label())),
        "tasks": Task::ALL.map(|t| named(t.name(), t.label())),
        "ioi_names": IoiNames::ALL.map(|n| named(n.name(), n.label())),
        "ioi_templates": ioi_templates(),
        "normalize": Normalize::ALL.map(|n| json!({"name": n.name(), "label": n.label(), "formula": n.formula()})),
        "normalize_terms": Normalize::TERMS,
        "positions": [
            named("each", "Each position"),
            named("all", "All positions together"),
            named("these", "These positions together"),
        ],
        "heads": [named("each", "Each head"), named("all", "All heads together")],
        "receivers": [named("logits", "The logits: every path from the sender that avoids the other heads")],
        "windows": WINDOWS.map(|(size, label)| json!({"size": size, "label": label})),
        "detect": [
            {"rule": "sigma", "value": k, "label": format!("{} (the paper)", sigma.describe())},
            {"rule": "threshold", "value": DETECT_THRESHOLD, "label": Detect::Threshold(DETECT_THRESHOLD).describe()},
            {"rule": "significant", "value": rule_value(Detect::SIGNIFICANT), "label": format!("{} (datasets)", Detect::SIGNIFICANT.describe())},
        ],
        "gn": {"scale": DEFAULT_SCALE, "samples": DEFAULT_SAMPLES},
        "link": {"spec_bytes": MAX_SPEC_BYTES, "results_bytes": MAX_LINK_RESULTS_BYTES},
        "attribution": ATTRIBUTION_AVAILABLE,
        "circuit": circuit(),
    })
    .to_string()
}

/// The circuit panel's choices: the scoring methods, the ways to keep edges (`circuit.keep`'s
/// variants), the spec's defaults for its `circuit` block, the largest values it takes, and
/// AtP*'s QK fix (with the one method that takes it).
fn circuit() -> serde_json::Value {
    json!({
        "methods": CircuitMethod::ALL.map(|m| named(m.name(), m.label())),
        "keep": [
            named("top", "the top k edges, k ="),
            named("threshold", "every edge with |score| at least"),
        ],
        "defaults": {"method": CircuitMethod::default().name(), "ig_steps": DEFAULT_IG_STEPS, "top": DEFAULT_TOP, "checked": DEFAULT_CHECKED},
        "limits": {"ig_steps": MAX_IG_STEPS, "checked": MAX_CHECKED_EDGES},
        "qk_fix": {"label": "AtP*'s QK fix (EAP only): edges into queries and keys scored through the exact attention pattern", "method": CircuitMethod::Eap.name()},
    })
}

/// A detection rule in words, for a value the menu does not offer: "over 1.5σ from the mean".
#[wasm_bindgen(js_name = describeDetect)]
pub fn describe_detect(detect_json: &str) -> Result<String, JsError> {
    let detect: Detect = serde_json::from_str(detect_json).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(detect.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_every_component_and_metric() {
        let c: serde_json::Value = serde_json::from_str(&catalog()).unwrap();
        assert_eq!(c["components"].as_array().unwrap().len(), Component::ALL.len());
        assert_eq!(c["metrics"][0]["name"], "logit_diff");
        assert_eq!(c["gn"]["scale"], 3.0);
        assert_eq!(c["detect"][0]["value"], 2.0);
        assert_eq!(c["components"][11]["name"], "path");
        assert_eq!(c["components"][11]["heads"], false);
        assert_eq!(c["normalize"][1]["name"], "per_prompt");
        assert_eq!(
            c["normalize"][0]["formula"],
            "grid(c) = mean_i e_i(c) / mean_i d_i"
        );
        assert_eq!(c["normalize"][1]["formula"], "grid(c) = mean_i (e_i(c) / d_i)");
        // Significance after correction, written as a spec writes it (the editor compares it
        // with a link's rule to show it in the menu).
        let significant = &c["detect"][2];
        assert_eq!(significant["rule"], "significant");
        assert_eq!(
            significant["value"],
            json!({"alpha": 0.05, "correction": "holm", "min_effect": 0.0})
        );
        assert_eq!(
            significant["label"],
            "significant at α = 0.05 after Holm's correction (datasets)"
        );
        let spec: Detect = serde_json::from_value(json!({"significant": significant["value"]})).unwrap();
        assert_eq!(spec, Detect::SIGNIFICANT);
        let templates = c["ioi_templates"].as_array().unwrap();
        assert_eq!(templates.len(), IOI_TEMPLATES.len() + 1);
        assert_eq!(
            templates[0]["label"],
            "0: When A and B went to the P, S gave a O to"
        );
        assert_eq!(templates[IOI_TEMPLATES.len()]["value"], "all");
        assert_eq!(c["link"]["spec_bytes"], 4 << 20);
        let hub = c["hub_models"].as_array().unwrap();
        assert_eq!(hub.len(), 4);
        assert_eq!(hub[3]["id"], "openai-community/gpt2-xl");
        assert_eq!(hub[3]["parameters"], 1_557_611_200u64);
        assert_eq!(
            hub[0]["base"],
            "https://huggingface.co/openai-community/gpt2/resolve/main/"
        );
        assert_eq!(c["circuit"]["methods"][1]["name"], "eap_ig");
        assert_eq!(c["circuit"]["defaults"]["top"], 100);
    }
}
