//! Loading a checkpoint as its bytes arrive: the page pushes the body of `model.safetensors`
//! (from the network, Cache Storage or a picked file) in chunks, and each tensor is built as
//! soon as its last byte is in. The whole file is never held: the loader keeps the parameters
//! built so far as float32 (on the CPU backend they become the model's tensors) and the tensor
//! being filled, whose bytes are copied once into float32 host data when it is complete; bytes
//! of tensors the model does not use are dropped as they pass. A tensor's buffer grows with
//! the bytes that arrive, at most [`AHEAD`] beyond them.
//!
//! Every check of [`load_gpt2`](crate::load_gpt2) is made, at the point where the bytes allow:
//! the header's length and size against [`MAX_SAFETENSORS_HEADER_BYTES`](crate::MAX_SAFETENSORS_HEADER_BYTES) and the declared file
//! size, the tensors' names, shapes and dtypes against `config.json` before any tensor data is
//! taken, and at the end that no byte is missing or left over.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::DType;
use safetensors::tensor::Metadata;

use crate::hub::{HubTensor, Slot, assemble, hub_tensors};
use crate::loader::{
    check_info, check_tensors, header_length, host_f32, parse_header, prefix, rows_per_block,
};
use crate::{Gpt2, Gpt2Config, ModelError};

/// How far ahead of the bytes received a tensor's buffer is reserved (its whole size when smaller).
const AHEAD: usize = 64 << 20;

/// A `model.safetensors` being read in chunks, for a GPT-2 of a known shape.
pub struct StreamLoader {
    config: Gpt2Config,
    /// The file's size when the caller knows it (a download's `content-length`, a file's size).
    file_len: Option<u64>,
    /// Bytes pushed so far.
    received: u64,
    stage: Stage,
}

enum Stage {
    /// The 8-byte header length, as it arrives.
    Length(Vec<u8>),
    /// The length's bytes and the JSON header, until it is `8 + n` bytes long.
    Header { n: usize, start: Vec<u8> },
    /// The tensor data.
    Data(Tensors),
    /// A push failed: the load cannot go on.
    Failed,
}

/// The tensor data, walked in file order.
struct Tensors {
    /// Every tensor of the file, by its first byte (the header's offsets are contiguous).
    pieces: Vec<Piece>,
    /// The piece being read.
    index: usize,
    /// Bytes of the data read so far.
    at: u64,
    /// The bytes of the current piece, when the model uses it.
    fill: Vec<u8>,
    /// The model's parameters read so far, as float32.
    values: HashMap<Slot, TensorData>,
    /// The data's length, from the header.
    len: u64,
}

/// One tensor of the file.
struct Piece {
    key: String,
    end: u64,
    /// Where the model uses it, with its shape and dtype; `None` for a tensor it ignores.
    used: Option<(Slot, Vec<usize>, DType)>,
}

impl StreamLoader {
    /// A loader for a checkpoint of shape `config`; `file_len` is the file's size, if known.
    pub fn new(config: Gpt2Config, file_len: Option<u64>) -> Self {
        StreamLoader {
            config,
            file_len,
            received: 0,
            stage: Stage::Length(Vec::with_capacity(8)),
        }
    }

