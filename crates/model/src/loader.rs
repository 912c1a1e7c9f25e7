//! Loads a Hugging Face Hub GPT-2 checkpoint (`config.json` + `model.safetensors`) into
//! [`Gpt2`], through the `safetensors` crate.
//!
//! The Hub layout: keys with or without a `transformer.` prefix, Conv1D weights stored
//! `[in, out]` (already the layout of burn's `Linear`), no `lm_head` (tied to `wte`), and
//! `attn.bias` / `attn.masked_bias` causal-mask buffers that are not parameters and are ignored.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::DType;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::{SafeTensorError, SafeTensors};

use crate::gpt2::{Attention, Block, Mlp, SplitEmbedding};
use crate::{Gpt2, Gpt2Config, ModelError};

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
    let file = Checkpoint::parse(safetensors)?;
    let (d, d_mlp, vocab) = (config.n_embd, config.d_mlp(), config.vocab_size);
    let eps = config.layer_norm_epsilon;

    // Split on the host: the whole matrix may not fit in one device buffer.
    let wte: Vec<f32> = file
        .host("wte.weight", [vocab, d])?
        .try_into_vec::<f32>()
        .expect("f32 after conversion");
    let rows = match max_binding_bytes {
        Some(limit) => ((limit / (4 * d as u64)) as usize).clamp(1, vocab),
        None => vocab,
    };
    let chunks = (0..vocab)
        .step_by(rows)
        .map(|start| {
            let n = rows.min(vocab - start);
            let block = wte[start * d..(start + n) * d].to_vec();
            Param::from_tensor(Tensor::from_data(TensorData::new(block, [n, d]), device))
        })
        .collect();
    let wpe = file.tensor("wpe.weight", [config.n_positions, d], device)?;

    let blocks = (0..config.n_layer)
        .map(|l| {
            let h = format!("h.{l}");
            Ok(Block {
                ln_1: file.layer_norm(&format!("{h}.ln_1"), d, eps, device)?,
                attn: Attention {
                    c_attn: file.linear(&format!("{h}.attn.c_attn"), d, 3 * d, device)?,
                    c_proj: file.linear(&format!("{h}.attn.c_proj"), d, d, device)?,
                    n_head: config.n_head,
                },
                ln_2: file.layer_norm(&format!("{h}.ln_2"), d, eps, device)?,
                mlp: Mlp {
                    c_fc: file.linear(&format!("{h}.mlp.c_fc"), d, d_mlp, device)?,
                    c_proj: file.linear(&format!("{h}.mlp.c_proj"), d_mlp, d, device)?,
                },
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let ln_f = file.layer_norm("ln_f", d, eps, device)?;

    Ok(Gpt2 {
        wte: SplitEmbedding { chunks },
        wpe: Param::from_tensor(wpe),
        blocks,
        ln_f,
        config,
    })
}

/// GPT-2's shape read from a checkpoint's tensors, for a `model.safetensors` that came without
/// its `config.json`. Heads are taken to be 64 wide, as in every OpenAI GPT-2.
pub fn infer_config(safetensors: &[u8]) -> Result<Gpt2Config, ModelError> {
    let file = Checkpoint::parse(safetensors)?;
    let wte = file.shape("wte.weight")?;
    let wpe = file.shape("wpe.weight")?;
    let n_layer = (0..)
        .take_while(|l| file.shape(&format!("h.{l}.ln_1.weight")).is_ok())
        .count();
    let d = wte[1];
    if n_layer == 0 || d % 64 != 0 {
        return Err(ModelError::Config(format!(
            "cannot tell this checkpoint's shape without config.json ({n_layer} layers, width {d})"
        )));
    }
    let d_mlp = file.shape("h.0.mlp.c_fc.weight")?[1];
    let config = Gpt2Config::new(n_layer, d / 64, d, wpe[0])
        .with_vocab_size(wte[0])
        .with_n_inner((d_mlp != 4 * d).then_some(d_mlp));
    config.validate()?;
    Ok(config)
}

/// Reads `config.json` and `model.safetensors` from a Hub-layout folder.
#[cfg(not(target_family = "wasm"))]
pub fn load_gpt2_dir(
    dir: &std::path::Path,
    device: &Device,
    max_binding_bytes: Option<u64>,
) -> Result<Gpt2, ModelError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let config = String::from_utf8(read("config.json")?)
        .map_err(|_| ModelError::Config("config.json is not UTF-8 text".into()))?;
    load_gpt2(&config, &read("model.safetensors")?, device, max_binding_bytes)
}

/// A parsed safetensors file and the key prefix it uses.
struct Checkpoint<'a> {
    file: SafeTensors<'a>,
    prefix: &'static str,
}

impl<'a> Checkpoint<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| match e {
            SafeTensorError::MetadataIncompleteBuffer => truncation(bytes),
            e => ModelError::NotSafetensors(e.to_string()),
        })?;
        let prefix = if file.names().iter().any(|n| n.starts_with("transformer.")) {
            "transformer."
        } else {
            ""
        };
        Ok(Checkpoint { file, prefix })
    }

    /// The shape of tensor `name` (un-prefixed Hub key).
    fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        let key = format!("{}{name}", self.prefix);
        let view = self
            .file
            .tensor(&key)
            .map_err(|_| ModelError::MissingTensor(name.to_string()))?;
        Ok(view.shape().to_vec())
    }

    /// The tensor `name` (un-prefixed Hub key) on `device`, checked against the expected shape.
    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        Ok(Tensor::from_data(self.host(name, shape)?, device))
    }

    /// The tensor `name` as f32 host data, checked against the expected shape.
    fn host<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<TensorData, ModelError> {
        let key = format!("{}{name}", self.prefix);
        let view = self
            .file
            .tensor(&key)
            .map_err(|_| ModelError::MissingTensor(name.to_string()))?;
        if view.shape() != shape {
            return Err(ModelError::Shape {
                name: key,
                found: view.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(ModelError::Dtype {
                    name: key,
                    found: format!("{other:?}"),
                });
            }
        };
        Ok(TensorData::from_bytes_vec(view.data().to_vec(), shape, dtype).convert::<f32>())
    }

    fn linear(&self, name: &str, d_in: usize, d_out: usize, device: &Device) -> Result<Linear, ModelError> {
        Ok(Linear {
            weight: Param::from_tensor(self.tensor(&format!("{name}.weight"), [d_in, d_out], device)?),
            bias: Some(Param::from_tensor(self.tensor(
                &format!("{name}.bias"),
                [d_out],
                device,
            )?)),
        })
    }

    fn layer_norm(&self, name: &str, d: usize, eps: f64, device: &Device) -> Result<LayerNorm, ModelError> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{name}.weight"), [d], device)?);
        norm.beta = Some(Param::from_tensor(self.tensor(
            &format!("{name}.bias"),
            [d],
            device,
        )?));
        Ok(norm)
    }
}

/// Names the first tensor that a truncated file cuts off.
fn truncation(bytes: &[u8]) -> ModelError {
    let header = bytes
        .get(..8)
        .map(|n| u64::from_le_bytes(n.try_into().expect("8 bytes")) as usize)
        .and_then(|n| bytes.get(8..8 + n));
    let Some(metadata) = header.and_then(|h| serde_json::from_slice::<Metadata>(h).ok()) else {
        return ModelError::NotSafetensors("the header is cut off".into());
    };
    let found = bytes.len() - 8 - header.map_or(0, <[u8]>::len);
    let tensors = metadata.tensors();
    let first_cut = metadata
        .offset_keys()
        .into_iter()
        .find(|name| tensors[name].data_offsets.1 > found)
        .unwrap_or_default();
    ModelError::Truncated {
        tensor: first_cut,
        expected: metadata.data_len(),
        found,
    }
}
