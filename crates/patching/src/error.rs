//! Every way an experiment can be wrong, each with a message that names the input at fault.

use patchbay_model::ModelError;

/// An error in an experiment's inputs or its run.
#[derive(Debug, thiserror::Error)]
pub enum PatchingError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the spec is malformed: {0}")]
    Spec(String),
    #[error("spec version {found} is not supported: this Patchbay reads versions {supported}")]
    Version { found: u64, supported: String },
    #[error(
        "prompt {prompt}: the clean and corrupted prompts must have the same number of tokens for symmetric token replacement, but the clean one has {clean} ({clean_tokens}) and the corrupted one {corrupted} ({corrupted_tokens})"
    )]
    UnequalLengths {
        prompt: usize,
        clean: usize,
        corrupted: usize,
        clean_tokens: String,
        corrupted_tokens: String,
    },
    #[error("prompt {prompt}: the clean and corrupted prompts are identical, so there is nothing to patch")]
    IdenticalPrompts { prompt: usize },
    #[error("prompt {prompt}: the {which} {text:?} must be a single token: {reason}")]
    NotOneToken {
        prompt: usize,
        which: &'static str,
        text: String,
        reason: String,
    },
    #[error(
        "prompt {prompt}: the answer and the counter-answer are the same token ({text:?}); logit difference needs two different tokens"
    )]
    SameAnswers { prompt: usize, text: String },
    #[error(
        "prompt {prompt}: {text:?} is in both the answer set R and the counter set R'; probability difference needs disjoint sets"
    )]
    OverlappingSets { prompt: usize, text: String },
    #[error("prompt {prompt}: the {0} metric needs a counter-answer r'", .metric)]
    MissingCounterAnswer { prompt: usize, metric: &'static str },
    #[error("a window of {size} layers is wider than the model's {n_layer} layers")]
    WindowTooWide { size: usize, n_layer: usize },
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Corruption(String),
    #[error("the experiment has no prompts")]
    NoPrompts,
    #[error("the run was cancelled")]
    Cancelled,
    #[error("a worker sharing the run failed: {0}")]
    Peer(String),
}

impl PatchingError {
    /// The spec field the error is about, so that a form can show it next to that control:
    /// `prompt`, `corrupted`, `answer`, `counter_answer`, `corruption`, `target`, `window`,
    /// `spec`, or `run` for errors of the run itself.
    pub fn field(&self) -> &'static str {
        match self {
            PatchingError::UnequalLengths { .. } | PatchingError::IdenticalPrompts { .. } => "corrupted",
            PatchingError::NotOneToken { which: "answer", .. } => "answer",
            PatchingError::NotOneToken { .. }
            | PatchingError::SameAnswers { .. }
            | PatchingError::OverlappingSets { .. }
            | PatchingError::MissingCounterAnswer { .. } => "counter_answer",
            PatchingError::WindowTooWide { .. } => "window",
            PatchingError::Target(_) => "target",
            PatchingError::Corruption(_) => "corruption",
            PatchingError::NoPrompts => "prompt",
            PatchingError::Spec(_) | PatchingError::Version { .. } => "spec",
            PatchingError::Model(e) => match e {
                ModelError::EmptyPrompt | ModelError::ContextOverflow { .. } | ModelError::Tokenizer(_) => {
                    "prompt"
                }
                ModelError::PositionOutOfRange { .. } | ModelError::HeadOutOfRange { .. } => "target",
                ModelError::LayerOutOfRange { .. } => "target",
                _ => "run",
            },
            PatchingError::Cancelled | PatchingError::Peer(_) => "run",
        }
    }
}
