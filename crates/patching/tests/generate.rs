//! The dataset generators: every filler is one GPT-2 token, every pair passes the STR checks
//! (equal token lengths, single-token and different answers) for every corruption and many
//! seeds, the answers are the ones the task defines, and a seed always gives the same pairs.

use std::path::PathBuf;

use patchbay_model::Gpt2Tokenizer;
use patchbay_patching::PromptPair;
use patchbay_patching::tasks::check_pair;
use patchbay_patching::tasks::greater_than::{greater_than, gt_years};
use patchbay_patching::tasks::induction::{induction, induction_from, word_tokens};
use patchbay_patching::tasks::ioi::{IOI_TEMPLATES, IoiCorruption, IoiOptions, NameOrder, ioi, ioi_prompts};
use patchbay_patching::tasks::words::{GT_NOUNS, NAMES, OBJECTS, PLACES};

fn tokenizer() -> Gpt2Tokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny");
    Gpt2Tokenizer::from_dir(&dir).unwrap()
}

const CORRUPTIONS: [IoiCorruption; 3] = [IoiCorruption::S2, IoiCorruption::S1Io, IoiCorruption::Abc];

#[test]
fn every_filler_is_one_token_with_its_leading_space() {
    let tok = tokenizer();
    let lists: [(&str, &[&str]); 4] = [
        ("names", NAMES),
        ("places", PLACES),
        ("objects", OBJECTS),
        ("nouns", GT_NOUNS),
    ];
    for (what, list) in lists {
        let bad: Vec<String> = list
            .iter()
            .filter(|w| !w.starts_with(' ') || tok.single_token(w).is_err())
            .map(|w| format!("{w:?}"))
            .collect();
        assert!(
            bad.is_empty(),
            "{what} that are not one token: {}",
            bad.join(", ")
        );
        let mut unique = list.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), list.len(), "{what} has duplicates");
    }
    // GPT-2's ids, as the paper gives them.
    assert_eq!(tok.single_token(" Mary").unwrap(), 5335);
    assert_eq!(tok.single_token(" John").unwrap(), 1757);
}

fn ids(tok: &Gpt2Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false).unwrap()
}

/// Positions where two equal-length token sequences differ.
fn diff(a: &[u32], b: &[u32]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn ioi_pairs_pass_the_str_checks_for_every_corruption_and_many_seeds() {
    let tok = tokenizer();
    for corruption in CORRUPTIONS {
        for seed in 0..40 {
            let prompts = ioi_prompts(&tok, 25, seed, &IoiOptions::new(corruption)).unwrap();
            for p in &prompts {
                let pair = &p.pair;
                let corrupted = pair.corrupted.as_deref().unwrap();
                let (clean, bad) = (ids(&tok, &pair.clean), ids(&tok, corrupted));
                assert_eq!(clean.len(), bad.len(), "{pair:?}");
                let io = tok.single_token(&pair.answer).unwrap();
                let s = tok.single_token(pair.counter_answer.as_deref().unwrap()).unwrap();
                assert_ne!(io, s);
                assert_eq!(
                    (pair.answer.as_str(), pair.counter_answer.as_deref()),
                    (p.io, Some(p.s))
                );
                // The clean prompt: IO once, S twice, S last; the answer is the name seen once.
                let count = |ids: &[u32], id: u32| ids.iter().filter(|&&t| t == id).count();
                assert_eq!((count(&clean, io), count(&clean, s)), (1, 2), "{}", pair.clean);
                let names: Vec<usize> = clean
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| **t == io || **t == s)
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(clean[names[2]], s, "S2 is the last name: {}", pair.clean);
                let first_is_io = clean[names[0]] == io;
                assert_eq!(first_is_io, p.order == NameOrder::Abba, "{}", pair.clean);
                let changed = diff(&clean, &bad);
                match corruption {
                    IoiCorruption::S2 => {
                        assert_eq!(changed, vec![names[2]]);
                        assert_eq!(bad[names[2]], io, "S2 becomes IO: the answer flips to S");
                        assert_eq!((count(&bad, io), count(&bad, s)), (2, 1));
                    }
                    IoiCorruption::S1Io => {
                        assert_eq!(changed, vec![names[0], names[1]]);
                        assert_eq!((count(&bad, io), count(&bad, s)), (0, 1));
                        assert_ne!(bad[names[0]], bad[names[1]]);
                    }
                    IoiCorruption::Abc => {
                        assert_eq!(changed, names);
                        let fresh = [bad[names[0]], bad[names[1]], bad[names[2]]];
                        assert!(fresh[0] != fresh[1] && fresh[1] != fresh[2] && fresh[0] != fresh[2]);
                        assert!(fresh.iter().all(|&t| t != io && t != s));
                    }
                }
            }
        }
    }
}

