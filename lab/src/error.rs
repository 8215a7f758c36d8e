//! The one error type of `analog-lab`: what went wrong, and with which file.

use std::path::PathBuf;

/// Everything that can go wrong while building the corpus, training, measuring or publishing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not what the lab wrote there (delete it to rebuild): {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("cannot serialise {what}: {source}")]
    Serialise { what: &'static str, source: serde_json::Error },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("the story grammar: {0}")]
    Grammar(String),
    #[error("the tokenizer could not be trained: {0}")]
    Tokenizer(String),
    #[error("cannot write safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("the optimizer state in {}: {reason}", path.display())]
    Optimizer { path: PathBuf, reason: String },
    #[error("{} has no {what}; run the step that writes it first", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("pair set `{dataset}`: `{target}` and `{counter}` start with the same token after {prompt:?}; the probe would measure nothing")]
    SameProbeToken { dataset: String, target: String, counter: String, prompt: String },
    #[error("the study could not be measured: {0}")]
    Study(&'static str),
    #[error("the study's report is invalid:\n{0}")]
    Report(#[from] analog_core::report::ValidationErrors),
    #[error(transparent)]
    Core(#[from] analog_core::Error),
}

impl From<analog_core::steering::PairError> for Error {
    fn from(e: analog_core::steering::PairError) -> Self {
        Self::Core(e.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
