//! Model configuration: serde mirrors of each family's HF `config.json`, and the one validated
//! [`ModelConfig`] the forward pass reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The model families analog can run. Each maps its HF config and tensor names onto one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Llama 2/3, SmolLM2, TinyLlama: RMSNorm, RoPE, GQA, SwiGLU.
    Llama,
    /// Qwen2/2.5: Llama plus q/k/v biases.
    Qwen2,
    /// Qwen3 (dense): Llama plus an RMSNorm over each query and key head.
    Qwen3,
    /// Gemma 3 text models: RMSNorm `(1 + w)` before and after attention and MLP, q/k norms,
    /// embeddings scaled by √d, GeGLU, sliding-window layers with their own RoPE base.
    Gemma3,
    /// GPT-2: LayerNorm, learned positions, Conv1D weights, gelu_new, tied head.
    Gpt2,
    /// GPT-NeoX/Pythia: fused qkv, partial rotary, parallel residual.
    GptNeox,
}

impl Architecture {
    /// The HF `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3_text",
            Self::Gpt2 => "gpt2",
            Self::GptNeox => "gpt_neox",
        }
    }
}

/// Which normalisation the blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `x / rms(x) * weight`.
    Rms,
    /// `(x - mean) / std * weight + bias`.
    Layer,
}

/// Elementwise activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    /// Exact (erf) GELU, HF `gelu`.
    Gelu,
    /// Tanh-approximated GELU, HF `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    Relu,
}

impl Activation {
    fn from_hf(name: &str) -> Result<Self> {
        Ok(match name {
            "silu" | "swish" => Self::Silu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            other => {
                return Err(Error::InvalidConfig {
                    field: "hidden_act",
                    reason: format!("`{other}` is not a supported activation (silu, gelu, gelu_new, relu)"),
                });
            }
        })
    }
}

/// How rotary frequencies are rescaled for long context.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's frequency-band rescaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_context: usize },
    /// Each inverse frequency divided by its own factor (llama.cpp's `rope_freqs` tensor, which
    /// is how GGUF files carry Llama 3.1's rescaling).
    Factors { factors: Vec<f32> },
}

/// Rotary position embedding settings (HF's half-rotation layout).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rope {
    pub theta: f64,
    /// Leading dimensions of each head that rotate (`head_dim` unless partial rotary).
    pub rotary_dim: usize,
    pub scaling: Option<RopeScaling>,
}

/// How positions enter the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEncoding {
    Rotary(Rope),
    /// A learned `[context_length, d_model]` table added to the token embeddings.
    Learned,
}

/// Layers that attend only to the most recent positions (Gemma 3's local layers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlidingWindow {
    /// A query sees keys fewer than `size` positions back (itself included).
    pub size: usize,
    /// Which layers slide; the others attend to every position.
    pub layers: Vec<usize>,
    /// Rotary settings of the sliding layers (Gemma 3: base 10 000 where global layers use 10⁶).
    pub rope: Rope,
}

/// The validated configuration every architecture is reduced to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_mlp: usize,
    pub context_length: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub positions: PositionEncoding,
    /// SwiGLU-style `down(act(gate(x)) * up(x))` instead of `down(act(up(x)))`.
    pub gated_mlp: bool,
    pub activation: Activation,
    /// Attention and MLP both read the block input (GPT-NeoX `use_parallel_residual`).
    pub parallel_residual: bool,
    pub qkv_bias: bool,
    pub attn_out_bias: bool,
    pub mlp_bias: bool,
    pub tied_embeddings: bool,
    /// RMSNorm over each query and key head before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Norms on the attention and MLP outputs too, before they join the residual (Gemma 3).
    pub sandwich_norm: bool,
    /// Token embeddings are multiplied by this (Gemma: √d_model).
    pub embed_scale: Option<f32>,
    /// Attention logits scale; `None` is 1/√head_dim (Gemma 3: `query_pre_attn_scalar`^-½).
    pub attn_scale: Option<f64>,
    pub sliding_window: Option<SlidingWindow>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// Upper bounds that keep a hostile or mistyped config from asking for absurd allocations.
const MAX_DIM: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;
const MAX_LAYERS: usize = 1024;
const MAX_CONTEXT: usize = 1 << 24;
const MAX_MLP: usize = 1 << 20;

