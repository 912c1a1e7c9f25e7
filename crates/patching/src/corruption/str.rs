//! Symmetric token replacement (STR): the corrupted prompt swaps key tokens for similar ones of
//! the same token length, so that it stays in distribution and has its own answer r'.
//! [`str_pair`] checks a pair and reports the positions that differ (which are also the
//! positions Gaussian noise covers by default); [`swap_word`] builds a corrupted prompt by
//! swapping a word for another of the same token length.

use patchbay_model::Gpt2Tokenizer;

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
