//! The GPT-2 family on the Hugging Face Hub: OpenAI's four checkpoints, their shapes, and the
//! size of their `model.safetensors`. `patchbay init` makes checkpoints of these shapes and the
//! page's Model menu lists them; both read this table.

use crate::Gpt2Config;

/// The context length of every GPT-2.
const N_POSITIONS: usize = 1024;

/// One of OpenAI's GPT-2 checkpoints on the Hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubModel {
    /// The Hub repository, as a spec's `{"hub": ...}` names it.
    pub id: &'static str,
    /// The short name `patchbay init --shape` takes (`gpt2-medium`).
    pub name: &'static str,
    /// In words, for the page (`GPT-2 medium`).
    pub label: &'static str,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
}

/// GPT-2 small, medium, large and XL, as their Hub `config.json` files give them.
pub const GPT2_FAMILY: [HubModel; 4] = [
    HubModel {
        id: "openai-community/gpt2",
        name: "gpt2-small",
        label: "GPT-2 small",
        n_layer: 12,
        n_head: 12,
        n_embd: 768,
    },
    HubModel {
        id: "openai-community/gpt2-medium",
        name: "gpt2-medium",
        label: "GPT-2 medium",
        n_layer: 24,
        n_head: 16,
        n_embd: 1024,
    },
    HubModel {
        id: "openai-community/gpt2-large",
        name: "gpt2-large",
        label: "GPT-2 large",
        n_layer: 36,
        n_head: 20,
        n_embd: 1280,
    },
    HubModel {
        id: "openai-community/gpt2-xl",
        name: "gpt2-xl",
        label: "GPT-2 XL",
        n_layer: 48,
        n_head: 25,
        n_embd: 1600,
    },
];

impl HubModel {
    /// The family member with Hub id `id`.
    pub fn by_id(id: &str) -> Option<&'static HubModel> {
        GPT2_FAMILY.iter().find(|m| m.id == id)
    }

    /// Its shape, with the Hub's defaults for everything else.
    pub fn config(&self) -> Gpt2Config {
        Gpt2Config::new(self.n_layer, self.n_head, self.n_embd, N_POSITIONS)
    }

    /// Where its files are: `{base}config.json`, `{base}model.safetensors`, ...
    pub fn base_url(&self) -> String {
        format!("https://huggingface.co/{}/resolve/main/", self.id)
    }

    /// The size of its `model.safetensors` on the Hub, for when the Hub's headers cannot be
    /// read: the float32 parameters and the causal-mask buffers the Hub's files also carry
    /// (`h.{l}.attn.bias`, `n_positions²` floats per layer), without the header (14 KB for
    /// small, whose file has 548,105,171 bytes).
    pub fn weights_bytes(&self) -> u64 {
        let config = self.config();
        let masks = (config.n_layer * config.n_positions * config.n_positions) as u64;
        4 * (config.parameters() + masks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_has_the_hubs_parameter_counts_and_file_sizes() {
        // transformers' num_parameters() of each checkpoint.
        let parameters = GPT2_FAMILY.map(|m| m.config().parameters());
        assert_eq!(parameters, [124_439_808, 354_823_168, 774_030_080, 1_557_611_200]);
        for m in GPT2_FAMILY {
            m.config().validate().unwrap();
            assert_eq!(HubModel::by_id(m.id), Some(&m));
        }
        // The Hub's model.safetensors of GPT-2 small: 548,105,171 bytes, 14,291 of them its
        // length and header.
        let small = GPT2_FAMILY[0].weights_bytes();
        assert_eq!(548_105_171 - small, 14_291);
        assert_eq!(
            GPT2_FAMILY[1].base_url(),
            "https://huggingface.co/openai-community/gpt2-medium/resolve/main/"
        );
        assert_eq!(HubModel::by_id("openai-community/gpt2-xxl"), None);
    }
}