impl ModelConfig {
    /// Parses and validates an HF `config.json`.
    pub fn from_hf_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            model_type: Option<String>,
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::ConfigNotJson(e.to_string()))?;
        check_sizes(&value)?;
        let probe: Probe = serde_json::from_value(value).map_err(|e| Error::ConfigNotJson(e.to_string()))?;
        let model_type = probe.model_type.ok_or(Error::InvalidConfig { field: "model_type", reason: "is missing".into() })?;
        let parse_err = |e: serde_json::Error| Error::ConfigJson { model_type: model_type.clone(), reason: e.to_string() };
        let config = match model_type.as_str() {
            "llama" => serde_json::from_slice::<LlamaHfConfig>(bytes).map_err(parse_err)?.into_config(Architecture::Llama)?,
            "qwen2" => serde_json::from_slice::<LlamaHfConfig>(bytes).map_err(parse_err)?.into_config(Architecture::Qwen2)?,
            "qwen3" => serde_json::from_slice::<LlamaHfConfig>(bytes).map_err(parse_err)?.into_config(Architecture::Qwen3)?,
            "gemma3_text" => serde_json::from_slice::<Gemma3HfConfig>(bytes).map_err(parse_err)?.try_into()?,
            "gpt2" => serde_json::from_slice::<Gpt2HfConfig>(bytes).map_err(parse_err)?.try_into()?,
            "gpt_neox" => serde_json::from_slice::<NeoxHfConfig>(bytes).map_err(parse_err)?.try_into()?,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration of a GGUF model file: `general.architecture` and its `<arch>.*` keys,
    /// with each family's defaults for what GGUF does not store (as transformers' GGUF loader).
    pub fn from_gguf(file: &crate::gguf::Gguf<'_>) -> Result<Self> {
        let arch = file.architecture()?;
        let architecture = match arch {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "gemma3" => Architecture::Gemma3,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let need = |field: &'static str| -> Result<usize> {
            let value = file.uint(&key(field)).ok_or_else(|| Error::Gguf(format!("the metadata key `{}` is missing or not a number", key(field))))?;
            usize::try_from(value).map_err(|_| size_out_of_range(field, value, usize::MAX))
        };
        let d_model = need("embedding_length")?;
        let n_heads = need("attention.head_count")?;
        let n_layers = need("block_count")?;
        let head_dim = match file.uint(&key("attention.key_length")) {
            Some(d) => d as usize,
            None => exact_head_dim(d_model, n_heads)?,
        };
        let vocab_size = match file.uint(&key("vocab_size")) {
            Some(v) => v as usize,
            None => {
                file.array("tokenizer.ggml.tokens").map(<[_]>::len).or_else(|| file.tensor("token_embd.weight").map(|t| t.dims[t.dims.len() - 1])).unwrap_or(0)
            }
        };
        let gemma = architecture == Architecture::Gemma3;
        let theta = file.float(&key("rope.freq_base")).unwrap_or(match architecture {
            Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Gemma3 => 1_000_000.0,
            _ => 10_000.0,
        });
        let scaling = match (file.str(&key("rope.scaling.type")), file.tensor("rope_freqs.weight")) {
            (_, Some(freqs)) => Some(RopeScaling::Factors { factors: file.values(freqs)? }),
            (Some("linear"), None) => file.float(&key("rope.scaling.factor")).map(|factor| RopeScaling::Linear { factor }),
            (None | Some("none"), None) => None,
            (Some(other), None) => return Err(Error::InvalidConfig { field: "rope.scaling.type", reason: format!("`{other}` is not supported (linear)") }),
        };
        let rope = |theta: f64, scaling: Option<RopeScaling>| Rope { theta, rotary_dim: head_dim, scaling };
        let token = |k: &str| file.uint(k).and_then(|v| u32::try_from(v).ok());
        let config = ModelConfig {
            architecture,
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: file.uint(&key("attention.head_count_kv")).map_or(n_heads, |n| n as usize),
            head_dim,
            d_mlp: need("feed_forward_length")?,
            context_length: need("context_length")?,
            norm: NormKind::Rms,
            norm_eps: file.float(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            positions: PositionEncoding::Rotary(rope(theta, scaling)),
            gated_mlp: true,
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
            parallel_residual: false,
            qkv_bias: file.tensor("blk.0.attn_q.bias").is_some(),
            attn_out_bias: file.tensor("blk.0.attn_output.bias").is_some(),
            mlp_bias: false,
            tied_embeddings: file.tensor("output.weight").is_none(),
            qk_norm: matches!(architecture, Architecture::Qwen3 | Architecture::Gemma3),
            sandwich_norm: gemma,
            embed_scale: gemma.then(|| (d_model as f32).sqrt()),
            // GGUF stores no `query_pre_attn_scalar`; Gemma 3's is its head_dim (256) at every size
            // up to 4B, as transformers assumes.
            attn_scale: gemma.then(|| (gemma_head_dim() as f64).powf(-0.5)),
            sliding_window: match file.uint(&key("attention.sliding_window")) {
                // GGUF stores the window, not which layers use it: Gemma 3 slides on five of every six.
                Some(size) if gemma => Some(SlidingWindow {
                    size: size as usize,
                    layers: (0..n_layers).filter(|l| (l + 1) % gemma_pattern() != 0).collect(),
                    rope: rope(GEMMA3_LOCAL_THETA, None),
                }),
                _ => None,
            },
            bos_token_id: token("tokenizer.ggml.bos_token_id"),
            eos_token_ids: token("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        config.validate().map_err(|e| match e {
            Error::InvalidConfig { field, reason } => Error::Gguf(format!("`{field}` {reason}")),
            other => other,
        })?;
        Ok(config)
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    fn validate(&self) -> Result<()> {
        let bounded =
            |field: &'static str, value: usize, max: usize| if value == 0 || value > max { Err(size_out_of_range(field, value as u64, max)) } else { Ok(()) };
        bounded("vocab_size", self.vocab_size, MAX_VOCAB)?;
        bounded("hidden_size", self.d_model, MAX_DIM)?;
        bounded("num_hidden_layers", self.n_layers, MAX_LAYERS)?;
        bounded("num_attention_heads", self.n_heads, MAX_DIM)?;
        bounded("num_key_value_heads", self.n_kv_heads, MAX_DIM)?;
        bounded("head_dim", self.head_dim, MAX_DIM)?;
        bounded("intermediate_size", self.d_mlp, MAX_MLP)?;
        bounded("max_position_embeddings", self.context_length, MAX_CONTEXT)?;
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::InvalidConfig {
                field: "num_key_value_heads",
                reason: format!("({}) must divide num_attention_heads ({})", self.n_kv_heads, self.n_heads),
            });
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::InvalidConfig { field: "norm epsilon", reason: format!("is {}; expected a small positive number", self.norm_eps) });
        }
        if let PositionEncoding::Rotary(rope) = &self.positions {
            if rope.rotary_dim == 0 || rope.rotary_dim % 2 != 0 || rope.rotary_dim > self.head_dim {
                return Err(Error::InvalidConfig {
                    field: "rotary dimensions",
                    reason: format!("{} must be even and within head_dim {}", rope.rotary_dim, self.head_dim),
                });
            }
            if !(rope.theta.is_finite() && rope.theta > 1.0) {
                return Err(Error::InvalidConfig { field: "rope_theta", reason: format!("is {}; expected > 1", rope.theta) });
            }
        }
        if let Some(window) = &self.sliding_window {
            if window.size == 0 || window.layers.iter().any(|&l| l >= self.n_layers) {
                return Err(Error::InvalidConfig {
                    field: "sliding_window",
                    reason: format!("size {} and layers {:?} do not fit {} layers", window.size, window.layers, self.n_layers),
                });
            }
            if window.rope.rotary_dim != self.head_dim || !(window.rope.theta.is_finite() && window.rope.theta > 1.0) {
                return Err(Error::InvalidConfig { field: "rope_local_base_freq", reason: format!("is {}; expected > 1", window.rope.theta) });
            }
        }
        if let Some(bad) = self.eos_token_ids.iter().chain(self.bos_token_id.iter()).find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::InvalidConfig { field: "bos_token_id/eos_token_id", reason: format!("{bad} is outside the vocabulary") });
        }
        Ok(())
    }
}

