//! Fuzz tests of everything the model crate reads from a stranger: `model.safetensors`,
//! `config.json`, a checkpoint without its config, and tokenizer files. Every case must end in
//! a value or a `ModelError` with a message, never a panic; see `patchbay_model::fuzz` for the
//! budget, the seeds and the convention that `scripts/fuzz.sh` runs.

mod common;

use std::sync::OnceLock;

use common::model_dir;
use patchbay_model::fuzz::{Case, Fuzz, mutate_bytes, mutate_json, random_text};
use patchbay_model::{
    Gpt2, Gpt2Config, Gpt2Tokenizer, Hooks, LogitsAt, ModelError, SaveDtype, StreamLoader, backend,
    infer_config, load_gpt2,
};
use serde_json::{Value, json};

/// A checkpoint to start from.
struct Checkpoint {
    config: String,
    bytes: Vec<u8>,
}

/// The committed fixtures (both key layouts), and small models generated in both dtypes, one
/// with 64-wide heads so that `infer_config` can read its shape.
fn checkpoints() -> &'static [Checkpoint] {
    static SEEDS: OnceLock<Vec<Checkpoint>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Checkpoint> = ["tiny", "tiny-prefixed"]
            .into_iter()
            .map(|name| Checkpoint {
                config: std::fs::read_to_string(model_dir(name).join("config.json")).unwrap(),
                bytes: std::fs::read(model_dir(name).join("model.safetensors")).unwrap(),
            })
            .collect();
        let device = backend::cpu().device;
        for (config, dtype) in [
            (Gpt2Config::new(1, 1, 8, 4).with_vocab_size(40), SaveDtype::F32),
            (Gpt2Config::new(2, 2, 16, 8).with_vocab_size(120), SaveDtype::F16),
            (
                Gpt2Config::new(1, 2, 128, 4)
                    .with_vocab_size(64)
                    .with_n_inner(Some(96)),
                SaveDtype::F16,
            ),
        ] {
            seeds.push(Checkpoint {
                bytes: config.init(&device, 1).to_safetensors(dtype).unwrap(),
                config: config.to_hub_json(),
            });
        }
        seeds
    })
}

/// Words for structure-aware mutations of a safetensors header.
const HEADER_WORDS: &[&str] = &[
    "F32",
    "F16",
    "BF16",
    "F64",
    "I32",
    "I64",
    "U8",
    "BOOL",
    "F8_E4M3",
    "dtype",
    "shape",
    "data_offsets",
    "__metadata__",
    "wte.weight",
    "wpe.weight",
    "transformer.wte.weight",
    "h.0.ln_1.weight",
    "h.0.mlp.c_fc.weight",
    "h.1.attn.c_attn.bias",
    "ln_f.bias",
];

/// A mutated checkpoint: its header edited as JSON (half the cases) or its bytes mutated.
fn mutated_checkpoint(case: &mut Case, seed: &Checkpoint) -> Vec<u8> {
    let bytes = &seed.bytes;
    if case.chance(0.5) {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        mutate_json(case, &mut header, HEADER_WORDS);
        let header = header.to_string().into_bytes();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(&bytes[8 + n..]);
        if case.chance(0.2) {
            mutate_bytes(case, &mut out, &[]);
        }
        out
    } else {
        let mut out = bytes.clone();
        let others: Vec<&[u8]> = checkpoints().iter().map(|c| c.bytes.as_slice()).collect();
        mutate_bytes(case, &mut out, &others);
        out
    }
}

/// A `ModelError` must say something.
fn check_error(e: &ModelError) -> Result<(), String> {
    if e.to_string().trim().is_empty() {
        return Err(format!("an empty message for {e:?}"));
    }
    Ok(())
}

/// A loaded model must run: one short forward pass.
fn check_runs(model: &patchbay_model::Gpt2) -> Result<(), String> {
    let vocab = model.config.vocab_size;
    let tokens = vec![0, (vocab - 1) as u32];
    let logits = model
        .forward(&[tokens], &mut Hooks::none(), LogitsAt::Last)
        .map_err(|e| format!("an accepted model does not run: {e}"))?;
    if logits.dims() != [1, 1, vocab] {
        return Err(format!("logits of shape {:?}", logits.dims()));
    }
    Ok(())
}

