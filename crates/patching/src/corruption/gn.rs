//! Gaussian noise (GN), ROME's causal tracing, all in one place: the spec's settings and their
//! defaults, their checks, the default positions, σ and ν, the seeded draw, and the tensor the
//! corrupted run adds at `hook_embed`.
//!
//! N(0, ν²) is added to the token embeddings (the wte output, before the positional embedding)
//! at the key positions only, with ν = `scale` × σ and σ the standard deviation of the token
//! embeddings of a text set: by default the noised tokens of the experiment's prompts (ROME
//! measures it over its subjects). `samples` draws run as one batch and are averaged. Without
//! positions, the noise covers the tokens STR would change: in each pair, the positions where
//! its corrupted prompt differs.

use patchbay_model::burn::prelude::*;
use patchbay_model::{
    Activation, EditOp, Gpt2, Gpt2Tokenizer, HookPoint, Intervention, ModelError, Selection, read_f32,
};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::corruption::Corrupted;
use crate::corruption::str::str_pair;
use crate::{PatchingError, PromptPair};

/// ν in units of σ when the spec does not say: ROME's and the paper's 3σ.
pub const DEFAULT_SCALE: f64 = 3.0;
/// Noise samples when the spec does not say: ROME averages 10.
pub const DEFAULT_SAMPLES: usize = 10;

/// Gaussian noise N(0, ν²) added to the token embeddings (`hook_embed`) at `positions`, with
/// ν = `scale` × σ, σ the standard deviation of the token embeddings of `sigma_texts` (by
/// default, of the tokens at `positions` in the experiment's prompts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoise {
    /// Token positions to noise (counting `<|endoftext|>` when it is prepended). Empty: in each
    /// pair, the positions where its corrupted prompt differs (the tokens STR changes).
    pub positions: Vec<usize>,
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Noise samples, run as one batch and averaged.
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Texts whose token embeddings define σ; `None`: the noised tokens of the prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_texts: Option<Vec<String>>,
}

fn default_scale() -> f64 {
    DEFAULT_SCALE
}

fn default_samples() -> usize {
    DEFAULT_SAMPLES
}

impl GaussianNoise {
    /// Noise on `positions` with the default scale and samples.
    pub fn at(positions: Vec<usize>) -> Self {
        GaussianNoise {
            positions,
            scale: DEFAULT_SCALE,
            samples: DEFAULT_SAMPLES,
            sigma_texts: None,
        }
    }
}

/// GN as it runs: σ and ν (each prompt's positions are its own).
#[derive(Clone, Debug, PartialEq)]
pub struct Noise {
    pub samples: usize,
    pub sigma: f64,
    pub nu: f64,
}

/// The positions to noise in pair `index`, whose clean tokens number `len`: the spec's, checked
/// against the prompt, or the tokens STR would change.
pub fn positions(
    gn: &GaussianNoise,
    tokenizer: &Gpt2Tokenizer,
    pair: &PromptPair,
    prepend_bos: bool,
    len: usize,
    index: usize,
) -> Result<Vec<usize>, PatchingError> {
    let fail = |m: String| Err(PatchingError::Corruption(m));
    if gn.samples == 0 || !(gn.scale.is_finite() && gn.scale >= 0.0) {
        return fail("Gaussian noise needs at least one sample and a non-negative scale".into());
    }
    if gn.positions.is_empty() {
        let Some(corrupted) = &pair.corrupted else {
            return fail(format!(
                "prompt {index}: Gaussian noise needs positions to noise, or a corrupted prompt whose differing tokens say which"
            ));
        };
        return Ok(str_pair(tokenizer, &pair.clean, corrupted, prepend_bos, index)?.differing);
    }
    if let Some(&p) = gn.positions.iter().find(|&&p| p >= len) {
        return fail(format!(
            "noise position {p} is out of range: the prompt has {len} positions"
        ));
    }
    Ok(gn.positions.clone())
}

/// σ and ν for `gn` noising prompts: each `(clean tokens, positions)`.
pub async fn level(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    gn: &GaussianNoise,
    prompts: &[(&[u32], &[usize])],
) -> Result<Noise, PatchingError> {
    let ids: Vec<u32> = match &gn.sigma_texts {
        Some(texts) => texts
            .iter()
            .map(|t| tokenizer.encode(t, false))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        None => prompts
            .iter()
            .flat_map(|(clean, positions)| positions.iter().map(|&i| clean[i]))
            .collect(),
    };
    let sigma = embedding_std(model, &ids).await?;
    Ok(Noise {
        samples: gn.samples,
        sigma,
        nu: gn.scale * sigma,
    })
}

/// The standard deviation (over every element, unbiased, as `torch.Tensor.std`) of the token
/// embeddings of `ids`.
pub async fn embedding_std(model: &Gpt2, ids: &[u32]) -> Result<f64, PatchingError> {
    if ids.is_empty() {
        return Err(PatchingError::Corruption("σ needs at least one token".into()));
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

impl Noise {
    /// The corrupted run of prompt `index` (of `len` tokens, noised at `positions`): seeded
    /// with `seed + index`, or the values of `replay` (`[samples, positions, d_model]`).
    pub fn corrupted(
        &self,
        model: &Gpt2,
        seed: u64,
        index: usize,
        len: usize,
        positions: &[usize],
        replay: Option<&[f32]>,
    ) -> Corrupted {
        let d_model = model.config.n_embd;
        let drawn;
        let values = match replay {
            Some(values) => values,
            None => {
                drawn = gaussian_noise(
                    seed.wrapping_add(index as u64),
                    self.samples,
                    positions.len(),
                    d_model,
                    self.nu,
                );
                &drawn
            }
        };
        Corrupted::Noise {
            noise: noise_tensor(values, self.samples, positions, len, d_model, &model.device()),
        }
    }
}

/// The GN addend as an intervention for `rows` rows (nothing without noise).
pub(crate) fn intervention(noise: Option<Tensor<3>>, rows: usize) -> Result<Vec<Intervention>, ModelError> {
    noise
        .map(|n| {
            Intervention::new(
                HookPoint::Embed,
                EditOp::Add,
                Activation::Stream(n),
                &vec![Some(Selection::all()); rows],
            )
        })
        .into_iter()
        .collect()
}
