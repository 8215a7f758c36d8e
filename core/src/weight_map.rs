//! Declarative tables from HF tensor names to the internal parameter names the model reads.
//!
//! Internal layout: linear weights are stored `[in, out]` (so `x @ W`), norms as vectors,
//! embeddings `[vocab, d_model]`, the unembedding `[d_model, vocab]`. `{l}` stands for a layer.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result, Shape};
use crate::ggml::{CodeLayout, Codes};
use crate::weights::TensorTable;
#[cfg(test)]
use crate::weights::WeightFiles;

/// A tensor in host memory, row-major `f32`.
#[derive(Debug, Clone)]
pub(crate) struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A matrix kept quantised as the file stores it, for devices that dequantise on the fly: internally
/// `[in, out]` (the embedding `[vocab, d_model]`), stored `[out, in]` when `transposed` (an `nn.Linear` weight).
/// Its codes are decoded from the file a run of storage rows at a time ([`HostQuant::rows`]).
pub(crate) struct HostQuant<'t> {
    pub shape: [usize; 2],
    pub layout: CodeLayout,
    pub transposed: bool,
    table: &'t TensorTable<'t>,
    /// Its name in the table.
    original: String,
}

impl HostQuant<'_> {
    /// The codes of storage rows `rows` (the file's rows).
    pub(crate) fn rows(&self, rows: std::ops::Range<usize>) -> Result<Codes> {
        self.table.quantised_rows(&self.original, rows)
    }
}

/// How an HF tensor becomes internal tensors.
#[derive(Debug, Clone, Copy)]
enum Transform {
    /// Same layout.
    Keep,
    /// `nn.Linear` `[out, in]` to `[in, out]`.
    Transpose,
    /// GPT-2 `c_attn` Conv1D `[d, 3d]` (or bias `[3d]`): q, k, v side by side in the last axis.
    SplitLast3,
    /// GPT-NeoX `query_key_value` `[3d, d]` (or bias `[3d]`): per head `[q; k; v]` rows; weights are
    /// transposed to `[in, out]` after the split.
    NeoxQkv,
    /// Gemma's RMSNorm multiplies by `1 + w`: stored `w`, held `1 + w`, so the forward pass is the
    /// same for every family.
    PlusOne,
}

type Dims = fn(&ModelConfig) -> Vec<usize>;
type When = fn(&ModelConfig) -> bool;

/// One line of a table: HF name pattern, internal name(s), transform, expected HF shape, when present.
struct Rule {
    hf: &'static str,
    to: &'static [&'static str],
    transform: Transform,
    shape: Dims,
    when: When,
}

const fn rule(hf: &'static str, to: &'static [&'static str], transform: Transform, shape: Dims, when: When) -> Rule {
    Rule { hf, to, transform, shape, when }
}

fn always(_: &ModelConfig) -> bool {
    true
}
fn untied(c: &ModelConfig) -> bool {
    !c.tied_embeddings
}
fn qkv_bias(c: &ModelConfig) -> bool {
    c.qkv_bias
}
fn out_bias(c: &ModelConfig) -> bool {
    c.attn_out_bias
}
fn mlp_bias(c: &ModelConfig) -> bool {
    c.mlp_bias
}
fn qk_norm(c: &ModelConfig) -> bool {
    c.qk_norm
}

fn d(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_model]
}
fn vocab_d(c: &ModelConfig) -> Vec<usize> {
    vec![c.vocab_size, c.d_model]
}
fn ctx_d(c: &ModelConfig) -> Vec<usize> {
    vec![c.context_length, c.d_model]
}
fn q_d(c: &ModelConfig) -> Vec<usize> {
    vec![c.q_dim(), c.d_model]
}
fn kv_d(c: &ModelConfig) -> Vec<usize> {
    vec![c.kv_dim(), c.d_model]
}
fn d_q(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_model, c.q_dim()]
}
fn head(c: &ModelConfig) -> Vec<usize> {
    vec![c.head_dim]
}
fn q(c: &ModelConfig) -> Vec<usize> {
    vec![c.q_dim()]
}
fn kv(c: &ModelConfig) -> Vec<usize> {
    vec![c.kv_dim()]
}
fn mlp_d(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_mlp, c.d_model]
}
fn d_mlp(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_model, c.d_mlp]
}
fn mlp(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_mlp]
}
fn d_3d(c: &ModelConfig) -> Vec<usize> {
    vec![c.d_model, 3 * c.d_model]
}
fn three_d_d(c: &ModelConfig) -> Vec<usize> {
    vec![3 * c.d_model, c.d_model]
}
fn three_d(c: &ModelConfig) -> Vec<usize> {
    vec![3 * c.d_model]
}

