//! GPT-2's parameters as a Hugging Face Hub checkpoint names them: one table, walked by the
//! loader, the writer and the seeded initialisation alike.
//!
//! Each parameter of [`Gpt2`] appears once, under its Hub key (`wte.weight`,
//! `h.{l}.attn.c_attn.weight`, ... without the optional `transformer.` prefix), with the shape
//! its config implies (Conv1D weights `[in, out]`, the layout of burn's `Linear`) and the
//! [`Slot`] it fills. The order is the Hub's: embeddings, then each block's modules in forward
//! order, then the final LayerNorm.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;

use crate::gpt2::{Attention, Block, Mlp, SplitEmbedding};
use crate::{Gpt2, Gpt2Config, ModelError};

/// The modules of a block that hold parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BlockPart {
    Ln1,
    CAttn,
    AttnProj,
    Ln2,
    CFc,
    MlpProj,
}

impl BlockPart {
    /// The residual projections, which GPT-2 initialises with a smaller spread.
    pub(crate) fn is_residual_projection(self) -> bool {
        matches!(self, BlockPart::AttnProj | BlockPart::MlpProj)
    }
}

/// A module's weight (a LayerNorm's gain) or its bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    Weight,
    Bias,
}

/// Where a parameter lives in [`Gpt2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The token embedding, all of its blocks as one `[vocab, d_model]` matrix.
    Wte,
    Wpe,
    Block(usize, BlockPart, Role),
    LnF(Role),
}

impl Slot {
    /// Whether this is a LayerNorm gain, which starts at one.
    pub(crate) fn is_norm_gain(self) -> bool {
        matches!(
            self,
            Slot::LnF(Role::Weight) | Slot::Block(_, BlockPart::Ln1 | BlockPart::Ln2, Role::Weight)
        )
    }
}

/// One parameter of GPT-2 in a Hub checkpoint.
pub(crate) struct HubTensor {
    /// The key, without the `transformer.` prefix some checkpoints add.
    pub name: String,
    /// The shape the config implies.
    pub shape: Vec<usize>,
    pub slot: Slot,
}

/// Every parameter of a GPT-2 of shape `config`, in the Hub's order.
pub(crate) fn hub_tensors(config: &Gpt2Config) -> Vec<HubTensor> {
    let (d, d_mlp) = (config.n_embd, config.d_mlp());
    let entry = |name: String, shape: Vec<usize>, slot| HubTensor { name, shape, slot };
    let mut table = vec![
        entry("wte.weight".into(), vec![config.vocab_size, d], Slot::Wte),
        entry("wpe.weight".into(), vec![config.n_positions, d], Slot::Wpe),
    ];
    // (part, Hub module, input width (None for a LayerNorm), output width)
    let parts = [
        (BlockPart::Ln1, "ln_1", None, d),
        (BlockPart::CAttn, "attn.c_attn", Some(d), 3 * d),
        (BlockPart::AttnProj, "attn.c_proj", Some(d), d),
        (BlockPart::Ln2, "ln_2", None, d),
        (BlockPart::CFc, "mlp.c_fc", Some(d), d_mlp),
        (BlockPart::MlpProj, "mlp.c_proj", Some(d_mlp), d),
    ];
    for l in 0..config.n_layer {
        for (part, module, d_in, d_out) in parts {
            let weight = d_in.map_or(vec![d_out], |d_in| vec![d_in, d_out]);
            table.push(entry(
                format!("h.{l}.{module}.weight"),
                weight,
                Slot::Block(l, part, Role::Weight),
            ));
            table.push(entry(
                format!("h.{l}.{module}.bias"),
                vec![d_out],
                Slot::Block(l, part, Role::Bias),
            ));
        }
    }
    table.push(entry("ln_f.weight".into(), vec![d], Slot::LnF(Role::Weight)));
    table.push(entry("ln_f.bias".into(), vec![d], Slot::LnF(Role::Bias)));
    table
}

