//! Hostile specs, as a stranger's share link can carry them: every failure a probe of mutated
//! specs found gets its message, from the parser or from `prepare`, never a panic, an abort, a
//! hang or an all-null grid. The sizes are the named limits of `spec::limits`.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::analysis::sensitivity::{Choices, CorruptionChoice, sensitivity};
use patchbay_patching::spec::limits::{
    MAX_GN_SAMPLES, MAX_LIST, MAX_PERMUTATIONS, MAX_PROMPTS, MAX_RESAMPLES, MAX_SPEC_BYTES,
};
use patchbay_patching::{Direction, ExperimentSpec, MetricKind, Progress, RunOptions, prepare};
use serde_json::{Value, json};

fn base() -> Value {
    ioi_spec()
}

fn gn(extra: Value) -> Value {
    let mut spec = base();
    let mut corruption = json!({"method": "gn", "positions": [2]});
    for (k, v) in extra.as_object().unwrap() {
        corruption[k] = v.clone();
    }
    spec["corruption"] = corruption;
    spec
}

/// The parser's message for `spec`.
fn refused(spec: &Value) -> String {
    ExperimentSpec::from_json(&spec.to_string())
        .unwrap_err()
        .to_string()
}

#[test]
fn sizes_without_bounds_are_refused_where_the_spec_is_parsed() {
    for samples in [
        json!(10_000),
        json!(1_000_000_000u64),
        json!(1u64 << 62),
        json!(1u64 << 60),
        json!(u64::MAX),
    ] {
        let e = refused(&gn(json!({"samples": samples})));
        assert!(
            e.contains("`corruption.samples`") && e.contains(&format!("1 to {MAX_GN_SAMPLES}")),
            "{e}"
        );
    }
    let mut dataset = base();
    dataset["prompts"] = json!([]);
    for n in [
        json!(1_000_000_000u64),
        json!(u64::MAX),
        json!(MAX_PROMPTS + 1),
        json!(0),
    ] {
        dataset["dataset"] = json!({"task": "ioi", "n": n});
        let e = refused(&dataset);
        assert!(e.contains("`dataset.n`"), "{e}");
    }
    let e = refused(&gn(json!({"positions": vec![2; 1_000_000]})));
    assert!(e.contains(&format!("at most {MAX_LIST}")), "{e}");
    let e = refused(&gn(json!({"positions": [2, 4, 2]})));
    assert!(e.contains("`corruption.positions` lists 2 twice"), "{e}");
    for scale in [json!(1e308), json!(-1.0)] {
        let e = refused(&gn(json!({"scale": scale})));
        assert!(e.contains("`corruption.scale`"), "{e}");
    }
    let mut sigma = base();
    sigma["detect"] = json!({"sigma": -1.0});
    assert!(refused(&sigma).contains("`detect.sigma` is -1"));
    let mut heads = base();
    heads["target"] = json!({"component": "z", "positions": "all", "heads": [1, 1]});
    assert!(refused(&heads).contains("`target.heads` lists 1 twice"));
    // Attribution sums a duplicated position twice where exact patching counts it once: the
    // parser refuses the duplicate.
    let mut twice = base();
    twice["target"] = json!({"component": "mlp_out", "positions": [3, 3]});
    twice["attribution"] = json!(true);
    assert!(refused(&twice).contains("`target.positions` lists 3 twice"));
    let mut long = base();
    long["prompts"][0]["clean"] = json!("a".repeat(10 << 20));
    let e = refused(&long);
    assert!(e.contains(&format!("at most {MAX_SPEC_BYTES} bytes")), "{e}");
    long["prompts"][0]["clean"] = json!("a ".repeat(40_000));
    let e = refused(&long);
    assert!(e.contains("`prompts[0].clean`") && e.contains("bytes"), "{e}");
}

