//! What the CLI writes, under stress: a reader that closes the pipe early is a normal end; an
//! output folder that cannot be written is reported before the run; results land whole
//! (written through a temporary file and a rename); a rerun into the same folder clears what
//! the earlier run wrote and this one does not; spec files must be bounded regular files.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn patchbay(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("patchbay-output-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // Results far larger than a pipe's buffer, so that the writer meets the closed pipe.
    let spec = temp("pipe-spec.json");
    std::fs::write(
        &spec,
        r#"{"version": 1, "model": {"local": "tests/fixtures/models/tiny"}, "prompts": [],
            "dataset": {"task": "ioi", "n": 40}, "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff"}, "target": {"component": "z", "positions": "each"}}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .current_dir(root())
        .args(["run", spec.to_str().unwrap(), "--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, as `| head -c 1` would, and close the pipe.
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(first, *b"{");
    assert!(status.success(), "exit {status}: {stderr}");
    assert_eq!(stderr, "", "no message on a closed pipe");
    std::fs::remove_file(spec).unwrap();
}

#[test]
fn an_unwritable_out_is_reported_before_the_run() {
    let blocker = temp("blocker");
    std::fs::write(&blocker, b"a file, not a folder").unwrap();
    let out = blocker.join("results");
    let start = Instant::now();
    let (ok, stderr) = patchbay(&[
        "run",
        "examples/z_by_position.json",
        "--model",
        "tests/fixtures/models/tiny",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("cannot write there"), "{stderr}");
    assert!(
        !stderr.contains("patches"),
        "reported before any patch ran: {stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    std::fs::remove_file(blocker).unwrap();
}

#[test]
fn a_rerun_clears_what_the_earlier_run_wrote_and_this_one_does_not() {
    let out = temp("rerun");
    let run = |spec: &str| {
        let (ok, stderr) = patchbay(&[
            "run",
            spec,
            "--model",
            "tests/fixtures/models/tiny",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(ok, "{stderr}");
        let results: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
        results
    };
    let first = run("examples/attribution.json");
    assert!(out.join("attribution.csv").exists());
    assert!(
        first["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "attribution.svg")
    );
    std::fs::write(out.join("notes.txt"), b"the user's own file").unwrap();
    let second = run("examples/z_all_positions.json");
    let files: Vec<&str> = second["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"grid.csv") && files.contains(&"results.json"));
    assert!(!out.join("attribution.csv").exists() && !out.join("attribution.svg").exists());
    assert!(
        out.join("notes.txt").exists(),
        "files Patchbay did not write stay"
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn spec_files_must_be_regular_and_bounded() {
    let (ok, stderr) = patchbay(&["run", "/dev/zero", "--json"]);
    assert!(!ok);
    assert!(stderr.contains("/dev/zero is not a regular file"), "{stderr}");
    let big = temp("big-spec.json");
    std::fs::write(&big, vec![b' '; (4 << 20) + 1]).unwrap();
    let (ok, stderr) = patchbay(&["run", big.to_str().unwrap(), "--json"]);
    assert!(!ok);
    assert!(stderr.contains("larger than"), "{stderr}");
    std::fs::remove_file(big).unwrap();
}