#[test]
fn fuzz_safetensors_loader() {
    let device = backend::cpu().device;
    let mut accepted = 0;
    let cases = Fuzz::new("fuzz_safetensors_loader").run(|case| {
        let seed = &checkpoints()[case.below(checkpoints().len())];
        let mut config = seed.config.clone();
        if case.chance(0.2) {
            let mut value: Value = serde_json::from_str(&config).unwrap();
            mutate_json(case, &mut value, CONFIG_WORDS);
            config = value.to_string();
        }
        let bytes = mutated_checkpoint(case, seed);
        let binding = match case.below(3) {
            0 => None,
            1 => Some(case.below(100_000) as u64),
            _ => Some(1 << 20),
        };
        case.note(format!("max binding {binding:?}"));
        match load_gpt2(&config, &bytes, &device, binding) {
            Ok(model) => {
                accepted += 1;
                check_runs(&model)
            }
            Err(e) => check_error(&e),
        }
    });
    eprintln!("fuzz_safetensors_loader: {accepted} of {cases} inputs loaded");
}

/// The last-position logits of one short forward pass, as bits (a mutated weight may be NaN).
fn last_logits(model: &Gpt2) -> Vec<u32> {
    let tokens = vec![0, (model.config.vocab_size - 1) as u32];
    model
        .forward(&[tokens], &mut Hooks::none(), LogitsAt::Last)
        .map(|l| l.into_data().try_into_vec::<f32>().unwrap())
        .unwrap_or_default()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// The page's loader, fed a mutated checkpoint in random chunks, with its size, without it, or
/// with a wrong one: told the truth, it accepts exactly what `load_gpt2` accepts, with the same
/// model; it never panics.
#[test]
fn fuzz_stream_loader() {
    let device = backend::cpu().device;
    let mut accepted = 0;
    let cases = Fuzz::new("fuzz_stream_loader").run(|case| {
        let seed = &checkpoints()[case.below(checkpoints().len())];
        let bytes = mutated_checkpoint(case, seed);
        // The true size, none, or (a server's claim) any size: then only the message counts.
        let file_len = match case.below(4) {
            0 | 1 => Some(bytes.len() as u64),
            2 => None,
            _ => Some(case.below(2 * bytes.len() + 16) as u64),
        };
        let honest = file_len.is_none_or(|n| n == bytes.len() as u64);
        let most = if case.chance(0.5) { 16 } else { 100_000 };
        let chunk = 1 + case.below(most);
        case.note(format!("file_len {file_len:?}, chunks of {chunk}"));
        let whole = load_gpt2(&seed.config, &bytes, &device, None);
        let config = Gpt2Config::from_json(&seed.config).map_err(|e| e.to_string())?;
        let mut loader = StreamLoader::new(config, file_len);
        let streamed = bytes
            .chunks(chunk)
            .try_for_each(|c| loader.push(c))
            .and_then(|()| loader.finish(&device, None));
        if !honest {
            return match streamed {
                Ok(model) => check_runs(&model),
                Err(e) => check_error(&e),
            };
        }
        match (whole, streamed) {
            (Ok(a), Ok(b)) => {
                accepted += 1;
                check_runs(&b)?;
                if last_logits(&a) != last_logits(&b) {
                    return Err("the streamed model differs from the whole file's".into());
                }
                Ok(())
            }
            (Err(_), Err(e)) => check_error(&e),
            (Ok(_), Err(e)) => Err(format!("the stream refused what load_gpt2 accepts: {e}")),
            (Err(e), Ok(_)) => Err(format!("the stream accepted what load_gpt2 refuses: {e}")),
        }
    });
    eprintln!("fuzz_stream_loader: {accepted} of {cases} inputs loaded");
}

#[test]
fn fuzz_infer_config() {
    let device = backend::cpu().device;
    let mut accepted = 0;
    let cases = Fuzz::new("fuzz_infer_config").run(|case| {
        // The 64-wide checkpoint is the one whose shape can be inferred: start there mostly.
        let seeds = checkpoints();
        let seed = if case.chance(0.7) {
            &seeds[seeds.len() - 1]
        } else {
            &seeds[case.below(seeds.len())]
        };
        let bytes = mutated_checkpoint(case, seed);
        match infer_config(&bytes, bytes.len() as u64) {
            Ok(config) => {
                accepted += 1;
                config
                    .validate()
                    .map_err(|e| format!("an inferred config is invalid: {e}"))?;
                match load_gpt2(&config.to_hub_json(), &bytes, &device, None) {
                    Ok(model) => check_runs(&model),
                    Err(e) => check_error(&e),
                }
            }
            Err(e) => check_error(&e),
        }
    });
    eprintln!("fuzz_infer_config: {accepted} of {cases} inputs had a shape");
}

/// Words for structure-aware mutations of `config.json`.
const CONFIG_WORDS: &[&str] = &[
    "n_layer",
    "n_head",
    "n_embd",
    "n_positions",
    "vocab_size",
    "layer_norm_epsilon",
    "n_inner",
    "activation_function",
    "gelu_new",
    "gelu",
    "relu",
    "n_ctx",
];

#[test]
fn fuzz_config_json() {
    let device = backend::cpu().device;
    let tiny = &checkpoints()[0];
    let mut seeds: Vec<String> = checkpoints().iter().map(|c| c.config.clone()).collect();
    seeds.push(r#"{"n_layer": 1, "n_head": 1, "n_embd": 1, "n_positions": 1, "vocab_size": 1}"#.into());
    let mut accepted = 0;
    let cases = Fuzz::new("fuzz_config_json").run(|case| {
        let seed = &seeds[case.below(seeds.len())];
        let text = if case.chance(0.7) {
            let mut value: Value = serde_json::from_str(seed).unwrap();
            mutate_json(case, &mut value, CONFIG_WORDS);
            value.to_string()
        } else {
            let mut bytes = seed.clone().into_bytes();
            mutate_bytes(case, &mut bytes, &[]);
            String::from_utf8_lossy(&bytes).into_owned()
        };
        case.note(format!("config.json {text}"));
        match Gpt2Config::from_json(&text) {
            Ok(config) => {
                accepted += 1;
                config
                    .validate()
                    .map_err(|e| format!("accepted but invalid: {e}"))?;
                let again = Gpt2Config::from_json(&config.to_hub_json())
                    .map_err(|e| format!("its own Hub JSON is refused: {e}"))?;
                if again != config {
                    return Err(format!("the Hub JSON does not round-trip: {again:?}"));
                }
                let _ = (config.parameters(), config.d_head(), config.d_mlp());
                if case.chance(0.2) {
                    match load_gpt2(&text, &tiny.bytes, &device, Some(1 << 16)) {
                        Ok(model) => check_runs(&model)?,
                        Err(e) => check_error(&e)?,
                    }
                }
                Ok(())
            }
            Err(e) => check_error(&e),
        }
    });
    eprintln!("fuzz_config_json: {accepted} of {cases} inputs parsed");
}

/// Words for structure-aware mutations of tokenizer files: component types and fields of the
/// `tokenizers` crate's format, and GPT-2's special token.
const TOKENIZER_WORDS: &[&str] = &[
    "BPE",
    "WordPiece",
    "WordLevel",
    "Unigram",
    "ByteLevel",
    "Metaspace",
    "Sequence",
    "TemplateProcessing",
    "RobertaProcessing",
    "BertProcessing",
    "Split",
    "Whitespace",
    "WhitespaceSplit",
    "Punctuation",
    "Digits",
    "BertPreTokenizer",
    "UnicodeScripts",
    "CharDelimiterSplit",
    "NFC",
    "NFKC",
    "NFD",
    "Lowercase",
    "Strip",
    "StripAccents",
    "Replace",
    "Prepend",
    "Precompiled",
    "ByteFallback",
    "Fuse",
    "CTC",
    "type",
    "content",
    "special",
    "normalized",
    "single_word",
    "lstrip",
    "rstrip",
    "id",
    "ids",
    "tokens",
    "continuing_subword_prefix",
    "end_of_word_suffix",
    "dropout",
    "unk_token",
    "fuse_unk",
    "byte_fallback",
    "ignore_merges",
    "<|endoftext|>",
    "Ġ",
    "Ġt",
    "SpecialToken",
    "A",
    "B",
    "type_id",
    "pattern",
    "String",
    "Regex",
    "behavior",
    "Isolated",
    "Removed",
    "MergedWithPrevious",
    "Contiguous",
    "invert",
    "add_prefix_space",
    "trim_offsets",
    "use_regex",
    "prepend_scheme",
    "replacement",
    "vocab",
    "merges",
    "added_tokens",
    "normalizer",
    "pre_tokenizer",
    "post_processor",
    "decoder",
    "model",
    "processors",
    "pretokenizers",
    "normalizers",
    "decoders",
    "special_tokens",
    "single",
    "pair",
    "cls",
    "sep",
];

/// GPT-2's tokenizer cut down to ids below 400 (the bytes and the first merges) and
/// `<|endoftext|>`, so that a case builds in well under a millisecond; with the fixture's
/// template post-processor, and with GPT-2's own ByteLevel one.
fn small_tokenizers() -> &'static [Value] {
    static SMALL: OnceLock<Vec<Value>> = OnceLock::new();
    SMALL.get_or_init(|| {
        let full: Value =
            serde_json::from_slice(&std::fs::read(model_dir("tiny").join("tokenizer.json")).unwrap())
                .unwrap();
        let mut small = full.clone();
        let vocab: serde_json::Map<String, Value> = full["model"]["vocab"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(token, id)| id.as_u64().unwrap() < 400 || *token == "<|endoftext|>")
            .map(|(t, id)| (t.clone(), id.clone()))
            .collect();
        let merges: Vec<Value> = full["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| {
                let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
                vocab.contains_key(a) && vocab.contains_key(b) && vocab.contains_key(&format!("{a}{b}"))
            })
            .cloned()
            .collect();
        small["model"]["vocab"] = Value::Object(vocab);
        small["model"]["merges"] = Value::Array(merges);
        let mut byte_level = small.clone();
        byte_level["post_processor"] =
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
        vec![small, byte_level]
    })
}

