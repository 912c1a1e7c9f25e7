//! Shared by the model's integration tests: the committed fixtures and their reference outputs.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::OnceLock;

use patchbay_model::backend::{self, Backend};
use safetensors::SafeTensors;
use serde_json::Value;

/// Float32 parity bar against the reference (see tests/README.md).
pub const TOL: f32 = 1e-4;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// The reference outputs of `tests/reference/make_fixtures.py` for one model.
pub struct Reference {
    pub meta: Value,
    bytes: Vec<u8>,
}

impl Reference {
    pub fn load(model: &str) -> Self {
        let dir = fixtures().join("reference");
        let meta = std::fs::read_to_string(dir.join(format!("{model}-forward.json"))).unwrap();
        let bytes = std::fs::read(dir.join(format!("{model}-forward.safetensors"))).unwrap();
        Reference {
            meta: serde_json::from_str(&meta).unwrap(),
            bytes,
        }
    }

    /// A reference tensor: its shape and f32 values.
    pub fn tensor(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let file = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = file
            .tensor(key)
            .unwrap_or_else(|_| panic!("reference has no {key}"));
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (view.shape().to_vec(), values)
    }

    pub fn prompts(&self) -> &Vec<Value> {
        self.meta["prompts"].as_array().unwrap()
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The GPU backend (lavapipe where there is no GPU), created once per test binary: a wgpu
/// runtime cannot be re-created in one process.
pub fn gpu() -> &'static Backend {
    static GPU: OnceLock<Backend> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(backend::gpu(None)).expect(
            "no wgpu adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers) to run the GPU tests",
        )
    })
}

/// A random GPT-2 checkpoint in the Hub layout (config.json text, model.safetensors bytes),
/// with the scaled initialisation of tests/reference/make_fixtures.py so that its outputs are
/// far from uniform. For shapes too large to commit.
pub fn random_checkpoint(
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    seed: u64,
) -> (String, Vec<u8>) {
    use safetensors::tensor::{Dtype, TensorView};
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut normal = move || {
        // Box-Muller on a 64-bit LCG.
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let d = n_embd as f32;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| offset + scale * normal()).collect();
        tensors.push((name, shape, values));
    };
    add("wte.weight".into(), vec![50257, n_embd], 2.5 / d.sqrt(), 0.0);
    add(
        "wpe.weight".into(),
        vec![n_positions, n_embd],
        1.0 / d.sqrt(),
        0.0,
    );
    for l in 0..n_layer {
        let h = format!("h.{l}");
        for ln in ["ln_1", "ln_2"] {
            add(format!("{h}.{ln}.weight"), vec![n_embd], 0.1, 1.0);
            add(format!("{h}.{ln}.bias"), vec![n_embd], 0.1, 0.0);
        }
        for (name, d_in, d_out, scale) in [
            ("attn.c_attn", n_embd, 3 * n_embd, 1.2 / d.sqrt()),
            ("attn.c_proj", n_embd, n_embd, 1.0 / d.sqrt()),
            ("mlp.c_fc", n_embd, 4 * n_embd, 1.0 / d.sqrt()),
            ("mlp.c_proj", 4 * n_embd, n_embd, 0.5 / d.sqrt()),
        ] {
            add(format!("{h}.{name}.weight"), vec![d_in, d_out], scale, 0.0);
            add(format!("{h}.{name}.bias"), vec![d_out], 0.1, 0.0);
        }
    }
    add("ln_f.weight".into(), vec![n_embd], 0.1, 1.0);
    add("ln_f.bias".into(), vec![n_embd], 0.1, 0.0);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let config = format!(
        r#"{{"n_layer": {n_layer}, "n_head": {n_head}, "n_embd": {n_embd}, "n_positions": {n_positions}, "vocab_size": 50257, "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new"}}"#
    );
    (config, safetensors::serialize(views, None).unwrap())
}
