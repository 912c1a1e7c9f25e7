//! Property test: over random targets, corruptions, metrics, directions and windows, the batched
//! sweep (start at the patched layer, reuse cached keys and values, skip no-op patches, batch
//! under a small budget) gives the same numbers as a plain loop of one full forward per patch;
//! a run shared by workers gives the very numbers of a run alone; and the clean and corrupted
//! runs give the same values in one pass as in two.

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

/// A shard as the page posts it between workers: the sweep's number and the flat arrays.
type Post = (usize, Vec<u32>, Vec<f32>);

/// One worker of a pool of threads that share a run, as the page's Web Workers do: shards cross
/// as flat arrays through channels, and a stop reaches every worker (the page's Cancel).
struct Peer {
    share: patchbay_patching::sweep::share::Share,
    others: Vec<std::sync::mpsc::Sender<Post>>,
    inbox: std::sync::mpsc::Receiver<Post>,
    early: Vec<Post>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Stop after this many progress reports.
    stop_after: Option<usize>,
    seen: Vec<usize>,
}

impl patchbay_patching::Observer for Peer {
    async fn progress(&mut self, p: &patchbay_patching::Progress) -> bool {
        use std::sync::atomic::Ordering;
        self.seen.push(p.done);
        if self.stop_after.is_some_and(|n| self.seen.len() >= n) {
            self.stop.store(true, Ordering::SeqCst);
        }
        !self.stop.load(Ordering::SeqCst)
    }

    fn share(&self) -> patchbay_patching::sweep::share::Share {
        self.share
    }

    async fn exchange(
        &mut self,
        call: usize,
        mine: patchbay_patching::sweep::share::Shard,
    ) -> Result<Vec<patchbay_patching::sweep::share::Shard>, patchbay_patching::PatchingError> {
        use patchbay_patching::PatchingError;
        use patchbay_patching::sweep::share::Shard;
        let (patches, values) = mine.to_flat();
        for other in &self.others {
            let _ = other.send((call, patches.clone(), values.clone()));
        }
        let mut theirs = Vec::new();
        while theirs.len() + 1 < self.share.count {
            if let Some(k) = self.early.iter().position(|post| post.0 == call) {
                let (_, patches, values) = self.early.remove(k);
                theirs.push(Shard::from_flat(&patches, &values)?);
                continue;
            }
            if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PatchingError::Cancelled);
            }
            match self.inbox.recv_timeout(std::time::Duration::from_millis(5)) {
                Ok(post) => self.early.push(post),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => return Err(PatchingError::Peer("the other workers stopped".into())),
            }
        }
        Ok(theirs)
    }
}

