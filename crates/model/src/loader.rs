//! Loads a Hugging Face Hub GPT-2 checkpoint (`config.json` + `model.safetensors`) into
//! [`Gpt2`], through the `safetensors` crate and the key table of [`crate::hub`].
//!
//! The Hub layout: keys with or without a `transformer.` prefix, Conv1D weights stored
//! `[in, out]` (already the layout of burn's `Linear`), no `lm_head` (tied to `wte`), and
//! `attn.bias` / `attn.masked_bias` causal-mask buffers that are not parameters and are ignored.
//!
//! A file is checked before its tensor data is touched: the header length against
//! [`MAX_SAFETENSORS_HEADER_BYTES`], the header against the file's size (cut off or with bytes
//! after its data), and the tensors the config implies against the header.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::DType;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use crate::config::MAX_N_LAYER;
use crate::hub::{HubTensor, Slot, assemble, hub_tensors};
use crate::{Gpt2, Gpt2Config, ModelError};

/// The longest safetensors header read, in bytes. GPT-2 XL's header is under 100 KB and one of
/// [`crate::MAX_N_LAYER`] layers would be about 250 KB; the `safetensors` crate's own limit,
/// 100 MB, lets a header of a million empty tensors take 1.7 GB and 17 s to parse.
pub const MAX_SAFETENSORS_HEADER_BYTES: usize = 16 << 20;

/// Builds GPT-2 from the text of `config.json` and the bytes of `model.safetensors`.
///
/// `max_binding_bytes` is the device's largest storage-buffer binding; the token embedding is
/// split into blocks of vocabulary rows that each fit in it (`None`: no limit, one block).
pub fn load_gpt2(
    config_json: &str,
    safetensors: &[u8],
    device: &Device,
    max_binding_bytes: Option<u64>,
) -> Result<Gpt2, ModelError> {
    let config = Gpt2Config::from_json(config_json)?;
    build(
        &config,
        &Checkpoint::parse(safetensors)?,
        device,
        max_binding_bytes,
    )
}

/// GPT-2 of shape `config` from a parsed checkpoint.
fn build(
    config: &Gpt2Config,
    file: &Checkpoint,
    device: &Device,
    max_binding_bytes: Option<u64>,
) -> Result<Gpt2, ModelError> {
    let table = hub_tensors(config);
    check_tensors(&file.metadata, config, &table)?;
    let rows = rows_per_block(config, max_binding_bytes);
    let by_slot: HashMap<Slot, &HubTensor> = table.iter().map(|t| (t.slot, t)).collect();
    assemble(config, device, rows, |slot| file.host(by_slot[&slot]))
}

/// Vocabulary rows per block of the token embedding, so that a block fits a device binding
/// of `max_binding_bytes` (one block when there is no limit).
pub(crate) fn rows_per_block(config: &Gpt2Config, max_binding_bytes: Option<u64>) -> usize {
    let (d, vocab) = (config.n_embd as u64, config.vocab_size);
    match max_binding_bytes {
        Some(limit) => usize::try_from(limit / (4 * d)).unwrap_or(vocab).clamp(1, vocab),
        None => vocab,
    }
}

/// A tensor's bytes as stored (`dtype`, little-endian) as float32 host data (burn copies them
/// once, into a buffer of its own alignment).
pub(crate) fn host_f32(bytes: Vec<u8>, shape: Vec<usize>, dtype: DType) -> TensorData {
    TensorData::from_bytes_vec(bytes, shape, dtype).convert::<f32>()
}

/// GPT-2's shape read from a checkpoint's tensors, for a `model.safetensors` that came without
/// its `config.json`: `start` is the file's first bytes (its header at least, or all of it) and
/// `file_len` the file's size, which the header is checked against. Heads are taken to be 64
/// wide, as in every OpenAI GPT-2.
pub fn infer_config(start: &[u8], file_len: u64) -> Result<Gpt2Config, ModelError> {
    let n = header_length(start, file_len)?;
    let header = start.get(..8 + n).ok_or_else(|| {
        ModelError::NotSafetensors(format!(
            "its header is {n} bytes long but only {} of them were given",
            start.len().saturating_sub(8)
        ))
    })?;
    let file = Checkpoint::new(Data::Bytes(&[]), parse_header(header, file_len)?);
    let cannot_tell = |why: String| {
        ModelError::Config(format!(
            "cannot tell this checkpoint's shape without config.json: {why}"
        ))
    };
    let matrix = |name: &str| -> Result<[usize; 2], ModelError> {
        match file.shape(name)?[..] {
            [rows, cols] => Ok([rows, cols]),
            ref other => Err(cannot_tell(format!("`{name}` has shape {other:?}, not a matrix"))),
        }
    };
    let [vocab, d] = matrix("wte.weight")?;
    let [n_positions, d_pos] = matrix("wpe.weight")?;
    if d_pos != d {
        return Err(cannot_tell(format!(
            "`wte.weight` is {d} wide but `wpe.weight` is {d_pos}"
        )));
    }
    let n_layer = (0..=MAX_N_LAYER)
        .take_while(|l| file.shape(&format!("h.{l}.ln_1.weight")).is_ok())
        .count();
    if n_layer == 0 || d == 0 || d % 64 != 0 {
        return Err(cannot_tell(format!(
            "{n_layer} layers of width {d}, not a multiple of GPT-2's 64-wide heads"
        )));
    }
    let [d_in, d_mlp] = matrix("h.0.mlp.c_fc.weight")?;
    if d_in != d {
        return Err(cannot_tell(format!(
            "`h.0.mlp.c_fc.weight` takes {d_in} inputs but the model is {d} wide"
        )));
    }
    let config = Gpt2Config::new(n_layer, d / 64, d, n_positions)
        .with_vocab_size(vocab)
        .with_n_inner((d_mlp != 4 * d).then_some(d_mlp));
    config.validate()?;
    Ok(config)
}