use Transform::{Keep, NeoxQkv, PlusOne, SplitLast3, Transpose};

/// Llama, Qwen2 and Qwen3 (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`).
const LLAMA: &[Rule] = &[
    rule("model.embed_tokens.weight", &["embed"], Keep, vocab_d, always),
    rule("model.layers.{l}.input_layernorm.weight", &["blocks.{l}.ln1.weight"], Keep, d, always),
    rule("model.layers.{l}.self_attn.q_proj.weight", &["blocks.{l}.attn.q.weight"], Transpose, q_d, always),
    rule("model.layers.{l}.self_attn.k_proj.weight", &["blocks.{l}.attn.k.weight"], Transpose, kv_d, always),
    rule("model.layers.{l}.self_attn.v_proj.weight", &["blocks.{l}.attn.v.weight"], Transpose, kv_d, always),
    // Qwen2 always has q/k/v biases; Llama only with `attention_bias`.
    rule("model.layers.{l}.self_attn.q_proj.bias", &["blocks.{l}.attn.q.bias"], Keep, q, qkv_bias),
    rule("model.layers.{l}.self_attn.k_proj.bias", &["blocks.{l}.attn.k.bias"], Keep, kv, qkv_bias),
    rule("model.layers.{l}.self_attn.v_proj.bias", &["blocks.{l}.attn.v.bias"], Keep, kv, qkv_bias),
    rule("model.layers.{l}.self_attn.o_proj.weight", &["blocks.{l}.attn.o.weight"], Transpose, d_q, always),
    rule("model.layers.{l}.self_attn.o_proj.bias", &["blocks.{l}.attn.o.bias"], Keep, d, out_bias),
    // Qwen3: one RMSNorm shared by the query heads, one by the key heads.
    rule("model.layers.{l}.self_attn.q_norm.weight", &["blocks.{l}.attn.q_norm.weight"], Keep, head, qk_norm),
    rule("model.layers.{l}.self_attn.k_norm.weight", &["blocks.{l}.attn.k_norm.weight"], Keep, head, qk_norm),
    rule("model.layers.{l}.post_attention_layernorm.weight", &["blocks.{l}.ln2.weight"], Keep, d, always),
    rule("model.layers.{l}.mlp.gate_proj.weight", &["blocks.{l}.mlp.gate.weight"], Transpose, mlp_d, always),
    rule("model.layers.{l}.mlp.up_proj.weight", &["blocks.{l}.mlp.up.weight"], Transpose, mlp_d, always),
    rule("model.layers.{l}.mlp.down_proj.weight", &["blocks.{l}.mlp.down.weight"], Transpose, d_mlp, always),
    rule("model.layers.{l}.mlp.gate_proj.bias", &["blocks.{l}.mlp.gate.bias"], Keep, mlp, mlp_bias),
    rule("model.layers.{l}.mlp.up_proj.bias", &["blocks.{l}.mlp.up.bias"], Keep, mlp, mlp_bias),
    rule("model.layers.{l}.mlp.down_proj.bias", &["blocks.{l}.mlp.down.bias"], Keep, d, mlp_bias),
    rule("model.norm.weight", &["ln_final.weight"], Keep, d, always),
    // Tied models reuse `embed`; a stored copy of the head is then ignored, as transformers does.
    rule("lm_head.weight", &["unembed"], Transpose, vocab_d, untied),
];

/// Gemma 3 text models (`Gemma3ForCausalLM`). Note the names: `post_attention_layernorm` is the
/// norm *after* attention here, and the MLP's input norm is `pre_feedforward_layernorm`.
const GEMMA3: &[Rule] = &[
    rule("model.embed_tokens.weight", &["embed"], Keep, vocab_d, always),
    rule("model.layers.{l}.input_layernorm.weight", &["blocks.{l}.ln1.weight"], PlusOne, d, always),
    rule("model.layers.{l}.self_attn.q_proj.weight", &["blocks.{l}.attn.q.weight"], Transpose, q_d, always),
    rule("model.layers.{l}.self_attn.k_proj.weight", &["blocks.{l}.attn.k.weight"], Transpose, kv_d, always),
    rule("model.layers.{l}.self_attn.v_proj.weight", &["blocks.{l}.attn.v.weight"], Transpose, kv_d, always),
    rule("model.layers.{l}.self_attn.o_proj.weight", &["blocks.{l}.attn.o.weight"], Transpose, d_q, always),
    rule("model.layers.{l}.self_attn.q_norm.weight", &["blocks.{l}.attn.q_norm.weight"], PlusOne, head, always),
    rule("model.layers.{l}.self_attn.k_norm.weight", &["blocks.{l}.attn.k_norm.weight"], PlusOne, head, always),
    rule("model.layers.{l}.post_attention_layernorm.weight", &["blocks.{l}.ln1_post.weight"], PlusOne, d, always),
    rule("model.layers.{l}.pre_feedforward_layernorm.weight", &["blocks.{l}.ln2.weight"], PlusOne, d, always),
    rule("model.layers.{l}.mlp.gate_proj.weight", &["blocks.{l}.mlp.gate.weight"], Transpose, mlp_d, always),
    rule("model.layers.{l}.mlp.up_proj.weight", &["blocks.{l}.mlp.up.weight"], Transpose, mlp_d, always),
    rule("model.layers.{l}.mlp.down_proj.weight", &["blocks.{l}.mlp.down.weight"], Transpose, d_mlp, always),
    rule("model.layers.{l}.post_feedforward_layernorm.weight", &["blocks.{l}.ln2_post.weight"], PlusOne, d, always),
    rule("model.norm.weight", &["ln_final.weight"], PlusOne, d, always),
    rule("lm_head.weight", &["unembed"], Transpose, vocab_d, untied),
];

