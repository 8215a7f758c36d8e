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

/// Turns a growing id sequence into text deltas, so streamed pieces add up to the full decode.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    emitted: String,
}

impl StreamDecoder {
    /// The text that `ids` (all tokens so far) adds to what was already emitted. Holds text back
    /// while the decode ends in a partial UTF-8 character (shown as U+FFFD).
    pub fn push(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
        let text = tokenizer.decode(ids)?;
        if text.ends_with('\u{FFFD}') || !text.starts_with(self.emitted.as_str()) {
            return Ok(String::new());
        }
        let delta = text[self.emitted.len()..].to_string();
        self.emitted = text;
        Ok(delta)
    }
}
