//! Parity with Hugging Face transformers and TransformerLens on the committed fixture checkpoints:
//! last-position logits and the value of every hook, on the CPU backend and on wgpu
//! (lavapipe where there is no GPU), within 1e-4.

mod common;

use common::*;
use patchbay_model::backend::{self, Backend};
use patchbay_model::{ActivationCache, Gpt2Tokenizer, HookPoint, Hooks, LogitsAt, load_gpt2, load_gpt2_dir};

/// Runs every reference prompt of `model` on `backend` and returns the largest errors seen:
/// (logits vs HF, logits vs TransformerLens, hooks vs TransformerLens).
fn check(backend: &Backend, model: &str, max_binding: Option<u64>) -> (f32, f32, f32) {
    let dir = model_dir(model);
    let gpt2 = load_gpt2_dir(&dir, &backend.device, max_binding).unwrap();
    let tokenizer = Gpt2Tokenizer::from_dir(&dir).unwrap();
    let reference = Reference::load(model);
    let hooks = HookPoint::all(gpt2.config.n_layer);
    let (mut hf_err, mut tl_err, mut hook_err) = (0f32, 0f32, 0f32);
    for (i, prompt) in reference.prompts().iter().enumerate() {
        let text = prompt["text"].as_str().unwrap();
        let bos = prompt["prepend_bos"].as_bool().unwrap();
        let tokens = tokenizer.encode(text, bos).unwrap();
        assert_eq!(tokens, ids(&prompt["tokens"]), "token ids of {text:?}");
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            ids(&prompt["plain_tokens"])
        );

        let mut cache = ActivationCache::new(hooks.clone());
        let logits = gpt2
            .forward(
                &[tokens.clone()],
                &mut Hooks::none().with_cache(&mut cache),
                LogitsAt::All,
            )
            .unwrap();
        let [_, len, vocab] = logits.dims();
        assert_eq!(len, tokens.len());
        let last: Vec<f32> = logits
            .narrow(1, len - 1, 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(last.len(), vocab);
        hf_err = hf_err.max(max_abs_diff(
            &last,
            &reference.tensor(&format!("p{i}.hf.logits")).1,
        ));
        tl_err = tl_err.max(max_abs_diff(
            &last,
            &reference.tensor(&format!("p{i}.tl.logits")).1,
        ));

        for hook in &hooks {
            let (shape, expected) = reference.tensor(&format!("p{i}.tl.{hook}"));
            let got = cache.get(*hook).unwrap();
            assert_eq!(got.dims()[1..], shape[..], "shape of {hook}");
            let err = max_abs_diff(&got.to_vec(), &expected);
            assert!(err <= TOL, "{model} prompt {i} {hook}: max abs error {err:e}");
            hook_err = hook_err.max(err);
        }
    }
    println!(
        "{model} on {}: max abs error, logits vs HF {hf_err:.2e}, logits vs TransformerLens {tl_err:.2e}, hooks vs TransformerLens {hook_err:.2e}",
        backend.description
    );
    assert!(
        hf_err <= TOL && tl_err <= TOL,
        "{model}: logits error {hf_err:e} / {tl_err:e}"
    );
    (hf_err, tl_err, hook_err)
}

#[test]
fn cpu_backend_matches_hf_and_transformer_lens() {
    for model in ["tiny", "tiny-prefixed"] {
        check(&backend::cpu(), model, None);
    }
}

#[test]
fn wgpu_backend_matches_hf_and_transformer_lens() {
    for model in ["tiny", "tiny-prefixed"] {
        check(gpu(), model, gpu().max_binding_bytes);
    }
}

/// The token embedding split into blocks of vocabulary rows gives the same numbers.
#[test]
fn split_embedding_matches_reference() {
    // Forced on the CPU: 100 kB blocks.
    let cpu = backend::cpu();
    let tiny = load_gpt2_dir(&model_dir("tiny"), &cpu.device, Some(100_000)).unwrap();
    assert!(tiny.wte.chunks.len() > 30, "{} chunks", tiny.wte.chunks.len());
    check(&cpu, "tiny", Some(100_000));

    // On a GPU device created with a 16 MiB binding limit (the smallest burn's memory pools
    // accept; real GPUs guarantee 128 MiB), a model whose 19.3 MB embedding cannot be bound
    // whole runs split in two, and agrees with the unsplit CPU run.
    let capped = pollster::block_on(backend::gpu(Some(16 << 20))).unwrap();
    assert_eq!(capped.max_binding_bytes, Some(16 << 20));
    let (config, weights) = random_checkpoint(2, 2, 96, 16, 7);
    let split = load_gpt2(&config, &weights, &capped.device, capped.max_binding_bytes).unwrap();
    assert_eq!(split.wte.chunks.len(), 2);
    let whole = load_gpt2(&config, &weights, &cpu.device, None).unwrap();
    assert_eq!(whole.wte.chunks.len(), 1);
    let tokens = vec![vec![50256, 5335, 290, 1757, 40000, 11, 25000, 50000, 13, 1757]];
    let run = |m: &patchbay_model::Gpt2| -> Vec<f32> {
        m.forward(&tokens, &mut Hooks::none(), LogitsAt::All)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let (gpu_logits, cpu_logits) = (run(&split), run(&whole));
    let err = max_abs_diff(&gpu_logits, &cpu_logits);
    let spread = cpu_logits.iter().map(|x| x.abs()).fold(0.0, f32::max);
    println!(
        "split embedding on {}: max abs error {err:.2e} (logits up to {spread:.1})",
        capped.description
    );
    assert!(err <= TOL && spread > 3.0, "{err:e}");

    // The committed fixture, split in 1 MiB blocks on that device, still matches the reference.
    check(&capped, "tiny", Some(1 << 20));
}
