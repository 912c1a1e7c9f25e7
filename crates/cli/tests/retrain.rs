//! `patchbay train` is reproducible: retraining with the committed model's seed (the command in
//! its metrics.json, all other settings at their defaults) gives the same held-out accuracy
//! within a point and the same localized heads. Training is deterministic (fixed thread count,
//! seeded data and initialisation), so on the machine that trained the committed model the
//! weights come out bit for bit the same; that is reported, not required, since another CPU may
//! round differently.
//!
//! It trains for a few minutes on two cores; it has its own test binary so that nothing else
//! runs beside it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

fn read(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn retraining_with_the_committed_seed_reproduces_the_model() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let committed_dir = root.join("models/patchbay-ioi");
    let committed = read(&committed_dir.join("metrics.json"));
    let out = std::env::temp_dir().join(format!("patchbay-retrain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let seed = committed["seed"].as_u64().unwrap().to_string();
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .current_dir(&root)
        .args([
            "train",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            &seed,
            "--quiet",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = read(&out.join("metrics.json"));
    eprintln!("retrained in {:.0} s", start.elapsed().as_secs_f64());

    // Same training settings as recorded.
    for key in [
        "seed",
        "steps",
        "sequences_per_step",
        "learning_rate",
        "weight_decay",
        "beta_2",
        "threads",
        "model",
    ] {
        assert_eq!(fresh[key], committed[key], "{key}");
    }
    for task in ["ioi", "greater_than"] {
        let (a, b) = (
            fresh["held_out"][task]["accuracy"].as_f64().unwrap(),
            committed["held_out"][task]["accuracy"].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 0.01, "{task}: retrained {a}, committed {b}");
    }
    assert_eq!(
        fresh["circuit"]["localized_heads"],
        committed["circuit"]["localized_heads"]
    );
    let same_bytes = std::fs::read(out.join("model.safetensors")).unwrap()
        == std::fs::read(committed_dir.join("model.safetensors")).unwrap();
    eprintln!("weights bit-identical to the committed ones: {same_bytes}");
    if same_bytes {
        // Then every measurement must agree too.
        assert_eq!(fresh["held_out"], committed["held_out"]);
        assert_eq!(fresh["circuit"], committed["circuit"]);
    }
    let _ = std::fs::remove_dir_all(&out);
}
