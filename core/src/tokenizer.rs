//! Text to token ids and back, from a `tokenizer.json`, as `transformers` encodes by default.

use crate::error::{Error, Result};

/// A HuggingFace tokenizer loaded from `tokenizer.json` bytes.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The id of a token of the vocabulary (e.g. a special token), if it exists.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes with special tokens: the tokenizer's post-processor decides whether BOS comes first.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text, leaving out special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The vocabulary piece of one id (`None` outside the vocabulary).
    pub fn piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Turns a growing id sequence into text deltas, decoded in the context of the prompt (so a
/// decoder that strips a leading space does not eat the first generated space), such that the
/// streamed pieces add up to [`StreamDecoder::text`].
#[derive(Debug)]
pub struct StreamDecoder {
    prompt: Vec<u32>,
    prompt_text: String,
    emitted: String,
}

impl StreamDecoder {
    pub fn new(tokenizer: &Tokenizer, prompt: &[u32]) -> Result<Self> {
        Ok(Self { prompt: prompt.to_vec(), prompt_text: tokenizer.decode(prompt)?, emitted: String::new() })
    }

    /// The continuation text of `generated` after the prompt.
    pub fn text(&self, tokenizer: &Tokenizer, generated: &[u32]) -> Result<String> {
        let mut all = self.prompt.clone();
        all.extend_from_slice(generated);
        let text = tokenizer.decode(&all)?;
        match text.strip_prefix(self.prompt_text.as_str()) {
            Some(rest) => Ok(rest.to_string()),
            None => tokenizer.decode(generated),
        }
    }

    /// The text that `generated` (all new tokens so far) adds to what was already emitted. Holds
    /// text back while the decode ends in a partial UTF-8 character (shown as U+FFFD).
    pub fn push(&mut self, tokenizer: &Tokenizer, generated: &[u32]) -> Result<String> {
        let text = self.text(tokenizer, generated)?;
        if text.ends_with('\u{FFFD}') || !text.starts_with(self.emitted.as_str()) {
            return Ok(String::new());
        }
        let delta = text[self.emitted.len()..].to_string();
        self.emitted = text;
        Ok(delta)
    }
}
