//! Method sensitivity: the same dataset under every combination of corruption, metric and
//! direction (and, for stability, several seeds), with the components each detects, the Jaccard
//! similarity of those sets, the rank correlation of the grids, the paper's Table 1: the heads of
//! each known class detected under each setting, and, with several seeds, how stable each
//! setting's detected set is across them ([`crate::analysis::stability`]).

use patchbay_model::{Gpt2, Gpt2Tokenizer};
use serde::{Deserialize, Serialize};

use crate::analysis::known_circuits::HeadClass;
use crate::analysis::stability::Stability;
use crate::analysis::stats;
use crate::corruption::gn::GaussianNoise;
use crate::experiment::{Observer, Progress, RunOptions, run_experiment};
use crate::spec::dataset::IoiNames;
use crate::sweep::plan::{Axis, HEAD_INDEX, LAYER};
use crate::{Corruption, Direction, ExperimentSpec, MetricKind, MetricSpec, PatchingError};

/// A corruption to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptionChoice {
    /// Symmetric token replacement, with the spec's corrupted prompts (or, for a generated IOI
    /// dataset, changing these names).
    Str(Option<IoiNames>),
    /// Gaussian noise (the default scale, `samples`) on the tokens that STR would change.
    Gn(Option<IoiNames>),
}

/// The settings to sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choices {
    pub corruptions: Vec<CorruptionChoice>,
    pub metrics: Vec<MetricKind>,
    pub directions: Vec<Direction>,
    /// Seeds: of the noise, and of the generated dataset (so of STR's substitutions).
    pub seeds: Vec<u64>,
    /// Noise samples for GN.
    pub samples: usize,
}

/// The most settings one sensitivity run may combine.
pub const MAX_SETTINGS: usize = 64;

impl Choices {
    /// Checks the choices' sizes: noise samples within the spec's limit, and at most
    /// [`MAX_SETTINGS`] combinations.
    pub fn check(&self) -> Result<(), PatchingError> {
        let max = crate::spec::limits::MAX_GN_SAMPLES;
        if !(1..=max).contains(&self.samples) {
            return Err(PatchingError::Spec(format!(
                "`samples` is {}; Gaussian noise takes 1 to {max} samples",
                self.samples
            )));
        }
        let settings = [
            self.corruptions.len(),
            self.metrics.len(),
            self.directions.len(),
            self.seeds.len(),
        ]
        .iter()
        .try_fold(1usize, |n, &k| n.checked_mul(k))
        .unwrap_or(usize::MAX);
        if settings > MAX_SETTINGS {
            return Err(PatchingError::Spec(format!(
                "{settings} combinations of corruption, metric, direction and seed; at most {MAX_SETTINGS} run at once"
            )));
        }
        Ok(())
    }
}

/// One setting's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub label: String,
    pub spec: ExperimentSpec,
    pub grid: Vec<f64>,
    /// Detected cells (flat indices), strongest first.
    pub detected: Vec<usize>,
}

/// A row of Table 1: one class, and the heads of it each case detected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub heads: Vec<[usize; 2]>,
    /// Per case, the class's heads that were detected.
    pub detected: Vec<Vec<[usize; 2]>>,
}

/// Every case, and how they agree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sensitivity {
    pub axes: Vec<Axis>,
    pub cases: Vec<Case>,
    /// Jaccard similarity of the detected sets, case by case.
    pub jaccard: Vec<Vec<f64>>,
    /// Spearman rank correlation of the grids, case by case.
    pub spearman: Vec<Vec<Option<f64>>>,
    /// Table 1, when the grid is layer × head and the model has known classes.
    pub table: Option<Vec<ClassRow>>,
    /// With two seeds or more: for each setting, how stable its detected set is across them.
    pub stability: Vec<Stability>,
}

fn label(
    corruption: CorruptionChoice,
    metric: MetricKind,
    direction: Direction,
    seed: Option<u64>,
) -> String {
    let names = |n: Option<IoiNames>| match n {
        Some(IoiNames::S2) => " S2",
        Some(IoiNames::S1Io) => " S1+IO",
        Some(IoiNames::Abc) => " ABC",
        None => "",
    };
    let corruption = match corruption {
        CorruptionChoice::Str(n) => format!("STR{}", names(n)),
        CorruptionChoice::Gn(n) => format!("GN{}", names(n)),
    };
    let direction = match direction {
        Direction::Denoising => "denoising",
        Direction::Noising => "noising",
    };
    let seed = seed.map(|s| format!(" · seed {s}")).unwrap_or_default();
    format!("{corruption} · {} · {direction}{seed}", metric.name())
}