    /// Bytes pushed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next bytes of the file. After an error the load is over: every later push
    /// fails.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), ModelError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Failed);
        let received = self.received + chunk.len() as u64;
        self.stage = self.advance(stage, &mut chunk)?;
        self.received = received;
        Ok(())
    }

    fn advance(&self, mut stage: Stage, chunk: &mut &[u8]) -> Result<Stage, ModelError> {
        loop {
            stage = match stage {
                Stage::Failed => {
                    return Err(ModelError::NotSafetensors(
                        "the load already failed; start it again".into(),
                    ));
                }
                Stage::Length(mut bytes) => {
                    take(chunk, &mut bytes, 8);
                    if bytes.len() < 8 {
                        return Ok(Stage::Length(bytes));
                    }
                    let n = header_length(&bytes, self.file_len.unwrap_or(u64::MAX))?;
                    let mut start = Vec::with_capacity(8 + n);
                    start.extend_from_slice(&bytes);
                    Stage::Header { n, start }
                }
                Stage::Header { n, mut start } => {
                    take(chunk, &mut start, 8 + n);
                    if start.len() < 8 + n {
                        return Ok(Stage::Header { n, start });
                    }
                    Stage::Data(self.tensors(&start)?)
                }
                Stage::Data(mut tensors) => {
                    tensors.read(chunk)?;
                    return Ok(Stage::Data(tensors));
                }
            }
        }
    }

    /// The header parsed and checked against the file's size and the config; the pieces to read.
    fn tensors(&self, start: &[u8]) -> Result<Tensors, ModelError> {
        let metadata: Metadata = match self.file_len {
            Some(len) => parse_header(start, len)?,
            None => serde_json::from_slice(&start[8..])
                .map_err(|e| ModelError::NotSafetensors(format!("its header: {e}")))?,
        };
        let table = hub_tensors(&self.config);
        check_tensors(&metadata, &self.config, &table)?;
        let prefix = prefix(&metadata);
        let by_key: HashMap<String, &HubTensor> =
            table.iter().map(|t| (format!("{prefix}{}", t.name), t)).collect();
        let infos = metadata.tensors();
        let mut pieces = Vec::with_capacity(infos.len());
        let mut at = 0u64;
        for key in metadata.offset_keys() {
            let info = &infos[&key];
            let (begin, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
            if begin != at || end < begin {
                return Err(ModelError::NotSafetensors(format!(
                    "its header puts `{key}` at bytes {begin}..{end} of the data, not right after the tensor before it (byte {at})"
                )));
            }
            let used = match by_key.get(&key) {
                Some(t) => Some((t.slot, t.shape.clone(), check_info(&key, info, &t.shape)?)),
                None => None,
            };
            pieces.push(Piece { key, end, used });
            at = end;
        }
        Ok(Tensors {
            pieces,
            index: 0,
            at: 0,
            fill: Vec::new(),
            values: HashMap::with_capacity(table.len()),
            len: at,
        })
    }

    /// The model, once every byte is in, on `device`; the token embedding is split into blocks
    /// of at most `max_binding_bytes`, as [`load_gpt2`](crate::load_gpt2) splits it.
    pub fn finish(self, device: &Device, max_binding_bytes: Option<u64>) -> Result<Gpt2, ModelError> {
        let mut tensors = match self.stage {
            Stage::Data(tensors) => tensors,
            Stage::Failed => {
                return Err(ModelError::NotSafetensors(
                    "the load already failed; start it again".into(),
                ));
            }
            Stage::Length(_) | Stage::Header { .. } => {
                return Err(ModelError::NotSafetensors(format!(
                    "the file ended after {} bytes, inside its header",
                    self.received
                )));
            }
        };
        tensors.settle();
        if let Some(piece) = tensors.pieces.get(tensors.index) {
            return Err(ModelError::Truncated {
                tensor: piece.key.clone(),
                expected: tensors.len,
                found: tensors.at,
            });
        }
        let rows = rows_per_block(&self.config, max_binding_bytes);
        assemble(&self.config, device, rows, |slot| {
            tensors
                .values
                .remove(&slot)
                .ok_or_else(|| ModelError::Backend(format!("{slot:?} was not read")))
        })
    }
}

impl Tensors {
    /// Reads tensor data from `chunk`, building each used tensor as its last byte arrives.
    fn read(&mut self, chunk: &mut &[u8]) -> Result<(), ModelError> {
        self.settle();
        while !chunk.is_empty() {
            let Some(piece) = self.pieces.get(self.index) else {
                return Err(ModelError::TrailingBytes {
                    extra: chunk.len() as u64,
                    expected: self.len,
                });
            };
            let n = (piece.end - self.at).min(chunk.len() as u64) as usize;
            let (bytes, rest) = chunk.split_at(n);
            if let Some((_, shape, dtype)) = &piece.used {
                // Room for the tensor, but never more than AHEAD past the bytes that came: a
                // header alone cannot make memory grow by a whole (claimed) tensor.
                let size = shape.iter().product::<usize>() * dtype.size();
                let want = self.fill.len() + bytes.len();
                if want > self.fill.capacity() {
                    let room = size.min(want.saturating_add(AHEAD));
                    self.fill.reserve_exact(room - self.fill.len());
                }
                self.fill.extend_from_slice(bytes);
            }
            *chunk = rest;
            self.at += n as u64;
            self.settle();
        }
        Ok(())
    }

    /// Builds every piece whose last byte is in (a tensor of no elements has none to wait for).
    fn settle(&mut self) {
        while let Some(piece) = self.pieces.get(self.index).filter(|p| p.end == self.at) {
            if let Some((slot, shape, dtype)) = piece.used.clone() {
                let bytes = std::mem::take(&mut self.fill);
                self.values.insert(slot, host_f32(bytes, shape, dtype));
            }
            self.index += 1;
        }
    }
}

/// Moves bytes from the front of `chunk` into `into` until it is `len` long.
fn take(chunk: &mut &[u8], into: &mut Vec<u8>, len: usize) {
    let n = (len - into.len()).min(chunk.len());
    into.extend_from_slice(&chunk[..n]);
    *chunk = &chunk[n..];
}