/// GPT-2 (`GPT2LMHeadModel`); names are normalised to carry the `transformer.` prefix first.
const GPT2: &[Rule] = &[
    rule("transformer.wte.weight", &["embed"], Keep, vocab_d, always),
    rule("transformer.wpe.weight", &["pos_embed"], Keep, ctx_d, always),
    rule("transformer.h.{l}.ln_1.weight", &["blocks.{l}.ln1.weight"], Keep, d, always),
    rule("transformer.h.{l}.ln_1.bias", &["blocks.{l}.ln1.bias"], Keep, d, always),
    // Conv1D weights are already `[in, out]`.
    rule(
        "transformer.h.{l}.attn.c_attn.weight",
        &["blocks.{l}.attn.q.weight", "blocks.{l}.attn.k.weight", "blocks.{l}.attn.v.weight"],
        SplitLast3,
        d_3d,
        always,
    ),
    rule("transformer.h.{l}.attn.c_attn.bias", &["blocks.{l}.attn.q.bias", "blocks.{l}.attn.k.bias", "blocks.{l}.attn.v.bias"], SplitLast3, three_d, always),
    rule("transformer.h.{l}.attn.c_proj.weight", &["blocks.{l}.attn.o.weight"], Keep, d_q, always),
    rule("transformer.h.{l}.attn.c_proj.bias", &["blocks.{l}.attn.o.bias"], Keep, d, always),
    rule("transformer.h.{l}.ln_2.weight", &["blocks.{l}.ln2.weight"], Keep, d, always),
    rule("transformer.h.{l}.ln_2.bias", &["blocks.{l}.ln2.bias"], Keep, d, always),
    rule("transformer.h.{l}.mlp.c_fc.weight", &["blocks.{l}.mlp.up.weight"], Keep, d_mlp, always),
    rule("transformer.h.{l}.mlp.c_fc.bias", &["blocks.{l}.mlp.up.bias"], Keep, mlp, always),
    rule("transformer.h.{l}.mlp.c_proj.weight", &["blocks.{l}.mlp.down.weight"], Keep, mlp_d, always),
    rule("transformer.h.{l}.mlp.c_proj.bias", &["blocks.{l}.mlp.down.bias"], Keep, d, always),
    rule("transformer.ln_f.weight", &["ln_final.weight"], Keep, d, always),
    rule("transformer.ln_f.bias", &["ln_final.bias"], Keep, d, always),
];