/// `eos_token_id` may be one id or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

fn token_ids(ids: Option<TokenIds>) -> Vec<u32> {
    match ids {
        None => Vec::new(),
        Some(TokenIds::One(id)) => vec![id],
        Some(TokenIds::Many(ids)) => ids,
    }
}

fn size_out_of_range(field: &'static str, value: u64, max: usize) -> Error {
    Error::InvalidConfig { field, reason: format!("is {value}; expected 1..={max}") }
}

/// Bounds the size fields as written, before they become `usize`: on wasm32 a size beyond 2³²
/// would otherwise fail as "expected usize" without naming the field, natively it names it.
fn check_sizes(value: &serde_json::Value) -> Result<()> {
    const SIZES: [(&str, usize); 13] = [
        ("vocab_size", MAX_VOCAB),
        ("hidden_size", MAX_DIM),
        ("n_embd", MAX_DIM),
        ("num_hidden_layers", MAX_LAYERS),
        ("n_layer", MAX_LAYERS),
        ("num_attention_heads", MAX_DIM),
        ("n_head", MAX_DIM),
        ("num_key_value_heads", MAX_DIM),
        ("head_dim", MAX_DIM),
        ("intermediate_size", MAX_MLP),
        ("n_inner", MAX_MLP),
        ("max_position_embeddings", MAX_CONTEXT),
        ("n_positions", MAX_CONTEXT),
    ];
    for (field, max) in SIZES {
        if let Some(size) = value.get(field).and_then(serde_json::Value::as_u64)
            && size > max as u64
        {
            return Err(size_out_of_range(field, size, max));
        }
    }
    Ok(())
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
#[derive(Debug, Clone, Default, Deserialize)]
struct RopeParameters {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
    partial_rotary_factor: Option<f64>,
}

impl RopeParameters {
    fn scaling(&self) -> Result<Option<RopeScaling>> {
        let need = |v: Option<f64>, field: &'static str| v.ok_or(Error::InvalidConfig { field, reason: "is required by this rope_type".into() });
        Ok(match self.rope_type.as_deref() {
            None | Some("default") => None,
            Some("linear") => Some(RopeScaling::Linear { factor: need(self.factor, "rope_scaling.factor")? }),
            Some("llama3") => Some(RopeScaling::Llama3 {
                factor: need(self.factor, "rope_scaling.factor")?,
                low_freq_factor: need(self.low_freq_factor, "rope_scaling.low_freq_factor")?,
                high_freq_factor: need(self.high_freq_factor, "rope_scaling.high_freq_factor")?,
                original_context: self
                    .original_max_position_embeddings
                    .ok_or(Error::InvalidConfig { field: "rope_scaling.original_max_position_embeddings", reason: "is required by llama3 scaling".into() })?,
            }),
            Some(other) => {
                return Err(Error::InvalidConfig { field: "rope_scaling", reason: format!("rope_type `{other}` is not supported (default, linear, llama3)") });
            }
        })
    }
}

/// `config.json` of `llama` and `qwen2` models.
#[derive(Debug, Clone, Deserialize)]
struct LlamaHfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_context")]
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeParameters>,
    rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
}

