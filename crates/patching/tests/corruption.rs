//! STR pair helpers and seeded Gaussian noise.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::corruption::gn::gaussian_noise;
use patchbay_patching::corruption::str::{str_pair, swap_word};

#[test]
fn swapping_a_word_builds_an_aligned_str_pair() {
    let (_, tok) = tiny(&backend::cpu());
    let clean = "When Mary and John went to the store, John gave a drink to";
    let corrupted = swap_word(&tok, clean, "John", "Mary", 1).unwrap();
    assert_eq!(
        corrupted,
        "When Mary and John went to the store, Mary gave a drink to"
    );
    let pair = str_pair(&tok, clean, &corrupted, true, 0).unwrap();
    assert_eq!(pair.differing, vec![10]);
    assert_eq!(pair.clean.len(), pair.corrupted.len());

    let e = swap_word(&tok, clean, "John", "Colosseum", 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("different token lengths"), "{e}");
    let e = swap_word(&tok, clean, "John", "Mary", 2).unwrap_err().to_string();
    assert!(e.contains("occurs 2 time(s)"), "{e}");
    // Whole words only: "to" inside "store" is not a match.
    assert_eq!(
        swap_word(&tok, "to store to", "to", "at", 1).unwrap(),
        "to store at"
    );
}

#[test]
fn gaussian_noise_is_seeded_and_has_the_asked_scale() {
    let a = gaussian_noise(7, 10, 3, 64, 0.5);
    assert_eq!(a, gaussian_noise(7, 10, 3, 64, 0.5));
    assert_ne!(a, gaussian_noise(8, 10, 3, 64, 0.5));
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(
        mean.abs() < 0.05 && (sd - 0.5).abs() < 0.03,
        "mean {mean} sd {sd}"
    );
}
