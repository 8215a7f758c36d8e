//! One transformer implementation for every supported family, on any burn device.
//!
//! Architectures differ only in [`ModelConfig`] and in the weight tables of
//! [`crate::weight_map`]; the forward pass below is shared. The residual stream is written out
//! where it is added, and every [`HookPoint`] is visited in plain sight.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, relu, silu};
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use analog_kernels::{QuantMatrix, RowCodes};

use crate::config::{Activation, ModelConfig, NormKind, PositionEncoding, Rope, RopeScaling, SlidingWindow};
use crate::error::{Error, Result};
use crate::hooks::{HookPoint, Hooks};
use crate::weight_map::{HostQuant, HostTensor, HostWeights};

fn param<const D: usize>(tensor: HostTensor, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(tensor.data, tensor.shape), device))
}

/// Takes `name` from the loaded weights, if the config says it exists.
fn take<const D: usize>(weights: &mut HostWeights, name: &str, device: &Device) -> Result<Param<Tensor<D>>> {
    Ok(param(weights.take(name)?, device))
}

fn take_opt<const D: usize>(weights: &mut HostWeights, name: &str, present: bool, device: &Device) -> Result<Option<Param<Tensor<D>>>> {
    present.then(|| take(weights, name, device)).transpose()
}

/// A quantised matrix as a module: no trainable parameters.
#[derive(Module, Debug)]
pub struct QuantWeight {
    #[module(skip)]
    pub matrix: QuantMatrix,
}

impl QuantWeight {
    fn upload(name: &str, host: HostQuant<'_>, device: &Device) -> Result<Self> {
        // The file's own error (a bad block, a non-finite scale) is kept as it is.
        let mut file_error = None;
        let mut rows = |rows| match host.rows(rows) {
            Ok(codes) => Ok(RowCodes { codes: codes.codes, scales: codes.scales, mins: codes.mins }),
            Err(e) => {
                let reason = e.to_string();
                file_error = Some(e);
                Err(reason)
            }
        };
        let built = QuantMatrix::from_rows(host.layout, host.shape, host.transposed, device, &mut rows);
        match (built, file_error) {
            (Ok(matrix), _) => Ok(Self { matrix }),
            (Err(_), Some(e)) => Err(e),
            (Err(reason), None) => Err(Error::Safetensors { file: "model weights".into(), reason: format!("`{name}`: {reason}") }),
        }
    }
}

/// A linear layer's weight `[d_in, d_out]` on the device.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per layer, never moved in a hot loop
pub enum LinearWeight {
    F32(Param<Tensor<2>>),
    /// Quantised as the file stores it: the fused kernels (wgpu) or integer dot products (CPU) read the codes; never trained.
    Quant(QuantWeight),
}

impl LinearWeight {
    /// Takes `name`, quantised when the weights kept it so.
    fn load(weights: &mut HostWeights, name: &str, device: &Device) -> Result<Self> {
        match weights.take_quantised(name) {
            Some(host) => Ok(Self::Quant(QuantWeight::upload(name, host, device)?)),
            None => Ok(Self::F32(take(weights, name, device)?)),
        }
    }

    /// The weight in f32 (dequantised when it is quantised).
    pub fn val(&self) -> Tensor<2> {
        match self {
            Self::F32(weight) => weight.val(),
            Self::Quant(weight) => weight.matrix.dequantize(),
        }
    }

    /// `x @ weight + bias`.
    ///
    /// # Shapes
    /// `[batch, pos, d_in]` → `[batch, pos, d_out]`
    pub fn apply(&self, x: Tensor<3>, bias: Option<Tensor<1>>) -> Tensor<3> {
        match self {
            Self::F32(weight) => linear(x, weight.val(), bias),
            Self::Quant(weight) => analog_kernels::quant_linear(x, &weight.matrix, bias),
        }
    }
}

/// A dense layer `x @ weight + bias` with `weight: [d_in, d_out]`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    fn load(weights: &mut HostWeights, prefix: &str, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: LinearWeight::load(weights, &format!("{prefix}.weight"), device)?,
            bias: take_opt(weights, &format!("{prefix}.bias"), bias, device)?,
        })
    }

    /// # Shapes
    /// `[batch, pos, d_in]` → `[batch, pos, d_out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.weight.apply(x, self.bias.as_ref().map(Param::val))
    }
}

