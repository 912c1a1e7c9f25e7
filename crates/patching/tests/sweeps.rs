//! Property test: over random targets, corruptions, metrics, directions and windows, the batched
//! sweep (start at the patched layer, reuse cached keys and values, skip no-op patches, batch
//! under a small budget) gives the same numbers as a plain loop of one full forward per patch.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::{
    Budget, Choice, Component, Corruption, Direction, ExperimentSpec, GaussianNoise, MetricKind, MetricSpec,
    ModelSource, PromptPair, RunOptions, Strategy, Target, Window,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

fn subset(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).filter(|_| rng.random_bool(0.3)).collect();
    if v.is_empty() {
        v.push(rng.random_range(0..n));
    }
    v
}

fn random_spec(rng: &mut ChaCha8Rng) -> ExperimentSpec {
    let components = [
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
    ];
    let component = components[rng.random_range(0..components.len())];
    let positions = match rng.random_range(0..3) {
        0 => Choice::Each,
        1 => Choice::All,
        _ => Choice::These(subset(rng, 15)),
    };
    let heads = if component.has_heads() {
        match rng.random_range(0..3) {
            0 => Choice::Each,
            1 => Choice::All,
            _ => Choice::These(subset(rng, 4)),
        }
    } else {
        Choice::Each
    };
    let windowable = !matches!(
        component,
        Component::ResidPre | Component::ResidMid | Component::ResidPost | Component::BlockEvery
    );
    let window = (windowable && rng.random_bool(0.4)).then(|| Window {
        size: rng.random_range(1..=3),
    });
    let corruption = if rng.random_bool(0.6) {
        Corruption::Str
    } else {
        let mut positions = subset(rng, 15);
        positions.truncate(3);
        Corruption::Gn(GaussianNoise {
            positions,
            scale: 3.0,
            samples: 2,
            sigma_texts: None,
        })
    };
    let kind = [MetricKind::Prob, MetricKind::LogitDiff, MetricKind::Kl][rng.random_range(0..3)];
    ExperimentSpec {
        version: 1,
        model: ModelSource::Local("tests/fixtures/models/tiny".into()),
        prepend_bos: true,
        prompts: vec![PromptPair {
            clean: CLEAN.into(),
            corrupted: Some(CORRUPT.into()),
            answer: " transc".into(),
            counter_answer: Some(" Thief".into()),
            ..Default::default()
        }],
        corruption,
        metric: MetricSpec {
            kind,
            normalized: rng.random_bool(0.5),
            normalize: Default::default(),
        },
        direction: if rng.random_bool(0.5) {
            Direction::Denoising
        } else {
            Direction::Noising
        },
        target: Target {
            component,
            positions,
            heads,
            receivers: None,
        },
        window,
        seed: rng.random_range(0..1000),
        attribution: false,
        dataset: None,
        detect: Default::default(),
        stats: Default::default(),
        circuit: None,
    }
}

#[test]
fn batched_sweeps_equal_one_forward_per_patch() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let tight = Budget {
        max_batch: 7,
        max_tokens: 40,
    };
    for trial in 0..40 {
        let spec = random_spec(&mut rng);
        let naive = run(
            &model,
            &tokenizer,
            &spec,
            &RunOptions {
                strategy: Some(Strategy::Naive),
                ..Default::default()
            },
        );
        for budget in [Budget::default(), tight] {
            let batched = run(
                &model,
                &tokenizer,
                &spec,
                &RunOptions {
                    budget,
                    ..Default::default()
                },
            );
            // Normalizing divides float rounding by M_clean - M_corrupted; scale the bar with it.
            let span = (naive.clean_metric - naive.corrupted_metric).abs();
            let scale = naive.grid.values.iter().fold(1.0f64, |m, v| m.max(v.abs()))
                * if spec.metric.normalized {
                    (1.0 / span).max(1.0)
                } else {
                    1.0
                };
            let err = max_abs_diff(&batched.grid.values, &naive.grid.values);
            assert!(
                err <= 1e-5 * scale,
                "trial {trial}: {:?} / {:?} / {:?} / window {:?} / {:?}: {err:e}",
                spec.target,
                spec.corruption,
                spec.direction,
                spec.window,
                spec.metric
            );
            let raw_scale = naive.raw_grid.values.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert!(max_abs_diff(&batched.raw_grid.values, &naive.raw_grid.values) <= 1e-5 * raw_scale);
            // Batches run three at a time on threads of their own: the very same numbers.
            let threaded = run(
                &model,
                &tokenizer,
                &spec,
                &RunOptions {
                    budget,
                    threads: 3,
                    ..Default::default()
                },
            );
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&threaded.grid.values),
                bits(&batched.grid.values),
                "trial {trial}"
            );
            assert_eq!(
                bits(&threaded.raw_grid.values),
                bits(&batched.raw_grid.values),
                "trial {trial}"
            );
        }
    }
}

