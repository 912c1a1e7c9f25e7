//! A loaded model and tokenizer, and what the page asks of them: tokens and next-token
//! predictions.

use std::cell::Cell;

use patchbay_model::logits::top_k;
use patchbay_model::{
    GPT2_FAMILY, Gpt2, Gpt2Config, Gpt2Tokenizer, Hooks, LoadFootprint, LogitsAt, StreamLoader, infer_config,
    read_f32,
};
use patchbay_patching::analysis::known_circuits::KnownCircuit;
use patchbay_patching::sweep::share::MAX_WORKERS;
use patchbay_patching::{Budget, RunOptions};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::{device, fit};

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

/// A whole number from the page (a file size, a seed): JavaScript's numbers are exact to 2^53.
fn whole_number(x: f64) -> Result<u64, JsError> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53) {
        Ok(x as u64)
    } else {
        Err(js_err(format!("{x} is not a whole number of at most 2^53")))
    }
}

/// How many bytes a safetensors file starts with before its tensor data (8 + its header's
/// length), from its first 8 bytes; checked against the limit and the file's size `file_len`.
#[wasm_bindgen(js_name = safetensorsStart)]
pub fn safetensors_start(first: &[u8], file_len: f64) -> Result<f64, JsError> {
    let n = patchbay_model::safetensors_header_length(first, whole_number(file_len)?).map_err(js_err)?;
    Ok((8 + n) as f64)
}

/// A Hub `config.json` for a `model.safetensors` that came without one, read from its tensor
/// shapes: `start` is the file's first bytes (its header at least) and `file_len` its size.
#[wasm_bindgen(js_name = inferConfig)]
pub fn infer_hub_config(start: &[u8], file_len: f64) -> Result<String, JsError> {
    Ok(infer_config(start, whole_number(file_len)?)
        .map_err(js_err)?
        .to_hub_json())
}

/// A `model.safetensors` on its way into WebAssembly: the page pushes its body chunk by chunk
/// (from the network, Cache Storage or a picked file), and each tensor is built as its last
/// byte arrives, so the whole file is never held ([`StreamLoader`]).
#[wasm_bindgen]
pub struct ModelStream {
    loader: StreamLoader,
}

#[wasm_bindgen]
impl ModelStream {
    /// A checkpoint for the shape `config_json` describes; `file_len` is its size when known.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, file_len: Option<f64>) -> Result<ModelStream, JsError> {
        let config = Gpt2Config::from_json(config_json).map_err(js_err)?;
        let file_len = file_len.map(whole_number).transpose()?;
        Ok(ModelStream {
            loader: StreamLoader::new(config, file_len),
        })
    }

    /// The next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        self.loader.push(chunk).map_err(js_err)
    }
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

impl Session {
    /// A session for `model` on the worker's backend (`on_gpu`, its binding limit), with the
    /// model's known circuit (`circuits_json`, or GPT-2 small's).
    fn new(
        model: Gpt2,
        tokenizer: Gpt2Tokenizer,
        circuits_json: Option<&str>,
        on_gpu: bool,
        max_binding_bytes: Option<u64>,
    ) -> Result<Session, JsError> {
        tokenizer.check_fits(&model.config).map_err(js_err)?;
        // Bound each batched pass: its [rows, vocab] logits and activations must fit a binding.
        let rows_by_logits = max_binding_bytes.map_or(256, |b| {
            (b / 4 / model.config.vocab_size as u64 / 2).clamp(1, 256) as usize
        });
        let budget = Budget {
            max_batch: rows_by_logits,
            max_tokens: 4096,
        };
        let circuit = KnownCircuit::for_model(&model.config, circuits_json).map_err(js_err)?;
        Ok(Session {
            model,
            tokenizer,
            circuit,
            budget,
            on_gpu,
            warm: Cell::new(false),
        })
    }
}

#[wasm_bindgen]
impl Session {
    /// The model whose checkpoint `weights` has read, with its tokenizer: `tokenizer.json`, or
    /// `vocab.json` plus `merges.txt` when no `tokenizer.json` is given; `circuits_json` is the
    /// folder's known circuit, when it has one.
    pub fn load(
        weights: ModelStream,
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
        let model = weights
            .loader
            .finish(&backend.device, backend.max_binding_bytes)
            .map_err(js_err)?;
        Session::new(
            model,
            tokenizer,
            circuits_json.as_deref(),
            backend.kind == "wgpu",
            backend.max_binding_bytes,
        )
    }

    /// A GPT-2 of one of the family's shapes (`gpt2-small`, `gpt2-medium`, ...) with GPT-2's
    /// initialisation drawn from `seed`, built in the page with GPT-2's tokenizer: the model
    /// `patchbay init --shape NAME --seed SEED` writes, for a benchmark that needs no download
    /// (bench.html).
    pub fn seeded(shape: &str, seed: f64, tokenizer_json: &[u8]) -> Result<Session, JsError> {
        let backend =
            device::current().ok_or_else(|| js_err("initBackend must run before building a model"))?;
        let family = GPT2_FAMILY.iter().find(|m| m.name == shape).ok_or_else(|| {
            let names: Vec<&str> = GPT2_FAMILY.iter().map(|m| m.name).collect();
            js_err(format!(
                "no GPT-2 shape named {shape}: one of {}",
                names.join(", ")
            ))
        })?;
        let seed = whole_number(seed)?;
        let tokenizer = Gpt2Tokenizer::from_json(tokenizer_json).map_err(js_err)?;
        let model = family
            .config()
            .init_split(&backend.device, seed, backend.max_binding_bytes);
        Session::new(
            model,
            tokenizer,
            None,
            backend.kind == "wgpu",
            backend.max_binding_bytes,
        )
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

    /// How many Web Workers, each holding this model, should share each run here
    /// (`fit::pool_size`), from `navigator.hardwareConcurrency` and `navigator.deviceMemory`;
    /// `requested` (the page's `?workers=`) overrides it on the CPU, from 1 to the most a pool
    /// may have.
    #[wasm_bindgen(js_name = poolSize)]
    pub fn pool_size(&self, cores: f64, device_memory: Option<f64>, requested: Option<f64>) -> usize {
        let whole = |x: f64| if x.is_finite() && x >= 1.0 { x as usize } else { 1 };
        match requested {
            _ if self.on_gpu => 1,
            Some(n) => whole(n).min(MAX_WORKERS),
            None => fit::pool_size(
                whole(cores),
                device_memory,
                LoadFootprint::new(&self.model.config, 0).host_bytes(),
            ),
        }
    }

    /// How the core runs a long command here: batches within this backend's budget.
    pub(crate) fn run_options(&self) -> RunOptions {
        RunOptions {
            budget: self.budget,
            ..RunOptions::default()
        }
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
