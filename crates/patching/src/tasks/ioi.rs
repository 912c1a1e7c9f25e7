//! Indirect object identification (IOI), after Wang et al. 2023: "When Mary and John went to the
//! store, John gave a drink to" → " Mary". Fifteen templates, both name orders, and three ways to
//! corrupt: S2 (the paper's STR), S1 and IO, or all three names (ABC).

use patchbay_model::Gpt2Tokenizer;
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use rand::seq::IndexedRandom;

use super::words::{NAMES, OBJECTS, PLACES};
use super::{Piece, check_pair, rng, roles_of};
use crate::{PatchingError, PromptPair};

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

/// The role of every token of `template` filled with these names (ABBA or BABA): `IO`, `S1`,
/// `S1+1`, `S2`, `PLACE`, `OBJECT`, `END` and the other tokens by their words.
fn ioi_roles(
    tokenizer: &Gpt2Tokenizer,
    template: &str,
    order: NameOrder,
    filler: [&str; 5],
) -> Result<Vec<String>, PatchingError> {
    let (a, b) = match order {
        NameOrder::Abba => ("IO", "S1"),
        NameOrder::Baba => ("S1", "IO"),
    };
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let (slot, text, role) = match &rest[open..open + 3] {
            "{A}" => ("{A}", filler[0], a),
            "{B}" => ("{B}", filler[1], b),
            "{S}" => ("{S}", filler[2], "S2"),
            "{P}" => ("{P}", filler[3], "PLACE"),
            _ => ("{O}", filler[4], "OBJECT"),
        };
        pieces.push(Piece::Role(text, role));
        rest = &rest[open + slot.len()..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    let mut roles = roles_of(tokenizer, &pieces)?;
    if let Some(s1) = roles.iter().position(|r| r == "S1")
        && s1 + 1 < roles.len()
    {
        roles[s1 + 1] = "S1+1".into();
    }
    if let Some(last) = roles.last_mut() {
        *last = "END".into();
    }
    Ok(roles)
}

fn fill(template: &str, a: &str, b: &str, s: &str, place: &str, object: &str) -> String {
    template
        .replace("{A}", a)
        .replace("{B}", b)
        .replace("{S}", s)
        .replace("{P}", place)
        .replace("{O}", object)
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
            roles: ioi_roles(tokenizer, text, order, [a, b, s, place, object])?,
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
