//! `patchbay export`: for every case of tests/fixtures/reference/exports, what the command prints
//! is byte for byte the script that ran (crates/patching/tests/exports.rs checks its grid), for
//! each of `--to tl3`, `tl4` and `nnsight`; `--to` defaults to TransformerLens 3.9, and an unknown
//! library is refused.

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
fn the_command_prints_the_scripts_that_ran() {
    let dir = root().join("tests/fixtures/reference/exports");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exports.json")).unwrap()).unwrap();
    let spec_file = std::env::temp_dir().join(format!("patchbay-export-spec-{}.json", std::process::id()));
    let cases = index["cases"].as_array().unwrap();
    for case in cases {
        std::fs::write(&spec_file, case["spec"].to_string()).unwrap();
        let spec = spec_file.to_str().unwrap();
        for (lib, entry) in case["scripts"].as_object().unwrap() {
            let ran = std::fs::read_to_string(dir.join(entry["script"].as_str().unwrap())).unwrap();
            let (ok, printed, err) = patchbay(&["export", "--to", lib, spec]);
            assert!(ok, "{err}");
            assert!(
                printed == ran,
                "{} {lib}: the command prints another script",
                case["name"]
            );
            if lib == "tl3" {
                assert_eq!(patchbay(&["export", spec]).1, ran, "--to defaults to tl3");
            }
        }
    }
    let (ok, _, err) = patchbay(&["export", "--to", "tl2", spec_file.to_str().unwrap()]);
    assert!(!ok && err.contains("tl2"), "{err}");
    std::fs::remove_file(&spec_file).unwrap();
    assert!(cases.len() >= 15);
}