/// Runs `spec` on a pool of `count` threads; each worker's outcome and progress.
#[allow(clippy::type_complexity)]
fn pooled(
    model: &patchbay_model::Gpt2,
    tokenizer: &patchbay_model::Gpt2Tokenizer,
    spec: &ExperimentSpec,
    options: &RunOptions,
    count: usize,
    stop_after: Option<usize>,
) -> Vec<(
    Result<patchbay_patching::Results, patchbay_patching::PatchingError>,
    Vec<usize>,
)> {
    use patchbay_patching::sweep::share::Share;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..count).map(|_| std::sync::mpsc::channel::<Post>()).unzip();
    let peers: Vec<Peer> = inboxes
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Peer {
            share: Share::new(index, count).unwrap(),
            others: (0..count)
                .filter(|&j| j != index)
                .map(|j| senders[j].clone())
                .collect(),
            inbox,
            early: Vec::new(),
            stop: stop.clone(),
            stop_after: stop_after.filter(|_| index == count - 1),
            seen: Vec::new(),
        })
        .collect();
    drop(senders);
    std::thread::scope(|scope| {
        let workers: Vec<_> = peers
            .into_iter()
            .map(|mut peer| {
                scope.spawn(move || {
                    let outcome = pollster::block_on(patchbay_patching::run_experiment(
                        model, tokenizer, spec, options, &mut peer,
                    ));
                    if outcome.is_err() {
                        peer.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    (outcome, peer.seen)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// A run shared by 2 or 3 workers, each running its part of every sweep, gives results that
/// serialise to the very bytes of the run alone, for random sweeps, a dataset with attribution
/// patching, and path patching; each worker's progress rises, and the workers' last reports add
/// up to the total.
#[test]
fn shared_runs_equal_a_run_alone() {
    use patchbay_patching::tasks::ioi::{IoiCorruption, IoiOptions, ioi_prompts};
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut specs: Vec<ExperimentSpec> = (0..10).map(|_| random_spec(&mut rng)).collect();
    let mut dataset = random_spec(&mut rng);
    dataset.prompts = ioi_prompts(
        &tokenizer,
        5,
        3,
        &IoiOptions::new(IoiCorruption::S2).with_template(0),
    )
    .unwrap()
    .into_iter()
    .map(|p| p.pair)
    .collect();
    dataset.corruption = Corruption::Str;
    dataset.window = None;
    dataset.metric.normalized = true;
    dataset.attribution = true;
    dataset.target = Target {
        component: Component::Z,
        positions: Choice::All,
        heads: Choice::Each,
        receivers: None,
    };
    specs.push(dataset);
    let mut path = random_spec(&mut rng);
    path.window = None;
    path.corruption = Corruption::Str;
    path.target =
        serde_json::from_str(r#"{"component":"path","receivers":{"heads":[[2,0]],"input":"q"}}"#).unwrap();
    specs.push(path);
    let options = RunOptions {
        budget: Budget {
            max_batch: 4,
            max_tokens: 64,
        },
        ..Default::default()
    };
    for (k, spec) in specs.iter().enumerate() {
        let mut alone_seen = Vec::new();
        let alone = pollster::block_on(patchbay_patching::run_experiment(
            &model,
            &tokenizer,
            spec,
            &options,
            &mut |p: &patchbay_patching::Progress| {
                alone_seen.push((p.done, p.total));
                true
            },
        ))
        .unwrap();
        let &(total_done, total) = alone_seen.last().unwrap();
        assert_eq!(total_done, total, "spec {k}");
        let alone = serde_json::to_string(&alone).unwrap();
        for count in [2, 3] {
            let workers = pooled(&model, &tokenizer, spec, &options, count, None);
            let mut summed = 0;
            for (index, (outcome, seen)) in workers.into_iter().enumerate() {
                let results = outcome.unwrap_or_else(|e| panic!("spec {k}, worker {index} of {count}: {e}"));
                assert_eq!(
                    serde_json::to_string(&results).unwrap(),
                    alone,
                    "spec {k}, worker {index} of {count}"
                );
                assert!(seen.windows(2).all(|w| w[0] <= w[1]), "spec {k}: {seen:?}");
                summed += seen.last().copied().unwrap_or(0);
            }
            assert_eq!(summed, total, "spec {k}, {count} workers");
        }
    }
}

/// When one worker of a pool stops, every worker ends (none waits for it for ever): with
/// `Cancelled`, or with the others' stop.
#[test]
fn a_stop_ends_every_worker_of_a_pool() {
    let (model, tokenizer) = tiny(&backend::cpu());
    let mut spec = random_spec(&mut ChaCha8Rng::seed_from_u64(3));
    spec.window = None;
    spec.target = Target {
        component: Component::Z,
        positions: Choice::Each,
        heads: Choice::Each,
        receivers: None,
    };
    let options = RunOptions {
        budget: Budget {
            max_batch: 2,
            max_tokens: 32,
        },
        ..Default::default()
    };
    for stop_after in [1, 3, 6] {
        for (outcome, _) in pooled(&model, &tokenizer, &spec, &options, 3, Some(stop_after)) {
            assert!(
                matches!(
                    outcome,
                    Err(patchbay_patching::PatchingError::Cancelled
                        | patchbay_patching::PatchingError::Peer(_))
                ),
                "after {stop_after}: {:?}",
                outcome.map(|_| ())
            );
        }
    }
}

/// The clean and corrupted runs share one forward pass when they are small; every row's cached
/// values and logits must be those of its own run, under STR and under GN (whose addend must
/// reach the corrupted rows only).
#[test]
fn clean_and_corrupted_in_one_pass_equal_two_passes() {
    use patchbay_model::HookPoint;
    use patchbay_patching::runs::CachedRun;
    let (model, tokenizer) = tiny(&backend::cpu());
    let (clean, corrupt) = (
        tokenizer.encode(CLEAN, true).unwrap(),
        tokenizer.encode(CORRUPT, true).unwrap(),
    );
    let (len, d_model) = (clean.len(), model.config.n_embd);
    let hooks: Vec<HookPoint> = (0..model.config.n_layer)
        .flat_map(|l| {
            [
                HookPoint::ResidPre(l),
                HookPoint::K(l),
                HookPoint::V(l),
                HookPoint::Z(l),
            ]
        })
        .chain([HookPoint::Embed])
        .collect();
    let samples = 3;
    let noise = patchbay_patching::corruption::gn::gaussian_noise(7, samples, 2, d_model, 0.5);
    let noise = patchbay_patching::corruption::gn::noise_tensor(
        &noise,
        samples,
        &[1, 3],
        len,
        d_model,
        &model.device(),
    );
    let cases = [
        (
            vec![clean.clone(), clean.clone()],
            vec![corrupt.clone(), clean.clone()],
            None,
        ),
        (vec![clean.clone()], vec![clean.clone(); samples], Some(noise)),
    ];
    for (clean_rows, corrupted_rows, noise) in cases {
        let alone = (
            CachedRun::execute(&model, clean_rows.clone(), None, hooks.iter().copied()).unwrap(),
            CachedRun::execute(
                &model,
                corrupted_rows.clone(),
                noise.clone(),
                hooks.iter().copied(),
            )
            .unwrap(),
        );
        let joint = CachedRun::execute_pair(&model, clean_rows, corrupted_rows, noise, &hooks).unwrap();
        for (a, b) in [(&alone.0, &joint.0), (&alone.1, &joint.1)] {
            assert_eq!(a.rows, b.rows);
            let mut pairs = vec![(
                a.last_logits.to_data().try_into_vec::<f32>().unwrap(),
                b.last_logits.to_data().try_into_vec::<f32>().unwrap(),
            )];
            for &hook in &hooks {
                pairs.push((
                    a.cache.get(hook).unwrap().to_vec(),
                    b.cache.get(hook).unwrap().to_vec(),
                ));
            }
            for (x, y) in pairs {
                assert_eq!(x.len(), y.len());
                let diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                assert!(diff <= 1e-5, "one pass and two passes differ by {diff}");
            }
        }
        // The corrupted rows under GN differ from the clean ones (the addend reached them).
        let embed = |r: &CachedRun| r.cache.get(HookPoint::Embed).unwrap().to_vec();
        assert_ne!(embed(&joint.0)[..len * d_model], embed(&joint.1)[..len * d_model]);
    }
}
