//! The `patchbay circuit` contract: `--out` writes circuit.json (listing every file it wrote),
//! circuit.svg, edges.csv, faithfulness.csv and faithfulness.svg; `--json` prints circuit.json;
//! a spec over a limit fails with one clear line.

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

#[test]
fn out_writes_the_circuit_its_edges_and_its_curve() {
    let out = std::env::temp_dir().join(format!("patchbay-circuit-{}", std::process::id()));
    let (ok, _, stderr) = patchbay(&[
        "circuit",
        "examples/circuit_ioi.json",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("circuit.json")).unwrap()).unwrap();
    assert_eq!(json["method"], "eap_ig");
    assert_eq!(json["steps"], 5);
    assert_eq!(json["edges"].as_array().unwrap().len(), 100);
    assert_eq!(json["circuit"]["edges"], 20);
    assert!(json["circuit"]["faithfulness"].as_f64().unwrap() > 0.8);
    assert_eq!(json["spec"]["circuit"]["keep"]["top"], 20);
    assert_eq!(
        json["files"],
        serde_json::json!([
            "circuit.svg",
            "edges.csv",
            "faithfulness.csv",
            "faithfulness.svg",
            "circuit.json"
        ])
    );
    let csv = std::fs::read_to_string(out.join("edges.csv")).unwrap();
    assert!(csv.starts_with("rank,edge,from,to,input,score,exact,in_circuit\n1,"));
    assert_eq!(csv.lines().count(), 101);
    let curve = std::fs::read_to_string(out.join("faithfulness.csv")).unwrap();
    assert!(curve.starts_with("edges,metric,faithfulness\n0,"));
    let svg = std::fs::read_to_string(out.join("circuit.svg")).unwrap();
    assert_eq!(svg.matches("<line").count(), 20);
    assert!(svg.contains("a0.h0-&gt;a1.h0&lt;v&gt;"));
    assert!(
        std::fs::read_to_string(out.join("faithfulness.svg"))
            .unwrap()
            .contains("<polyline")
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn json_prints_the_circuit_and_limits_fail_in_one_line() {
    let (ok, stdout, stderr) = patchbay(&["circuit", "examples/circuit_ioi.json", "--json", "--quiet"]);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["curve"].as_array().unwrap().last().unwrap()["edges"], 100);
    let dir = std::env::temp_dir().join(format!("patchbay-circuit-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/circuit_ioi.json")).unwrap())
            .unwrap();
    spec["circuit"]["ig_steps"] = 1000.into();
    let path = dir.join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let (ok, _, stderr) = patchbay(&["circuit", path.to_str().unwrap(), "--json"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("`circuit.ig_steps`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