fn default_context() -> usize {
    2048
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_ln_eps() -> f64 {
    1e-5
}

impl LlamaHfConfig {
    fn into_config(self, architecture: Architecture) -> Result<ModelConfig> {
        if self.use_sliding_window {
            return Err(Error::InvalidConfig { field: "use_sliding_window", reason: "sliding-window attention is not supported".into() });
        }
        let rope = self.rope_parameters.or(self.rope_scaling).unwrap_or_default();
        let head_dim = match self.head_dim {
            Some(d) => d,
            None => exact_head_dim(self.hidden_size, self.num_attention_heads)?,
        };
        let qwen = matches!(architecture, Architecture::Qwen2 | Architecture::Qwen3);
        // Qwen2 always has q/k/v biases; Llama and Qwen3 only with `attention_bias`.
        let qkv_bias = architecture == Architecture::Qwen2 || self.attention_bias;
        Ok(ModelConfig {
            architecture,
            vocab_size: self.vocab_size,
            d_model: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_heads: self.num_attention_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            d_mlp: self.intermediate_size,
            context_length: self.max_position_embeddings,
            norm: NormKind::Rms,
            norm_eps: self.rms_norm_eps,
            positions: PositionEncoding::Rotary(Rope {
                theta: rope.rope_theta.or(self.rope_theta).unwrap_or(if qwen { 1_000_000.0 } else { 10_000.0 }),
                rotary_dim: head_dim,
                scaling: rope.scaling()?,
            }),
            gated_mlp: true,
            activation: Activation::from_hf(self.hidden_act.as_deref().unwrap_or("silu"))?,
            parallel_residual: false,
            qkv_bias,
            attn_out_bias: architecture != Architecture::Qwen2 && self.attention_bias,
            mlp_bias: self.mlp_bias,
            tied_embeddings: self.tie_word_embeddings,
            qk_norm: architecture == Architecture::Qwen3,
            sandwich_norm: false,
            embed_scale: None,
            attn_scale: None,
            sliding_window: None,
            bos_token_id: self.bos_token_id,
            eos_token_ids: token_ids(self.eos_token_id),
        })
    }
}

/// `config.json` of `gemma3_text` models (Gemma 3 270M and 1B), with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
struct Gemma3HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "gemma_kv_heads")]
    num_key_value_heads: usize,
    #[serde(default = "gemma_head_dim")]
    head_dim: usize,
    #[serde(default = "gemma_context")]
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    #[serde(default = "gemma_head_dim")]
    query_pre_attn_scalar: usize,
    #[serde(default = "gemma_window")]
    sliding_window: usize,
    #[serde(default = "gemma_pattern")]
    sliding_window_pattern: usize,
    layer_types: Option<Vec<String>>,
    rope_theta: Option<f64>,
    rope_local_base_freq: Option<f64>,
    rope_scaling: Option<RopeParameters>,
    /// transformers 5: `{"full_attention": {...}, "sliding_attention": {...}}`.
    rope_parameters: Option<BTreeMap<String, RopeParameters>>,
    #[serde(default = "gelu_tanh")]
    hidden_activation: String,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    use_bidirectional_attention: bool,
    #[serde(default = "gemma_bos")]
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
}

