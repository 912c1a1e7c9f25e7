//! GPT-2's byte-level BPE tokenizer through the `tokenizers` crate, from the Hub's
//! `tokenizer.json` or from `vocab.json` + `merges.txt`, and token strings made readable.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::ModelError;

/// GPT-2's only special token: beginning and end of text.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A GPT-2 tokenizer.
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    bos: u32,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Gpt2Tokenizer {
    /// From the bytes of a Hub `tokenizer.json`.
    pub fn from_json(json: &[u8]) -> Result<Self, ModelError> {
        Self::wrap(Tokenizer::from_bytes(json).map_err(tok_err)?)
    }

    /// From the text of `vocab.json` and `merges.txt`, assembled as the Hub's GPT-2 tokenizer
    /// is: byte-level pre-tokenization without a prefix space, byte-level decoding, and
    /// `<|endoftext|>` as a special token.
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self, ModelError> {
        let vocab: HashMap<String, u32> =
            serde_json::from_str(vocab_json).map_err(|e| tok_err(format!("vocab.json: {e}")))?;
        let vocab: Vocab = vocab.into_iter().collect();
        let merges = merges_txt
            .lines()
            .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
            .map(|line| {
                line.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tok_err(format!("merges.txt: `{line}` is not a pair")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
        Self::wrap(inner)
    }

    /// From a Hub-layout folder: `tokenizer.json` if present, else `vocab.json` + `merges.txt`.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        if dir.join("tokenizer.json").exists() {
            return Self::from_json(&read("tokenizer.json")?);
        }
        let text =
            |name: &str| String::from_utf8(read(name)?).map_err(|_| tok_err(format!("{name} is not UTF-8")));
        Self::from_vocab_merges(&text("vocab.json")?, &text("merges.txt")?)
    }

    fn wrap(inner: Tokenizer) -> Result<Self, ModelError> {
        let bos = inner
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| tok_err(format!("the vocabulary has no {END_OF_TEXT} token")))?;
        Ok(Gpt2Tokenizer { inner, bos })
    }

    /// The id of `<|endoftext|>`, which TransformerLens prepends as BOS.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// Token ids of `text`, with `<|endoftext|>` first if `prepend_bos`.
    pub fn encode(&self, text: &str, prepend_bos: bool) -> Result<Vec<u32>, ModelError> {
        let encoding = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if prepend_bos {
            ids.push(self.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The text of a token sequence.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// The number of tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
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
    use super::unicode_to_byte;

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
