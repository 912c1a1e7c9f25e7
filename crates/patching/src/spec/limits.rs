//! Limits on what a spec may ask for, checked where it is parsed: a share link is input from a
//! stranger, opened with one click, so nothing in it may make Patchbay panic, hang or run out
//! of memory. Each limit is a named constant, the same in the CLI and in the page, and each
//! message names the field and the limit. What depends on the model (positions within the
//! prompt, heads within the layer, the cost of a dataset) is checked by [`crate::prepare`].
//!
//! The statistics' limits keep their work below the sweep's: per prompt and cell, at most
//! [`MAX_RESAMPLES`] + [`MAX_PERMUTATIONS`] additions (a few hundred thousand flops), where the
//! patched run of that prompt and cell costs at least the unembedding at its last position
//! (2 × 50,257 × d_model flops, millions), which [`crate::prepare::MAX_RUN_FLOPS`] bounds. The
//! bootstrap's memory is bounded by
//! [`crate::analysis::uncertainty::BOOTSTRAP_BUFFER`] whatever the grid.

use std::collections::HashSet;
use std::hash::Hash;

use crate::spec::circuit::{CircuitMethod, DEFAULT_IG_STEPS, Keep};
use crate::spec::target::{Choice, Receivers};
use crate::{Corruption, Detect, ExperimentSpec, PatchingError};

/// The longest spec, in bytes of JSON.
pub const MAX_SPEC_BYTES: usize = 4 << 20;
/// The most prompt pairs, listed or generated (`dataset.n`).
pub const MAX_PROMPTS: usize = 1000;
/// The most Gaussian-noise samples (each is a row of every batched pass).
pub const MAX_GN_SAMPLES: usize = 64;
/// The largest Gaussian-noise scale, in units of σ.
pub const MAX_GN_SCALE: f64 = 100.0;
/// The most entries of a list of positions, heads, receivers, answer set tokens, roles or
/// σ texts.
pub const MAX_LIST: usize = 1024;
/// The longest answer, role or label text, in bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 256;
/// The widest window of layers.
pub const MAX_WINDOW: usize = 128;
/// The largest σ of the detection rule.
pub const MAX_DETECT_SIGMA: f64 = 100.0;
/// The most bootstrap resamples (`stats.resamples`).
pub const MAX_RESAMPLES: usize = 100_000;
/// The most Monte Carlo sign patterns of the permutation test (`stats.permutations`).
pub const MAX_PERMUTATIONS: usize = 100_000;

/// The most EAP-IG steps (`circuit.ig_steps`): each is a forward and a backward pass of every
/// prompt.
pub const MAX_IG_STEPS: usize = 100;
/// The most edges a circuit keeps (`circuit.keep.top`); `patchbay circuit` also refuses more
/// than the model's graph has.
pub const MAX_CIRCUIT_EDGES: usize = 1 << 20;
/// The most edges whose exact effect is measured one by one (`circuit.checked`): each is a
/// patched run of every prompt.
pub const MAX_CHECKED_EDGES: usize = 1024;

fn field(name: &str, message: String) -> PatchingError {
    PatchingError::Spec(format!("`{name}` {message}"))
}

/// Checks that a list is at most [`MAX_LIST`] long and has no entry twice.
fn list<T: Eq + Hash + std::fmt::Debug>(name: &str, items: &[T]) -> Result<(), PatchingError> {
    if items.len() > MAX_LIST {
        return Err(field(
            name,
            format!("has {} entries; at most {MAX_LIST} are allowed", items.len()),
        ));
    }
    let mut seen = HashSet::new();
    match items.iter().find(|item| !seen.insert(*item)) {
        Some(twice) => Err(field(name, format!("lists {twice:?} twice"))),
        None => Ok(()),
    }
}

