//! A loaded model and tokenizer, and what the page asks of them: tokens and next-token
//! predictions.

use std::cell::Cell;

use patchbay_model::logits::top_k;
use patchbay_model::{Gpt2, Gpt2Tokenizer, Hooks, LogitsAt, infer_config, load_gpt2, read_f32};
use patchbay_patching::Budget;
use patchbay_patching::analysis::known_circuits::KnownCircuit;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::device;

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[derive(Serialize)]
pub(crate) struct Token {
    id: u32,
    text: String,
}

#[derive(Serialize)]
struct Prediction {
    id: u32,
    /// Readable form (`␣Mary`).
    text: String,
    /// The decoded text (`" Mary"`), usable as an answer.
    raw: String,
    prob: f32,
}

#[derive(Serialize)]
struct NextTokens {
    tokens: Vec<Token>,
    top: Vec<Prediction>,
}

#[derive(Serialize)]
struct ModelInfo {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    vocab_size: usize,
    embedding_blocks: usize,
}

/// A Hub `config.json` for a `model.safetensors` that came without one, read from its tensor
/// shapes.
#[wasm_bindgen(js_name = inferConfig)]
pub fn infer_hub_config(weights: &[u8]) -> Result<String, JsError> {
    Ok(infer_config(weights).map_err(js_err)?.to_hub_json())
}

/// A model loaded on the worker's backend.
#[wasm_bindgen]
pub struct Session {
    pub(crate) model: Gpt2,
    pub(crate) tokenizer: Gpt2Tokenizer,
    /// The model's known circuit: its folder's `circuits.json`, or GPT-2 small's.
    pub(crate) circuit: Option<KnownCircuit>,
    budget: Budget,
    /// Whether the model runs on WebGPU, whose first run compiles the GPU kernels.
    pub(crate) on_gpu: bool,
    /// Whether a run has compiled them.
    pub(crate) warm: Cell<bool>,
}

#[wasm_bindgen]
impl Session {
    /// Loads a Hub-layout checkpoint. The tokenizer is `tokenizer.json`, or `vocab.json` plus
    /// `merges.txt` when no `tokenizer.json` is given; `circuits_json` is the folder's known
    /// circuit, when it has one.
    pub fn load(
        config_json: &str,
        weights: &[u8],
        tokenizer_json: Option<Vec<u8>>,
        vocab_json: Option<String>,
        merges_txt: Option<String>,
        circuits_json: Option<String>,
    ) -> Result<Session, JsError> {
        let backend =
            device::current().ok_or_else(|| js_err("initBackend must run before loading a model"))?;
        let tokenizer = match (tokenizer_json, vocab_json, merges_txt) {
            (Some(json), _, _) => Gpt2Tokenizer::from_json(&json),
            (None, Some(vocab), Some(merges)) => Gpt2Tokenizer::from_vocab_merges(&vocab, &merges),
            _ => {
                return Err(js_err(
                    "no tokenizer: give tokenizer.json, or vocab.json and merges.txt",
                ));
            }
        }
        .map_err(js_err)?;
        let model =
            load_gpt2(config_json, weights, &backend.device, backend.max_binding_bytes).map_err(js_err)?;
        tokenizer.check_fits(&model.config).map_err(js_err)?;
        // Bound each batched pass: its [rows, vocab] logits and activations must fit a binding.
        let rows_by_logits = backend.max_binding_bytes.map_or(256, |b| {
            (b / 4 / model.config.vocab_size as u64 / 2).clamp(1, 256) as usize
        });
        let budget = Budget {
            max_batch: rows_by_logits,
            max_tokens: 4096,
        };
        let circuit = KnownCircuit::for_model(&model.config, circuits_json.as_deref()).map_err(js_err)?;
        Ok(Session {
            model,
            tokenizer,
            circuit,
            budget,
            on_gpu: backend.kind == "wgpu",
            warm: Cell::new(false),
        })
    }

    /// The model's shape.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let c = &self.model.config;
        serde_wasm_bindgen::to_value(&ModelInfo {
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_embd: c.n_embd,
            n_positions: c.n_positions,
            vocab_size: c.vocab_size,
            embedding_blocks: self.model.wte.chunks.len(),
        })
        .map_err(js_err)
    }

    /// The tokens of `text`, each with a readable form.
    pub fn tokenize(&self, text: &str, prepend_bos: bool) -> Result<JsValue, JsError> {
        let ids = self.tokenizer.encode(text, prepend_bos).map_err(js_err)?;
        serde_wasm_bindgen::to_value(&self.tokens(&ids)).map_err(js_err)
    }

    /// The `k` most likely next tokens after `text`, with its tokens and last-position logits.
    #[wasm_bindgen(js_name = nextTokens)]
    pub async fn next_tokens(&self, text: String, prepend_bos: bool, k: usize) -> Result<JsValue, JsError> {
        let ids = self.tokenizer.encode(&text, prepend_bos).map_err(js_err)?;
        let logits = self
            .model
            .forward(&[ids.clone()], &mut Hooks::none(), LogitsAt::Last)
            .map_err(js_err)?;
        let logits = read_f32(logits).await.map_err(js_err)?;
        let top = top_k(&logits, k)
            .into_iter()
            .map(|(id, prob)| Prediction {
                id,
                text: self.tokenizer.display(id),
                raw: self.tokenizer.decode(&[id]).unwrap_or_default(),
                prob,
            })
            .collect();
        let result = NextTokens {
            tokens: self.tokens(&ids),
            top,
        };
        let value = serde_wasm_bindgen::to_value(&result).map_err(js_err)?;
        // The last-position logits (for checks against the reference) as one Float32Array:
        // serde would cross into JavaScript once per value, 50,257 times.
        js_sys::Reflect::set(&value, &"logits".into(), &js_sys::Float32Array::from(&logits[..]))
            .map_err(|_| js_err("could not attach the logits"))?;
        Ok(value)
    }

    pub(crate) fn budget(&self) -> Budget {
        self.budget
    }

    pub(crate) fn tokens(&self, ids: &[u32]) -> Vec<Token> {
        ids.iter()
            .map(|&id| Token {
                id,
                text: self.tokenizer.display(id),
            })
            .collect()
    }
}
