//! The `patchbay run` contract: `--json` prints results.json with `grid` (nested, layers first),
//! `axes`, `clean_metric`, `corrupted_metric`, `metric`, `normalized` and `spec`; `--out` writes
//! results.json, a CSV and an SVG heatmap per grid (for a dataset also its standard errors,
//! bootstrap interval and p-values); every example spec in examples/ runs (on the fixture model,
//! standing in for GPT-2 small) or fails with its own clear message; `patchbay sensitivity` with
//! several seeds writes how stable each setting's detected set is.

use std::path::PathBuf;
use std::process::Command;

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

fn nested_shape(v: &Value) -> Vec<usize> {
    match v {
        Value::Array(items) => {
            let mut shape = vec![items.len()];
            shape.extend(nested_shape(&items[0]));
            shape
        }
        _ => vec![],
    }
}

#[test]
fn json_output_has_the_contracted_fields() {
    let (ok, stdout, stderr) = patchbay(&[
        "run",
        "examples/z_by_position.json",
        "--model",
        "tests/fixtures/models/tiny",
        "--json",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let results: Value = serde_json::from_str(&stdout).unwrap();
    for field in [
        "grid",
        "axes",
        "clean_metric",
        "corrupted_metric",
        "metric",
        "normalized",
        "spec",
    ] {
        assert!(results.get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        nested_shape(&results["grid"]),
        vec![3, 15, 4],
        "layers first, then positions, then heads"
    );
    let axes: Vec<&str> = results["axes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(axes, ["layer", "pos", "head_index"]);
    assert_eq!(results["axes"][1]["labels"][2], "␣Mary");
    assert_eq!(results["metric"], "logit_diff");
    assert_eq!(results["normalized"], true);
    assert_eq!(results["spec"]["target"]["component"], "z");
    assert!(results["clean_metric"].is_f64() && results["corrupted_metric"].is_f64());
}

#[test]
fn out_writes_json_csv_and_svg_for_each_grid() {
    let out = std::env::temp_dir().join(format!("patchbay-run-{}", std::process::id()));
    let (ok, _, stderr) = patchbay(&[
        "run",
        "examples/attribution.json",
        "--model",
        "tests/fixtures/models/tiny",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    for stem in ["grid", "raw_grid", "attribution"] {
        let csv = std::fs::read_to_string(out.join(format!("{stem}.csv"))).unwrap();
        assert!(csv.starts_with("layer,head_index,label,value\n"), "{csv}");
        assert_eq!(csv.lines().count(), 1 + 3 * 4);
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("attention head output · STR"),
            "{stem}"
        );
        assert!(svg.matches("<rect").count() >= 12);
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(results["attribution"]["spearman"].is_f64());
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn every_example_spec_runs_or_says_why_not() {
    let mut ran = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (ok, stdout, stderr) = patchbay(&[
            "run",
            path.to_str().unwrap(),
            "--model",
            "tests/fixtures/models/tiny",
            "--json",
            "--quiet",
        ]);
        match name.as_str() {
            // GPT-2 small's layers 9 and 10 and a 10-layer window do not exist in the 3-layer fixture.
            "path_to_name_mover_queries" => {
                assert!(stderr.contains("receiver layer 9 is out of range"), "{stderr}")
            }
            "mlp_out_window10_gn" => assert!(
                stderr.contains("window of 10 layers is wider than the model's 3"),
                "{stderr}"
            ),
            _ => {
                assert!(ok, "{name}: {stderr}");
                let results: Value = serde_json::from_str(&stdout).unwrap();
                assert!(results["grid"].is_array(), "{name}");
                ran += 1;
            }
        }
        if !ok {
            assert!(
                stderr.starts_with("error: ") && !stderr.contains("panicked"),
                "{stderr}"
            );
        }
    }
    assert!(ran >= 17, "{ran}");
}

#[test]
fn a_malformed_spec_and_a_hub_model_without_download_are_clear_errors() {
    let bad = std::env::temp_dir().join(format!("patchbay-bad-{}.json", std::process::id()));
    std::fs::write(&bad, r#"{"version": 2, "model": {"local": "x"}}"#).unwrap();
    let (ok, _, stderr) = patchbay(&["run", bad.to_str().unwrap(), "--json"]);
    assert!(
        !ok && stderr.contains("spec version 2 is not supported"),
        "{stderr}"
    );
    let (ok, _, stderr) = patchbay(&["run", "examples/resid_pre.json", "--json"]);
    assert!(!ok && stderr.contains("pass --model DIR"), "{stderr}");
    std::fs::remove_file(bad).unwrap();
}

#[test]
fn expand_writes_out_a_generated_dataset_as_prompt_pairs() {
    let spec = std::env::temp_dir().join(format!("patchbay-expand-{}.json", std::process::id()));
    std::fs::write(
        &spec,
        r#"{"version": 1, "model": {"embedded": "patchbay-ioi"}, "prompts": [],
            "dataset": {"task": "ioi", "n": 6, "seed": 3, "names": "s2"},
            "corruption": {"method": "str"}, "metric": {"kind": "logit_diff"},
            "target": {"component": "z", "positions": "all"}}"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = patchbay(&["expand", spec.to_str().unwrap()]);
    std::fs::remove_file(&spec).unwrap();
    assert!(ok, "{stderr}");
    let expanded: Value = serde_json::from_str(&stdout).unwrap();
    let prompts = expanded["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 6, "{stdout}");
    assert!(
        expanded.get("dataset").is_none(),
        "the generator is replaced by its prompts"
    );
    for p in prompts {
        let (clean, corrupted) = (p["clean"].as_str().unwrap(), p["corrupted"].as_str().unwrap());
        assert_ne!(clean, corrupted);
        assert_ne!(p["answer"], p["counter_answer"]);
        assert!(clean.ends_with(" to") || clean.ends_with(" gave"), "{clean}");
    }
}

/// A spec file in the temporary folder: 40 IOI prompts over every template on the shipped model.
fn ioi_dataset_spec(name: &str, detect: &str) -> PathBuf {
    let spec = std::env::temp_dir().join(format!("patchbay-{name}-{}.json", std::process::id()));
    std::fs::write(
        &spec,
        format!(
            r#"{{"version": 1, "model": {{"embedded": "patchbay-ioi"}}, "prompts": [],
                "dataset": {{"task": "ioi", "n": 40, "seed": 2, "names": "s2", "template": "all"}},
                "corruption": {{"method": "str"}}, "metric": {{"kind": "logit_diff"}},
                "target": {{"component": "z", "positions": "all"}}, "detect": {detect}}}"#
        ),
    )
    .unwrap();
    spec
}

#[test]
fn a_dataset_writes_its_standard_errors_intervals_and_p_values() {
    let spec = ioi_dataset_spec(
        "stats",
        r#"{"significant": {"alpha": 0.01, "correction": "holm", "min_effect": 0.2}}"#,
    );
    let out = std::env::temp_dir().join(format!("patchbay-stats-{}", std::process::id()));
    let (ok, _, stderr) = patchbay(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let stats = &results["stats"];
    let column = |stem: &str| -> Vec<f64> {
        let csv = std::fs::read_to_string(out.join(format!("{stem}.csv"))).unwrap();
        assert!(csv.starts_with("layer,head_index,label,value\n"), "{stem}: {csv}");
        csv.lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect()
    };
    let flat = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };
    for stem in ["se", "ci_low", "ci_high", "p", "p_holm", "p_bh"] {
        assert_eq!(nested_shape(&stats[stem]), vec![3, 2], "{stem}");
        assert_eq!(column(stem), flat(&stats[stem]), "{stem}.csv is results.json's");
        assert!(out.join(format!("{stem}.svg")).exists());
    }
    assert_eq!(stats["settings"]["resamples"], 1000);
    let grid = column("grid");
    let (low, high) = (column("ci_low"), column("ci_high"));
    assert!((0..6).all(|c| low[c] <= grid[c] && grid[c] <= high[c]));
    let holm = column("p_holm");
    let detected: Vec<usize> = results["detected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cell"].as_u64().unwrap() as usize)
        .collect();
    let mut heads = detected.clone();
    heads.sort();
    assert_eq!(heads, vec![0, 2, 3], "heads 0.0, 1.0 and 1.1");
    assert!(detected.iter().all(|&c| holm[c] < 0.01));
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_file(spec).unwrap();
}

#[test]
fn sensitivity_over_seeds_writes_the_stability_of_each_setting() {
    let spec = ioi_dataset_spec("stability", r#"{"threshold": 0.2}"#);
    let out = std::env::temp_dir().join(format!("patchbay-stability-{}", std::process::id()));
    let (ok, _, stderr) = patchbay(&[
        "sensitivity",
        spec.to_str().unwrap(),
        "--corruptions",
        "str:s2,gn:s2",
        "--metrics",
        "logit_diff",
        "--directions",
        "denoising",
        "--seeds",
        "0,1",
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let csv = std::fs::read_to_string(out.join("stability.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "setting,seeds,jaccard_mean,jaccard_min,components");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("\"STR S2 · logit_diff · denoising\",\"0 1\","),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("\"GN S2 · logit_diff · denoising\",\"0 1\","),
        "{csv}"
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sensitivity.json")).unwrap()).unwrap();
    let stability = result["stability"].as_array().unwrap();
    // With two seeds the mean and the smallest Jaccard are the one pair's, from the matrix.
    for (row, s) in stability.iter().enumerate() {
        let cases: Vec<usize> = s["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as usize)
            .collect();
        let pair = result["jaccard"][cases[0]][cases[1]].as_f64().unwrap();
        assert_eq!(s["jaccard_mean"].as_f64().unwrap(), pair);
        assert!(
            lines[row + 1].contains(&format!(",{pair:.4},{pair:.4},")),
            "{csv}"
        );
    }
    // STR S2 finds the three known heads under both seeds.
    assert!(
        lines[1].ends_with(",\"0.0 (1.00) 1.0 (1.00) 1.1 (1.00)\""),
        "{csv}"
    );
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_file(spec).unwrap();
}
