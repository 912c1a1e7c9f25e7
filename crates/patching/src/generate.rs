//! Seeded dataset generators for the three tasks the paper's experiments use: indirect object
//! identification (IOI, after Wang et al. 2023), induction on repeated random tokens, and
//! greater-than (after Hanna et al. 2023).
//!
//! Each returns [`PromptPair`]s ready for an [`ExperimentSpec`](crate::ExperimentSpec) with
//! symmetric token replacement: the clean and corrupted prompts tokenize to the same length,
//! position by position, and the answer r and counter-answer r' are single tokens. The same
//! seed always gives the same pairs (ChaCha8), so a dataset is named by its generator, its size
//! and its seed. Token lengths assume no `<|endoftext|>` in the text; prepending it shifts every
//! position by one and changes nothing else.
//!
//! The generators also make the training data of the repo's own small model (`patchbay train`),
//! with other seeds than the held-out sets its tests use.

use patchbay_model::Gpt2Tokenizer;
use rand::rngs::ChaCha8Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};

use crate::corruption::str_pair;
use crate::experiment::answer_token;
use crate::{PatchingError, PromptPair};

/// Names that are one GPT-2 token with their leading space (checked by a test).
pub const NAMES: &[&str] = &[
    " Mary",
    " John",
    " Michael",
    " David",
    " James",
    " Robert",
    " Daniel",
    " Andrew",
    " Ryan",
    " Jason",
    " Sarah",
    " William",
    " Brian",
    " Anthony",
    " Eric",
    " Adam",
    " Kevin",
    " Thomas",
    " Kyle",
    " Rachel",
    " Laura",
    " Richard",
    " Amy",
    " Mark",
    " Emily",
    " Aaron",
    " Charles",
    " Jacob",
    " Stephen",
    " Patrick",
    " Sean",
    " Erin",
    " Kelly",
    " Paul",
    " Tyler",
    " Scott",
    " Lisa",
    " Jesse",
    " Alex",
    " Sam",
    " Tom",
    " Anna",
    " Kate",
    " Frank",
    " Peter",
    " George",
    " Henry",
    " Jack",
    " Joe",
    " Mike",
    " Steve",
    " Chris",
    " Matt",
    " Dan",
    " Ben",
    " Nick",
    " Tim",
    " Jim",
    " Bob",
    " Bill",
    " Joseph",
    " Jessica",
    " Jennifer",
    " Elizabeth",
    " Linda",
    " Susan",
    " Karen",
    " Nancy",
    " Helen",
    " Alice",
    " Grace",
    " Rose",
    " Lucy",
    " Victoria",
    " Martin",
    " Edward",
    " Simon",
    " Louis",
    " Arthur",
    " Albert",
    " Carl",
    " Jeff",
    " Gary",
];

/// Places, one token each with the leading space.
pub const PLACES: &[&str] = &[
    " store",
    " garden",
    " restaurant",
    " school",
    " hospital",
    " office",
    " house",
    " station",
    " park",
    " beach",
    " market",
    " library",
    " church",
    " hotel",
    " airport",
    " bank",
    " cafe",
    " museum",
];

/// Objects, one token each with the leading space.
pub const OBJECTS: &[&str] = &[
    " ring", " kiss", " bone", " drink", " snack", " book", " letter", " gift", " ball", " bag", " key",
    " card", " flower", " hat", " phone", " coin", " cake", " toy", " watch", " pen",
];

/// IOI templates after Wang et al.: `{A}` and `{B}` are the first two names, `{S}` the second
/// occurrence of the subject, `{P}` a place and `{O}` an object. Every template ends right before
/// the indirect object.
pub const IOI_TEMPLATES: &[&str] = &[
    "When{A} and{B} went to the{P},{S} gave a{O} to",
    "Then,{A} and{B} went to the{P}.{S} gave a{O} to",
    "Then,{A} and{B} had a lot of fun at the{P}.{S} gave a{O} to",
    "Then,{A} and{B} were working at the{P}.{S} decided to give a{O} to",
    "Then,{A} and{B} were thinking about going to the{P}.{S} wanted to give a{O} to",
    "Then,{A} and{B} had a long argument, and afterwards{S} said to",
    "After{A} and{B} went to the{P},{S} gave a{O} to",
    "When{A} and{B} got a{O} at the{P},{S} decided to give it to",
    "When{A} and{B} got a{O} at the{P},{S} decided to give the{O} to",
    "While{A} and{B} were working at the{P},{S} gave a{O} to",
    "While{A} and{B} were commuting to the{P},{S} gave a{O} to",
    "After the lunch,{A} and{B} went to the{P}.{S} gave a{O} to",
    "Afterwards,{A} and{B} went to the{P}.{S} gave a{O} to",
    "Then,{A} and{B} had a long argument. Afterwards{S} said to",
    "Friends{A} and{B} found a{O} at the{P}.{S} gave it to",
];

