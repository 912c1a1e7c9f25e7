//! A link's grid digest: a rerun of the same spec reproduces it, a tampered digest differs at
//! the cell that was changed, and a digest of another shape is refused.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_patching::RunOptions;
use patchbay_patching::analysis::reproduce::Digest;

#[test]
fn a_rerun_reproduces_its_digest_and_a_tampered_one_differs() {
    let b = backend::cpu();
    let (model, tokenizer) = tiny(&b);
    let cases = Cases::load();
    let spec = spec_of(cases.named("str.resid_pre.each.logit_diff"));
    let first = run(&model, &tokenizer, &spec, &RunOptions::default());
    let again = run(&model, &tokenizer, &spec, &RunOptions::default());
    let digest = Digest::of(&first.grid, "CPU");
    let same = again.reproduce(&digest, "CPU").unwrap();
    assert_eq!(same.differing, 0, "{}", same.summary);
    assert!(
        same.summary.starts_with("Reproduced: every cell within 1e-5"),
        "{}",
        same.summary
    );

    let mut tampered_grid = first.grid.clone();
    tampered_grid.values[7] += 0.01;
    let tampered = again
        .reproduce(&Digest::of(&tampered_grid, "WebGPU"), "CPU")
        .unwrap();
    assert_eq!((tampered.differing, tampered.largest_cell), (1, Some(7)));
    assert!(
        tampered.summary.starts_with("Differs at 1 of 45 cells") && tampered.summary.contains("WebGPU"),
        "{}",
        tampered.summary
    );

    let other = spec_of(cases.named("str.z.all.logit_diff"));
    let other = run(&model, &tokenizer, &other, &RunOptions::default());
    assert!(other.reproduce(&digest, "CPU").is_err());
}