/// Reads `config.json` and `model.safetensors` from a Hub-layout folder: regular files only
/// (a FIFO or a device is refused before it is opened), `config.json` within
/// [`crate::MAX_CONFIG_BYTES`], and the checkpoint's header checked against the config and the
/// file's size before its tensor data is read. The tensors are read from the file one at a
/// time, so the load holds the model and one tensor, not the whole file besides (GPT-2 XL's
/// float32 file is 6.2 GB).
#[cfg(not(target_family = "wasm"))]
pub fn load_gpt2_dir(
    dir: &std::path::Path,
    device: &Device,
    max_binding_bytes: Option<u64>,
) -> Result<Gpt2, ModelError> {
    let config_json = crate::files::read_bounded(
        &dir.join("config.json"),
        crate::MAX_CONFIG_BYTES,
        "MAX_CONFIG_BYTES",
    )?;
    let config_json = String::from_utf8(config_json)
        .map_err(|_| ModelError::Config("the file is not UTF-8 text".into()))?;
    let config = Gpt2Config::from_json(&config_json)?;
    let table = hub_tensors(&config);
    let path = dir.join("model.safetensors");
    let (file, header_len, metadata) =
        crate::files::open_safetensors(&path, |metadata| check_tensors(metadata, &config, &table))?;
    let data = Data::File {
        file: std::cell::RefCell::new(file),
        path: &path,
        start: 8 + header_len as u64,
    };
    build(
        &config,
        &Checkpoint::new(data, metadata),
        device,
        max_binding_bytes,
    )
}

/// A Hub-layout model folder: the model ([`load_gpt2_dir`]) and its tokenizer
/// ([`Gpt2Tokenizer::from_dir`]), checked to fit each other ([`Gpt2Tokenizer::check_fits`]).
#[cfg(not(target_family = "wasm"))]
pub fn load_dir(
    dir: &std::path::Path,
    device: &Device,
    max_binding_bytes: Option<u64>,
) -> Result<(Gpt2, crate::Gpt2Tokenizer), ModelError> {
    let model = load_gpt2_dir(dir, device, max_binding_bytes)?;
    let tokenizer = crate::Gpt2Tokenizer::from_dir(dir)?;
    tokenizer.check_fits(&model.config)?;
    Ok((model, tokenizer))
}

/// The length of a safetensors header, from the first 8 bytes of a file of `file_len` bytes.
pub fn header_length(start: &[u8], file_len: u64) -> Result<usize, ModelError> {
    let not = |why: String| Err(ModelError::NotSafetensors(why));
    let Some(length) = start.get(..8) else {
        return not(format!(
            "the file has {file_len} bytes; a safetensors file starts with an 8-byte header length"
        ));
    };
    let n = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if n > MAX_SAFETENSORS_HEADER_BYTES as u64 {
        return not(format!(
            "its header length reads {n} bytes, more than the limit of {MAX_SAFETENSORS_HEADER_BYTES} (MAX_SAFETENSORS_HEADER_BYTES)"
        ));
    }
    if 8 + n > file_len {
        return not(format!(
            "the header is cut off: it is {n} bytes long but the file has {} bytes after the length",
            file_len.saturating_sub(8)
        ));
    }
    Ok(n as usize)
}

/// The tensors a safetensors header describes, checked against the size of the whole file:
/// `start` is the length and the header (`8 + header_length` bytes).
pub(crate) fn parse_header(start: &[u8], file_len: u64) -> Result<Metadata, ModelError> {
    let metadata: Metadata = serde_json::from_slice(&start[8..])
        .map_err(|e| ModelError::NotSafetensors(format!("its header: {e}")))?;
    let data_start = start.len() as u64;
    let expected = metadata.data_len() as u64;
    let found = file_len - data_start;
    if found < expected {
        let tensors = metadata.tensors();
        let tensor = metadata
            .offset_keys()
            .into_iter()
            .find(|name| tensors[name].data_offsets.1 as u64 > found)
            .unwrap_or_default();
        return Err(ModelError::Truncated {
            tensor,
            expected,
            found,
        });
    }
    if found > expected {
        return Err(ModelError::TrailingBytes {
            extra: found - expected,
            expected,
        });
    }
    Ok(metadata)
}

