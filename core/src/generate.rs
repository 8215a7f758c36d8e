//! Prompts in, tokens out: batched prefill, KV-cached generation and sampling.

use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, ChatTemplate};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::hooks::Hooks;
use crate::model::{KvCache, Model};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::weights::WeightFiles;

/// Reads a tensor back to the host; `await`s so WebGPU never blocks.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(|e| Error::Backend { backend: "tensor", reason: format!("{e:?}") })?;
    data.convert::<f32>().try_to_vec::<f32>().map_err(|e| Error::Backend { backend: "tensor", reason: format!("{e:?}") })
}

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1 = off).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

impl Sampling {
    fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::Sampling(format!("temperature must be ≥ 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Sampling(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        Ok(())
    }
}

/// Draws tokens from logits with a seeded generator.
pub struct Sampler {
    settings: Sampling,
    rng: StdRng,
}

impl Sampler {
    pub fn new(settings: Sampling) -> Result<Self> {
        settings.check()?;
        let rng = StdRng::seed_from_u64(settings.seed);
        Ok(Self { settings, rng })
    }

    /// The next token for one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.settings.temperature == 0.0 {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / self.settings.temperature)).collect();
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Top-k first selects the k best in linear time and sorts only them: a full sort of Gemma 3's 262 144
        // logits took 5 ms a token in wasm.
        if self.settings.top_k > 0 && self.settings.top_k < candidates.len() {
            candidates.select_nth_unstable_by(self.settings.top_k - 1, order);
            candidates.truncate(self.settings.top_k);
        }
        candidates.sort_by(order);
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|&(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.settings.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = probs
                .iter()
                .position(|&p| {
                    cumulative += p;
                    cumulative >= self.settings.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let mut draw: f32 = self.rng.random();
        for (&(id, _), &p) in candidates.iter().zip(&probs) {
            if draw < p {
                return id;
            }
            draw -= p;
        }
        candidates[probs.len() - 1].0
    }
}

/// Index of the largest value; the first one on ties, as `torch.argmax`.
pub fn argmax(values: &[f32]) -> u32 {
    // The largest value first, eight lanes at a time (which the compiler vectorises: a scalar scan of Gemma 3's
    // 262 144 logits was 2% of decoding in wasm), then where it first occurs.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            if v > *m {
                *m = v;
            }
        }
    }
    let max = lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    values.iter().position(|&v| v == max).unwrap_or(0) as u32
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Stop when the model emits an end-of-sequence token.
    pub stop_at_eos: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxTokens,
    Eos,
    Cancelled,
}

/// One streamed token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenEvent {
    pub index: usize,
    pub id: u32,
    /// Text this token adds to the decoded output (may be empty while a character is incomplete).
    pub text: String,
}

/// The result of a generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub input_ids: Vec<u32>,
    /// New tokens only.
    pub ids: Vec<u32>,
    /// The text the new tokens add after the prompt (decoded in context).
    pub text: String,
    pub stop: StopReason,
}

/// A stage of [`TextModel::from_gguf_in_stages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStage {
    /// Parsing the file's header and configuration.
    Header,
    /// Building the tokenizer (and the chat template).
    Tokenizer,
    /// Decoding, checking and packing (or uploading) the weights.
    Weights,
    /// Loaded.
    Done,
}

impl LoadStage {
    pub fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Tokenizer => "tokenizer",
            Self::Weights => "weights",
            Self::Done => "done",
        }
    }
}

/// A model with its tokenizer (and chat template, for instruct models): what the CLI and the app run.
pub struct TextModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
}

impl TextModel {
    /// Loads a checkpoint from the bytes of `config.json`, the weights and `tokenizer.json`.
    pub fn from_bytes(config_json: &[u8], weights: &WeightFiles<'_>, tokenizer_json: &[u8], device: &Device) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(tokenizer_json)?;
        let model = Model::from_bytes(config_json, weights, device)?;
        Ok(Self { model, tokenizer, chat_template: None })
    }

    /// Loads a GGUF model file: configuration, weights, tokenizer and chat template from one file.
    /// `tokenizer_json` replaces the tokenizer the file describes (for pre-tokenizers not known here).
    pub fn from_gguf(bytes: &[u8], tokenizer_json: Option<&[u8]>, device: &Device) -> Result<Self> {
        Self::from_gguf_in_stages(bytes, tokenizer_json, device, &mut |_| {})
    }