#[test]
fn ioi_is_deterministic_for_a_seed_and_covers_templates_and_orders() {
    let tok = tokenizer();
    for corruption in CORRUPTIONS {
        let a = ioi(&tok, 50, 7, corruption).unwrap();
        assert_eq!(a, ioi(&tok, 50, 7, corruption).unwrap());
        assert_ne!(a, ioi(&tok, 50, 8, corruption).unwrap());
    }
    // The clean prompts do not depend on the corruption.
    let clean = |c| -> Vec<String> {
        ioi(&tok, 30, 5, c)
            .unwrap()
            .into_iter()
            .map(|p| p.clean)
            .collect()
    };
    assert_eq!(clean(IoiCorruption::S2), clean(IoiCorruption::S1Io));
    assert_eq!(clean(IoiCorruption::S2), clean(IoiCorruption::Abc));
    let prompts = ioi_prompts(&tok, 600, 1, &IoiOptions::new(IoiCorruption::S2)).unwrap();
    for t in 0..IOI_TEMPLATES.len() {
        assert!(
            prompts.iter().any(|p| p.template == t),
            "template {t} never drawn"
        );
    }
    let abba = prompts.iter().filter(|p| p.order == NameOrder::Abba).count();
    assert!((240..360).contains(&abba), "{abba} of 600 ABBA");
    // IO is not biased towards either end of the name list.
    let index = |n: &str| NAMES.iter().position(|&m| m == n).unwrap();
    let io_first = prompts.iter().filter(|p| index(p.io) < index(p.s)).count();
    assert!((240..360).contains(&io_first), "{io_first}");
}

#[test]
fn one_template_gives_one_token_length() {
    let tok = tokenizer();
    for t in 0..IOI_TEMPLATES.len() {
        let options = IoiOptions::new(IoiCorruption::S2)
            .with_template(t)
            .with_order(NameOrder::Baba);
        let prompts = ioi_prompts(&tok, 30, 3, &options).unwrap();
        let lens: Vec<usize> = prompts.iter().map(|p| ids(&tok, &p.pair.clean).len()).collect();
        assert!(lens.iter().all(|&l| l == lens[0]), "template {t}: {lens:?}");
        assert!(
            prompts
                .iter()
                .all(|p| p.template == t && p.order == NameOrder::Baba)
        );
    }
    let err = ioi_prompts(&tok, 1, 0, &IoiOptions::new(IoiCorruption::S2).with_template(99)).unwrap_err();
    assert!(err.to_string().contains("no IOI template 99"), "{err}");
}

#[test]
fn induction_pairs_copy_from_the_first_half_and_the_corruption_leaves_nothing_to_copy() {
    let tok = tokenizer();
    let vocab = word_tokens(&tok);
    assert!(vocab.len() > 5000, "{} word tokens", vocab.len());
    for len in [4, 6, 10] {
        for seed in 0..20 {
            let pairs = induction_from(&vocab, &tok, 10, seed, len).unwrap();
            for pair in &pairs {
                let clean = ids(&tok, &pair.clean);
                let bad = ids(&tok, pair.corrupted.as_deref().unwrap());
                assert_eq!((clean.len(), bad.len()), (2 * len - 1, 2 * len - 1), "{pair:?}");
                let answer = tok.single_token(&pair.answer).unwrap();
                let counter = tok.single_token(pair.counter_answer.as_deref().unwrap()).unwrap();
                assert_eq!(clean[..len - 1], clean[len..]);
                assert_eq!(clean[len - 1], answer);
                assert_eq!(counter, clean[0]);
                let current = *clean.last().unwrap();
                // Clean: the current token occurred before, followed by the answer.
                let earlier = clean[..clean.len() - 1]
                    .iter()
                    .position(|&t| t == current)
                    .unwrap();
                assert_eq!(clean[earlier + 1], answer);
                // Corrupted: only that occurrence changed, to a token found nowhere else.
                assert_eq!(diff(&clean, &bad), vec![len - 2]);
                assert!(!bad[..bad.len() - 1].contains(&current));
                assert_eq!(bad.iter().filter(|&&t| t == bad[len - 2]).count(), 1);
            }
        }
    }
    assert_eq!(
        induction_from(&vocab, &tok, 5, 11, 6).unwrap(),
        induction(&tok, 5, 11, 6).unwrap()
    );
    assert!(induction_from(&vocab, &tok, 1, 0, 2).is_err());
}

