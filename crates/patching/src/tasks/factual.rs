//! Factual recall for GPT-2 small: a built-in list of landmarks and their cities, paired into
//! STR prompts whose subjects have equal token length ("The Eiffel Tower" / "The Colosseum"),
//! and filtered at run time to the facts the loaded model actually knows. Subjects of different
//! lengths make prompts of different lengths, aligned by their roles (`last subject`, `END`).

use patchbay_model::logits::top_k;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, LogitsAt, read_f32};
use serde::Serialize;

use super::{Piece, roles_of};
use crate::{PatchingError, PromptPair};

/// The prompt every fact completes with its city.
pub const TEMPLATE: &str = "{} is located in the city of";

/// (subject, city): the city with its leading space, one GPT-2 token.
pub const FACTS: &[(&str, &str)] = &[
    ("The Eiffel Tower", " Paris"),
    ("The Colosseum", " Rome"),
    ("Big Ben", " London"),
    ("The Brandenburg Gate", " Berlin"),
    ("The Kremlin", " Moscow"),
    ("The Acropolis", " Athens"),
    ("The Sagrada Familia", " Barcelona"),
    ("The Forbidden City", " Beijing"),
    ("The Sydney Opera House", " Sydney"),
    ("Tokyo Tower", " Tokyo"),
    ("The Louvre", " Paris"),
    ("Buckingham Palace", " London"),
    ("The Prado Museum", " Madrid"),
    ("The Parthenon", " Athens"),
    ("Red Square", " Moscow"),
    ("The Space Needle", " Seattle"),
    ("Westminster Abbey", " London"),
    ("Charles Bridge", " Prague"),
    ("The Rijksmuseum", " Amsterdam"),
    ("Trinity College", " Dublin"),
    ("The CN Tower", " Toronto"),
    ("The Vatican", " Rome"),
    ("Notre Dame", " Paris"),
    ("The Reichstag", " Berlin"),
    ("The Little Mermaid statue", " Copenhagen"),
    ("The Atomium", " Brussels"),
    ("The Blue Mosque", " Istanbul"),
    ("The Hagia Sophia", " Istanbul"),
    ("The Golden Pavilion", " Kyoto"),
    ("The Burj Khalifa", " Dubai"),
];

/// Which facts became prompts, and why the others did not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FactReport {
    /// Facts in the built-in list.
    pub listed: usize,
    /// Facts the model completes with their city (its most likely next token).
    pub known: usize,
    /// Pairs made from known facts whose subjects have equal token lengths and whose cities
    /// differ.
    pub pairs: usize,
}

/// The roles of a fact's tokens: `subject 1`, …, `last subject`, the template's words, `END`.
fn fact_roles(tokenizer: &Gpt2Tokenizer, subject: &str) -> Result<Vec<String>, PatchingError> {
    let (before, after) = TEMPLATE.split_once("{}").expect("the template has a subject");
    let mut pieces = Vec::new();
    if !before.is_empty() {
        pieces.push(Piece::Text(before));
    }
    pieces.extend([Piece::Role(subject, "subject"), Piece::Text(after)]);
    let mut roles = roles_of(tokenizer, &pieces)?;
    if let Some(last) = roles.iter().rposition(|r| r.starts_with("subject")) {
        roles[last] = "last subject".into();
    }
    if let Some(end) = roles.last_mut() {
        *end = "END".into();
    }
    Ok(roles)
}

/// Up to `n` STR pairs of facts the model knows, and the report of what was kept.
pub async fn known_fact_pairs(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    n: usize,
    prepend_bos: bool,
) -> Result<(Vec<PromptPair>, FactReport), PatchingError> {
    let mut known = Vec::new();
    for &(subject, city) in FACTS {
        let prompt = TEMPLATE.replace("{}", subject);
        let Ok(answer) = tokenizer.single_token(city) else {
            continue;
        };
        let tokens = tokenizer.encode(&prompt, prepend_bos)?;
        let logits = model.forward(&[tokens.clone()], &mut Hooks::none(), LogitsAt::Last)?;
        let values = read_f32(logits).await?;
        if top_k(&values, 1)[0].0 == answer {
            known.push((prompt, city, tokens.len(), subject));
        }
    }
    let mut pairs = Vec::new();
    for (i, (clean, city, len, subject)) in known.iter().enumerate() {
        // The next known fact (cyclically) with a subject of the same length and another city.
        let partner = (1..known.len())
            .map(|k| &known[(i + k) % known.len()])
            .find(|(_, other_city, other_len, _)| other_len == len && other_city != city);
        if let Some((corrupted, other_city, _, _)) = partner {
            pairs.push(PromptPair {
                clean: clean.clone(),
                corrupted: Some(corrupted.clone()),
                answer: city.to_string(),
                counter_answer: Some(other_city.to_string()),
                roles: fact_roles(tokenizer, subject)?,
                ..Default::default()
            });
        }
    }
    let report = FactReport {
        listed: FACTS.len(),
        known: known.len(),
        pairs: pairs.len(),
    };
    pairs.truncate(n);
    Ok((pairs, report))
}
