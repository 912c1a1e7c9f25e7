//! Every way loading or running a model can fail, each with a message a user can act on.

/// An error from loading or running GPT-2. Messages name the file, tensor, hook or limit at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("config.json: {0}")]
    Config(String),
    #[error(
        "model.safetensors is not a safetensors file ({0}); check that the download finished and that the file is a model, not an HTML error page"
    )]
    NotSafetensors(String),
    #[error(
        "model.safetensors is truncated: its header describes {expected} bytes of tensor data but the file has {found}; tensor `{tensor}` is the first one cut off. Download the file again"
    )]
    Truncated {
        tensor: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "model.safetensors has {extra} bytes after its tensor data (its header describes {expected} bytes); the file was altered or is not one checkpoint. Download the file again"
    )]
    TrailingBytes { extra: u64, expected: u64 },
    #[error(
        "config.json describes a GPT-2 of {parameters} parameters, more than model.safetensors can hold with its {data_len} bytes of tensor data (2 bytes a parameter at least); the config and the weights are not the same model"
    )]
    ConfigMismatch { parameters: u64, data_len: u64 },
    #[error(
        "model.safetensors has no tensor `{0}` (looked with and without the `transformer.` prefix); is this a GPT-2 checkpoint?"
    )]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?} but config.json implies {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {found}; GPT-2 weights must be F32, F16 or BF16")]
    Dtype { name: String, found: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{file}: {reason}")]
    TokenizerFile { file: &'static str, reason: String },
    #[error(
        "{0} has neither tokenizer.json nor vocab.json + merges.txt; copy the model's tokenizer files into the folder"
    )]
    NoTokenizer(String),
    #[error(
        "the tokenizer has {tokenizer} token ids but the model's vocabulary only {model} rows (vocab_size in config.json); they are not from the same model"
    )]
    VocabMismatch { tokenizer: usize, model: usize },
    #[error("the prompt has {bytes} bytes, more than the limit of {limit} (MAX_PROMPT_BYTES)")]
    PromptTooLong { bytes: usize, limit: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {tokens} tokens but the model's context holds {n_ctx}")]
    ContextOverflow { tokens: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("the prompts of one batch must have equal lengths, got {0:?}")]
    RaggedBatch(Vec<usize>),
    #[error(
        "`{0}` is not a hook point (expected a TransformerLens name such as `blocks.0.hook_resid_pre` or `blocks.3.attn.hook_z`)"
    )]
    UnknownHook(String),
    #[error("layer {layer} is out of range: the model has {n_layer} layers (0..{n_layer})")]
    LayerOutOfRange { layer: usize, n_layer: usize },
    #[error("head {head} is out of range: the model has {n_head} heads per layer (0..{n_head})")]
    HeadOutOfRange { head: usize, n_head: usize },
    #[error("position {pos} is out of range: the prompt has {len} positions")]
    PositionOutOfRange { pos: usize, len: usize },
    #[error("intervention on `{hook}`: {reason}")]
    Intervention { hook: String, reason: String },
    #[error("hook `{0}` was not recorded in this cache; ask for it when running with a cache")]
    NotCached(String),
    #[error("backend: {0}")]
    Backend(String),
    #[error("{path} is {kind}; a model folder must hold regular files (a link to one is fine)")]
    NotAFile { path: String, kind: &'static str },
    #[error("{path} has {size} bytes, more than the limit of {limit} ({limit_name})")]
    TooLarge {
        path: String,
        size: u64,
        limit: usize,
        limit_name: &'static str,
    },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}
