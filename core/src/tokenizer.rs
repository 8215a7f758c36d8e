//! Text to token ids and back, from a `tokenizer.json`, as `transformers` encodes by default.

use crate::error::{Error, Result};

/// A HuggingFace tokenizer loaded from `tokenizer.json` bytes.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_before_tokenizers(bytes)?;
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

/// Refuses what `tokenizers` 0.23 would panic on instead of returning an error (found by
/// `fuzz/`): a JSON syntax error inside `decoder` (its deserializer `expect`s), a `Precompiled`
/// normalizer whose fields do not parse (an `expect` too), a `TemplateProcessing`
/// post-processor naming a special token it does not define (a map lookup that panics at encode
/// time), and BPE merges that do not join two tokens into a vocabulary token (slices out of range
/// while building the model). A panic in the browser's worker would take the page's model
/// down with it.
fn check_before_tokenizers(bytes: &[u8]) -> Result<()> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Tokenizer(format!("not JSON: {e}")))?;
    check_components(&value)
}

fn check_components(value: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            // By shape, not by `type`: `tokenizers` also accepts components without their tag.
            let kind = map.get("type").and_then(Value::as_str);
            if kind == Some("Precompiled") || map.contains_key("precompiled_charsmap") {
                let mut tagged = map.clone();
                tagged.insert("type".into(), Value::from("Precompiled"));
                serde_json::from_value::<tokenizers::normalizers::Precompiled>(Value::Object(tagged))
                    .map_err(|e| Error::Tokenizer(format!("a Precompiled normalizer does not parse: {e}")))?;
            }
            if kind == Some("TemplateProcessing") || (map.contains_key("single") && map.contains_key("special_tokens")) {
                check_template(map)?;
            }
            if map.get("vocab").is_some_and(Value::is_object) && map.get("merges").is_some_and(Value::is_array) {
                check_bpe_merges(map)?;
            }
            map.values().try_for_each(check_components)
        }
        Value::Array(items) => items.iter().try_for_each(check_components),
        _ => Ok(()),
    }
}

/// Every merge joins two vocabulary tokens into a third (with a `continuing_subword_prefix`, the
/// second token starts with it and the prefix is dropped). `tokenizers` writes the joined token
/// into a buffer as long as the longest vocabulary entry and cuts the prefix off by length, both
/// unchecked, before it looks the result up.
fn check_bpe_merges(map: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let prefix = map.get("continuing_subword_prefix").and_then(serde_json::Value::as_str).unwrap_or_default();
    let Some(vocab) = map.get("vocab").and_then(serde_json::Value::as_object) else { return Ok(()) };
    let merges = map.get("merges").and_then(serde_json::Value::as_array).map_or(&[][..], Vec::as_slice);
    for merge in merges {
        let pair = match merge {
            serde_json::Value::String(pair) => pair.split_once(' '),
            serde_json::Value::Array(pair) => pair.first().and_then(serde_json::Value::as_str).zip(pair.get(1).and_then(serde_json::Value::as_str)),
            _ => None,
        };
        // Malformed entries are left to `tokenizers`, which reports them.
        let Some((first, second)) = pair else { continue };
        let Some(rest) = second.strip_prefix(prefix) else {
            return Err(Error::Tokenizer(format!("the BPE merge {merge} does not continue with the prefix {prefix:?}")));
        };
        let joined = format!("{first}{rest}");
        if !vocab.contains_key(&joined) {
            return Err(Error::Tokenizer(format!("the BPE merge {merge} makes {joined:?}, which is not in the vocabulary")));
        }
    }
    Ok(())
}

/// Every `{"SpecialToken": {"id": …}}` of the `single` and `pair` templates is a key of
/// `special_tokens`, the `single` template reads no second sequence, and each special token has
/// as many `tokens` as `ids` (`tokenizers` indexes all three unchecked at encode time).
fn check_template(map: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    use serde_json::Value;
    let defined = map.get("special_tokens").and_then(Value::as_object);
    for template in ["single", "pair"] {
        let pieces = map.get(template).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for piece in pieces {
            if let Some(id) = piece.get("SpecialToken").and_then(|t| t.get("id")).and_then(Value::as_str)
                && !defined.is_some_and(|d| d.contains_key(id))
            {
                return Err(Error::Tokenizer(format!("the {template} template uses special token `{id}`, which `special_tokens` does not define")));
            }
            if template == "single" && piece.get("Sequence").and_then(|s| s.get("id")).and_then(Value::as_str) == Some("B") {
                return Err(Error::Tokenizer("the single template reads sequence B, which a single text does not have".into()));
            }
        }
    }
    for (id, token) in defined.into_iter().flatten() {
        let count = |field: &str| token.get(field).and_then(Value::as_array).map(Vec::len);
        if count("ids") != count("tokens") {
            return Err(Error::Tokenizer(format!("special token `{id}` has {} ids but {} tokens", count("ids").unwrap_or(0), count("tokens").unwrap_or(0))));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Inputs on which `tokenizers` itself panics: each must be an error here.
    #[test]
    fn inputs_that_panic_inside_tokenizers_are_errors() {
        let broken_decoder = br#"{"version":"1.0","decoder":{"type":"ByteLevel" "add_prefix_space":true},"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let err = Tokenizer::from_bytes(broken_decoder).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not JSON"), "{err}");
        let precompiled = br#"{"version":"1.0","normalizer":{"type":"Precompiled"},"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let err = Tokenizer::from_bytes(precompiled).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("Precompiled normalizer does not parse"), "{err}");
        let template = br#"{"version":"1.0","post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{}},"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let err = Tokenizer::from_bytes(template).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("special token `<s>`"), "{err}");
        let second = br#"{"version":"1.0","post_processor":{"type":"TemplateProcessing","single":[{"Sequence":{"id":"B","type_id":0}}],"pair":[],"special_tokens":{}},"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let err = Tokenizer::from_bytes(second).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("reads sequence B"), "{err}");
        let lengths = br#"{"version":"1.0","post_processor":{"type":"TemplateProcessing","single":[],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1,2],"tokens":["<s>"]}}},"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let err = Tokenizer::from_bytes(lengths).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("has 2 ids but 1 tokens"), "{err}");
        let merges = br#"{"version":"1.0","model":{"type":"BPE","continuing_subword_prefix":"@@","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}"#;
        let err = Tokenizer::from_bytes(merges).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("does not continue with the prefix"), "{err}");
        let merges = br#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0,"bc":1},"merges":["a bc"]}}"#;
        let err = Tokenizer::from_bytes(merges).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(r#"makes "abc", which is not in the vocabulary"#), "{err}");
        let untagged = br#"{"version":"1.0","model":{"vocab":{"a":0,"bc":1},"merges":[["a","bc"]]}}"#;
        let err = Tokenizer::from_bytes(untagged).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("which is not in the vocabulary"), "{err}");
        let fine = br#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}"#;
        assert!(Tokenizer::from_bytes(fine).is_ok());
    }
}
