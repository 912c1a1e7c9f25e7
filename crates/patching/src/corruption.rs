//! Corruption: how the corrupted run differs from the clean one.
//!
//! - STR (symmetric token replacement): a corrupted prompt of the same token length, position by
//!   position; [`str_pair`] checks it and reports the positions that differ, and [`swap_word`]
//!   builds one by swapping a word for another of the same token length.
//! - GN (Gaussian noise, ROME): N(0, ν²) added to the token embeddings at chosen positions,
//!   ν = scale × σ of the token embeddings over a text set, seeded, several samples at once.

use patchbay_model::burn::prelude::*;
use patchbay_model::{Gpt2, Gpt2Tokenizer, read_f32};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::PatchingError;

/// A clean prompt and its STR corruption, tokenized and aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrPair {
    pub clean: Vec<u32>,
    pub corrupted: Vec<u32>,
    /// Positions whose tokens differ.
    pub differing: Vec<usize>,
}

/// Tokenizes an STR pair and checks that it aligns: equal lengths, and at least one position
/// that differs. `prompt` numbers the pair in messages.
pub fn str_pair(
    tokenizer: &Gpt2Tokenizer,
    clean: &str,
    corrupted: &str,
    prepend_bos: bool,
    prompt: usize,
) -> Result<StrPair, PatchingError> {
    let clean_ids = tokenizer.encode(clean, prepend_bos)?;
    let corrupted_ids = tokenizer.encode(corrupted, prepend_bos)?;
    if clean_ids.len() != corrupted_ids.len() {
        let show = |ids: &[u32]| {
            ids.iter()
                .map(|&id| tokenizer.display(id))
                .collect::<Vec<_>>()
                .join("|")
        };
        return Err(PatchingError::UnequalLengths {
            prompt,
            clean: clean_ids.len(),
            corrupted: corrupted_ids.len(),
            clean_tokens: show(&clean_ids),
            corrupted_tokens: show(&corrupted_ids),
        });
    }
    let differing: Vec<usize> = (0..clean_ids.len())
        .filter(|&i| clean_ids[i] != corrupted_ids[i])
        .collect();
    if differing.is_empty() {
        return Err(PatchingError::IdenticalPrompts { prompt });
    }
    Ok(StrPair {
        clean: clean_ids,
        corrupted: corrupted_ids,
        differing,
    })
}

/// `text` with its `occurrence`-th (0-based) whole-word `word` replaced by `replacement`, checked
/// to keep the token length: the building block of STR pairs ("John" → "Mary").
pub fn swap_word(
    tokenizer: &Gpt2Tokenizer,
    text: &str,
    word: &str,
    replacement: &str,
    occurrence: usize,
) -> Result<String, PatchingError> {
    let is_boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let starts: Vec<usize> = text
        .match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            is_boundary(text[..i].chars().next_back()) && is_boundary(text[i + word.len()..].chars().next())
        })
        .collect();
    let start = *starts.get(occurrence).ok_or_else(|| {
        PatchingError::Target(format!(
            "\"{word}\" occurs {} time(s) as a word in the prompt; occurrence {occurrence} does not exist",
            starts.len()
        ))
    })?;
    let swapped = format!("{}{replacement}{}", &text[..start], &text[start + word.len()..]);
    let before = tokenizer.encode(text, false)?.len();
    let after = tokenizer.encode(&swapped, false)?.len();
    if before != after {
        return Err(PatchingError::Target(format!(
            "\"{word}\" and \"{replacement}\" have different token lengths here ({before} vs {after} tokens in the prompt); choose a replacement of the same length"
        )));
    }
    Ok(swapped)
}

/// The standard deviation (over every element, unbiased, as `torch.Tensor.std`) of the token
/// embeddings of `ids`.
pub async fn embedding_std(model: &Gpt2, ids: &[u32]) -> Result<f64, PatchingError> {
    if ids.is_empty() {
        return Err(PatchingError::Target("σ needs at least one token".into()));
    }
    let embeds = model.embed_tokens(ids);
    let values = read_f32(embeds).await?;
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Ok(var.sqrt())
}

/// Seeded Gaussian noise for GN: `samples` × `positions` × `d_model` values N(0, ν²), drawn in
/// that order from ChaCha8 seeded with `seed`, so the page and the CLI draw the same noise.
pub fn gaussian_noise(seed: u64, samples: usize, positions: usize, d_model: usize, nu: f64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..samples * positions * d_model)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            (z * nu) as f32
        })
        .collect()
}

/// The noise as the `hook_embed` addend of a whole prompt: `[samples, len, d_model]`, zero
/// except at `positions`, where the rows of `noise` (`[samples, positions.len(), d_model]`) go.
pub fn noise_tensor(
    noise: &[f32],
    samples: usize,
    positions: &[usize],
    len: usize,
    d_model: usize,
    device: &Device,
) -> Tensor<3> {
    let mut full = vec![0f32; samples * len * d_model];
    for s in 0..samples {
        for (k, &p) in positions.iter().enumerate() {
            let from = (s * positions.len() + k) * d_model;
            let to = (s * len + p) * d_model;
            full[to..to + d_model].copy_from_slice(&noise[from..from + d_model]);
        }
    }
    Tensor::from_data(TensorData::new(full, [samples, len, d_model]), device)
}