/// The spec of one setting.
fn variant(
    base: &ExperimentSpec,
    corruption: CorruptionChoice,
    metric: MetricKind,
    direction: Direction,
    seed: u64,
    samples: usize,
) -> Result<ExperimentSpec, PatchingError> {
    let mut spec = base.clone();
    spec.metric = MetricSpec {
        kind: metric,
        normalized: true,
        normalize: base.metric.normalize,
    };
    spec.direction = direction;
    spec.seed = seed;
    spec.attribution = false;
    spec.window = None;
    let names = match corruption {
        CorruptionChoice::Str(n) | CorruptionChoice::Gn(n) => n,
    };
    if let Some(dataset) = &mut spec.dataset {
        dataset.seed = seed;
        if let Some(n) = names {
            dataset.names = n;
        }
    } else if names.is_some() {
        return Err(PatchingError::Spec(
            "choosing IOI names to corrupt needs a generated IOI dataset".into(),
        ));
    }
    spec.corruption = match corruption {
        CorruptionChoice::Str(_) => Corruption::Str,
        // No positions: the tokens STR changes.
        CorruptionChoice::Gn(_) => Corruption::Gn(GaussianNoise {
            samples,
            ..GaussianNoise::at(Vec::new())
        }),
    };
    Ok(spec)
}

/// Runs every combination of `choices` on `base`, in order corruption × metric × direction ×
/// seed, telling `observer` of progress across all of them.
pub async fn sensitivity(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    base: &ExperimentSpec,
    choices: &Choices,
    classes: Option<&[HeadClass]>,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<Sensitivity, PatchingError> {
    choices.check()?;
    let mut settings = Vec::new();
    // Each corruption × metric × direction, whose seeds are consecutive cases.
    let mut groups = Vec::new();
    for &c in &choices.corruptions {
        for &m in &choices.metrics {
            for &d in &choices.directions {
                groups.push(label(c, m, d, None));
                for &s in &choices.seeds {
                    let seed = (choices.seeds.len() > 1).then_some(s);
                    settings.push((label(c, m, d, seed), variant(base, c, m, d, s, choices.samples)?));
                }
            }
        }
    }
    if settings.is_empty() {
        return Err(PatchingError::Spec(
            "choose at least one corruption, metric, direction and seed".into(),
        ));
    }
    let total_cases = settings.len();
    let mut cases = Vec::new();
    let mut axes = Vec::new();
    for (i, (label, spec)) in settings.into_iter().enumerate() {
        let stage = format!("setting {}/{total_cases}: {label}", i + 1);
        // Progress in thousandths of a setting, so that settings of different sizes add up.
        let mut inner = |p: &Progress| Progress {
            done: i * 1000 + p.done * 1000 / p.total.max(1),
            total: total_cases * 1000,
            stage: format!("{stage} ({})", p.stage),
            partial: None,
        };
        let mut relay = Relay {
            observer: &mut *observer,
            map: &mut inner,
        };
        let results = run_experiment(model, tokenizer, &spec, options, &mut relay).await?;
        axes = results.axes.clone();
        cases.push(Case {
            label,
            spec,
            detected: results.detected.iter().map(|d| d.cell).collect(),
            grid: results.grid.values,
        });
    }
    let n = cases.len();
    let jaccard = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| stats::jaccard(&cases[i].detected, &cases[j].detected))
                .collect()
        })
        .collect();
    let spearman = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| stats::spearman(&cases[i].grid, &cases[j].grid))
                .collect()
        })
        .collect();
    let shape: Vec<usize> = axes.iter().map(|a| a.labels.len()).collect();
    let k = choices.seeds.len();
    let stability = if k > 1 {
        groups
            .into_iter()
            .enumerate()
            .map(|(g, setting)| {
                let indices: Vec<usize> = (g * k..(g + 1) * k).collect();
                let detected: Vec<&[usize]> = indices.iter().map(|&i| cases[i].detected.as_slice()).collect();
                Stability::of(setting, choices.seeds.clone(), indices.clone(), &detected, &shape)
            })
            .collect()
    } else {
        Vec::new()
    };
    let heads_grid = axes.len() == 2 && axes[0].name == LAYER && axes[1].name == HEAD_INDEX;
    let table = match (classes, heads_grid) {
        (Some(classes), true) => {
            let n_head = axes[1].labels.len();
            Some(
                classes
                    .iter()
                    .map(|class| ClassRow {
                        class: class.name.clone(),
                        heads: class.heads.clone(),
                        detected: cases
                            .iter()
                            .map(|case| {
                                class
                                    .heads
                                    .iter()
                                    .copied()
                                    .filter(|[l, h]| case.detected.contains(&(l * n_head + h)))
                                    .collect()
                            })
                            .collect(),
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Sensitivity {
        axes,
        cases,
        jaccard,
        spearman,
        table,
        stability,
    })
}

/// Passes one experiment's progress on as progress through all of them.
struct Relay<'a, O: Observer, F: FnMut(&Progress) -> Progress> {
    observer: &'a mut O,
    map: &'a mut F,
}

impl<O: Observer, F: FnMut(&Progress) -> Progress> Observer for Relay<'_, O, F> {
    async fn progress(&mut self, progress: &Progress) -> bool {
        let mapped = (self.map)(progress);
        self.observer.progress(&mapped).await
    }
}