/// Which name comes first in an IOI prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameOrder {
    /// The indirect object first: "When Mary and John went ..., John gave ... to" (IO S S).
    Abba,
    /// The subject first: "When John and Mary went ..., John gave ... to" (S IO S).
    Baba,
}

/// How an IOI prompt is corrupted. r is always the indirect object and r' the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoiCorruption {
    /// The second subject (S2) becomes the indirect object, so the answer flips to the subject:
    /// "When Mary and John went ..., Mary gave ... to" (the paper's STR).
    S2,
    /// The first subject (S1) and the indirect object become two other names, so the subject
    /// is no longer duplicated: "When Alice and Bob went ..., John gave ... to".
    S1Io,
    /// All three names become three other, distinct names (Wang et al.'s p_ABC).
    Abc,
}

/// What an IOI dataset draws from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoiOptions {
    pub corruption: IoiCorruption,
    /// Indices into [`IOI_TEMPLATES`]; `None`: all of them. One template gives prompts of one
    /// token length, which a dataset experiment needs.
    pub templates: Option<Vec<usize>>,
    /// `None`: ABBA and BABA at random.
    pub order: Option<NameOrder>,
}

impl IoiOptions {
    /// Every template, both orders.
    pub fn new(corruption: IoiCorruption) -> Self {
        IoiOptions {
            corruption,
            templates: None,
            order: None,
        }
    }

    /// Only template `index` of [`IOI_TEMPLATES`].
    pub fn with_template(mut self, index: usize) -> Self {
        self.templates = Some(vec![index]);
        self
    }

    /// Only this name order.
    pub fn with_order(mut self, order: NameOrder) -> Self {
        self.order = Some(order);
        self
    }
}

/// One IOI prompt with its parts, for callers that need more than the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoiPrompt {
    pub template: usize,
    pub order: NameOrder,
    /// The indirect object (the answer r).
    pub io: &'static str,
    /// The subject (r').
    pub s: &'static str,
    pub place: &'static str,
    pub object: &'static str,
    pub pair: PromptPair,
}

fn fill(template: &str, a: &str, b: &str, s: &str, place: &str, object: &str) -> String {
    template
        .replace("{A}", a)
        .replace("{B}", b)
        .replace("{S}", s)
        .replace("{P}", place)
        .replace("{O}", object)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `k` distinct names, none of them in `avoid`.
fn fresh_names(rng: &mut ChaCha8Rng, k: usize, avoid: &[&str]) -> Vec<&'static str> {
    let pool: Vec<&'static str> = NAMES.iter().copied().filter(|n| !avoid.contains(n)).collect();
    pool.sample(rng, k).copied().collect()
}

/// `n` IOI prompt pairs drawn with `seed` from every template and both name orders, corrupted as
/// `corruption` says. The answer r is the indirect object, the counter-answer r' the subject.
pub fn ioi(
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    seed: u64,
    corruption: IoiCorruption,
) -> Result<Vec<PromptPair>, PatchingError> {
    Ok(ioi_prompts(tokenizer, n, seed, &IoiOptions::new(corruption))?
        .into_iter()
        .map(|p| p.pair)
        .collect())
}

