//! Induction on repeated random tokens: t₁…t_len t₁…t_{len−1} → t_len, copied from the first
//! half; the corrupted prompt breaks the earlier occurrence of the current token.

use patchbay_model::Gpt2Tokenizer;
use rand::seq::IndexedRandom;

use super::{check_pair, rng};
use crate::{PatchingError, PromptPair};

/// Tokens for random sequences: a space and 3 to 10 lowercase ASCII letters, one token whose
/// text tokenizes back to itself (so a sequence of them round-trips through text), in id order.
pub fn word_tokens(tokenizer: &Gpt2Tokenizer) -> Vec<u32> {
    (0..tokenizer.vocab_size() as u32)
        .filter(|&id| {
            let Ok(text) = tokenizer.decode(&[id]) else {
                return false;
            };
            let Some(word) = text.strip_prefix(' ') else {
                return false;
            };
            (3..=10).contains(&word.len())
                && word.bytes().all(|b| b.is_ascii_lowercase())
                && tokenizer.encode(&text, false).is_ok_and(|ids| ids == [id])
        })
        .collect()
}

/// `n` induction pairs of random word tokens (see [`word_tokens`]): `len` distinct tokens
/// t₁…t_len, then t₁…t_{len−1} again; the answer r is t_len, copied from the first half. The
/// corrupted prompt replaces the first t_{len−1} with a token that occurs nowhere else, so the
/// current token has no earlier occurrence and nothing can be copied. The counter-answer r' is
/// t₁: in context in both runs, but never the continuation.
pub fn induction(
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    seed: u64,
    len: usize,
) -> Result<Vec<PromptPair>, PatchingError> {
    induction_from(&word_tokens(tokenizer), tokenizer, n, seed, len)
}

/// [`induction`] with the tokens to draw from given (computing [`word_tokens`] once for many
/// calls).
pub fn induction_from(
    vocab: &[u32],
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    seed: u64,
    len: usize,
) -> Result<Vec<PromptPair>, PatchingError> {
    if len < 3 {
        return Err(PatchingError::Spec(format!(
            "an induction sequence needs at least 3 tokens, not {len}"
        )));
    }
    if vocab.len() < len + 1 {
        return Err(PatchingError::Spec(format!(
            "{} tokens to draw from, but a sequence of {len} needs {}",
            vocab.len(),
            len + 1
        )));
    }
    let mut rng = rng(seed);
    let mut pairs = Vec::with_capacity(n);
    for index in 0..n {
        let picked: Vec<u32> = vocab.sample(&mut rng, len + 1).copied().collect();
        let (seq, replacement) = (&picked[..len], picked[len]);
        let mut clean: Vec<u32> = seq.to_vec();
        clean.extend_from_slice(&seq[..len - 1]);
        let mut corrupted = clean.clone();
        corrupted[len - 2] = replacement;
        let text = |ids: &[u32]| tokenizer.decode(ids);
        let pair = PromptPair {
            clean: text(&clean)?,
            corrupted: Some(text(&corrupted)?),
            answer: text(&seq[len - 1..])?,
            counter_answer: Some(text(&seq[..1])?),
            ..Default::default()
        };
        check_pair(tokenizer, &pair, index)?;
        pairs.push(pair);
    }
    Ok(pairs)
}
