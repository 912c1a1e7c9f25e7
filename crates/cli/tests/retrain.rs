//! `patchbay train` is reproducible. Every run checks that the first 100 steps with the committed
//! model's seed (all other settings at their defaults) follow the loss curve in its
//! metrics.json. The whole retraining, which takes minutes on two cores and so is left to
//! `cargo test --release -p patchbay-cli --test retrain -- --ignored`, gives the same held-out
//! accuracy within a point and the same localized heads. Training is deterministic (fixed thread
//! count, seeded data and initialisation), so on the machine that trained the committed model the
//! weights come out bit for bit the same; that is reported, not required, since another CPU may
//! round differently.
//!
//! The tests have their own binary so that nothing else runs beside them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

fn read(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The settings metrics.json records, which a run with the defaults must share.
const SETTINGS: [&str; 8] = [
    "seed",
    "steps",
    "sequences_per_step",
    "learning_rate",
    "weight_decay",
    "beta_2",
    "threads",
    "model",
];

/// How far a point of the loss curve may move on another CPU (the losses at steps 50 and 100 are
/// about 8.5 and 4.8). Rounding alone moves them: gemm picks AVX-512 or AVX2 kernels by the CPU,
/// and 100 steps of training amplify last-bit differences. Measured against the committed curve:
/// a Xeon with AVX-512, 1.3e-3; an AMD EPYC without it, 0 at step 50 and 0.052 at step 100. A
/// real change moves them by more: a learning rate 10% lower moves step 50 by 0.18 and step 100
/// by 0.35 on that EPYC.
const CURVE_TOLERANCE: f64 = 0.1;

#[test]
fn the_first_steps_follow_the_committed_loss_curve() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let committed = read(&root.join("models/patchbay-ioi/metrics.json"));
    let seed = committed["seed"].as_u64().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .current_dir(&root)
        .args([
            "train",
            "--out",
            "unused",
            "--seed",
            &seed,
            "--stop-after",
            "100",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fresh: Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in SETTINGS {
        assert_eq!(fresh[key], committed[key], "{key}");
    }
    let (curve, want) = (&fresh["loss_curve"], &committed["loss_curve"]);
    assert_eq!(curve["groups"], want["groups"]);
    let points = curve["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "a point every 50 steps");
    let mut largest = 0f64;
    for (point, expected) in points.iter().zip(want["points"].as_array().unwrap()) {
        assert_eq!(point["step"], expected["step"]);
        let (got, exp) = (
            point["loss"].as_array().unwrap(),
            expected["loss"].as_array().unwrap(),
        );
        assert_eq!(got.len(), exp.len());
        for (g, e) in got.iter().zip(exp) {
            largest = largest.max((g.as_f64().unwrap() - e.as_f64().unwrap()).abs());
        }
    }
    eprintln!("first 100 steps: largest loss difference {largest:e}");
    assert!(largest <= CURVE_TOLERANCE, "loss curve moved by {largest}");
    // Training learns: the loss falls from the first 50 steps to the next.
    let mean = |p: &Value| {
        let l = p["loss"].as_array().unwrap();
        l.iter().map(|x| x.as_f64().unwrap()).sum::<f64>() / l.len() as f64
    };
    assert!(mean(&points[1]) < mean(&points[0]));
}

#[test]
#[ignore = "minutes on two cores: the whole run (every run checks its first 100 steps)"]
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

    // Same training settings and loss curve as recorded.
    for key in SETTINGS {
        assert_eq!(fresh[key], committed[key], "{key}");
    }
    assert_eq!(fresh["loss_curve"]["groups"], committed["loss_curve"]["groups"]);
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
