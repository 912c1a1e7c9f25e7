//! Loading checkpoints and tokenizers: both Hub key layouts and both tokenizer file layouts
//! work, and every broken file is reported with the tensor or file at fault.

mod common;

use std::collections::HashMap;

use common::*;
use patchbay_model::backend;
use patchbay_model::{Gpt2Tokenizer, load_gpt2};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

fn fixture(name: &str) -> (String, Vec<u8>) {
    let dir = model_dir(name);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

fn load_err(config: &str, bytes: &[u8]) -> String {
    load_gpt2(config, bytes, &backend::cpu().device, None)
        .unwrap_err()
        .to_string()
}

/// Rewrites a checkpoint with `edit` applied to its (name -> (dtype, shape, bytes)) map.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)) -> Vec<u8> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let mut map: HashMap<_, _> = file
        .iter()
        .map(|(n, v)| (n.to_string(), (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, TensorView)> = map
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn both_key_layouts_load_and_buffers_are_ignored() {
    for name in ["tiny", "tiny-prefixed"] {
        let (config, bytes) = fixture(name);
        let names: Vec<String> = SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("attn.bias")),
            "{name} carries the mask buffers"
        );
        assert_eq!(
            names.iter().any(|n| n.starts_with("transformer.")),
            name == "tiny-prefixed"
        );
        let model = load_gpt2(&config, &bytes, &backend::cpu().device, None).unwrap();
        assert_eq!(model.blocks.len(), model.config.n_layer);
    }
}

#[test]
fn broken_checkpoints_name_what_is_wrong() {
    let (config, bytes) = fixture("tiny");

    let cut = &bytes[..bytes.len() - 1000];
    let err = load_err(&config, cut);
    assert!(err.contains("truncated") && err.contains("tensor `"), "{err}");
    // The last tensor by offset is the one cut off.
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let (last, _) = file
        .iter()
        .max_by_key(|(_, v)| v.data().as_ptr() as usize)
        .unwrap();
    assert!(err.contains(&format!("`{last}`")), "{err} should name {last}");

    let err = load_err(&config, &bytes[..50]);
    assert!(err.contains("not a safetensors file"), "{err}");
    let err = load_err(&config, b"<!DOCTYPE html><html>404 Not Found</html>");
    assert!(
        err.contains("not a safetensors file") && err.contains("HTML error page"),
        "{err}"
    );

    let missing = rewrite(&bytes, |m| {
        m.remove("h.1.mlp.c_fc.bias");
    });
    let err = load_err(&config, &missing);
    assert!(err.contains("no tensor `h.1.mlp.c_fc.bias`"), "{err}");

    let reshaped = rewrite(&bytes, |m| {
        let t = m.get_mut("h.2.attn.c_attn.weight").unwrap();
        t.1 = vec![48, 16]; // stored [out, in] instead of Conv1D's [in, out]
    });
    let err = load_err(&config, &reshaped);
    assert!(
        err.contains("`h.2.attn.c_attn.weight` has shape [48, 16]") && err.contains("[16, 48]"),
        "{err}"
    );

    let retyped = rewrite(&bytes, |m| {
        m.get_mut("ln_f.weight").unwrap().0 = Dtype::I32;
    });
    let err = load_err(&config, &retyped);
    assert!(err.contains("`ln_f.weight` has dtype I32"), "{err}");

    let wide = config.replace("\"n_embd\": 16", "\"n_embd\": 32");
    let err = load_err(&wide, &bytes);
    assert!(err.contains("`wte.weight` has shape [50257, 16]"), "{err}");
}

#[test]
fn half_precision_checkpoints_load_through_the_same_path() {
    let (config, bytes) = fixture("tiny");
    let half = rewrite(&bytes, |m| {
        for (dtype, _, data) in m.values_mut() {
            if *dtype == Dtype::F32 {
                *data = data
                    .chunks_exact(4)
                    .flat_map(|b| half_bits(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
                    .collect();
                *dtype = Dtype::F16;
            }
        }
    });
    let device = backend::cpu().device;
    let full = load_gpt2(&config, &bytes, &device, None).unwrap();
    let half = load_gpt2(&config, &half, &device, None).unwrap();
    for (a, b) in [
        (full.ln_f.gamma.val(), half.ln_f.gamma.val()),
        (
            full.blocks[1].mlp.c_fc.bias.as_ref().unwrap().val(),
            half.blocks[1].mlp.c_fc.bias.as_ref().unwrap().val(),
        ),
    ] {
        let a: Vec<f32> = a.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let b: Vec<f32> = b.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-2), "f16 {y} vs f32 {x}");
        }
        assert_ne!(a, b, "f16 rounding must show");
    }
}

/// f32 -> IEEE half bits (round to nearest), enough for test data in the normal range.
fn half_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if exp <= 0 {
        return sign;
    }
    let rounded = (mant + 0x1000) >> 13;
    sign | ((exp as u16) << 10) + rounded as u16
}

#[test]
fn tokenizer_from_either_file_layout_gives_gpt2_ids() {
    let json = Gpt2Tokenizer::from_dir(&model_dir("tiny")).unwrap();
    let bpe = Gpt2Tokenizer::from_dir(&model_dir("tiny-prefixed")).unwrap();
    for tok in [&json, &bpe] {
        assert_eq!(tok.encode(" Mary", false).unwrap(), vec![5335]);
        assert_eq!(tok.encode(" John", false).unwrap(), vec![1757]);
        assert_eq!(tok.bos(), 50256);
        assert_eq!(tok.vocab_size(), 50257);
        assert_eq!(
            tok.encode("When Mary and John went to the store, John gave a drink to", true)
                .unwrap(),
            vec![
                50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284
            ]
        );
    }
    let text = " naïve café ☕ — 日本";
    assert_eq!(
        json.encode(text, false).unwrap(),
        bpe.encode(text, false).unwrap()
    );
    assert_eq!(json.decode(&json.encode(text, false).unwrap()).unwrap(), text);
}

#[test]
fn tokens_display_readably() {
    let tok = Gpt2Tokenizer::from_dir(&model_dir("tiny")).unwrap();
    assert_eq!(tok.display(5335), "␣Mary");
    assert_eq!(tok.display(50256), "<|endoftext|>");
    assert_eq!(tok.display(198), "⏎");
    // ☕ is three bytes, E2 98 95; GPT-2 splits it so that some tokens are partial characters.
    let ids = tok.encode("☕", false).unwrap();
    let shown: Vec<String> = ids.iter().map(|&id| tok.display(id)).collect();
    assert!(shown.iter().any(|s| s.starts_with("<0x")), "{shown:?}");
    assert_eq!(shown.concat().matches("<0x").count(), 3, "{shown:?}");

    let err = tok.single_token(" Eiffel").unwrap_err().to_string();
    assert!(err.contains("is 3 tokens (␣E | iff | el)"), "{err}");
    assert_eq!(tok.single_token(" Paris").unwrap(), 6342);
}

#[test]
fn the_shape_of_a_checkpoint_without_config_is_read_from_its_tensors() {
    // 64-wide heads, as in every OpenAI GPT-2: 2 heads of a 128-wide model.
    let (config, bytes) = random_checkpoint(3, 2, 128, 20, 3);
    let inferred = patchbay_model::infer_config(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(inferred, patchbay_model::Gpt2Config::from_json(&config).unwrap());
    // The committed fixtures have 4-wide heads: the guess must say it cannot tell.
    let (_, tiny) = fixture("tiny");
    let err = patchbay_model::infer_config(&tiny, tiny.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(err.contains("without config.json"), "{err}");
}