/// Encodes and decodes random text and ids on an accepted tokenizer: no panic, every id it gives
/// within its `vocab_size`.
fn exercise(case: &mut Case, tokenizer: &Gpt2Tokenizer) -> Result<(), String> {
    let not_usable = |e: &ModelError| e.to_string().contains("not usable");
    let vocab = tokenizer.vocab_size();
    for _ in 0..8 {
        let text = random_text(case, &["<|endoftext|>", "<|endoftext", "Ġ", "[CLS]"]);
        let bos = case.chance(0.5);
        match tokenizer.encode(&text, bos) {
            Ok(ids) => {
                if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(format!("encoding {text:?} gave id {id}, past vocab_size {vocab}"));
                }
                let back = tokenizer
                    .decode(&ids)
                    .map_err(|e| format!("decoding {ids:?}: {e}"))?;
                let _ = back;
                for &id in ids.iter().take(4) {
                    let _ = tokenizer.display(id);
                }
            }
            Err(e) if not_usable(&e) => return Err(format!("encoding {text:?}: {e}")),
            Err(e) => check_error(&e)?,
        }
        if let Err(e) = tokenizer.single_token(&text)
            && not_usable(&e)
        {
            return Err(format!("single_token {text:?}: {e}"));
        }
        let ids: Vec<u32> = (0..case.below(6))
            .map(|_| match case.below(3) {
                0 => case.below(vocab) as u32,
                1 => (vocab + case.below(10)) as u32,
                _ => u32::MAX - case.below(2) as u32,
            })
            .collect();
        if let Err(e) = tokenizer.decode(&ids)
            && not_usable(&e)
        {
            return Err(format!("decoding {ids:?}: {e}"));
        }
        let _ = tokenizer.display(ids.first().copied().unwrap_or(0));
    }
    Ok(())
}