/// Progress rises to the total; an observer that says stop gets `Cancelled` and no results, and
/// the same model runs the experiment again afterwards.
#[test]
fn progress_and_cancellation() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut spec = random_spec(&mut rng);
    spec.target = Target {
        component: Component::Z,
        positions: Choice::Each,
        heads: Choice::Each,
        receivers: None,
    };
    spec.window = None;
    spec.corruption = Corruption::Str;
    let options = RunOptions {
        budget: Budget {
            max_batch: 4,
            max_tokens: 64,
        },
        ..Default::default()
    };

    let mut seen = Vec::new();
    let results = pollster::block_on(patchbay_patching::run_experiment(
        &model,
        &tokenizer,
        &spec,
        &options,
        &mut |p: &patchbay_patching::Progress| {
            seen.push((p.done, p.total));
            true
        },
    ))
    .unwrap();
    assert!(seen.len() > 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0) && seen.iter().all(|&(d, t)| d <= t && t == 180));

    let mut calls = 0;
    let cancelled = pollster::block_on(patchbay_patching::run_experiment(
        &model,
        &tokenizer,
        &spec,
        &options,
        &mut |_: &patchbay_patching::Progress| {
            calls += 1;
            calls < 2
        },
    ));
    assert!(matches!(
        cancelled,
        Err(patchbay_patching::PatchingError::Cancelled)
    ));
    let again = run(&model, &tokenizer, &spec, &options);
    assert_eq!(again.grid, results.grid);
}

/// Prompts of a dataset run together in one batch; splitting them into groups of one (a tiny
/// budget) gives the same per-prompt grids, mean and spread, under STR and GN. The mean also
/// streams in: after each group, the observer gets the mean so far.
#[test]
fn prompts_batched_together_equal_prompts_run_one_by_one() {
    use patchbay_patching::tasks::ioi::{IoiCorruption, IoiOptions, ioi_prompts};
    let (model, tokenizer) = tiny(&backend::cpu());
    let options = IoiOptions::new(IoiCorruption::S2).with_template(0);
    let prompts: Vec<PromptPair> = ioi_prompts(&tokenizer, 5, 3, &options)
        .unwrap()
        .into_iter()
        .map(|p| p.pair)
        .collect();
    for corruption in [
        Corruption::Str,
        Corruption::Gn(GaussianNoise {
            positions: vec![2, 4],
            scale: 3.0,
            samples: 3,
            sigma_texts: None,
        }),
    ] {
        let spec = ExperimentSpec {
            version: 1,
            model: ModelSource::Local("tests/fixtures/models/tiny".into()),
            prepend_bos: true,
            prompts: prompts.clone(),
            corruption,
            metric: MetricSpec {
                kind: MetricKind::LogitDiff,
                normalized: false,
                normalize: Default::default(),
            },
            direction: Direction::Denoising,
            target: Target {
                component: Component::Z,
                positions: Choice::All,
                heads: Choice::Each,
                receivers: None,
            },
            window: None,
            seed: 11,
            attribution: true,
            dataset: None,
            detect: Default::default(),
            stats: Default::default(),
            circuit: None,
        };
        let together = run(&model, &tokenizer, &spec, &RunOptions::default());
        let mut partials = 0;
        let one_by_one = pollster::block_on(patchbay_patching::run_experiment(
            &model,
            &tokenizer,
            &spec,
            &RunOptions {
                budget: Budget {
                    max_batch: 4,
                    max_tokens: 4096,
                },
                ..Default::default()
            },
            &mut |p: &patchbay_patching::Progress| {
                partials += usize::from(p.partial.is_some());
                true
            },
        ))
        .unwrap();
        assert_eq!(partials, 5, "a partial mean after each prompt");
        assert_eq!(together.prompt_grids.len(), 5);
        for (a, b) in together.prompt_grids.iter().zip(&one_by_one.prompt_grids) {
            assert!(
                max_abs_diff(&a.values, &b.values) <= 1e-4,
                "{:?}",
                spec.corruption
            );
        }
        assert!(
            max_abs_diff(
                &together.sd_grid.as_ref().unwrap().values,
                &one_by_one.sd_grid.as_ref().unwrap().values
            ) <= 1e-4
        );
        let (a, b) = (together.attribution.unwrap(), one_by_one.attribution.unwrap());
        assert!(max_abs_diff(&a.grid.values, &b.grid.values) <= 1e-4);
        for (a, b) in together.prompts.iter().zip(&one_by_one.prompts) {
            assert_eq!(
                (a.answer, &a.corrupted_positions),
                (b.answer, &b.corrupted_positions)
            );
            assert!((a.clean.metric - b.clean.metric).abs() <= 1e-4);
            assert!((a.corrupted.metric - b.corrupted.metric).abs() <= 1e-4);
        }
    }
}