fn year(text: &str) -> u32 {
    text.parse().unwrap()
}

#[test]
fn greater_than_answers_straddle_the_start_year_and_the_corruption_is_01() {
    let tok = tokenizer();
    let years = gt_years(&tok).unwrap();
    assert!(years.len() > 70, "{} usable years", years.len());
    for seed in 0..20 {
        let pairs: Vec<PromptPair> = greater_than(&tok, 25, seed).unwrap();
        assert_eq!(pairs, greater_than(&tok, 25, seed).unwrap());
        for pair in &pairs {
            let clean = ids(&tok, &pair.clean);
            let bad = ids(&tok, pair.corrupted.as_deref().unwrap());
            assert_eq!(clean.len(), bad.len());
            assert_eq!(diff(&clean, &bad).len(), 1, "only YY changes");
            let yy: u32 = pair.clean[pair.clean.find("year 17").unwrap() + 7..][..2]
                .parse()
                .unwrap();
            assert!(pair.corrupted.as_deref().unwrap().contains("year 1701 "));
            assert!(year(&pair.answer) > yy && year(pair.counter_answer.as_deref().unwrap()) < yy);
            tok.single_token(&pair.answer).unwrap();
            assert!(pair.clean.ends_with(" to the year 17"));
            // Hanna et al.'s sets: every two-digit year token, split at YY, r in R and r' in R'.
            assert!(pair.answer_set.iter().all(|y| year(y) > yy));
            assert!(pair.counter_set.iter().all(|y| year(y) <= yy));
            assert_eq!(pair.answer_set.len() + pair.counter_set.len(), 100);
            assert!(pair.answer_set.contains(&pair.answer));
            assert!(pair.counter_set.contains(pair.counter_answer.as_ref().unwrap()));
            check_pair(&tok, pair, 0).unwrap();
        }
    }
}

#[test]
fn check_pair_names_what_is_wrong() {
    let tok = tokenizer();
    let pair = |clean: &str, corrupted: &str, answer: &str, counter: &str| PromptPair {
        clean: clean.into(),
        corrupted: Some(corrupted.into()),
        answer: answer.into(),
        counter_answer: Some(counter.into()),
        ..Default::default()
    };
    let ok = pair("When Mary and John", "When Mary and Mary", " Mary", " John");
    check_pair(&tok, &ok, 0).unwrap();
    let long = pair(
        "When Mary and John",
        "When Mary and Johnathan Smith",
        " Mary",
        " John",
    );
    assert!(matches!(
        check_pair(&tok, &long, 0),
        Err(patchbay_patching::PatchingError::UnequalLengths { .. })
    ));
    let same = pair("When Mary and John", "When Mary and Bob", " Mary", " Mary");
    assert!(check_pair(&tok, &same, 0).is_err());
    let split = pair("When Mary and John", "When Mary and Bob", " Maryanne", " John");
    assert!(check_pair(&tok, &split, 0).is_err());
    let overlapping = PromptPair {
        answer_set: vec![" Mary".into(), " Anna".into()],
        counter_set: vec![" John".into(), " Anna".into()],
        ..ok
    };
    assert!(matches!(
        check_pair(&tok, &overlapping, 0),
        Err(patchbay_patching::PatchingError::OverlappingSets { text, .. }) if text == " Anna"
    ));
}