/// The token embedding `[vocab, d_model]`.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model
pub enum Embedding {
    F32(Param<Tensor<2>>),
    /// Quantised as the file stores it; rows are dequantised as they are looked up.
    Quant(QuantWeight),
}

impl Embedding {
    /// The table in f32 (dequantised when it is quantised).
    pub fn val(&self) -> Tensor<2> {
        match self {
            Self::F32(table) => table.val(),
            Self::Quant(table) => table.matrix.dequantize(),
        }
    }

    /// # Shapes
    /// tokens `[batch, pos]` → `[batch, pos, d_model]`
    pub fn lookup(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Self::F32(table) => embedding(table.val(), tokens),
            Self::Quant(table) => {
                let [batch, pos] = tokens.dims();
                table.matrix.rows_of(tokens.reshape([batch * pos])).reshape([batch, pos, table.matrix.cols])
            }
        }
    }
}

/// RMSNorm or LayerNorm over the last axis.
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Param<Tensor<1>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub eps: f64,
    #[module(skip)]
    pub kind: NormKind,
}

impl Norm {
    fn load(weights: &mut HostWeights, prefix: &str, config: &ModelConfig, device: &Device) -> Result<Self> {
        let layer = config.norm == NormKind::Layer;
        Ok(Self {
            weight: take(weights, &format!("{prefix}.weight"), device)?,
            bias: take_opt(weights, &format!("{prefix}.bias"), layer, device)?,
            eps: config.norm_eps,
            kind: config.norm,
        })
    }

    /// # Shapes
    /// `[batch, pos, d_model]` → same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self.kind {
            NormKind::Layer => analog_kernels::layer_norm(x, self.weight.val(), self.bias.as_ref().map(Param::val), self.eps),
            NormKind::Rms => analog_kernels::rms_norm(x, self.weight.val(), self.eps),
        }
    }
}

/// cos/sin tables for the positions of one forward call, `[pos, rotary_dim]` each.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    cos: Tensor<2>,
    sin: Tensor<2>,
    rotary_dim: usize,
}

/// Inverse frequencies of RoPE in HF's half-rotation layout, computed in `f32` as transformers does.
pub fn rope_inv_freq(rope: &Rope) -> Vec<f32> {
    let dim = rope.rotary_dim;
    let base = rope.theta as f32;
    let inv: Vec<f32> = (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32)).collect();
    match rope.scaling {
        None => inv,
        Some(RopeScaling::Linear { factor }) => inv.iter().map(|f| f / factor as f32).collect(),
        Some(RopeScaling::Factors { ref factors }) => inv.iter().zip(factors.iter().chain(std::iter::repeat(&1.0))).map(|(f, k)| f / k).collect(),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context }) => {
            let (factor, low, high, old) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32, original_context as f32);
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            inv.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl RotaryTables {
    fn new(inv_freq: &[f32], offset: usize, len: usize, device: &Device) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(len * 2 * half);
        let mut sin = Vec::with_capacity(len * 2 * half);
        for pos in offset..offset + len {
            for _ in 0..2 {
                for f in inv_freq {
                    let angle = pos as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = [len, 2 * half];
        Self { cos: Tensor::from_data(TensorData::new(cos, shape), device), sin: Tensor::from_data(TensorData::new(sin, shape), device), rotary_dim: 2 * half }
    }

    /// Rotates the leading `rotary_dim` features of every head.
    ///
    /// # Shapes
    /// `[batch, heads, pos, head_dim]` → same
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, head_dim] = x.dims();
        let rot = self.rotary_dim;
        let x_rot = x.clone().slice_dim(3, 0..rot);
        let x1 = x_rot.clone().slice_dim(3, 0..rot / 2);
        let x2 = x_rot.clone().slice_dim(3, rot / 2..rot);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = self.cos.clone().unsqueeze::<4>();
        let sin = self.sin.clone().unsqueeze::<4>();
        let out = x_rot * cos + rotated * sin;
        if rot == head_dim { out } else { Tensor::cat(vec![out, x.slice_dim(3, rot..head_dim)], 3) }
    }
}

/// Keys and values of one layer for every position seen so far: `[batch, kv_heads, pos, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
}

impl LayerCache {
    fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let kv = match self.kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
        };
        self.kv = Some(kv.clone());
        kv
    }
}

/// The KV cache of a whole model, and how many positions it holds.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); n_layers], len: 0 }
    }

    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Multi-head self-attention with grouped KV heads and optional rotary embeddings.