/// Builds a GPT-2 of shape `config` on `device` from the host values `take` gives for each
/// slot (the table's shape). The token embedding is split into blocks of `rows_per_block`
/// vocabulary rows.
pub(crate) fn assemble(
    config: &Gpt2Config,
    device: &Device,
    rows_per_block: usize,
    take: impl FnMut(Slot) -> Result<TensorData, ModelError>,
) -> Result<Gpt2, ModelError> {
    let mut parts = Parts { take, device };
    let d = config.n_embd;
    let wte = (parts.take)(Slot::Wte)?;
    let chunks = if rows_per_block >= config.vocab_size {
        // One block: the host data becomes the tensor (on the CPU, without another copy).
        vec![Param::from_tensor(Tensor::from_data(wte, device))]
    } else {
        // Split on the host: the whole matrix may not fit in one device buffer.
        let wte = wte
            .try_into_vec_as::<f32>()
            .map_err(|e| ModelError::Backend(format!("wte.weight: {e:?}")))?;
        wte.chunks(rows_per_block * d)
            .map(|block| {
                let data = TensorData::new(block.to_vec(), [block.len() / d, d]);
                Param::from_tensor(Tensor::from_data(data, device))
            })
            .collect()
    };
    let wpe = parts.param(Slot::Wpe)?;
    let eps = config.layer_norm_epsilon;
    let blocks = (0..config.n_layer)
        .map(|l| {
            Ok(Block {
                ln_1: parts.norm(|role| Slot::Block(l, BlockPart::Ln1, role), eps)?,
                attn: Attention {
                    c_attn: parts.linear(l, BlockPart::CAttn)?,
                    c_proj: parts.linear(l, BlockPart::AttnProj)?,
                    n_head: config.n_head,
                },
                ln_2: parts.norm(|role| Slot::Block(l, BlockPart::Ln2, role), eps)?,
                mlp: Mlp {
                    c_fc: parts.linear(l, BlockPart::CFc)?,
                    c_proj: parts.linear(l, BlockPart::MlpProj)?,
                },
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let ln_f = parts.norm(Slot::LnF, eps)?;
    Ok(Gpt2 {
        wte: SplitEmbedding { chunks },
        wpe,
        blocks,
        ln_f,
        config: config.clone(),
    })
}

/// The value of the parameter in `slot` on the host, as stored (`None`: the module has no
/// bias). The token embedding's blocks come back as one matrix.
pub(crate) fn param_data(model: &Gpt2, slot: Slot) -> Option<TensorData> {
    let linear = |linear: &Linear, role| match role {
        Role::Weight => Some(linear.weight.val().into_data()),
        Role::Bias => linear.bias.as_ref().map(|b| b.val().into_data()),
    };
    let norm = |norm: &LayerNorm, role| match role {
        Role::Weight => Some(norm.gamma.val().into_data()),
        Role::Bias => norm.beta.as_ref().map(|b| b.val().into_data()),
    };
    match slot {
        Slot::Wte => {
            let mut rows = 0;
            let mut values = Vec::new();
            for chunk in &model.wte.chunks {
                let data = chunk.val().into_data();
                rows += data.shape()[0];
                values.extend(data.try_into_vec_as::<f32>().ok()?);
            }
            Some(TensorData::new(values, [rows, model.config.n_embd]))
        }
        Slot::Wpe => Some(model.wpe.val().into_data()),
        Slot::LnF(role) => norm(&model.ln_f, role),
        Slot::Block(l, part, role) => {
            let block = model.blocks.get(l)?;
            match part {
                BlockPart::Ln1 => norm(&block.ln_1, role),
                BlockPart::CAttn => linear(&block.attn.c_attn, role),
                BlockPart::AttnProj => linear(&block.attn.c_proj, role),
                BlockPart::Ln2 => norm(&block.ln_2, role),
                BlockPart::CFc => linear(&block.mlp.c_fc, role),
                BlockPart::MlpProj => linear(&block.mlp.c_proj, role),
            }
        }
    }
}

struct Parts<'a, F> {
    take: F,
    device: &'a Device,
}

impl<F: FnMut(Slot) -> Result<TensorData, ModelError>> Parts<'_, F> {
    fn param<const D: usize>(&mut self, slot: Slot) -> Result<Param<Tensor<D>>, ModelError> {
        Ok(Param::from_tensor(Tensor::from_data(
            (self.take)(slot)?,
            self.device,
        )))
    }

    fn linear(&mut self, layer: usize, part: BlockPart) -> Result<Linear, ModelError> {
        Ok(Linear {
            weight: self.param(Slot::Block(layer, part, Role::Weight))?,
            bias: Some(self.param(Slot::Block(layer, part, Role::Bias))?),
        })
    }

    /// A LayerNorm whose gain and bias are in `slot(Weight)` and `slot(Bias)`.
    fn norm(&mut self, slot: impl Fn(Role) -> Slot, eps: f64) -> Result<LayerNorm, ModelError> {
        let gamma: Param<Tensor<1>> = self.param(slot(Role::Weight))?;
        let mut norm = LayerNormConfig::new(gamma.dims()[0])
            .with_epsilon(eps)
            .init(self.device);
        norm.gamma = gamma;
        norm.beta = Some(self.param(slot(Role::Bias))?);
        Ok(norm)
    }
}
