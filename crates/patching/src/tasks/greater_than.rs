//! Greater-than, after Hanna et al. 2023: "The war lasted from the year 1732 to the year 17" →
//! a year after 32, measured as P(YY' > YY) − P(YY' ≤ YY) over the two-digit year tokens.

use patchbay_model::Gpt2Tokenizer;
use rand::seq::IndexedRandom;

use super::words::GT_NOUNS;
use super::{Piece, check_pair, rng, roles_of};
use crate::{PatchingError, PromptPair};

/// The two-digit years YY (2 to 98) for which " 17YY" is the tokens " 17" and "YY", given that
/// the corrupted year " 1701" is " 17" and "01" (an error otherwise).
pub fn gt_years(tokenizer: &Gpt2Tokenizer) -> Result<Vec<u32>, PatchingError> {
    let century = tokenizer.single_token(" 17")?;
    let splits = |yy: u32| {
        let year = format!("{yy:02}");
        match (
            tokenizer.encode(&format!(" 17{year}"), false),
            tokenizer.single_token(&year),
        ) {
            (Ok(ids), Ok(id)) => ids == [century, id],
            _ => false,
        }
    };
    if !splits(1) {
        return Err(PatchingError::Spec(
            "this tokenizer does not split \" 1701\" into \" 17\" and \"01\"".into(),
        ));
    }
    Ok((2..=98).filter(|&yy| splits(yy)).collect())
}

/// One greater-than prompt: "The {noun} lasted from the year 17{yy} to the year 17".
pub fn gt_prompt(noun: &str, yy: u32) -> String {
    format!("The{noun} lasted from the year 17{yy:02} to the year 17")
}

/// The roles of a greater-than prompt's tokens: `NOUN`, `YY`, `END` and the rest by their words.
fn gt_roles(tokenizer: &Gpt2Tokenizer, noun: &str, yy: u32) -> Result<Vec<String>, PatchingError> {
    let year = format!("{yy:02}");
    let mut roles = roles_of(
        tokenizer,
        &[
            Piece::Text("The"),
            Piece::Role(noun, "NOUN"),
            Piece::Text(" lasted from the year 17"),
            Piece::Role(&year, "YY"),
            Piece::Text(" to the year 17"),
        ],
    )?;
    if let Some(last) = roles.last_mut() {
        *last = "END".into();
    }
    Ok(roles)
}

/// `n` greater-than pairs (Hanna et al.): "The war lasted from the year 17YY to the year 17"
/// with r a year token above YY and r' one below it, both drawn at random; the corrupted prompt
/// has YY = 01, below every answer. As Hanna et al. measure it, each pair also carries the sets
/// R = {YY' > YY} and R' = {YY' ≤ YY} of two-digit year tokens ("00" to "99"), whose summed
/// probabilities `prob_diff` compares.
pub fn greater_than(
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    seed: u64,
) -> Result<Vec<PromptPair>, PatchingError> {
    let years = gt_years(tokenizer)?;
    // YY with a valid year on each side.
    let candidates: Vec<u32> = years
        .iter()
        .copied()
        .filter(|&yy| years.iter().any(|&y| y < yy) && years.iter().any(|&y| y > yy))
        .collect();
    if candidates.is_empty() {
        return Err(PatchingError::Spec(
            "this tokenizer splits every year 17YY differently from \" 17\" + \"YY\"".into(),
        ));
    }
    let two_digit: Vec<u32> = (0..=99)
        .filter(|&y| tokenizer.single_token(&format!("{y:02}")).is_ok())
        .collect();
    let set = |keep: &dyn Fn(u32) -> bool| -> Vec<String> {
        two_digit
            .iter()
            .filter(|&&y| keep(y))
            .map(|y| format!("{y:02}"))
            .collect()
    };
    let mut rng = rng(seed);
    let mut pairs = Vec::with_capacity(n);
    for index in 0..n {
        let noun = *GT_NOUNS.choose(&mut rng).expect("nouns");
        let yy = *candidates.choose(&mut rng).expect("years");
        let above: Vec<u32> = years.iter().copied().filter(|&y| y > yy).collect();
        let below: Vec<u32> = years.iter().copied().filter(|&y| y < yy).collect();
        let pair = PromptPair {
            clean: gt_prompt(noun, yy),
            corrupted: Some(gt_prompt(noun, 1)),
            answer: format!("{:02}", above.choose(&mut rng).expect("above")),
            counter_answer: Some(format!("{:02}", below.choose(&mut rng).expect("below"))),
            answer_set: set(&|y| y > yy),
            counter_set: set(&|y| y <= yy),
            roles: gt_roles(tokenizer, noun, yy)?,
        };
        check_pair(tokenizer, &pair, index)?;
        pairs.push(pair);
    }
    Ok(pairs)
}
