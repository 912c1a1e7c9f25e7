//! GPT-2's byte-level BPE tokenizer through the `tokenizers` crate, from the Hub's
//! `tokenizer.json` or from `vocab.json` + `merges.txt`, and token strings made readable.
//!
//! A tokenizer file may come from a stranger, and the `tokenizers` crate panics on some
//! malformed ones. Two guards stand in front of it:
//! - [`check_tokenizer_json`] parses the file with `serde_json` first and refuses what is known
//!   to panic or to take unbounded time (a file cut short, a `continuing_subword_prefix` that
//!   the merges do not start with, templates naming undefined special tokens or a second
//!   sequence, truncation or padding, too many or too long added tokens, ids past
//!   [`MAX_VOCAB_SIZE`]). This is what protects the page: on `wasm32-unknown-unknown` a panic
//!   aborts, it cannot be caught.
//! - natively, every call into `tokenizers` (loading, encoding, decoding) also runs under
//!   `catch_unwind`, so that a panic nobody foresaw becomes an error.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::{Gpt2Config, MAX_VOCAB_SIZE, ModelError};

/// GPT-2's only special token: beginning and end of text.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The largest tokenizer file read (`tokenizer.json`, `vocab.json` or `merges.txt`), in bytes.
/// GPT-2's `tokenizer.json` is 1.4 MB.
pub const MAX_TOKENIZER_FILE_BYTES: usize = 32 << 20;

/// The most added tokens a `tokenizer.json` may declare (GPT-2 has one, `<|endoftext|>`).
pub const MAX_ADDED_TOKENS: usize = 1024;

/// The longest added token, in bytes: the `tokenizers` crate takes time quadratic in it.
pub const MAX_ADDED_TOKEN_BYTES: usize = 256;

/// The longest text [`Gpt2Tokenizer::encode`] accepts, in bytes: generous for a 1024-token
/// context (GPT-2 averages about 4 bytes a token).
pub const MAX_PROMPT_BYTES: usize = 64 << 10;

/// A GPT-2 tokenizer.
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    bos: u32,
    /// One past the largest token id.
    id_bound: usize,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

fn file_err(file: &'static str) -> impl Fn(String) -> ModelError {
    move |reason| ModelError::TokenizerFile { file, reason }
}

/// Runs `f`, turning a panic into an error that starts with `context`. On wasm, where a panic
/// aborts, this only runs `f`: the checks before each call are the guard there.
fn guarded<T>(context: &str, f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(tok_err(format!("{context}: {message}")))
    })
}

/// Checks a parsed `tokenizer.json` for what makes the `tokenizers` crate panic or stall, before
/// it sees the file.
fn check_tokenizer_json(json: &Value) -> Result<(), ModelError> {
    let bad = |reason: String| Err(file_err("tokenizer.json")(reason));
    let Some(root) = json.as_object() else {
        return bad("the file is not a JSON object".into());
    };
    for field in ["truncation", "padding"] {
        if !root.get(field).is_none_or(Value::is_null) {
            return bad(format!(
                "`{field}` is set; GPT-2's tokenizer neither truncates nor pads (Patchbay checks lengths itself), so it must be null"
            ));
        }
    }
    let Some(model) = root.get("model").and_then(Value::as_object) else {
        return bad("there is no `model` object".into());
    };
    if let Some(kind) = model.get("type")
        && kind != "BPE"
    {
        return bad(format!("the model is {kind}, not byte-level BPE as in GPT-2"));
    }
    if let Some(vocab) = model.get("vocab").and_then(Value::as_object) {
        if let Some((token, id)) = vocab
            .iter()
            .find(|(_, id)| id.as_u64().is_some_and(|id| id >= MAX_VOCAB_SIZE as u64))
        {
            return bad(format!(
                "token {token:?} has id {id}, past the limit of {MAX_VOCAB_SIZE} (MAX_VOCAB_SIZE)"
            ));
        }
    }
    // BPE builds each merge's token as `a + b[prefix.len()..]`: `b` must start with the prefix.
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !prefix.is_empty()
        && let Some(merges) = model.get("merges").and_then(Value::as_array)
    {
        for merge in merges {
            let second = match merge {
                Value::String(pair) => pair.split_once(' ').map(|(_, b)| b),
                Value::Array(pair) => pair.get(1).and_then(Value::as_str),
                _ => None,
            };
            if let Some(b) = second
                && !b.starts_with(prefix)
            {
                return bad(format!(
                    "the merge {merge} does not start its second part with the continuing_subword_prefix {prefix:?}"
                ));
            }
        }
    }
    if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
        if added.len() > MAX_ADDED_TOKENS {
            return bad(format!(
                "it declares {} added tokens, more than the limit of {MAX_ADDED_TOKENS} (MAX_ADDED_TOKENS)",
                added.len()
            ));
        }
        for token in added {
            if let Some(content) = token.get("content").and_then(Value::as_str)
                && content.len() > MAX_ADDED_TOKEN_BYTES
            {
                return bad(format!(
                    "an added token is {} bytes long, more than the limit of {MAX_ADDED_TOKEN_BYTES} (MAX_ADDED_TOKEN_BYTES)",
                    content.len()
                ));
            }
            if let Some(id) = token.get("id").and_then(Value::as_u64)
                && id >= MAX_VOCAB_SIZE as u64
            {
                return bad(format!(
                    "an added token has id {id}, past the limit of {MAX_VOCAB_SIZE} (MAX_VOCAB_SIZE)"
                ));
            }
        }
    }
    if let Some(processor) = root.get("post_processor") {
        check_post_processor(processor).or_else(bad)?;
    }
    Ok(())
}