#[derive(Module, Debug)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// RMSNorm over each query and key head (Qwen3, Gemma 3).
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Scale of the attention logits (`None`: 1/√head_dim).
    #[module(skip)]
    pub scale: Option<f64>,
    /// Keys fewer than this many positions back are seen (`None`: every earlier position).
    #[module(skip)]
    pub window: Option<usize>,
}

impl Attention {
    fn load(weights: &mut HostWeights, prefix: &str, c: &ModelConfig, window: Option<usize>, device: &Device) -> Result<Self> {
        let mut qk_norm = |name: &str| -> Result<Option<Norm>> { c.qk_norm.then(|| Norm::load(weights, &format!("{prefix}.{name}"), c, device)).transpose() };
        let (q_norm, k_norm) = (qk_norm("q_norm")?, qk_norm("k_norm")?);
        Ok(Self {
            q_norm,
            k_norm,
            q: Linear::load(weights, &format!("{prefix}.q"), c.qkv_bias, device)?,
            k: Linear::load(weights, &format!("{prefix}.k"), c.qkv_bias, device)?,
            v: Linear::load(weights, &format!("{prefix}.v"), c.qkv_bias, device)?,
            o: Linear::load(weights, &format!("{prefix}.o"), c.attn_out_bias, device)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale,
            window,
        })
    }

    /// Normalises each head of `x` (`[batch, pos, heads · head_dim]`) when the model has the norm.
    fn head_norm(&self, norm: Option<&Norm>, x: Tensor<3>) -> Tensor<3> {
        match norm {
            None => x,
            Some(norm) => {
                let [batch, pos, width] = x.dims();
                norm.forward(x.reshape([batch, pos * width / self.head_dim, self.head_dim])).reshape([batch, pos, width])
            }
        }
    }

    /// Which keys each new query may not see beyond causality: those `window` or more positions
    /// back. `None` when every key is in reach.
    ///
    /// # Shapes
    /// `[batch, heads, pos, keys]`
    fn window_mask(&self, batch: usize, pos: usize, keys: usize, device: &Device) -> Option<Tensor<4, Bool>> {
        let window = self.window?;
        if keys <= window {
            return None;
        }
        let offset = keys - pos;
        let far: Vec<bool> = (0..pos).flat_map(|i| (0..keys).map(move |j| offset + i >= j + window)).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(far, [pos, keys]), device);
        Some(mask.reshape([1, 1, pos, keys]).expand([batch, self.n_heads, pos, keys]))
    }

    fn heads(&self, x: Tensor<3>, n_heads: usize) -> Tensor<4> {
        let [batch, pos, _] = x.dims();
        x.reshape([batch, pos, n_heads, self.head_dim]).swap_dims(1, 2)
    }

    /// `[batch, kv_heads, pos, head_dim]` → `[batch, heads, pos, head_dim]`, sharing each KV head.
    fn repeat_kv(&self, x: Tensor<4>) -> Tensor<4> {
        let groups = self.n_heads / self.n_kv_heads;
        if groups == 1 {
            return x;
        }
        let [batch, kv_heads, pos, head_dim] = x.dims();
        x.unsqueeze_dim::<5>(2).expand([batch, kv_heads, groups, pos, head_dim]).reshape([batch, kv_heads * groups, pos, head_dim])
    }

    /// # Shapes
    /// `[batch, pos, d_model]` → `[batch, pos, d_model]`; the cache grows by `pos`.
    pub fn forward(&self, x: Tensor<3>, rotary: Option<&RotaryTables>, cache: &mut LayerCache) -> Tensor<3> {
        let [batch, pos, _] = x.dims();
        let mut q = self.heads(self.head_norm(self.q_norm.as_ref(), self.q.forward(x.clone())), self.n_heads);
        let mut k = self.heads(self.head_norm(self.k_norm.as_ref(), self.k.forward(x.clone())), self.n_kv_heads);
        let v = self.heads(self.v.forward(x), self.n_kv_heads);
        if let Some(rotary) = rotary {
            q = rotary.apply(q);
            k = rotary.apply(k);
        }
        let (k, v) = cache.append(k, v);
        let mask = self.window_mask(batch, pos, k.dims()[2], &q.device());
        let groups = self.n_heads / self.n_kv_heads;
        let options = |is_causal| AttentionModuleOptions { scale: self.scale, softcap: None, is_causal };
        let out = if pos == 1 && groups > 1 {
            // Decoding, one query per row: each KV head's query heads become its rows, so the cached keys and values
            // are read as they are instead of copied once per query head. A single query sees every cached key.
            let keys = k.dims()[2];
            let q = q.reshape([batch, self.n_kv_heads, groups, self.head_dim]);
            let mask = mask.map(|m| m.reshape([batch, self.n_kv_heads, groups, keys]));
            attention(q, k, v, mask, None, options(false)).reshape([batch, self.n_heads, 1, self.head_dim])
        } else {
            attention(q, self.repeat_kv(k), self.repeat_kv(v), mask, None, options(true))
        };
        self.o.forward(out.swap_dims(1, 2).reshape([batch, pos, self.n_heads * self.head_dim]))
    }
}