/// The key prefix a checkpoint uses: `transformer.` (GPT2LMHeadModel) or none (GPT2Model).
pub(crate) fn prefix(metadata: &Metadata) -> &'static str {
    if metadata.tensors().keys().any(|n| n.starts_with("transformer.")) {
        "transformer."
    } else {
        ""
    }
}

/// Checks, from the header alone, that the checkpoint holds every tensor of `table` with the
/// shape `config` implies and a float dtype.
pub(crate) fn check_tensors(
    metadata: &Metadata,
    config: &Gpt2Config,
    table: &[HubTensor],
) -> Result<(), ModelError> {
    let prefix = prefix(metadata);
    let check = |tensor: &HubTensor| {
        let key = format!("{prefix}{}", tensor.name);
        let info = metadata
            .info(&key)
            .ok_or_else(|| ModelError::MissingTensor(tensor.name.clone()))?;
        check_info(&key, info, &tensor.shape).map(|_| ())
    };
    // The embeddings first (the table's first two entries): their shapes name the vocabulary
    // size, context and width at fault.
    let (embeddings, rest) = table.split_at(2);
    embeddings.iter().try_for_each(check)?;
    // Then the depth and MLP width, as a whole: their parameters must fit in the file at the
    // smallest dtype GPT-2 weights come in (F16, BF16: 2 bytes).
    let (parameters, data_len) = (config.parameters(), metadata.data_len() as u64);
    if parameters.saturating_mul(2) > data_len {
        return Err(ModelError::ConfigMismatch { parameters, data_len });
    }
    rest.iter().try_for_each(check)
}

pub(crate) fn check_info(key: &str, info: &TensorInfo, shape: &[usize]) -> Result<DType, ModelError> {
    if info.shape != shape {
        return Err(ModelError::Shape {
            name: key.to_string(),
            found: info.shape.clone(),
            expected: shape.to_vec(),
        });
    }
    match info.dtype {
        Dtype::F32 => Ok(DType::F32),
        Dtype::F16 => Ok(DType::F16),
        Dtype::BF16 => Ok(DType::BF16),
        other => Err(ModelError::Dtype {
            name: key.to_string(),
            found: format!("{other:?}"),
        }),
    }
}

/// Where a checkpoint's tensor data is: after the header, exactly the length the header
/// describes.
enum Data<'a> {
    /// In memory (the page's download, a test's bytes).
    Bytes(&'a [u8]),
    /// In an open file, from byte `start`, read one tensor at a time.
    #[cfg(not(target_family = "wasm"))]
    File {
        file: std::cell::RefCell<std::fs::File>,
        path: &'a std::path::Path,
        start: u64,
    },
}

impl Data<'_> {
    /// A copy of bytes `start..end` of the data.
    fn range(&self, key: &str, start: usize, end: usize) -> Result<Vec<u8>, ModelError> {
        match self {
            Data::Bytes(data) => {
                data.get(start..end)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| ModelError::Truncated {
                        tensor: key.to_string(),
                        expected: end as u64,
                        found: data.len() as u64,
                    })
            }
            #[cfg(not(target_family = "wasm"))]
            Data::File {
                file,
                path,
                start: at,
            } => crate::files::read_range(&mut file.borrow_mut(), path, at + start as u64, at + end as u64),
        }
    }
}

/// A safetensors file whose header was parsed (once) and checked against its size, and the
/// key prefix it uses.
struct Checkpoint<'a> {
    data: Data<'a>,
    metadata: Metadata,
    prefix: &'static str,
}

impl<'a> Checkpoint<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let len = bytes.len() as u64;
        let n = header_length(bytes, len)?;
        let metadata = parse_header(&bytes[..8 + n], len)?;
        Ok(Checkpoint::new(Data::Bytes(&bytes[8 + n..]), metadata))
    }

    /// The tensor data `data`, which `metadata` ([`parse_header`]'s) describes.
    fn new(data: Data<'a>, metadata: Metadata) -> Self {
        let prefix = prefix(&metadata);
        Checkpoint {
            data,
            metadata,
            prefix,
        }
    }

    /// The shape of tensor `name` (un-prefixed Hub key).
    fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        let key = format!("{}{name}", self.prefix);
        let info = self
            .metadata
            .info(&key)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        Ok(info.shape.clone())
    }

    /// The tensor of `entry` as f32 host data, checked against its shape.
    fn host(&self, entry: &HubTensor) -> Result<TensorData, ModelError> {
        let key = format!("{}{}", self.prefix, entry.name);
        let info = self
            .metadata
            .info(&key)
            .ok_or_else(|| ModelError::MissingTensor(entry.name.clone()))?;
        let dtype = check_info(&key, info, &entry.shape)?;
        // The header's offsets are contiguous and end at the data's length (`parse_header`).
        let (start, end) = info.data_offsets;
        let bytes = self.data.range(&key, start, end)?;
        Ok(host_f32(bytes, entry.shape.clone(), dtype))
    }
}