/// A template post-processor (alone or in a `Sequence`) may only name special tokens it
/// defines (with as many ids as tokens), and its single-sequence template only sequence A.
fn check_post_processor(processor: &Value) -> Result<(), String> {
    match processor.get("type").and_then(Value::as_str) {
        Some("Sequence") => processor
            .get("processors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .try_for_each(check_post_processor),
        Some("TemplateProcessing") => {
            let defined = processor.get("special_tokens").and_then(Value::as_object);
            for (id, token) in defined.into_iter().flatten() {
                let len = |field: &str| token.get(field).and_then(Value::as_array).map(Vec::len);
                if len("ids") != len("tokens") {
                    return Err(format!(
                        "the post-processor's special token `{id}` has a different number of ids and tokens"
                    ));
                }
            }
            for template in ["single", "pair"] {
                let pieces = processor.get(template).and_then(Value::as_array);
                for piece in pieces.into_iter().flatten() {
                    if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str)
                        && !defined.is_some_and(|d| d.contains_key(id))
                    {
                        return Err(format!(
                            "the post-processor's {template} template names the special token `{id}`, which its special_tokens do not define"
                        ));
                    }
                    if template == "single" && piece.pointer("/Sequence/id").is_some_and(|id| id != "A") {
                        return Err(
                            "the post-processor's single template names a second sequence; one prompt is one sequence"
                                .into(),
                        );
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Every id in `inner`'s vocabulary must be below [`MAX_VOCAB_SIZE`]; returns one past the
/// largest.
fn id_bound(inner: &Tokenizer, file: &'static str) -> Result<usize, ModelError> {
    let largest = inner.get_vocab(true).into_values().max().unwrap_or(0) as usize;
    if largest >= MAX_VOCAB_SIZE {
        return Err(file_err(file)(format!(
            "it has token id {largest}, past the limit of {MAX_VOCAB_SIZE} (MAX_VOCAB_SIZE)"
        )));
    }
    Ok(largest + 1)
}

impl Gpt2Tokenizer {
    /// From the bytes of a Hub `tokenizer.json` (at most [`MAX_TOKENIZER_FILE_BYTES`]).
    pub fn from_json(json: &[u8]) -> Result<Self, ModelError> {
        if json.len() > MAX_TOKENIZER_FILE_BYTES {
            return Err(file_err("tokenizer.json")(format!(
                "the file has {} bytes, more than the limit of {MAX_TOKENIZER_FILE_BYTES} (MAX_TOKENIZER_FILE_BYTES)",
                json.len()
            )));
        }
        let value: Value =
            serde_json::from_slice(json).map_err(|e| file_err("tokenizer.json")(e.to_string()))?;
        check_tokenizer_json(&value)?;
        let inner = guarded("this tokenizer.json is not usable", || {
            serde_json::from_value::<Tokenizer>(value).map_err(|e| file_err("tokenizer.json")(e.to_string()))
        })?;
        Self::wrap(inner, "tokenizer.json")
    }

    /// From the text of `vocab.json` and `merges.txt`, assembled as the Hub's GPT-2 tokenizer
    /// is: byte-level pre-tokenization without a prefix space, byte-level decoding, and
    /// `<|endoftext|>` as a special token.
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self, ModelError> {
        for (file, text) in [("vocab.json", vocab_json), ("merges.txt", merges_txt)] {
            if text.len() > MAX_TOKENIZER_FILE_BYTES {
                return Err(file_err(file)(format!(
                    "the file has {} bytes, more than the limit of {MAX_TOKENIZER_FILE_BYTES} (MAX_TOKENIZER_FILE_BYTES)",
                    text.len()
                )));
            }
        }
        let vocab: HashMap<String, u32> =
            serde_json::from_str(vocab_json).map_err(|e| file_err("vocab.json")(e.to_string()))?;
        if let Some((token, id)) = vocab.iter().find(|(_, id)| **id as usize >= MAX_VOCAB_SIZE) {
            return Err(file_err("vocab.json")(format!(
                "token {token:?} has id {id}, past the limit of {MAX_VOCAB_SIZE} (MAX_VOCAB_SIZE)"
            )));
        }
        let vocab: Vocab = vocab.into_iter().collect();
        let merges = merges_txt
            .lines()
            .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
            .map(|line| {
                line.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| file_err("merges.txt")(format!("`{line}` is not a pair")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner = guarded("vocab.json + merges.txt are not usable", || {
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .build()
                .map_err(|e| file_err("merges.txt")(e.to_string()))?;
            let mut inner = Tokenizer::new(bpe);
            inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            inner.with_decoder(Some(ByteLevelDecoder::default()));
            inner.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
            Ok(inner)
        })?;
        Self::wrap(inner, "vocab.json")
    }

    /// From a Hub-layout folder: `tokenizer.json` if present, else `vocab.json` + `merges.txt`;
    /// regular files only, each at most [`MAX_TOKENIZER_FILE_BYTES`].
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let read = |name: &str| {
            crate::files::read_bounded(
                &dir.join(name),
                MAX_TOKENIZER_FILE_BYTES,
                "MAX_TOKENIZER_FILE_BYTES",
            )
        };
        let present = |name: &str| {
            let path = dir.join(name);
            path.try_exists().map_err(|source| ModelError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        if present("tokenizer.json")? {
            return Self::from_json(&read("tokenizer.json")?);
        }
        if !(present("vocab.json")? && present("merges.txt")?) {
            return Err(ModelError::NoTokenizer(dir.display().to_string()));
        }
        let text = |name: &'static str| {
            String::from_utf8(read(name)?).map_err(|_| file_err(name)("the file is not UTF-8 text".into()))
        };
        Self::from_vocab_merges(&text("vocab.json")?, &text("merges.txt")?)
    }

    fn wrap(inner: Tokenizer, file: &'static str) -> Result<Self, ModelError> {
        let bos = inner
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| file_err(file)(format!("the vocabulary has no {END_OF_TEXT} token")))?;
        let id_bound = id_bound(&inner, file)?;
        Ok(Gpt2Tokenizer { inner, bos, id_bound })
    }

    /// Checks that every id this tokenizer can give is a row of the model's vocabulary, so that
    /// prompts and answers index the embedding and the logits safely. Every model paired with
    /// a tokenizer goes through here.
    pub fn check_fits(&self, config: &Gpt2Config) -> Result<(), ModelError> {
        if self.id_bound > config.vocab_size {
            return Err(ModelError::VocabMismatch {
                tokenizer: self.id_bound,
                model: config.vocab_size,
            });
        }
        Ok(())
    }

    /// The id of `<|endoftext|>`, which TransformerLens prepends as BOS.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// Token ids of `text` (at most [`MAX_PROMPT_BYTES`]), with `<|endoftext|>` first if
    /// `prepend_bos`.
    pub fn encode(&self, text: &str, prepend_bos: bool) -> Result<Vec<u32>, ModelError> {
        if text.len() > MAX_PROMPT_BYTES {
            return Err(ModelError::PromptTooLong {
                bytes: text.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let encoding = guarded("this tokenizer is not usable: encoding panicked", || {
            self.inner.encode(text, false).map_err(tok_err)
        })?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if prepend_bos {
            ids.push(self.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The text of a token sequence.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        guarded("this tokenizer is not usable: decoding panicked", || {
            self.inner.decode(ids, false).map_err(tok_err)
        })
    }

    /// The size of the vocabulary: one past the largest token id, special tokens included
    /// (GPT-2's ids are dense, 0..50257).
    pub fn vocab_size(&self) -> usize {
        self.id_bound
    }

    /// The single token id of `text`, or an error that says how it splits. Answers for patching
    /// metrics must be exactly one token.
    pub fn single_token(&self, text: &str) -> Result<u32, ModelError> {
        let ids = self.encode(text, false)?;
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(tok_err("the answer is empty; give one token such as \" Mary\"")),
            _ => {
                let pieces: Vec<String> = ids.iter().map(|&id| self.display(id)).collect();
                Err(tok_err(format!(
                    "`{text}` is {} tokens ({}), not one; pick a word that is a single token (often with a leading space)",
                    ids.len(),
                    pieces.join(" | ")
                )))
            }
        }
    }

    /// A readable form of one token: a leading space shows as `␣`, newlines and tabs as `⏎` and
    /// `⇥`, and a token that is not whole UTF-8 (part of a multi-byte character) as its bytes,
    /// `<0xE2><0x98>`.
    pub fn display(&self, id: u32) -> String {
        let Some(raw) = self.inner.id_to_token(id) else {
            return format!("<unk {id}>");
        };
        if raw == END_OF_TEXT {
            return raw;
        }
        let Some(bytes) = raw.chars().map(unicode_to_byte).collect::<Option<Vec<u8>>>() else {
            return raw;
        };
        match String::from_utf8(bytes) {
            Ok(text) => {
                let text = match text.strip_prefix(' ') {
                    Some(rest) => format!("␣{rest}"),
                    None => text,
                };
                text.replace('\n', "⏎").replace('\t', "⇥")
            }
            Err(e) => e.as_bytes().iter().map(|b| format!("<0x{b:02X}>")).collect(),
        }
    }
}

/// The byte that GPT-2's byte-level alphabet (`bytes_to_unicode` in OpenAI's `encoder.py`)
/// writes as `c`. Printable Latin-1 bytes stand for themselves; the other 68 bytes are written as
/// U+0100 onwards, in byte order.
fn unicode_to_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let code = c as u32;
    if printable(code) {
        return Some(code as u8);
    }
    let index = code.checked_sub(256)? as usize;
    (0u32..=255)
        .filter(|&b| !printable(b))
        .nth(index)
        .map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::{guarded, unicode_to_byte};

    #[test]
    fn a_panic_inside_tokenizers_becomes_an_error() {
        let err = guarded(
            "this tokenizer.json is not usable",
            || -> Result<(), crate::ModelError> {
                panic!("index out of bounds: the len is 1 but the index is 1")
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer: this tokenizer.json is not usable: index out of bounds: the len is 1 but the index is 1"
        );
    }

    #[test]
    fn byte_alphabet_covers_every_byte_once() {
        let mut seen = [false; 256];
        for code in (33..=126).chain(161..=172).chain(174..=255).chain(256..256 + 68) {
            let b = unicode_to_byte(char::from_u32(code).unwrap()).unwrap();
            assert!(!seen[b as usize], "byte {b} twice");
            seen[b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(unicode_to_byte('Ġ'), Some(b' '));
        assert_eq!(unicode_to_byte('Ċ'), Some(b'\n'));
    }
}
