//! The one error type of `analog-core`: structured, and worded for the person who has to act on it.

use std::fmt;

/// A tensor shape, printed as `[a, b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config.json is not JSON: {0}")]
    ConfigNotJson(String),
    #[error("config.json does not describe a `{model_type}` model: {reason}")]
    ConfigJson { model_type: String, reason: String },
    #[error("config.json: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(
        "unsupported model_type `{0}`: analog supports llama, qwen2, qwen3, gemma3_text, gpt2 and gpt_neox (Llama/SmolLM2, Qwen2, Qwen3, Gemma 3, GPT-2, Pythia; in GGUF files llama, qwen2, qwen3 and gemma3)"
    )]
    UnsupportedArchitecture(String),
    #[error("`{file}` is not a valid safetensors file: {reason}")]
    Safetensors { file: String, reason: String },
    #[error("model.safetensors.index.json: {0}")]
    ShardIndex(String),
    #[error("tensor `{name}` is missing (expected shape {expected})")]
    MissingTensor { name: String, expected: Shape },
    #[error("tensor `{name}` has shape {found}, but the config implies {expected}")]
    ShapeMismatch { name: String, expected: Shape, found: Shape },
    #[error("tensor `{name}` (shape {shape}) is not part of a `{architecture}` model")]
    UnexpectedTensor { name: String, shape: Shape, architecture: String },
    #[error("tensor `{name}` has dtype {dtype}; supported dtypes are F32, F16, BF16 and I8 with q8_0 scales")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor `{name}` contains NaN or infinite values")]
    NonFiniteWeights { name: String },
    #[error("tokenizer.json could not be loaded: {0}")]
    Tokenizer(String),
    #[error("the prompt is empty: it encodes to no tokens")]
    EmptyPrompt,
    #[error(
        "{needed} positions are needed ({prompt} prompt + {new} new tokens) but this model's context is {limit}; shorten the prompt or ask for fewer tokens"
    )]
    ContextTooLong { prompt: usize, new: usize, needed: usize, limit: usize },
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    #[error(
        "unknown hook point `{0}`; expected blocks.<layer>.hook_resid_pre|hook_attn_out|hook_resid_mid|hook_mlp_out|hook_resid_post or ln_final.hook_normalized"
    )]
    UnknownHook(String),
    #[error("hook `{hook}` names layer {layer}, but the model has {n_layers} layers (0..={last})", last = n_layers.saturating_sub(1))]
    HookLayerOutOfRange { hook: String, layer: usize, n_layers: usize },
    #[error("a vector for `{hook}` has {found} dimensions, but the model's d_model is {expected}")]
    VectorDimension { hook: String, expected: usize, found: usize },
    #[error("invalid steering vector: {0}")]
    InvalidVector(String),
    #[error("the vector for `{hook}` has NaN or infinite values; re-extract it or load another vector file")]
    NonFiniteVector { hook: String },
    #[error(
        "`{continuation}` adds no token after {prompt:?}, so its probability cannot be measured; pick a target or counter text that begins a new word (e.g. with a leading space)"
    )]
    NoContinuationToken { continuation: String, prompt: String },
    #[error("this vector does not fit the model: {0}")]
    VectorMismatch(String),
    #[error(transparent)]
    Pairs(#[from] crate::steering::PairError),
    #[error("transfer report: {0}")]
    Report(String),
    #[error("invalid sampling settings: {0}")]
    Sampling(String),
    #[error("GGUF: {0}")]
    Gguf(String),
    #[error("tensor `{name}` has ggml type {ty}; supported types are F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K")]
    UnsupportedGgmlType { name: String, ty: String },
    #[error("the GGUF file's tokenizer (tokenizer.ggml.*) could not be built: {0}")]
    GgufTokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("the {backend} backend failed: {reason}")]
    Backend { backend: &'static str, reason: String },
    #[error("stopped before it finished")]
    Cancelled,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
