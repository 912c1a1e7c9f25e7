//! GPT-2's shape, read from a Hugging Face Hub `config.json`.

use burn::config::Config;
use serde::Deserialize;

use crate::ModelError;

/// The fields of a Hub GPT-2 `config.json` that decide the architecture. Other fields of the
/// file (dropout rates, task heads, ...) are accepted and ignored.
#[derive(Config, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream (d_model).
    pub n_embd: usize,
    /// Context length: the number of learned positions.
    pub n_positions: usize,
    /// Vocabulary size.
    #[config(default = 50257)]
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_epsilon: f64,
    /// MLP width; `null` in the Hub file means 4 × n_embd.
    #[config(default = "None")]
    pub n_inner: Option<usize>,
    /// Must be GELU with the tanh approximation, as in every GPT-2 checkpoint.
    #[config(default = "String::from(\"gelu_new\")")]
    pub activation_function: String,
}

/// `config.json` as the Hub writes it: optional fields take transformers' `GPT2Config` defaults.
#[derive(Deserialize)]
struct HubConfig {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    #[serde(default = "default_vocab_size")]
    vocab_size: usize,
    #[serde(default = "default_epsilon")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    activation_function: String,
}

fn default_vocab_size() -> usize {
    50257
}

fn default_epsilon() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    /// Parses and checks a Hub `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let hub: HubConfig = serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        let config = Gpt2Config {
            n_layer: hub.n_layer,
            n_head: hub.n_head,
            n_embd: hub.n_embd,
            n_positions: hub.n_positions,
            vocab_size: hub.vocab_size,
            layer_norm_epsilon: hub.layer_norm_epsilon,
            n_inner: hub.n_inner,
            activation_function: hub.activation_function,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the fields describe a GPT-2 this crate can run.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.n_layer == 0 || self.n_head == 0 || self.n_embd == 0 || self.n_positions == 0 {
            return bad("n_layer, n_head, n_embd and n_positions must all be positive".into());
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
        ) {
            return bad(format!(
                "activation_function `{}` is not GELU with the tanh approximation (gelu_new)",
                self.activation_function
            ));
        }
        Ok(())
    }

    /// This shape as a Hub `config.json`.
    pub fn to_hub_json(&self) -> String {
        serde_json::json!({
            "model_type": "gpt2",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "n_inner": self.n_inner,
            "activation_function": self.activation_function,
        })
        .to_string()
    }

    /// Width of each attention head.
    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the MLP's hidden layer.
    pub fn d_mlp(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hub_file_and_ignores_other_fields() {
        let text = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
            "n_head": 12, "n_inner": null, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "vocab_size": 50257}"#;
        let config = Gpt2Config::from_json(text).unwrap();
        assert_eq!(config, Gpt2Config::new(12, 12, 768, 1024));
        assert_eq!((config.d_head(), config.d_mlp()), (64, 3072));
        assert_eq!(Gpt2Config::from_json(&config.to_hub_json()).unwrap(), config);
    }

    #[test]
    fn rejects_what_is_not_gpt2() {
        let err = Gpt2Config::from_json(r#"{"n_layer": 2, "n_head": 3, "n_embd": 16, "n_positions": 8}"#)
            .unwrap_err();
        assert!(err.to_string().contains("multiple of n_head"), "{err}");
        let err = Gpt2Config::from_json(
            r#"{"n_layer": 2, "n_head": 2, "n_embd": 16, "n_positions": 8, "activation_function": "relu"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("relu"), "{err}");
        let err = Gpt2Config::from_json(r#"{"n_head": 2}"#).unwrap_err();
        assert!(err.to_string().contains("n_layer"), "{err}");
    }
}