fn short(name: &str, text: &str) -> Result<(), PatchingError> {
    if text.len() > MAX_SHORT_TEXT_BYTES {
        return Err(field(
            name,
            format!(
                "is {} bytes long; at most {MAX_SHORT_TEXT_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn prompt_text(name: &str, text: &str) -> Result<(), PatchingError> {
    let limit = patchbay_model::MAX_PROMPT_BYTES;
    if text.len() > limit {
        return Err(field(
            name,
            format!(
                "is {} bytes long; prompts may be at most {limit} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Checks every size and value of `spec` that needs no model.
pub fn check(spec: &ExperimentSpec) -> Result<(), PatchingError> {
    if spec.prompts.len() > MAX_PROMPTS {
        return Err(field(
            "prompts",
            format!(
                "has {} pairs; at most {MAX_PROMPTS} are allowed",
                spec.prompts.len()
            ),
        ));
    }
    for (i, pair) in spec.prompts.iter().enumerate() {
        prompt_text(&format!("prompts[{i}].clean"), &pair.clean)?;
        if let Some(corrupted) = &pair.corrupted {
            prompt_text(&format!("prompts[{i}].corrupted"), corrupted)?;
        }
        short(&format!("prompts[{i}].answer"), &pair.answer)?;
        if let Some(counter) = &pair.counter_answer {
            short(&format!("prompts[{i}].counter_answer"), counter)?;
        }
        for (name, set) in [
            ("answer_set", &pair.answer_set),
            ("counter_set", &pair.counter_set),
        ] {
            let name = format!("prompts[{i}].{name}");
            list(&name, set)?;
            set.iter().try_for_each(|t| short(&name, t))?;
        }
        let name = format!("prompts[{i}].roles");
        list(&name, &pair.roles)?;
        pair.roles.iter().try_for_each(|t| short(&name, t))?;
    }
    if let Some(dataset) = &spec.dataset
        && !(1..=MAX_PROMPTS).contains(&dataset.n)
    {
        return Err(field(
            "dataset.n",
            format!("is {}; a dataset has 1 to {MAX_PROMPTS} prompts", dataset.n),
        ));
    }
    if let Corruption::Gn(gn) = &spec.corruption {
        if !(1..=MAX_GN_SAMPLES).contains(&gn.samples) {
            return Err(field(
                "corruption.samples",
                format!(
                    "is {}; Gaussian noise takes 1 to {MAX_GN_SAMPLES} samples",
                    gn.samples
                ),
            ));
        }
        if !(gn.scale.is_finite() && (0.0..=MAX_GN_SCALE).contains(&gn.scale)) {
            return Err(field(
                "corruption.scale",
                format!("is {}; the noise scale is 0 to {MAX_GN_SCALE} σ", gn.scale),
            ));
        }
        list("corruption.positions", &gn.positions)?;
        if let Some(texts) = &gn.sigma_texts {
            list("corruption.sigma_texts", texts)?;
            texts
                .iter()
                .try_for_each(|t| prompt_text("corruption.sigma_texts", t))?;
        }
    }
    for (name, choice) in [
        ("target.positions", &spec.target.positions),
        ("target.heads", &spec.target.heads),
    ] {
        if let Choice::These(items) = choice {
            list(name, items)?;
        }
    }
    if let Some(Receivers::Heads { heads, positions, .. }) = &spec.target.receivers {
        list("target.receivers.heads", heads)?;
        if let Some(positions) = positions {
            list("target.receivers.positions", positions)?;
        }
    }
    if let Some(w) = spec.window
        && w.size > MAX_WINDOW
    {
        return Err(field(
            "window.size",
            format!("is {}; windows are at most {MAX_WINDOW} layers", w.size),
        ));
    }
    if let Some(circuit) = &spec.circuit {
        if !(1..=MAX_IG_STEPS).contains(&circuit.ig_steps) {
            return Err(field(
                "circuit.ig_steps",
                format!("is {}; EAP-IG takes 1 to {MAX_IG_STEPS} steps", circuit.ig_steps),
            ));
        }
        if circuit.method == CircuitMethod::Eap && circuit.ig_steps != DEFAULT_IG_STEPS {
            return Err(field(
                "circuit.ig_steps",
                "applies to `\"method\": \"eap_ig\"` only; EAP takes one gradient".into(),
            ));
        }
        if circuit.qk_fix && circuit.method != CircuitMethod::Eap {
            return Err(field(
                "circuit.qk_fix",
                "applies to `\"method\": \"eap\"` only: AtP*'s QK fix replaces the linear step through queries and keys at the one point EAP takes its gradient, the base run; EAP-IG averages gradients along a path of inputs, where the fix's exact attention pattern is not defined".into(),
            ));
        }
        match circuit.keep {
            Keep::Top(k) if k > MAX_CIRCUIT_EDGES => {
                return Err(field(
                    "circuit.keep.top",
                    format!("is {k}; a circuit keeps at most {MAX_CIRCUIT_EDGES} edges"),
                ));
            }
            Keep::Threshold(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(field(
                    "circuit.keep.threshold",
                    format!("is {t}; it must be a finite |score| of at least 0"),
                ));
            }
            _ => {}
        }
        if circuit.checked > MAX_CHECKED_EDGES {
            return Err(field(
                "circuit.checked",
                format!(
                    "is {}; at most {MAX_CHECKED_EDGES} edges are checked one by one",
                    circuit.checked
                ),
            ));
        }
    }
    let stats = &spec.stats;
    if !(stats.level > 0.0 && stats.level < 1.0) {
        return Err(field(
            "stats.level",
            format!(
                "is {}; the confidence level is strictly between 0 and 1",
                stats.level
            ),
        ));
    }
    if !(1..=MAX_RESAMPLES).contains(&stats.resamples) {
        return Err(field(
            "stats.resamples",
            format!(
                "is {}; the bootstrap takes 1 to {MAX_RESAMPLES} resamples",
                stats.resamples
            ),
        ));
    }
    if !(1..=MAX_PERMUTATIONS).contains(&stats.permutations) {
        return Err(field(
            "stats.permutations",
            format!(
                "is {}; the Monte Carlo permutation test takes 1 to {MAX_PERMUTATIONS} sign patterns",
                stats.permutations
            ),
        ));
    }
    match spec.detect {
        Detect::Sigma(k) if !(k.is_finite() && k > 0.0 && k <= MAX_DETECT_SIGMA) => Err(field(
            "detect.sigma",
            format!("is {k}; it must be above 0 and at most {MAX_DETECT_SIGMA}"),
        )),
        Detect::Threshold(t) if !(t.is_finite() && t >= 0.0) => Err(field(
            "detect.threshold",
            format!("is {t}; it must be a finite effect of at least 0"),
        )),
        Detect::Significant { alpha, .. } if !(alpha > 0.0 && alpha < 1.0) => Err(field(
            "detect.significant.alpha",
            format!("is {alpha}; a significance level is strictly between 0 and 1"),
        )),
        Detect::Significant { min_effect, .. } if !(min_effect.is_finite() && min_effect >= 0.0) => {
            Err(field(
                "detect.significant.min_effect",
                format!("is {min_effect}; it must be a finite effect of at least 0"),
            ))
        }
        _ => Ok(()),
    }
}