/// GPT-NeoX / Pythia (`GPTNeoXForCausalLM`).
const GPT_NEOX: &[Rule] = &[
    rule("gpt_neox.embed_in.weight", &["embed"], Keep, vocab_d, always),
    rule("gpt_neox.layers.{l}.input_layernorm.weight", &["blocks.{l}.ln1.weight"], Keep, d, always),
    rule("gpt_neox.layers.{l}.input_layernorm.bias", &["blocks.{l}.ln1.bias"], Keep, d, always),
    rule(
        "gpt_neox.layers.{l}.attention.query_key_value.weight",
        &["blocks.{l}.attn.q.weight", "blocks.{l}.attn.k.weight", "blocks.{l}.attn.v.weight"],
        NeoxQkv,
        three_d_d,
        always,
    ),
    rule(
        "gpt_neox.layers.{l}.attention.query_key_value.bias",
        &["blocks.{l}.attn.q.bias", "blocks.{l}.attn.k.bias", "blocks.{l}.attn.v.bias"],
        NeoxQkv,
        three_d,
        qkv_bias,
    ),
    rule("gpt_neox.layers.{l}.attention.dense.weight", &["blocks.{l}.attn.o.weight"], Transpose, d_q, always),
    rule("gpt_neox.layers.{l}.attention.dense.bias", &["blocks.{l}.attn.o.bias"], Keep, d, out_bias),
    rule("gpt_neox.layers.{l}.post_attention_layernorm.weight", &["blocks.{l}.ln2.weight"], Keep, d, always),
    rule("gpt_neox.layers.{l}.post_attention_layernorm.bias", &["blocks.{l}.ln2.bias"], Keep, d, always),
    rule("gpt_neox.layers.{l}.mlp.dense_h_to_4h.weight", &["blocks.{l}.mlp.up.weight"], Transpose, mlp_d, always),
    rule("gpt_neox.layers.{l}.mlp.dense_h_to_4h.bias", &["blocks.{l}.mlp.up.bias"], Keep, mlp, always),
    rule("gpt_neox.layers.{l}.mlp.dense_4h_to_h.weight", &["blocks.{l}.mlp.down.weight"], Transpose, d_mlp, always),
    rule("gpt_neox.layers.{l}.mlp.dense_4h_to_h.bias", &["blocks.{l}.mlp.down.bias"], Keep, d, always),
    rule("gpt_neox.final_layer_norm.weight", &["ln_final.weight"], Keep, d, always),
    rule("gpt_neox.final_layer_norm.bias", &["ln_final.bias"], Keep, d, always),
    rule("embed_out.weight", &["unembed"], Transpose, vocab_d, untied),
];

/// llama.cpp's tensor names (GGUF model files) → HF names, for llama, qwen2, qwen3 and gemma3;
/// `{l}` stands for a layer. The HF tables above take it from there.
const LLAMA_CPP: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output.weight", "lm_head.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("blk.{l}.attn_norm.weight", "model.layers.{l}.input_layernorm.weight"),
    ("blk.{l}.attn_q.weight", "model.layers.{l}.self_attn.q_proj.weight"),
    ("blk.{l}.attn_k.weight", "model.layers.{l}.self_attn.k_proj.weight"),
    ("blk.{l}.attn_v.weight", "model.layers.{l}.self_attn.v_proj.weight"),
    ("blk.{l}.attn_q.bias", "model.layers.{l}.self_attn.q_proj.bias"),
    ("blk.{l}.attn_k.bias", "model.layers.{l}.self_attn.k_proj.bias"),
    ("blk.{l}.attn_v.bias", "model.layers.{l}.self_attn.v_proj.bias"),
    ("blk.{l}.attn_output.weight", "model.layers.{l}.self_attn.o_proj.weight"),
    ("blk.{l}.attn_q_norm.weight", "model.layers.{l}.self_attn.q_norm.weight"),
    ("blk.{l}.attn_k_norm.weight", "model.layers.{l}.self_attn.k_norm.weight"),
    ("blk.{l}.ffn_gate.weight", "model.layers.{l}.mlp.gate_proj.weight"),
    ("blk.{l}.ffn_up.weight", "model.layers.{l}.mlp.up_proj.weight"),
    ("blk.{l}.ffn_down.weight", "model.layers.{l}.mlp.down_proj.weight"),
    // Llama and Qwen: the MLP's input norm.
    ("blk.{l}.ffn_norm.weight", "model.layers.{l}.post_attention_layernorm.weight"),
];

/// Gemma 3 names its four block norms differently; these come before [`LLAMA_CPP`].
const LLAMA_CPP_GEMMA3: &[(&str, &str)] = &[
    ("blk.{l}.post_attention_norm.weight", "model.layers.{l}.post_attention_layernorm.weight"),
    ("blk.{l}.ffn_norm.weight", "model.layers.{l}.pre_feedforward_layernorm.weight"),
    ("blk.{l}.post_ffw_norm.weight", "model.layers.{l}.post_feedforward_layernorm.weight"),
];

/// GGUF tensors the configuration reads rather than the weights (Llama 3.1's RoPE factors).
pub(crate) const GGUF_CONFIG_TENSORS: &[&str] = &["rope_freqs.weight"];

/// What a GGUF tensor needs before it reads like its HF counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fixup {
    None,
    /// llama.cpp's converter interleaves the two rotary halves of each head's rows for
    /// llama-architecture models (`permute`); this undoes it. `heads` is the tensor's head count.
    Unpermute {
        heads: usize,
    },
    /// llama.cpp stores Gemma's norms as `1 + w` (it multiplies by the weight), HF as `w`.
    MinusOne,
}