/// The feed-forward network: gated (`down(act(gate x) * up x)`) or plain (`down(act(up x))`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    fn load(weights: &mut HostWeights, prefix: &str, c: &ModelConfig, device: &Device) -> Result<Self> {
        Ok(Self {
            gate: c.gated_mlp.then(|| Linear::load(weights, &format!("{prefix}.gate"), c.mlp_bias, device)).transpose()?,
            up: Linear::load(weights, &format!("{prefix}.up"), c.mlp_bias, device)?,
            down: Linear::load(weights, &format!("{prefix}.down"), c.mlp_bias, device)?,
            activation: c.activation,
        })
    }

    fn act(&self, x: Tensor<3>) -> Tensor<3> {
        match self.activation {
            Activation::Silu => silu(x),
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::Relu => relu(x),
        }
    }

    /// # Shapes
    /// `[batch, pos, d_model]` → same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = match &self.gate {
            Some(gate) => self.act(gate.forward(x.clone())) * self.up.forward(x),
            None => self.act(self.up.forward(x)),
        };
        self.down.forward(hidden)
    }
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    pub ln1: Norm,
    pub attn: Attention,
    /// Norm of the attention output before it joins the residual (Gemma 3).
    pub ln1_post: Option<Norm>,
    pub ln2: Norm,
    pub mlp: Mlp,
    /// Norm of the MLP output before it joins the residual (Gemma 3).
    pub ln2_post: Option<Norm>,
    pub parallel_residual: bool,
    pub layer: usize,
}

impl Block {
    /// # Shapes
    /// `[batch, pos, d_model]` → same
    pub fn forward(&self, x: Tensor<3>, rotary: Option<&RotaryTables>, cache: &mut LayerCache, offset: usize, hooks: &mut Hooks) -> Tensor<3> {
        let l = self.layer;
        let resid_pre = hooks.at(HookPoint::ResidPre(l), x, offset);
        let attn_out = post_norm(self.ln1_post.as_ref(), self.attn.forward(self.ln1.forward(resid_pre.clone()), rotary, cache));
        let attn_out = hooks.at(HookPoint::AttnOut(l), attn_out, offset);
        let resid_mid = hooks.at(HookPoint::ResidMid(l), resid_pre.clone() + attn_out, offset);
        let mlp_in = if self.parallel_residual { resid_pre } else { resid_mid.clone() };
        let mlp_out = post_norm(self.ln2_post.as_ref(), self.mlp.forward(self.ln2.forward(mlp_in)));
        let mlp_out = hooks.at(HookPoint::MlpOut(l), mlp_out, offset);
        hooks.at(HookPoint::ResidPost(l), resid_mid + mlp_out, offset)
    }
}