fn gemma_kv_heads() -> usize {
    4
}
fn gemma_head_dim() -> usize {
    256
}
fn gemma_context() -> usize {
    131_072
}
fn gemma_window() -> usize {
    4096
}
fn gemma_pattern() -> usize {
    6
}
fn gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}
fn gemma_bos() -> Option<u32> {
    Some(2)
}

/// Gemma 3's defaults where a checkpoint leaves them out (transformers' `Gemma3TextConfig`).
const GEMMA3_GLOBAL_THETA: f64 = 1_000_000.0;
const GEMMA3_LOCAL_THETA: f64 = 10_000.0;

impl TryFrom<Gemma3HfConfig> for ModelConfig {
    type Error = Error;

    fn try_from(c: Gemma3HfConfig) -> Result<Self> {
        let unsupported = |field: &'static str, what: &str| Err(Error::InvalidConfig { field, reason: format!("{what} is not supported") });
        if c.final_logit_softcapping.is_some() || c.attn_logit_softcapping.is_some() {
            return unsupported("final_logit_softcapping", "logit soft-capping (Gemma 2)");
        }
        if c.use_bidirectional_attention || c.attention_bias {
            return unsupported("use_bidirectional_attention", "bidirectional attention or attention biases");
        }
        let sliding: Vec<usize> = match &c.layer_types {
            Some(types) if types.len() != c.num_hidden_layers => {
                return Err(Error::InvalidConfig { field: "layer_types", reason: format!("lists {} layers, not {}", types.len(), c.num_hidden_layers) });
            }
            Some(types) => types.iter().enumerate().filter(|(_, t)| t.as_str() == "sliding_attention").map(|(l, _)| l).collect(),
            None => (0..c.num_hidden_layers).filter(|l| (l + 1) % c.sliding_window_pattern.max(1) != 0).collect(),
        };
        let params = c.rope_parameters.unwrap_or_default();
        let global = params.get("full_attention").cloned().or(c.rope_scaling).unwrap_or_default();
        let local = params.get("sliding_attention").cloned().unwrap_or_default();
        let eos = token_ids(c.eos_token_id);
        Ok(ModelConfig {
            architecture: Architecture::Gemma3,
            vocab_size: c.vocab_size,
            d_model: c.hidden_size,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            d_mlp: c.intermediate_size,
            context_length: c.max_position_embeddings,
            norm: NormKind::Rms,
            norm_eps: c.rms_norm_eps,
            positions: PositionEncoding::Rotary(Rope {
                theta: global.rope_theta.or(c.rope_theta).unwrap_or(GEMMA3_GLOBAL_THETA),
                rotary_dim: c.head_dim,
                scaling: global.scaling()?,
            }),
            gated_mlp: true,
            activation: Activation::from_hf(&c.hidden_activation)?,
            parallel_residual: false,
            qkv_bias: false,
            attn_out_bias: false,
            mlp_bias: false,
            tied_embeddings: c.tie_word_embeddings,
            qk_norm: true,
            sandwich_norm: true,
            embed_scale: Some((c.hidden_size as f32).sqrt()),
            attn_scale: Some((c.query_pre_attn_scalar.max(1) as f64).powf(-0.5)),
            sliding_window: (!sliding.is_empty())
                .then(|| -> Result<SlidingWindow> {
                    Ok(SlidingWindow {
                        size: c.sliding_window,
                        layers: sliding,
                        rope: Rope {
                            theta: local.rope_theta.or(c.rope_local_base_freq).unwrap_or(GEMMA3_LOCAL_THETA),
                            rotary_dim: c.head_dim,
                            scaling: local.scaling()?,
                        },
                    })
                })
                .transpose()?,
            bos_token_id: c.bos_token_id,
            eos_token_ids: if eos.is_empty() { vec![1] } else { eos },
        })
    }
}