/// The HF name of a llama.cpp tensor and the fix-up its values need; `None` for a name the
/// tables do not know (the loader then reports it as not part of the model).
pub(crate) fn hf_name_of_gguf(config: &ModelConfig, name: &str) -> Option<(String, Fixup)> {
    let (pattern, layer) = match name.strip_prefix("blk.").and_then(|rest| rest.split_once('.')) {
        Some((layer, rest)) if layer.parse::<usize>().is_ok() => (format!("blk.{{l}}.{rest}"), Some(layer)),
        _ => (name.to_string(), None),
    };
    let gemma = config.architecture == Architecture::Gemma3;
    let extra: &[(&str, &str)] = if gemma { LLAMA_CPP_GEMMA3 } else { &[] };
    let (_, hf) = extra.iter().chain(LLAMA_CPP).find(|(gguf, _)| *gguf == pattern)?;
    let hf = layer.map_or_else(|| hf.to_string(), |l| hf.replace("{l}", l));
    let fixup = match pattern.as_str() {
        "blk.{l}.attn_q.weight" | "blk.{l}.attn_q.bias" if config.architecture == Architecture::Llama => Fixup::Unpermute { heads: config.n_heads },
        "blk.{l}.attn_k.weight" | "blk.{l}.attn_k.bias" if config.architecture == Architecture::Llama => Fixup::Unpermute { heads: config.n_kv_heads },
        p if gemma && p.ends_with("norm.weight") => Fixup::MinusOne,
        _ => Fixup::None,
    };
    Some((hf, fixup))
}

/// Undoes llama.cpp's rotary row interleaving: within each head, stored row `2i + t` is HF row
/// `t · head_dim/2 + i`. `data` is `[rows, cols]` row-major (a bias has `cols = 1`).
pub(crate) fn unpermute_rows<T: Copy + Default>(data: &[T], rows: usize, heads: usize) -> Option<Vec<T>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) || !data.len().is_multiple_of(rows.max(1)) {
        return None;
    }
    let cols = data.len() / rows;
    let mut out = vec![T::default(); data.len()];
    for (row, to) in out.chunks_exact_mut(cols.max(1)).enumerate() {
        let from = stored_row(row, rows / heads);
        to.copy_from_slice(&data[from * cols..(from + 1) * cols]);
    }
    Some(out)
}

/// The stored row of HF row `row` under llama.cpp's rotary interleaving, for heads of `head_dim` rows: HF row
/// `h·d + t·d/2 + i` is stored row `h·d + 2i + t`.
pub(crate) fn stored_row(row: usize, head_dim: usize) -> usize {
    let (h, within) = (row / head_dim, row % head_dim);
    let half = head_dim / 2;
    h * head_dim + 2 * (within % half) + within / half
}

/// Suffixes of non-parameter buffers some checkpoints carry (causal masks, cached RoPE frequencies).
const IGNORED_SUFFIXES: &[&str] = &[".attn.bias", ".attn.masked_bias", ".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq"];

/// Every rule that applies to `config`, once per layer for per-layer rules (`None` for the others).
fn instances(config: &ModelConfig) -> impl Iterator<Item = (&'static Rule, Option<usize>)> + '_ {
    table(config.architecture).iter().filter(|rule| (rule.when)(config)).flat_map(|rule| {
        let layers: Vec<Option<usize>> = if rule.hf.contains("{l}") { (0..config.n_layers).map(Some).collect() } else { vec![None] };
        layers.into_iter().map(move |layer| (rule, layer))
    })
}

/// A rule's name with `{l}` replaced by `layer`.
fn fill(name: &str, layer: Option<usize>) -> String {
    layer.map_or_else(|| name.to_string(), |l| name.replace("{l}", &l.to_string()))
}

/// Every tensor `config` calls for, by HF name, with its shape: what a checkpoint of this model holds.
pub(crate) fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    instances(config).map(|(rule, layer)| (fill(rule.hf, layer), (rule.shape)(config))).collect()
}

fn table(architecture: Architecture) -> &'static [Rule] {
    match architecture {
        Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3 => LLAMA,
        Architecture::Gemma3 => GEMMA3,
        Architecture::Gpt2 => GPT2,
        Architecture::GptNeox => GPT_NEOX,
    }
}

impl ModelConfig {
    /// The HF tensors a checkpoint of this config holds, with their HF shapes, from this
    /// architecture's weight table: the tensors before the blocks, then each block's tensors
    /// together, then the rest. What a trainer writes out or a benchmark fabricates.
    pub fn hf_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let rules: Vec<&Rule> = table(self.architecture).iter().filter(|r| (r.when)(self)).collect();
        let per_layer = |r: &&&Rule| r.hf.contains("{l}");
        let mut out = Vec::new();
        let mut blocks_written = false;
        for rule in &rules {
            if !per_layer(&rule) {
                out.push((rule.hf.to_string(), (rule.shape)(self)));
            } else if !blocks_written {
                blocks_written = true;
                for l in 0..self.n_layers {
                    out.extend(rules.iter().filter(per_layer).map(|r| (r.hf.replace("{l}", &l.to_string()), (r.shape)(self))));
                }
            }
        }
        out
    }
}