#[test]
fn statistics_and_significance_are_bounded_where_the_spec_is_parsed() {
    let with = |stats: Value| {
        let mut spec = base();
        spec["stats"] = stats;
        spec
    };
    for resamples in [json!(0), json!(MAX_RESAMPLES + 1), json!(u64::MAX)] {
        let e = refused(&with(json!({ "resamples": resamples })));
        assert!(
            e.contains("`stats.resamples`") && e.contains(&format!("1 to {MAX_RESAMPLES}")),
            "{e}"
        );
    }
    for permutations in [json!(0), json!(MAX_PERMUTATIONS + 1), json!(1u64 << 62)] {
        let e = refused(&with(json!({ "permutations": permutations })));
        assert!(
            e.contains("`stats.permutations`") && e.contains(&format!("1 to {MAX_PERMUTATIONS}")),
            "{e}"
        );
    }
    for level in [json!(0.0), json!(1.0), json!(-0.5), json!(95), json!(1e308)] {
        let e = refused(&with(json!({ "level": level })));
        assert!(
            e.contains("`stats.level`") && e.contains("between 0 and 1"),
            "{e}"
        );
    }
    assert!(refused(&with(json!({"resample": 10}))).contains("unknown field `resample`"));
    assert!(refused(&with(json!({"seed": -1}))).contains("invalid value"));
    // The largest values the limits allow parse, and a spec without them is written back
    // without them, byte for byte as before.
    let most = json!({"level": 0.999, "resamples": MAX_RESAMPLES, "permutations": MAX_PERMUTATIONS, "seed": u64::MAX});
    let spec = ExperimentSpec::from_json(&with(most).to_string()).unwrap();
    assert_eq!(spec.stats.resamples, MAX_RESAMPLES);
    assert!(ExperimentSpec::from_json(&spec.to_json()).unwrap() == spec);
    let plain = ExperimentSpec::from_json(&base().to_string()).unwrap();
    assert!(plain.stats.is_default() && !plain.to_json().contains("stats"));

    let significant = |rule: Value| {
        let mut spec = base();
        spec["detect"] = json!({ "significant": rule });
        spec
    };
    for alpha in [json!(0.0), json!(1.0), json!(-1.0), json!(2)] {
        let e = refused(&significant(json!({ "alpha": alpha })));
        assert!(e.contains("`detect.significant.alpha`"), "{e}");
    }
    let e = refused(&significant(json!({"alpha": 0.01, "min_effect": -0.1})));
    assert!(e.contains("`detect.significant.min_effect`"), "{e}");
    let e = refused(&significant(json!({"alpha": 0.01, "correction": "bonferroni"})));
    assert!(e.contains("unknown variant `bonferroni`"), "{e}");
    let e = refused(&significant(json!({"alpha": 0.01, "level": 0.95})));
    assert!(e.contains("unknown field `level`"), "{e}");
    assert!(refused(&significant(json!({"correction": "bh"}))).contains("missing field `alpha`"));
}

#[test]
fn the_largest_dataset_the_limits_allow_prepares_and_is_sized() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut spec = base();
    spec["prompts"] = json!([]);
    spec["dataset"] = json!({"task": "ioi", "n": MAX_PROMPTS});
    spec["target"] = json!({"component": "z", "positions": "each"});
    spec["corruption"] = json!({"method": "gn", "positions": [], "samples": MAX_GN_SAMPLES});
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    // Within every limit on its own, and under the cost limit on this small model: it prepares,
    // and its size says how much work it is.
    let prepared = pollster::block_on(prepare(&model, &tokenizer, &spec)).unwrap();
    assert_eq!(prepared.prompts.len(), MAX_PROMPTS);
    let size = prepared.size(&model).unwrap();
    assert_eq!(
        (size.rows, size.cells),
        (MAX_PROMPTS * MAX_GN_SAMPLES, 3 * 15 * 4)
    );
    assert!(size.slow_on_cpu && size.flops < patchbay_patching::prepare::MAX_RUN_FLOPS);
}

#[test]
fn sensitivity_with_no_prompts_and_gaussian_noise_is_an_error() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut spec = base();
    spec["prompts"] = json!([]);
    let spec = ExperimentSpec::from_json(&spec.to_string()).unwrap();
    let choices = Choices {
        corruptions: vec![CorruptionChoice::Gn(None)],
        metrics: vec![MetricKind::LogitDiff],
        directions: vec![Direction::Denoising],
        seeds: vec![0],
        samples: 3,
    };
    let run = |choices: &Choices| {
        pollster::block_on(sensitivity(
            &model,
            &tokenizer,
            &spec,
            choices,
            None,
            &RunOptions::default(),
            &mut |_: &Progress| true,
        ))
        .unwrap_err()
        .to_string()
    };
    assert!(run(&choices).contains("no prompts"));
    let huge = Choices {
        samples: 1 << 40,
        ..choices.clone()
    };
    assert!(run(&huge).contains("`samples`"));
    let many = Choices {
        seeds: (0..100).collect(),
        ..choices
    };
    assert!(run(&many).contains("at most 64"));
}