    /// [`TextModel::from_gguf`], calling `stage` as each stage of loading starts (for progress and a load profile).
    pub fn from_gguf_in_stages(bytes: &[u8], tokenizer_json: Option<&[u8]>, device: &Device, stage: &mut dyn FnMut(LoadStage)) -> Result<Self> {
        stage(LoadStage::Header);
        let file = Gguf::parse(bytes)?;
        // The configuration first: what it refuses is said the same way the app's footprint check says it.
        let config = ModelConfig::from_gguf(&file)?;
        stage(LoadStage::Tokenizer);
        let tokenizer = match tokenizer_json {
            Some(json) => Tokenizer::from_bytes(json)?,
            None => Tokenizer::from_gguf(&file)?,
        };
        let chat_template = match file.str("tokenizer.chat_template") {
            Some(source) => {
                let token = |key: &str| file.uint(key).and_then(|id| tokenizer.piece(id as u32)).unwrap_or_default();
                Some(ChatTemplate::new(source, &token("tokenizer.ggml.bos_token_id"), &token("tokenizer.ggml.eos_token_id"))?)
            }
            None => None,
        };
        stage(LoadStage::Weights);
        let model = Model::from_gguf(&file, config, device)?;
        stage(LoadStage::Done);
        Ok(Self { model, tokenizer, chat_template })
    }

    /// Uses `template` for [`TextModel::chat_ids`] (e.g. from `tokenizer_config.json`).
    pub fn with_chat_template(mut self, template: Option<ChatTemplate>) -> Self {
        if template.is_some() {
            self.chat_template = template;
        }
        self
    }

    /// The ids of a conversation in the model's chat format, ending with the assistant's turn
    /// opener, encoded as transformers' `apply_chat_template` does (the template writes any BOS
    /// itself, so none is added). Models without a template are refused.
    pub fn chat_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::ChatTemplate("this model has no chat template (it is not an instruct model); use a plain prompt".into()))?;
        let ids = self.tokenizer.encode_plain(&template.render(messages, true)?)?;
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        self.model.check_ids(&ids)?;
        Ok(ids)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    /// Encodes a prompt, refusing empty ones and ids the model cannot embed.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(prompt)?;
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        self.model.check_ids(&ids)?;
        Ok(ids)
    }

    /// Runs right-padded rows through the model once; see [`Model::prefill`].
    pub fn prefill(&self, rows: &[Vec<u32>], hooks: &mut Hooks) -> Result<Tensor<3>> {
        self.model.prefill(rows, hooks)
    }

    /// Last-position logits of each row, in one batched prefill: `rows.len()` vectors of `vocab`.
    pub async fn last_logits(&self, rows: &[Vec<u32>], hooks: &mut Hooks) -> Result<Vec<Vec<f32>>> {
        let hidden = self.prefill(rows, hooks)?;
        let last: Vec<Tensor<3>> = rows.iter().enumerate().map(|(i, row)| hidden.clone().slice([i..i + 1, row.len() - 1..row.len()])).collect();
        let logits = self.model.unembed(Tensor::cat(last, 0));
        let vocab = self.config().vocab_size;
        Ok(read_f32(logits).await?.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Generates after `input_ids`, calling `on_token` for each new token; return `false` from it
    /// to stop early. `hooks` edits and captures apply to the prompt and every new token.
    pub async fn generate(
        &self,
        input_ids: &[u32],
        options: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        let mut decoder = Decoder::new(self, input_ids, options, hooks)?;
        while let Some(event) = decoder.next(hooks).await? {
            if !on_token(&event) {
                decoder.cancel();
            }
        }
        decoder.finish()
    }
}

/// Token-by-token generation. Call [`Decoder::next`] until it returns `None`: callers that must
/// stay responsive (a Web Worker that reads cancel messages) yield to their event loop between calls.
pub struct Decoder<'m> {
    model: &'m TextModel,
    sampler: Sampler,
    cache: KvCache,
    stream: StreamDecoder,
    input_ids: Vec<u32>,
    ids: Vec<u32>,
    next_input: Vec<u32>,
    max_new_tokens: usize,
    stop_at_eos: bool,
    stop: Option<StopReason>,
}