fn post_norm(norm: Option<&Norm>, x: Tensor<3>) -> Tensor<3> {
    match norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

/// A decoder-only language model: embeddings, blocks, final norm and unembedding.
#[derive(Module, Debug)]
pub struct Model {
    pub embed: Embedding,
    pub pos_embed: Option<Param<Tensor<2>>>,
    pub blocks: Vec<Block>,
    pub ln_final: Norm,
    /// `[d_model, vocab]`; for tied models the transposed embedding.
    pub unembed: LinearWeight,
    #[module(skip)]
    pub config: ModelConfig,
    #[module(skip)]
    inv_freq: Option<Vec<f32>>,
    /// The sliding layers' inverse frequencies, when they have their own RoPE base.
    #[module(skip)]
    local_inv_freq: Option<Vec<f32>>,
    pub n_params: usize,
}

impl Model {
    /// Loads a model from the bytes of `config.json` and its weights (no tokenizer needed).
    pub fn from_bytes(config_json: &[u8], weights: &crate::weights::WeightFiles<'_>, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_hf_json(config_json)?;
        // Devices with the fused kernels keep quantised weights as stored (a quarter of the f32 bytes or less).
        let table = crate::weights::TensorTable::parse(weights)?;
        let host = crate::weight_map::load_table(&config, &table, &|layout, cols| analog_kernels::keeps_quantised(device, layout, cols))?;
        Self::from_weights(config, host, device)
    }

    /// Loads the model of a parsed GGUF file whose configuration is `config`
    /// ([`ModelConfig::from_gguf`]).
    pub fn from_gguf(file: &crate::gguf::Gguf<'_>, config: ModelConfig, device: &Device) -> Result<Self> {
        let table = crate::weights::TensorTable::from_gguf(file, &config)?;
        let host = crate::weight_map::load_table(&config, &table, &|layout, cols| analog_kernels::keeps_quantised(device, layout, cols))?;
        Self::from_weights(config, host, device)
    }

    /// Builds the model from host weights on `device`.
    pub(crate) fn from_weights(config: ModelConfig, mut weights: HostWeights, device: &Device) -> Result<Self> {
        let c = &config;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for layer in 0..c.n_layers {
            let p = format!("blocks.{layer}");
            let window = c.sliding_window.as_ref().filter(|w| w.layers.contains(&layer)).map(|w| w.size);
            let sandwich = |weights: &mut HostWeights, name: &str| c.sandwich_norm.then(|| Norm::load(weights, &format!("{p}.{name}"), c, device)).transpose();
            blocks.push(Block {
                ln1: Norm::load(&mut weights, &format!("{p}.ln1"), c, device)?,
                attn: Attention::load(&mut weights, &format!("{p}.attn"), c, window, device)?,
                ln1_post: sandwich(&mut weights, "ln1_post")?,
                ln2: Norm::load(&mut weights, &format!("{p}.ln2"), c, device)?,
                mlp: Mlp::load(&mut weights, &format!("{p}.mlp"), c, device)?,
                ln2_post: sandwich(&mut weights, "ln2_post")?,
                parallel_residual: c.parallel_residual,
                layer,
            });
        }
        let (embed, unembed) = match (weights.take_quantised("embed"), c.tied_embeddings) {
            // A tied quantised table serves as its own transpose: one copy on the device.
            (Some(host), true) => {
                let table = QuantWeight::upload("embed", host, device)?;
                let unembed = LinearWeight::Quant(QuantWeight { matrix: table.matrix.transpose() });
                (Embedding::Quant(table), unembed)
            }
            (Some(host), false) => (Embedding::Quant(QuantWeight::upload("embed", host, device)?), LinearWeight::load(&mut weights, "unembed", device)?),
            (None, true) => {
                let table = weights.take("embed")?;
                let [vocab, d] = [c.vocab_size, c.d_model];
                let mut t = vec![0.0; vocab * d];
                for (r, row) in table.data.chunks_exact(d).enumerate() {
                    for (j, &x) in row.iter().enumerate() {
                        t[j * vocab + r] = x;
                    }
                }
                (Embedding::F32(param(table, device)), LinearWeight::F32(param(HostTensor { shape: vec![d, vocab], data: t }, device)))
            }
            (None, false) => (Embedding::F32(take(&mut weights, "embed", device)?), LinearWeight::load(&mut weights, "unembed", device)?),
        };
        let inv_freq = match &c.positions {
            PositionEncoding::Rotary(rope) => Some(rope_inv_freq(rope)),
            PositionEncoding::Learned => None,
        };
        let local_inv_freq = c.sliding_window.as_ref().map(|w: &SlidingWindow| rope_inv_freq(&w.rope)).filter(|f| Some(f) != inv_freq.as_ref());
        Ok(Self {
            embed,
            pos_embed: take_opt(&mut weights, "pos_embed", c.positions == PositionEncoding::Learned, device)?,
            blocks,
            ln_final: Norm::load(&mut weights, "ln_final", c, device)?,
            unembed,
            n_params: weights.n_params,
            config,
            inv_freq,
            local_inv_freq,
        })
    }

    pub fn device(&self) -> Device {
        self.ln_final.weight.val().device()
    }

    /// Bytes the weights hold on their device: f32 parameters, and quantised matrices as packed codes
    /// with their scales (a tied quantised table once).
    pub fn weight_bytes(&self) -> u64 {
        let quantised = |w: &LinearWeight| if let LinearWeight::Quant(q) = w { q.matrix.device_bytes() } else { 0 };
        let bytes = 4 * self.num_params() as u64 + self.block_linears().map(|l| quantised(&l.weight)).sum::<u64>();
        match &self.embed {
            Embedding::Quant(table) if self.config.tied_embeddings => bytes + table.matrix.device_bytes(),
            Embedding::Quant(table) => bytes + table.matrix.device_bytes() + quantised(&self.unembed),
            Embedding::F32(_) => bytes + quantised(&self.unembed),
        }
    }

    /// The weight matrices one token reads: every linear layer of the blocks, and the unembedding.
    pub fn weight_matrices(&self) -> usize {
        self.block_linears().count() + 1
    }

    fn block_linears(&self) -> impl Iterator<Item = &Linear> {
        self.blocks
            .iter()
            .flat_map(|b| [Some(&b.attn.q), Some(&b.attn.k), Some(&b.attn.v), Some(&b.attn.o), b.mlp.gate.as_ref(), Some(&b.mlp.up), Some(&b.mlp.down)])
            .flatten()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layers)
    }

    /// Runs the blocks on new tokens after what `cache` holds; returns the final-norm output.
    ///
    /// Rows of a batch share positions, so pad shorter prompts on the right: causal attention keeps
    /// real tokens from seeing the padding after them.
    ///
    /// # Shapes
    /// tokens `[batch, pos]` → `[batch, pos, d_model]`
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, cache: &mut KvCache, hooks: &mut Hooks) -> Result<Tensor<3>> {
        let [_, len] = tokens.dims();
        let offset = cache.len;
        if offset + len > self.config.context_length {
            return Err(Error::ContextTooLong { prompt: offset, new: len, needed: offset + len, limit: self.config.context_length });
        }
        let device = self.device();
        let mut x = self.embed.lookup(tokens);
        if let Some(scale) = self.config.embed_scale {
            x = x * scale;
        }
        if let Some(pos) = &self.pos_embed {
            x = x + pos.val().slice_dim(0, offset..offset + len).unsqueeze::<3>();
        }
        let rotary = self.inv_freq.as_ref().map(|f| RotaryTables::new(f, offset, len, &device));
        let local_rotary = self.local_inv_freq.as_ref().map(|f| RotaryTables::new(f, offset, len, &device));
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let rotary = if block.attn.window.is_some() { local_rotary.as_ref().or(rotary.as_ref()) } else { rotary.as_ref() };
            x = block.forward(x, rotary, layer_cache, offset, hooks);
        }
        cache.len += len;
        Ok(hooks.at(HookPoint::FinalNormalized, self.ln_final.forward(x), offset))
    }

    /// Refuses ids the embedding cannot look up.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab_size = self.config.vocab_size;
        match ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(&id) => Err(Error::TokenOutOfRange { id, vocab_size }),
            None => Ok(()),
        }
    }

    /// `[batch, pos]` int tensor of right-padded rows (pad id 0).
    pub fn batch_tensor(&self, rows: &[Vec<u32>]) -> Tensor<2, Int> {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(rows.len() * width);
        for row in rows {
            flat.extend(row.iter().map(|&id| id as i32));
            flat.extend(std::iter::repeat_n(0, width - row.len()));
        }
        Tensor::from_data(TensorData::new(flat, [rows.len(), width]), &self.device())
    }

    /// Runs right-padded rows through the model once; returns the final-norm output
    /// `[rows, longest, d_model]` (positions past a row's length are padding).
    pub fn prefill(&self, rows: &[Vec<u32>], hooks: &mut Hooks) -> Result<Tensor<3>> {
        hooks.check(&self.config)?;
        if rows.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        for row in rows {
            if row.is_empty() {
                return Err(Error::EmptyPrompt);
            }
            self.check_ids(row)?;
        }
        self.forward_hidden(self.batch_tensor(rows), &mut self.new_cache(), hooks)
    }

    /// # Shapes
    /// `[batch, pos, d_model]` → `[batch, pos, vocab]`
    pub fn unembed(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.unembed.apply(hidden, None)
    }
}

/// GELU with the tanh approximation (`gelu_pytorch_tanh`), as burn's `gelu_approximate` computes it but with
/// `x·x·x` for `x³`: burn's `powf_scalar` calls libm's `powf` per value, 3% of Gemma 3's decoding time in wasm.
fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * sqrt_2_over_pi;
    x * (inner.tanh() + 1) * 0.5
}
