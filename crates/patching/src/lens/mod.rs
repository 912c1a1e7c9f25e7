//! The logit lens and direct logit attribution (DLA) of an experiment's clean and corrupted
//! runs, the two views an interpretability course opens with, beside patching. Both read the
//! logit difference logit(r) − logit(r′) of the spec's answers, so every prompt needs a
//! counter-answer; the spec's target, metric, direction and window play no part.
//!
//! - **Logit lens** ([`reading`]): logit(r), logit(r′) and their difference read from each
//!   accumulated residual stream (the embeddings, then the stream after each layer) at every
//!   position, through the final LayerNorm with that stream's own statistics, gain and bias, and
//!   the unembedding: TransformerLens's `cache.accumulated_resid(layer=None, incl_mid=False,
//!   apply_ln=True)` (which applies `ln_final` to each stream) followed by `model.unembed`. Its
//!   `layer` axis has TransformerLens's labels, `0_pre` … `{n-1}_pre`, `final_post`; the last
//!   row is the model's own logits.
//! - **Direct logit attribution**: each component's direct contribution to the logit
//!   difference at the last position, with the final LayerNorm's scale *frozen*: centred,
//!   divided by the scale of the whole final residual stream there (`ln_final.hook_scale`) and
//!   dotted with γ_f ⊙ (W_U[:, r] − W_U[:, r′]). This is TransformerLens's
//!   `cache.logit_attrs(cache.get_full_resid_decomposition(expand_neurons=False, pos_slice=-1),
//!   tokens=r, incorrect_tokens=r′, pos_slice=-1)` on a model with the LayerNorm folded (the
//!   default), heads as `stack_head_results` gives them (`z_h W_O[h]`, without b_O). The terms
//!   (see [`reading::Terms`]: heads, MLPs, embeddings, the attention biases, and the final
//!   LayerNorm's bias) sum to the model's own logit difference. Freezing the scale makes DLA
//!   linear in the components; the lens recomputes the scale, since each of its streams is a
//!   whole residual stream.
//!
//! Datasets average over prompts and Gaussian noise over its samples ([`average`]); the
//! results ([`results`]) hold the clean run, the corrupted run and their difference, and
//! [`views`] shows them.

pub mod average;
pub mod reading;
pub mod results;
pub mod views;

use patchbay_model::burn::prelude::Tensor;
use patchbay_model::{Gpt2, Gpt2Tokenizer};

use crate::corruption::Corrupted;
use crate::experiment::{Observer, Progress, RunOptions};
use crate::lens::average::RunMean;
use crate::lens::reading::Terms;
use crate::prepare::{Prepared, prepare};
use crate::runs::CachedRun;
use crate::sweep::plan::{Axis, HEAD_INDEX, LAYER, POS, ROLE};
use crate::{ExperimentSpec, PatchingError};
pub use results::{LensResults, LensRun};
pub use views::{LensView, Quantity, Which};

/// TransformerLens's label of accumulated stream `k` of a model of `n_layer` layers
/// (`accumulated_resid(return_labels=True)`).
pub fn stream_label(k: usize, n_layer: usize) -> String {
    if k == n_layer {
        "final_post".into()
    } else {
        format!("{k}_pre")
    }
}