impl<'m> Decoder<'m> {
    /// Checks the prompt, the hooks and the context budget; nothing runs yet.
    pub fn new(model: &'m TextModel, input_ids: &[u32], options: &GenerateOptions, hooks: &Hooks) -> Result<Self> {
        hooks.check(model.config())?;
        if input_ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        model.model.check_ids(input_ids)?;
        let limit = model.config().context_length;
        let needed = input_ids.len() + options.max_new_tokens;
        if needed > limit {
            return Err(Error::ContextTooLong { prompt: input_ids.len(), new: options.max_new_tokens, needed, limit });
        }
        Ok(Self {
            model,
            sampler: Sampler::new(options.sampling.clone())?,
            cache: model.model.new_cache(),
            stream: StreamDecoder::new(&model.tokenizer, input_ids)?,
            input_ids: input_ids.to_vec(),
            ids: Vec::with_capacity(options.max_new_tokens),
            next_input: input_ids.to_vec(),
            max_new_tokens: options.max_new_tokens,
            stop_at_eos: options.stop_at_eos,
            stop: None,
        })
    }

    /// Runs one forward step (the whole prompt the first time) and samples the next token;
    /// `None` once generation has ended.
    pub async fn next(&mut self, hooks: &mut Hooks) -> Result<Option<TokenEvent>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        if self.ids.len() >= self.max_new_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let model = &self.model.model;
        let input = std::mem::take(&mut self.next_input);
        let hidden = model.forward_hidden(model.batch_tensor(&[input]), &mut self.cache, hooks)?;
        let [_, len, _] = hidden.dims();
        let logits = read_f32(model.unembed(hidden.slice_dim(1, len - 1..len))).await?;
        let id = self.sampler.sample(&logits);
        self.ids.push(id);
        let text = self.stream.push(&self.model.tokenizer, &self.ids)?;
        if self.stop_at_eos && self.model.config().eos_token_ids.contains(&id) {
            self.stop = Some(StopReason::Eos);
            return Ok(None);
        }
        self.next_input = vec![id];
        Ok(Some(TokenEvent { index: self.ids.len() - 1, id, text }))
    }

    /// Ends generation after the tokens produced so far.
    pub fn cancel(&mut self) {
        self.stop.get_or_insert(StopReason::Cancelled);
    }

    /// The new tokens so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The result: new ids, their text decoded in context, and why generation stopped.
    pub fn finish(self) -> Result<Generation> {
        let text = self.stream.text(&self.model.tokenizer, &self.ids)?;
        Ok(Generation { input_ids: self.input_ids, ids: self.ids, text, stop: self.stop.unwrap_or(StopReason::Cancelled) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut long: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin()).collect();
        (long[13], long[500], long[1000]) = (2.0, 2.0, 2.0);
        assert_eq!(argmax(&long), 13, "the first of ties, past the vector lanes");
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        let mut s = Sampler::new(Sampling::default()).unwrap();
        assert_eq!(s.sample(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let settings = Sampling { temperature: 1.0, top_k: 3, top_p: 1.0, seed: 7 };
        let draw = |settings: &Sampling| {
            let mut s = Sampler::new(settings.clone()).unwrap();
            (0..200).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draw(&settings);
        assert_eq!(a, draw(&settings));
        let mut top3: Vec<u32> = (0..50).collect();
        top3.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
        assert!(a.iter().all(|id| top3[..3].contains(id)));
        assert!(top3[..3].iter().all(|id| a.contains(id)), "all three top tokens get drawn");
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probabilities ≈ 0.84, 0.11, 0.04, ...: p = 0.5 keeps only the first.
        let logits = [4.0, 2.0, 1.0, 0.0, -1.0];
        let mut s = Sampler::new(Sampling { temperature: 1.0, top_k: 0, top_p: 0.5, seed: 1 }).unwrap();
        assert!((0..100).all(|_| s.sample(&logits) == 0));
    }

    #[test]
    fn bad_sampling_is_refused() {
        assert!(Sampler::new(Sampling { temperature: -1.0, ..Sampling::default() }).is_err());
        assert!(Sampler::new(Sampling { top_p: 0.0, ..Sampling::default() }).is_err());
    }
}