/// `n` IOI prompts with their parts, drawn with `seed` as `options` says. Every pair is checked
/// with `tokenizer`: equal token lengths and single-token answers. The clean prompts depend on
/// the seed, templates and order only, not on the corruption, so that corruptions compare on the
/// same prompts.
pub fn ioi_prompts(
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    seed: u64,
    options: &IoiOptions,
) -> Result<Vec<IoiPrompt>, PatchingError> {
    let templates: Vec<usize> = match &options.templates {
        Some(t) if t.is_empty() => return Err(PatchingError::Spec("no IOI templates to draw from".into())),
        Some(t) => {
            if let Some(&bad) = t.iter().find(|&&i| i >= IOI_TEMPLATES.len()) {
                return Err(PatchingError::Spec(format!(
                    "there is no IOI template {bad} (there are {})",
                    IOI_TEMPLATES.len()
                )));
            }
            t.clone()
        }
        None => (0..IOI_TEMPLATES.len()).collect(),
    };
    let mut rng = rng(seed);
    let mut prompts = Vec::with_capacity(n);
    for _ in 0..n {
        let template = *templates.choose(&mut rng).expect("templates is not empty");
        let order = options.order.unwrap_or(if rng.random_bool(0.5) {
            NameOrder::Abba
        } else {
            NameOrder::Baba
        });
        let names = fresh_names(&mut rng, 2, &[]);
        let (io, s) = (names[0], names[1]);
        let place = *PLACES.choose(&mut rng).expect("places");
        let object = *OBJECTS.choose(&mut rng).expect("objects");
        let text = IOI_TEMPLATES[template];
        let (a, b) = match order {
            NameOrder::Abba => (io, s),
            NameOrder::Baba => (s, io),
        };
        let clean = fill(text, a, b, s, place, object);
        // Drawn whatever the corruption, so that a seed gives the same clean prompts under each.
        let other = fresh_names(&mut rng, 3, &[io, s]);
        let corrupted = match options.corruption {
            IoiCorruption::S2 => fill(text, a, b, io, place, object),
            IoiCorruption::S1Io => {
                let (c_io, c_s1) = (other[0], other[1]);
                let (a, b) = match order {
                    NameOrder::Abba => (c_io, c_s1),
                    NameOrder::Baba => (c_s1, c_io),
                };
                fill(text, a, b, s, place, object)
            }
            IoiCorruption::Abc => fill(text, other[0], other[1], other[2], place, object),
        };
        let pair = PromptPair {
            clean,
            corrupted: Some(corrupted),
            answer: io.to_string(),
            counter_answer: Some(s.to_string()),
            ..Default::default()
        };
        check_pair(tokenizer, &pair, prompts.len())?;
        prompts.push(IoiPrompt {
            template,
            order,
            io,
            s,
            place,
            object,
            pair,
        });
    }
    Ok(prompts)
}

/// Checks what symmetric token replacement needs of a pair: a corrupted prompt of the clean
/// one's token length that differs from it, and single-token, different answers.
pub fn check_pair(tokenizer: &Gpt2Tokenizer, pair: &PromptPair, index: usize) -> Result<(), PatchingError> {
    if let Some(corrupted) = &pair.corrupted {
        str_pair(tokenizer, &pair.clean, corrupted, false, index)?;
    }
    let one = |which, text: &str| answer_token(tokenizer, text, index, which);
    let answer = one("answer", &pair.answer)?;
    if let Some(counter) = &pair.counter_answer
        && one("counter-answer", counter)? == answer
    {
        return Err(PatchingError::SameAnswers {
            prompt: index,
            text: counter.clone(),
        });
    }
    let answers = pair
        .answer_set
        .iter()
        .map(|t| one("answer set", t))
        .collect::<Result<Vec<_>, _>>()?;
    for t in &pair.counter_set {
        if answers.contains(&one("counter set", t)?) {
            return Err(PatchingError::OverlappingSets {
                prompt: index,
                text: t.clone(),
            });
        }
    }
    Ok(())
}

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

/// Nouns of the greater-than prompts (Hanna et al.), one token each with the leading space.
pub const GT_NOUNS: &[&str] = &[
    " war",
    " conflict",
    " expedition",
    " voyage",
    " reign",
    " drought",
    " famine",
    " dynasty",
    " siege",
    " journey",
    " project",
    " campaign",
    " struggle",
    " rebellion",
    " occupation",
    " revolution",
    " marriage",
    " friendship",
    " strike",
    " crisis",
];

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
        };
        check_pair(tokenizer, &pair, index)?;
        pairs.push(pair);
    }
    Ok(pairs)
}

/// Shuffles `items` with `seed` (for mixing generated datasets reproducibly).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    items.shuffle(&mut rng(seed));
}