fn axis(name: &str, labels: Vec<String>) -> Axis {
    Axis {
        name: name.into(),
        labels,
    }
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Runs the logit lens and DLA of `spec`'s clean and corrupted runs on `model`, telling
/// `observer` of progress between batches. `options.noise` replays Gaussian noise as it does
/// for [`crate::run_experiment`].
pub async fn run_lens(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    spec: &ExperimentSpec,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<LensResults, PatchingError> {
    let prepared = prepare(model, tokenizer, spec).await?;
    run_prepared_lens(model, spec, &prepared, options, observer).await
}

/// [`run_lens`] on a prepared experiment; `original` is the spec as given, which the results
/// carry.
pub async fn run_prepared_lens(
    model: &Gpt2,
    original: &ExperimentSpec,
    prepared: &Prepared,
    options: &RunOptions,
    observer: &mut impl Observer,
) -> Result<LensResults, PatchingError> {
    let (n_layer, n_head) = (model.config.n_layer, model.config.n_head);
    let prompts = &prepared.prompts;
    let mut counters = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let counter = p.answers.counter.ok_or(PatchingError::MissingCounterAnswer {
            prompt: i,
            metric: "logit lens's and DLA's logit-difference",
        })?;
        p.answers.check_distinct(&prepared.spec.prompts[i], i)?;
        counters.push(counter);
    }
    let terms = Terms { n_layer, n_head };
    let columns = prepared.labels.len();
    let mut clean = RunMean::new(terms, columns);
    let mut corrupted = RunMean::new(terms, columns);
    let hooks = reading::hooks(n_layer);

    // Prompts of one length run together, within the budget's rows and tokens per pass.
    let samples = prepared.noise.as_ref().map_or(1, |n| n.samples);
    let batches: Vec<Vec<usize>> = prepared
        .groups()
        .into_iter()
        .flat_map(|group| {
            let len = prompts[group[0]].clean.len();
            let budget = options.budget;
            let chunk = (budget.max_batch / samples)
                .min(budget.max_tokens / (samples * len))
                .max(1);
            group.chunks(chunk).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect();
    let mut done = 0;
    for batch in &batches {
        let (mut corrupted_tokens, mut noises, mut rows_of) = (Vec::new(), Vec::new(), Vec::new());
        for &i in batch {
            let start = corrupted_tokens.len();
            match prepared.input(model, i, options.noise.as_deref()).corrupted {
                Corrupted::Tokens(tokens) => corrupted_tokens.push(tokens),
                Corrupted::Noise { noise } => {
                    corrupted_tokens.extend(vec![prompts[i].clean.clone(); noise.dims()[0]]);
                    noises.push(noise);
                }
            }
            rows_of.push(start..corrupted_tokens.len());
        }
        let noise = (!noises.is_empty()).then(|| Tensor::cat(noises, 0));
        let clean_tokens = batch.iter().map(|&i| prompts[i].clean.clone()).collect();
        let (clean_run, corrupted_run) =
            CachedRun::execute_pair(model, clean_tokens, corrupted_tokens, noise, &hooks)?;
        let answers: Vec<u32> = batch.iter().map(|&i| prompts[i].answers.answer).collect();
        let counter_ids: Vec<u32> = batch.iter().map(|&i| counters[i]).collect();
        let clean_reading = reading::read(model, &clean_run, &answers, &counter_ids).await?;
        let per_row = |ids: &[u32]| -> Vec<u32> {
            rows_of
                .iter()
                .zip(ids)
                .flat_map(|(rows, &id)| vec![id; rows.len()])
                .collect()
        };
        let corrupted_reading =
            reading::read(model, &corrupted_run, &per_row(&answers), &per_row(&counter_ids)).await?;
        for (k, &i) in batch.iter().enumerate() {
            let own: Vec<usize>;
            let columns = if prepared.by_role {
                &prompts[i].role_of
            } else {
                own = (0..prompts[i].clean.len()).collect();
                &own
            };
            clean.add(&clean_reading, k..k + 1, columns);
            corrupted.add(&corrupted_reading, rows_of[k].clone(), columns);
        }
        done += batch.len();
        let progress = Progress {
            done,
            total: prompts.len(),
            stage: "logit lens".into(),
            partial: None,
        };
        if !observer.progress(&progress).await {
            return Err(PatchingError::Cancelled);
        }
    }
    let (clean, corrupted) = (clean.finish(), corrupted.finish());
    let streams = (0..=n_layer).map(|k| stream_label(k, n_layer)).collect();
    let position = if prepared.by_role { ROLE } else { POS };
    Ok(LensResults {
        spec: original.clone(),
        dataset: prepared.dataset.clone(),
        lens_axes: vec![axis(LAYER, streams), axis(position, prepared.labels.clone())],
        head_axes: vec![axis(LAYER, numbered(n_layer)), axis(HEAD_INDEX, numbered(n_head))],
        mlp_axes: vec![axis(LAYER, numbered(n_layer))],
        difference: clean.minus(&corrupted),
        clean,
        corrupted,
        prompts: prompts.len(),
    })
}
