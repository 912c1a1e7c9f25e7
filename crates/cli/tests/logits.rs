//! The `patchbay logits` contract, as other checks call it: JSON shape, token ids without
//! `<|endoftext|>` unless asked, logits equal to Hugging Face's within 1e-4 on both fixture
//! shapes and both backends, and clear errors.

use std::path::PathBuf;
use std::process::Command;

use safetensors::SafeTensors;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn patchbay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn reference_logits(model: &str, prompt: usize) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(format!("reference/{model}-forward.safetensors"))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(&format!("p{prompt}.hf.logits")).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn logits_json_matches_hugging_face_on_both_shapes_and_backends() {
    for model in ["tiny", "tiny-prefixed"] {
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("reference/{model}-forward.json"))).unwrap(),
        )
        .unwrap();
        let dir = fixtures().join("models").join(model);
        for backend in ["cpu", "wgpu"] {
            for (i, prompt) in meta["prompts"].as_array().unwrap().iter().enumerate() {
                let text = prompt["text"].as_str().unwrap();
                let mut args = vec![
                    "logits",
                    "--model",
                    dir.to_str().unwrap(),
                    "--prompt",
                    text,
                    "--json",
                ];
                args.extend(["--backend", backend]);
                if prompt["prepend_bos"].as_bool().unwrap() {
                    args.push("--prepend-bos");
                }
                let (ok, stdout, stderr) = patchbay(&args);
                assert!(ok, "{stderr}");
                let out: Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(
                    out.as_object().unwrap().len(),
                    3,
                    "exactly tokens, logits, backend"
                );
                assert_eq!(out["tokens"], prompt["tokens"], "{model} {text:?}");
                assert_eq!(out["backend"], backend);
                let logits: Vec<f32> = out["logits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                let expected = reference_logits(model, i);
                assert_eq!(logits.len(), expected.len());
                let err = logits
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                println!("patchbay logits {model} p{i} {backend}: max abs error vs HF {err:.2e}");
                assert!(err <= 1e-4, "{model} p{i} {backend}: {err:e}");
            }
        }
    }
}

#[test]
fn tokens_are_plain_unless_bos_is_asked_for() {
    let dir = fixtures().join("models/tiny");
    let (_, plain, _) = patchbay(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        " Mary",
        "--json",
    ]);
    let plain: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain["tokens"], serde_json::json!([5335]));
    let (_, bos, _) = patchbay(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        " Mary",
        "--json",
        "--prepend-bos",
    ]);
    let bos: Value = serde_json::from_str(&bos).unwrap();
    assert_eq!(bos["tokens"], serde_json::json!([50256, 5335]));
}

#[test]
fn bad_input_is_one_clear_line_and_exit_status_1() {
    let dir = fixtures().join("models/tiny");
    let dir = dir.to_str().unwrap();
    let long = "word ".repeat(40);
    for (args, expected) in [
        (
            vec!["logits", "--model", "/nonexistent", "--prompt", "x"],
            "/nonexistent/config.json",
        ),
        (
            vec!["logits", "--model", dir, "--prompt", ""],
            "the prompt is empty",
        ),
        (
            vec!["logits", "--model", dir, "--prompt", long.as_str()],
            "the model's context holds 32",
        ),
    ] {
        let (ok, stdout, stderr) = patchbay(&args);
        assert!(!ok && stdout.is_empty());
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
