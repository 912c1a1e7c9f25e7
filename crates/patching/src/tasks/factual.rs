//! Factual recall for GPT-2 small: a built-in list of landmarks and their cities, paired into
//! STR prompts whose subjects have equal token length ("The Eiffel Tower" / "The Colosseum"),
//! and filtered at run time to the facts the loaded model actually knows.

use patchbay_model::logits::top_k;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, LogitsAt, read_f32};
use serde::Serialize;

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
    /// differ, at the most common prompt length (a dataset shares one grid).
    pub pairs: usize,
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
            known.push((prompt, city, tokens.len()));
        }
    }
    let mut pairs = Vec::new();
    for (i, (clean, city, len)) in known.iter().enumerate() {
        // The next known fact (cyclically) with a subject of the same length and another city.
        let partner = (1..known.len())
            .map(|k| &known[(i + k) % known.len()])
            .find(|(_, other_city, other_len)| other_len == len && other_city != city);
        if let Some((corrupted, other_city, _)) = partner {
            pairs.push(PromptPair {
                clean: clean.clone(),
                corrupted: Some(corrupted.clone()),
                answer: city.to_string(),
                counter_answer: Some(other_city.to_string()),
                ..Default::default()
            });
        }
    }
    // A dataset shares one grid: keep the most common token length.
    let lengths: Vec<usize> = pairs
        .iter()
        .map(|p| tokenizer.encode(&p.clean, prepend_bos).map(|t| t.len()))
        .collect::<Result<_, _>>()?;
    let mode = lengths
        .iter()
        .max_by_key(|&&l| (lengths.iter().filter(|&&m| m == l).count(), l))
        .copied();
    let mut kept: Vec<PromptPair> = pairs
        .into_iter()
        .zip(&lengths)
        .filter(|(_, l)| Some(**l) == mode)
        .map(|(p, _)| p)
        .collect();
    let report = FactReport {
        listed: FACTS.len(),
        known: known.len(),
        pairs: kept.len(),
    };
    kept.truncate(n);
    Ok((kept, report))
}
