//! The `patchbay lens` contract: `--json` prints lens.json (the clean run, the corrupted run and
//! their difference, each with its lens grids `[layer, pos]` and direct terms), which
//! `LensResults::from_json` reads back; `--out` writes lens.json, a CSV and an SVG per view and
//! dla_terms.csv; a spec without a counter-answer fails with one clear line.

use std::path::PathBuf;
use std::process::Command;

use patchbay_patching::lens::{LensResults, Quantity, Which};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn patchbay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const TINY: &str = "tests/fixtures/models/tiny";

#[test]
fn json_output_is_lens_results() {
    let (ok, stdout, stderr) = patchbay(&[
        "lens",
        "examples/resid_pre.json",
        "--model",
        TINY,
        "--json",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let results = LensResults::from_json(&stdout).unwrap();
    // The fixture model: 3 layers of 4 heads, 15 tokens with <|endoftext|>.
    assert_eq!(
        results.lens_axes[0].labels,
        ["0_pre", "1_pre", "2_pre", "final_post"]
    );
    assert_eq!(results.lens_axes[1].name, "pos");
    assert_eq!(results.lens_axes[1].labels[2], "␣Mary");
    assert_eq!(results.clean.lens_logit_diff.shape, [4, 15]);
    assert_eq!(results.clean.dla_heads.shape, [3, 4]);
    assert_eq!(results.head_axes[1].name, "head_index");
    let value: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["difference"]["dla_heads"].as_array().unwrap().len(), 3);
    for which in Which::ALL {
        let run = results.run(which);
        let sum: f64 = run.dla_terms().iter().map(|t| t.1).sum();
        assert!(
            (sum - run.logit_diff).abs() < 1e-4,
            "{which:?}: {sum} vs {}",
            run.logit_diff
        );
    }
}

#[test]
fn out_writes_every_view_and_the_terms() {
    let out = std::env::temp_dir().join(format!("patchbay-lens-{}", std::process::id()));
    let dir = out.to_str().unwrap();
    let (ok, _, stderr) = patchbay(&[
        "lens",
        "examples/resid_pre.json",
        "--model",
        TINY,
        "--out",
        dir,
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lens.json")).unwrap()).unwrap();
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // 5 quantities × (clean, corrupted, difference) × (CSV, SVG), the terms, the manifest.
    assert_eq!(files.len(), Quantity::ALL.len() * Which::ALL.len() * 2 + 2);
    for file in &files {
        assert!(out.join(file).is_file(), "{file} listed but not written");
    }
    let svg = std::fs::read_to_string(out.join("dla_heads_difference.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Direct logit attribution"));
    let lens_csv = std::fs::read_to_string(out.join("lens_logit_diff_clean.csv")).unwrap();
    assert!(lens_csv.starts_with("layer,pos,label,value\n"), "{lens_csv:.40}");
    assert_eq!(lens_csv.lines().count(), 1 + 4 * 15);
    assert!(lens_csv.contains("\"final_post / ␣to\""), "{lens_csv}");
    let terms = std::fs::read_to_string(out.join("dla_terms.csv")).unwrap();
    let rows: Vec<&str> = terms.lines().collect();
    assert_eq!(rows[0], "component,clean,corrupted,difference");
    // 12 heads, 3 MLPs, embed, pos_embed, bias, ln_final_bias, then the total.
    assert_eq!(rows.len(), 1 + 12 + 3 + 4 + 1);
    assert!(rows[1].starts_with("L0H0,") && rows[rows.len() - 1].starts_with("logit_diff,"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_spec_without_a_counter_answer_is_one_clear_line() {
    let spec = std::env::temp_dir().join(format!("patchbay-lens-prob-{}.json", std::process::id()));
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/resid_pre.json")).unwrap())
            .unwrap();
    value["metric"]["kind"] = "prob".into();
    value["prompts"][0]
        .as_object_mut()
        .unwrap()
        .remove("counter_answer");
    std::fs::write(&spec, value.to_string()).unwrap();
    let (ok, _, stderr) = patchbay(&[
        "lens",
        spec.to_str().unwrap(),
        "--model",
        TINY,
        "--json",
        "--quiet",
    ]);
    std::fs::remove_file(&spec).unwrap();
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .contains("prompt 0: the logit lens's and DLA's logit-difference metric needs a counter-answer"),
        "{stderr}"
    );
}