/// Original GPT-2 checkpoints omit the `transformer.` prefix.
fn normalise_name(architecture: Architecture, name: &str) -> String {
    if architecture == Architecture::Gpt2 && !name.starts_with("transformer.") && !name.starts_with("lm_head.") {
        format!("transformer.{name}")
    } else {
        name.to_string()
    }
}

/// The internal weights of a model, and its parameter count as transformers reports it.
pub(crate) struct HostWeights<'t> {
    pub tensors: BTreeMap<String, HostTensor>,
    /// Matrices left quantised (only where [`load_table`]'s `keep` said so), decoded from their table a run of rows
    /// at a time as they are packed: loading never holds a whole matrix's codes beside the file.
    quantised: BTreeMap<String, HostQuant<'t>>,
    pub n_params: usize,
}

impl<'t> HostWeights<'t> {
    pub(crate) fn take(&mut self, name: &str) -> Result<HostTensor> {
        self.tensors.remove(name).ok_or_else(|| Error::MissingTensor { name: name.to_string(), expected: Shape(vec![]) })
    }

    /// `name`, when it stays quantised.
    pub(crate) fn take_quantised(&mut self, name: &str) -> Option<HostQuant<'t>> {
        self.quantised.remove(name)
    }
}

/// Whether a quantised matrix stays quantised: asked with its code layout and the values per storage row.
pub(crate) type KeepQuantised<'a> = &'a dyn Fn(CodeLayout, usize) -> bool;

/// Reads every tensor the config calls for from a parsed table, checking names, shapes and values. Quantised linear
/// weights and embeddings that `keep` accepts stay as stored (see [`HostQuant`], decoded when taken); every other
/// tensor is f32.
pub(crate) fn load_table<'t>(config: &ModelConfig, table_in: &'t TensorTable<'t>, keep: KeepQuantised<'_>) -> Result<HostWeights<'t>> {
    let by_name: BTreeMap<String, String> = table_in.names().map(|(name, _)| (normalise_name(config.architecture, name), name.to_string())).collect();
    let mut used = BTreeSet::new();
    let mut tensors = BTreeMap::new();
    let mut quantised = BTreeMap::new();
    let mut n_params = 0;

    for (rule, layer) in instances(config) {
        let hf_name = fill(rule.hf, layer);
        let expected = (rule.shape)(config);
        let original = by_name.get(&hf_name).ok_or_else(|| Error::MissingTensor { name: hf_name.clone(), expected: Shape(expected.clone()) })?;
        let shape = table_in.shape(original).ok_or_else(|| Error::MissingTensor { name: hf_name.clone(), expected: Shape(expected.clone()) })?;
        if shape != expected.as_slice() {
            return Err(Error::ShapeMismatch { name: table_in.display_name(original), expected: Shape(expected), found: Shape(shape.to_vec()) });
        }
        used.insert(original.clone());
        let targets: Vec<String> = rule.to.iter().map(|t| fill(t, layer)).collect();
        if let Some((shape, transposed)) = quantisable_matrix(rule.transform, &targets, &expected)
            && let Some(layout) = table_in.code_layout(original)
            && keep(layout, expected[1])
        {
            n_params += expected.iter().product::<usize>();
            quantised.insert(targets[0].clone(), HostQuant { shape, layout, transposed, table: table_in, original: original.clone() });
            continue;
        }
        let data = table_in.values(original)?;
        n_params += data.len();
        for (target, tensor) in targets.into_iter().zip(apply(rule.transform, config, &expected, data)) {
            tensors.insert(target, tensor);
        }
    }

    for (name, shape) in table_in.names() {
        let tied_head = config.tied_embeddings && matches!(name, "lm_head.weight" | "embed_out.weight");
        if !used.contains(name) && !tied_head && !IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return Err(Error::UnexpectedTensor { name: name.to_string(), shape, architecture: config.architecture.model_type().into() });
        }
    }
    Ok(HostWeights { tensors, quantised, n_params })
}