fn exact_head_dim(hidden: usize, heads: usize) -> Result<usize> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::InvalidConfig {
            field: "num_attention_heads",
            reason: format!("({heads}) must divide hidden_size ({hidden}) when head_dim is not given"),
        });
    }
    Ok(hidden / heads)
}

/// `config.json` of `gpt2` models.
#[derive(Debug, Clone, Deserialize)]
struct Gpt2HfConfig {
    vocab_size: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    n_positions: usize,
    n_inner: Option<usize>,
    #[serde(default = "default_gelu_new")]
    activation_function: String,
    #[serde(default = "default_ln_eps")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
}

fn default_gelu_new() -> String {
    "gelu_new".into()
}

fn yes() -> bool {
    true
}

impl TryFrom<Gpt2HfConfig> for ModelConfig {
    type Error = Error;

    fn try_from(c: Gpt2HfConfig) -> Result<Self> {
        if c.scale_attn_by_inverse_layer_idx || !c.scale_attn_weights {
            return Err(Error::InvalidConfig {
                field: "scale_attn_weights",
                reason: "only the standard 1/sqrt(head_dim) attention scaling is supported".into(),
            });
        }
        let head_dim = exact_head_dim(c.n_embd, c.n_head)?;
        Ok(ModelConfig {
            architecture: Architecture::Gpt2,
            vocab_size: c.vocab_size,
            d_model: c.n_embd,
            n_layers: c.n_layer,
            n_heads: c.n_head,
            n_kv_heads: c.n_head,
            head_dim,
            d_mlp: c.n_inner.unwrap_or(4 * c.n_embd),
            context_length: c.n_positions,
            norm: NormKind::Layer,
            norm_eps: c.layer_norm_epsilon,
            positions: PositionEncoding::Learned,
            gated_mlp: false,
            activation: Activation::from_hf(&c.activation_function)?,
            parallel_residual: false,
            qkv_bias: true,
            attn_out_bias: true,
            mlp_bias: true,
            tied_embeddings: true,
            qk_norm: false,
            sandwich_norm: false,
            embed_scale: None,
            attn_scale: None,
            sliding_window: None,
            bos_token_id: c.bos_token_id,
            eos_token_ids: token_ids(c.eos_token_id),
        })
    }
}

/// `config.json` of `gpt_neox` (Pythia) models.
#[derive(Debug, Clone, Deserialize)]
struct NeoxHfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "default_context")]
    max_position_embeddings: usize,
    rotary_pct: Option<f64>,
    rotary_emb_base: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeParameters>,
    rope_parameters: Option<RopeParameters>,
    #[serde(default = "default_ln_eps")]
    layer_norm_eps: f64,
    #[serde(default = "yes")]
    use_parallel_residual: bool,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "yes")]
    attention_bias: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
}

fn default_gelu() -> String {
    "gelu".into()
}