#[test]
fn fuzz_tokenizer() {
    let full = std::fs::read(model_dir("tiny").join("tokenizer.json")).unwrap();
    let small: Vec<Vec<u8>> = small_tokenizers()
        .iter()
        .map(|v| v.to_string().into_bytes())
        .collect();
    let vocab_json = small_tokenizers()[0]["model"]["vocab"].to_string();
    let merges_txt: String = small_tokenizers()[0]["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {}\n", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect();
    let mut accepted = 0;
    let cases = Fuzz::new("fuzz_tokenizer").run(|case| {
        let loaded = match case.below(200) {
            // vocab.json + merges.txt.
            0..=9 => {
                let mut vocab = vocab_json.clone().into_bytes();
                let mut merges = merges_txt.clone().into_bytes();
                if case.chance(0.5) {
                    let mut value: Value = serde_json::from_slice(&vocab).unwrap();
                    mutate_json(case, &mut value, TOKENIZER_WORDS);
                    vocab = value.to_string().into_bytes();
                } else {
                    mutate_bytes(case, &mut merges, &[]);
                }
                let (vocab, merges) = (String::from_utf8_lossy(&vocab), String::from_utf8_lossy(&merges));
                case.note("vocab.json + merges.txt");
                Gpt2Tokenizer::from_vocab_merges(&vocab, &merges)
            }
            // The whole of GPT-2's tokenizer, rarely: it takes a tenth of a second to build.
            10 => {
                let mut bytes = full.clone();
                mutate_bytes(case, &mut bytes, &[]);
                case.note("GPT-2's tokenizer.json");
                Gpt2Tokenizer::from_json(&bytes)
            }
            n => {
                let seed = &small_tokenizers()[n % 2];
                let bytes = if case.chance(0.75) {
                    let mut value = seed.clone();
                    mutate_json(case, &mut value, TOKENIZER_WORDS);
                    value.to_string().into_bytes()
                } else {
                    let mut bytes = small[n % 2].clone();
                    mutate_bytes(case, &mut bytes, &[]);
                    bytes
                };
                Gpt2Tokenizer::from_json(&bytes)
            }
        };
        match loaded {
            Ok(tokenizer) => {
                accepted += 1;
                exercise(case, &tokenizer)
            }
            // A panic caught natively would abort the page's wasm: the checks before the
            // tokenizers crate must have refused the file.
            Err(e) if e.to_string().contains("not usable") => {
                Err(format!("the tokenizers crate panicked: {e}"))
            }
            Err(e) => check_error(&e),
        }
    });
    eprintln!("fuzz_tokenizer: {accepted} of {cases} inputs loaded");
}