/// Where a tensor is one linear weight or embedding as stored (`Keep`) or transposed, its internal shape and
/// whether storage is transposed: such a tensor can stay quantised with its groups in file order.
fn quantisable_matrix(transform: Transform, targets: &[String], shape: &[usize]) -> Option<([usize; 2], bool)> {
    let linear = matches!(targets, [t] if (t.starts_with("blocks.") && t.ends_with(".weight")) || t == "embed" || t == "unembed");
    match (transform, shape) {
        (Keep, &[rows, cols]) if linear => Some(([rows, cols], false)),
        (Transpose, &[rows, cols]) if linear => Some(([cols, rows], true)),
        _ => None,
    }
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

fn apply(transform: Transform, config: &ModelConfig, shape: &[usize], data: Vec<f32>) -> Vec<HostTensor> {
    match (transform, shape) {
        (Keep, _) => vec![HostTensor { shape: shape.to_vec(), data }],
        (PlusOne, _) => vec![HostTensor { shape: shape.to_vec(), data: data.into_iter().map(|w| 1.0 + w).collect() }],
        (Transpose, &[rows, cols]) => vec![HostTensor { shape: vec![cols, rows], data: transpose(&data, rows, cols) }],
        (SplitLast3, &[rows, cols]) => {
            let part = cols / 3;
            (0..3)
                .map(|i| HostTensor {
                    shape: vec![rows, part],
                    data: data.chunks_exact(cols).flat_map(|row| &row[i * part..(i + 1) * part]).copied().collect(),
                })
                .collect()
        }
        (SplitLast3, &[len]) => data.chunks_exact(len / 3).map(|c| HostTensor { shape: vec![len / 3], data: c.to_vec() }).collect(),
        (NeoxQkv, _) => {
            // Rows are grouped per head as [q (head_dim); k (head_dim); v (head_dim)].
            let width: usize = shape[1..].iter().product();
            let head_rows = config.head_dim * width;
            let mut parts = [Vec::new(), Vec::new(), Vec::new()];
            for head in data.chunks_exact(3 * head_rows) {
                for (i, part) in parts.iter_mut().enumerate() {
                    part.extend_from_slice(&head[i * head_rows..(i + 1) * head_rows]);
                }
            }
            parts
                .into_iter()
                .map(|part| match shape {
                    &[_, cols] => HostTensor { shape: vec![cols, config.d_model], data: transpose(&part, config.d_model, cols) },
                    _ => HostTensor { shape: vec![config.d_model], data: part },
                })
                .collect()
        }
        _ => unreachable!("weight tables pair 2-D transforms with 2-D shapes"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use safetensors::{Dtype, tensor::TensorView};

    const CONFIG: &[u8] = br#"{"model_type":"gpt2","vocab_size":8,"n_embd":4,"n_layer":1,"n_head":2,"n_positions":6}"#;

    /// A complete 1-layer GPT-2 checkpoint, as (name, shape) pairs in the original unprefixed naming.
    fn gpt2_tensors() -> Vec<(String, Vec<usize>)> {
        let mut t = vec![("wte.weight", vec![8, 4]), ("wpe.weight", vec![6, 4]), ("ln_f.weight", vec![4]), ("ln_f.bias", vec![4])];
        t.extend([
            ("h.0.ln_1.weight", vec![4]),
            ("h.0.ln_1.bias", vec![4]),
            ("h.0.attn.c_attn.weight", vec![4, 12]),
            ("h.0.attn.c_attn.bias", vec![12]),
            ("h.0.attn.c_proj.weight", vec![4, 4]),
            ("h.0.attn.c_proj.bias", vec![4]),
            ("h.0.ln_2.weight", vec![4]),
            ("h.0.ln_2.bias", vec![4]),
            ("h.0.mlp.c_fc.weight", vec![4, 16]),
            ("h.0.mlp.c_fc.bias", vec![16]),
            ("h.0.mlp.c_proj.weight", vec![16, 4]),
            ("h.0.mlp.c_proj.bias", vec![4]),
            ("h.0.attn.bias", vec![1, 1, 6, 6]), // a causal-mask buffer old checkpoints carry
        ]);
        t.into_iter().map(|(n, s)| (n.to_string(), s)).collect()
    }

    fn serialize(tensors: &[(String, Vec<usize>)], fill: f32) -> Vec<u8> {
        let data: Vec<Vec<u8>> =
            tensors.iter().map(|(_, s)| (0..s.iter().product::<usize>()).flat_map(|i| (fill + i as f32).to_le_bytes()).collect()).collect();
        let views: Vec<(String, TensorView<'_>)> =
            tensors.iter().zip(&data).map(|((n, s), d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// Loads `files` (nothing kept quantised) and hands the weights to `f`.
    fn with_loaded<R>(config: &ModelConfig, files: &WeightFiles<'_>, f: impl FnOnce(HostWeights<'_>) -> R) -> Result<R> {
        let table = TensorTable::parse(files)?;
        Ok(f(load_table(config, &table, &|_, _| false)?))
    }

    fn load_err(tensors: &[(String, Vec<usize>)], fill: f32) -> String {
        let config = ModelConfig::from_hf_json(CONFIG).unwrap();
        match with_loaded(&config, &WeightFiles::Single(&serialize(tensors, fill)), |_| ()) {
            Ok(()) => "loaded".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_parameter_is_loaded_with_its_shape_and_split() {
        let config = ModelConfig::from_hf_json(CONFIG).unwrap();
        let bytes = serialize(&gpt2_tensors(), 0.0);
        let table = TensorTable::parse(&WeightFiles::Single(&bytes)).unwrap();
        let weights = load_table(&config, &table, &|_, _| false).unwrap();
        let shapes: BTreeMap<&str, &[usize]> = weights.tensors.iter().map(|(k, v)| (k.as_str(), v.shape.as_slice())).collect();
        assert_eq!(shapes["blocks.0.attn.k.weight"], &[4, 4]);
        assert_eq!(shapes["blocks.0.mlp.up.weight"], &[4, 16]);
        assert_eq!(shapes.len(), 20, "{shapes:?}");
        // c_attn columns 4..8 are k: row 1 of k is elements 16..20 of row 1 (offset 12) of c_attn.
        let k = &weights.tensors["blocks.0.attn.k.weight"].data;
        assert_eq!(&k[4..8], &[16.0, 17.0, 18.0, 19.0]);
        assert_eq!(weights.n_params, 8 * 4 + 6 * 4 + 8 + 8 + 48 + 12 + 16 + 4 + 8 + 64 + 16 + 64 + 4);
    }

    #[test]
    fn the_generated_tensor_list_is_a_complete_checkpoint() {
        let config = ModelConfig::from_hf_json(CONFIG).unwrap();
        let tensors = config.hf_tensors();
        assert_eq!(tensors.len(), gpt2_tensors().len() - 1, "every tensor but the mask buffer");
        assert_eq!(load_err(&tensors, 0.0), "loaded");
        let llama = br#"{"model_type":"llama","vocab_size":8,"hidden_size":4,"intermediate_size":6,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1}"#;
        let names: Vec<String> = ModelConfig::from_hf_json(llama).unwrap().hf_tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[..3], ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight"]);
        assert_eq!(names[names.len() - 2..], ["model.norm.weight", "lm_head.weight"]);
        assert_eq!(names.len(), 2 + 9 * 2 + 1);
    }

    #[test]
    fn missing_unexpected_misshaped_and_non_finite_tensors_are_named() {
        let mut missing = gpt2_tensors();
        missing.retain(|(n, _)| n != "h.0.mlp.c_fc.bias");
        assert_eq!(load_err(&missing, 0.0), "tensor `transformer.h.0.mlp.c_fc.bias` is missing (expected shape [16])");

        let mut extra = gpt2_tensors();
        extra.push(("h.0.mlp.extra.weight".into(), vec![2]));
        assert!(load_err(&extra, 0.0).contains("tensor `h.0.mlp.extra.weight` (shape [2]) is not part of a `gpt2` model"));

        let mut wrong = gpt2_tensors();
        wrong[4].1 = vec![5];
        assert_eq!(load_err(&wrong, 0.0), "tensor `h.0.ln_1.weight` has shape [5], but the config implies [4]");

        assert!(load_err(&gpt2_tensors(), f32::NAN).contains("contains NaN or infinite values"));
    }

    #[test]
    fn shard_index_must_match_the_shards() {
        let config = ModelConfig::from_hf_json(CONFIG).unwrap();
        let all = gpt2_tensors();
        let (a, b) = all.split_at(5);
        let (sa, sb) = (serialize(a, 0.0), serialize(b, 0.0));
        let map: BTreeMap<String, &str> =
            a.iter().map(|(n, _)| (n.clone(), "a.safetensors")).chain(b.iter().map(|(n, _)| (n.clone(), "b.safetensors"))).collect();
        let index = serde_json::to_vec(&serde_json::json!({ "weight_map": map })).unwrap();
        let shards = BTreeMap::from([("a.safetensors".to_string(), sa.as_slice()), ("b.safetensors".to_string(), sb.as_slice())]);
        assert!(with_loaded(&config, &WeightFiles::Sharded { index: &index, shards: shards.clone() }, |_| ()).is_ok());
        let only_a = BTreeMap::from([("a.safetensors".to_string(), sa.as_slice())]);
        let err = with_loaded(&config, &WeightFiles::Sharded { index: &index, shards: only_a }, |_| ()).err().unwrap().to_string();
        assert!(err.contains("shard `b.safetensors` is named in the index but was not provided"), "{err}");
    }
}