impl TryFrom<NeoxHfConfig> for ModelConfig {
    type Error = Error;

    fn try_from(c: NeoxHfConfig) -> Result<Self> {
        let head_dim = exact_head_dim(c.hidden_size, c.num_attention_heads)?;
        let rope = c.rope_parameters.or(c.rope_scaling).unwrap_or_default();
        let pct = rope.partial_rotary_factor.or(c.rotary_pct).unwrap_or(0.25);
        if !(pct > 0.0 && pct <= 1.0) {
            return Err(Error::InvalidConfig { field: "rotary_pct", reason: format!("is {pct}; expected (0, 1]") });
        }
        // transformers: int(head_dim * rotary_pct)
        let rotary_dim = (head_dim as f64 * pct) as usize;
        Ok(ModelConfig {
            architecture: Architecture::GptNeox,
            vocab_size: c.vocab_size,
            d_model: c.hidden_size,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_attention_heads,
            head_dim,
            d_mlp: c.intermediate_size,
            context_length: c.max_position_embeddings,
            norm: NormKind::Layer,
            norm_eps: c.layer_norm_eps,
            positions: PositionEncoding::Rotary(Rope {
                theta: rope.rope_theta.or(c.rope_theta).or(c.rotary_emb_base).unwrap_or(10_000.0),
                rotary_dim,
                scaling: rope.scaling()?,
            }),
            gated_mlp: false,
            activation: Activation::from_hf(&c.hidden_act)?,
            parallel_residual: c.use_parallel_residual,
            qkv_bias: c.attention_bias,
            attn_out_bias: c.attention_bias,
            mlp_bias: true,
            tied_embeddings: c.tie_word_embeddings,
            qk_norm: false,
            sandwich_norm: false,
            embed_scale: None,
            attn_scale: None,
            sliding_window: None,
            bos_token_id: c.bos_token_id,
            eos_token_ids: token_ids(c.eos_token_id),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_named_before_they_become_usize() {
        let json = br#"{"model_type":"gpt2","vocab_size":100,"n_embd":32,"n_layer":2,"n_head":4,"n_positions":1000000000000000}"#;
        let err = ModelConfig::from_hf_json(json).unwrap_err().to_string();
        assert!(err.contains("`n_positions` is 1000000000000000; expected 1..=16777216"), "{err}");
    }

    #[test]
    fn llama_config_with_gqa_and_explicit_head_dim() {
        let json = br#"{"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
            "rope_theta":500000.0,"tie_word_embeddings":true,"eos_token_id":[1,2]}"#;
        let c = ModelConfig::from_hf_json(json).unwrap();
        assert_eq!((c.n_kv_heads, c.head_dim, c.q_dim(), c.kv_dim()), (2, 16, 64, 32));
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        match c.positions {
            PositionEncoding::Rotary(r) => assert_eq!((r.theta, r.rotary_dim), (500000.0, 16)),
            PositionEncoding::Learned => panic!("llama is rotary"),
        }
    }

    #[test]
    fn neox_partial_rotary_from_old_and_new_keys() {
        let old = br#"{"model_type":"gpt_neox","vocab_size":10,"hidden_size":32,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":4,"rotary_pct":0.25,"rotary_emb_base":10000}"#;
        let new = br#"{"model_type":"gpt_neox","vocab_size":10,"hidden_size":32,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":4,"rope_parameters":{"partial_rotary_factor":0.25,"rope_theta":10000}}"#;
        for json in [&old[..], &new[..]] {
            let c = ModelConfig::from_hf_json(json).unwrap();
            assert!(c.parallel_residual);
            assert_eq!(c.positions, PositionEncoding::Rotary(Rope { theta: 10000.0, rotary_dim: 2, scaling: None }));
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"model_type":"mamba"}"#, "unsupported model_type `mamba`"),
            (br#"{"model_type":"gpt2","vocab_size":0,"n_embd":8,"n_layer":1,"n_head":2,"n_positions":8}"#, "vocab_size"),
            (
                br#"{"model_type":"llama","vocab_size":10,"hidden_size":30,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4}"#,
                "must divide hidden_size",
            ),
            (b"not json", "config.json is not JSON"),
        ];
        for (json, expected) in cases {
            let err = ModelConfig::from_hf_json(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
