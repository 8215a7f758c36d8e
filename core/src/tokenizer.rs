//! Text to token ids and back, from a `tokenizer.json` or a GGUF file's `tokenizer.ggml.*`
//! metadata, as `transformers` encodes by default.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::gguf::{self, Gguf};

/// A HuggingFace tokenizer loaded from `tokenizer.json` bytes.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// How a vocabulary piece spells its bytes.
    spelling: Spelling,
    /// Added tokens: shown by name when special, as their text otherwise.
    added: HashMap<u32, bool>,
}

/// How a vocabulary piece spells the bytes it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2's byte-level BPE: every byte is one printable character (a space is `Ġ`, a newline `Ċ`).
    ByteLevel,
    /// SentencePiece: text with `▁` for a space, and `<0x0A>` for a byte with no piece of its own.
    SentencePiece,
}

impl Tokenizer {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_before_tokenizers(bytes)?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self::wrap(inner))
    }

    fn wrap(inner: tokenizers::Tokenizer) -> Self {
        use tokenizers::decoders::DecoderWrapper;
        fn byte_level(d: &DecoderWrapper) -> bool {
            match d {
                DecoderWrapper::ByteLevel(_) => true,
                DecoderWrapper::Sequence(s) => s.get_decoders().iter().any(byte_level),
                _ => false,
            }
        }
        let spelling = if inner.get_decoder().is_some_and(byte_level) { Spelling::ByteLevel } else { Spelling::SentencePiece };
        let added = inner.get_added_tokens_decoder().into_iter().map(|(id, token)| (id, token.special)).collect();
        Self { inner, spelling, added }
    }

    /// Rebuilds the tokenizer a GGUF file describes (`tokenizer.ggml.*`) as the `tokenizer.json`
    /// transformers' GGUF loader makes of it, then loads that like any other: `gpt2` byte-level BPE
    /// with the file's merges and the pre-tokenizer `tokenizer.ggml.pre` names, or `llama`
    /// SentencePiece BPE with byte fallback and merges recovered from the vocabulary.
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self> {
        let as_gguf = |e: Error| match e {
            Error::Tokenizer(reason) => Error::GgufTokenizer(reason),
            other => other,
        };
        gguf_tokenizer(file)?.build().map_err(as_gguf)
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

    /// Encodes without adding special tokens (special tokens written in the text still match):
    /// for text that already carries them, like a rendered chat template.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
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

    /// The bytes of text one token stands for, or `None` for a special token (or an id outside
    /// the vocabulary). A byte-level piece may hold part of a character: see [`TokenTexts`].
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.piece(id)?;
        match self.added.get(&id) {
            Some(true) => return None,
            // An added token's content is its text, not byte-level characters (SentencePiece's still spell spaces `▁`).
            Some(false) if self.spelling == Spelling::ByteLevel => return Some(piece.into_bytes()),
            _ => {}
        }
        Some(match self.spelling {
            Spelling::ByteLevel => piece.chars().map(|c| byte_level_byte(c).unwrap_or(b'?')).collect(),
            Spelling::SentencePiece => match piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) if piece.len() == 6 => vec![byte],
                _ => piece.replace('\u{2581}', " ").into_bytes(),
            },
        })
    }
}

/// The byte a GPT-2 byte-level character stands for. Printable Latin-1 bytes are themselves; the
/// 68 others (controls, space, soft hyphen) are U+0100 onwards, in byte order. Written here because
/// `tokenizers` keeps its table private.
fn byte_level_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let c = u32::from(c);
    if printable(c) {
        return u8::try_from(c).ok();
    }
    let n = c.checked_sub(0x100)?;
    (0u32..256).filter(|b| !printable(*b)).nth(n as usize).and_then(|b| u8::try_from(b).ok())
}

/// What one token stands for, as the token view shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenText {
    /// The characters this token completes, with any bytes held from the tokens before it.
    pub text: String,
    /// Bytes of this token that do not form a character yet (a later token completes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<u8>,
    /// A special token (`<|im_start|>`): `text` is its name, not text the model wrote.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub special: bool,
}

/// Turns a sequence of ids, one at a time, into what each token stands for, holding bytes that do
/// not form a character yet until a later token completes them.
#[derive(Debug, Default)]
pub struct TokenTexts {
    held: Vec<u8>,
}

impl TokenTexts {
    /// What `id`, after the ids already seen, stands for.
    pub fn next(&mut self, tokenizer: &Tokenizer, id: u32) -> TokenText {
        let Some(bytes) = tokenizer.token_bytes(id) else {
            // Bytes held before a special token never form a character.
            self.held.clear();
            return TokenText { text: tokenizer.piece(id).unwrap_or_else(|| format!("<id {id}>")), partial: Vec::new(), special: true };
        };
        self.held.extend_from_slice(&bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.held) {
                Ok(complete) => {
                    text.push_str(complete);
                    self.held.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(&String::from_utf8_lossy(&self.held[..valid]));
                    match e.error_len() {
                        // Bytes that can never form a character: one replacement character, as decoding shows them.
                        Some(bad) => {
                            text.push('\u{FFFD}');
                            self.held.drain(..valid + bad);
                        }
                        None => {
                            self.held.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        let partial = self.held[self.held.len().saturating_sub(bytes.len())..].to_vec();
        TokenText { text, partial, special: false }
    }

    /// What each of `ids` stands for, in order.
    pub fn all(tokenizer: &Tokenizer, ids: &[u32]) -> Vec<TokenText> {
        let mut texts = Self::default();
        ids.iter().map(|&id| texts.next(tokenizer, id)).collect()
    }
}

fn gguf_error(reason: impl Into<String>) -> Error {
    Error::GgufTokenizer(reason.into())
}

/// Splits that `tokenizer.ggml.pre` names (llama.cpp's pre-tokenizers), as regular expressions
/// applied before byte-level BPE.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer of a byte-level vocabulary, by llama.cpp's name for it.
fn byte_level_pre_tokenizer(pre: &str) -> Result<Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        // SmolLM: every digit on its own, then GPT-2's split (the HF repo's tokenizer.json).
        "smollm" => json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "dbrx" | "falcon3" => split(LLAMA3_SPLIT),
        other => {
            return Err(gguf_error(format!(
                "the pre-tokenizer `{other}` (tokenizer.ggml.pre) is not known here (default, gpt2, smollm, qwen2, llama3); supply the model's tokenizer.json beside the .gguf file"
            )));
        }
    })
}

/// GPT-2's byte → printable character table (byte-level BPE spells every byte as one of these).
fn byte_alphabet() -> Vec<char> {
    let printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            256 + extra - 1
        };
        chars[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    chars
}

/// Merges implied by a SentencePiece vocabulary, best first, as transformers' `generate_merges`
/// recovers them: every split of a token into two vocabulary tokens, ranked by `rank` of the
/// whole token (lower first), then longer left and right parts first.
fn merges_from_vocabulary(tokens: &[String], rank: impl Fn(usize) -> f64) -> Vec<(usize, usize)> {
    let ids: std::collections::HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize, usize)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let mut local: Vec<(usize, usize)> =
            token.char_indices().skip(1).filter_map(|(at, _)| Some((*ids.get(&token[..at])?, *ids.get(&token[at..])?))).collect();
        local.sort_unstable();
        merges.extend(local.into_iter().map(|(l, r)| (rank(id), tokens[l].chars().count(), tokens[r].chars().count(), l, r)));
    }
    // Stable: ties keep vocabulary order, as Python's sort does.
    merges.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    merges.into_iter().map(|(_, _, _, l, r)| (l, r)).collect()
}

/// The `tokenizer.json` a GGUF file's tokenizer metadata stands for.
fn gguf_tokenizer(file: &Gguf<'_>) -> Result<GgufTokenizer> {
    let strings = |key: &str| -> Result<Option<Vec<String>>> {
        match file.array(key) {
            None => Ok(None),
            Some(items) => items
                .iter()
                .map(|v| match v {
                    gguf::Value::Str(s) => Ok(s.clone()),
                    _ => Err(gguf_error(format!("`{key}` holds a value that is not a string"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    };
    let model = file.str("tokenizer.ggml.model").ok_or_else(|| gguf_error("`tokenizer.ggml.model` is missing; supply tokenizer.json"))?;
    let mut tokens = strings("tokenizer.ggml.tokens")?.ok_or_else(|| gguf_error("`tokenizer.ggml.tokens` is missing"))?;
    let types: Vec<i128> =
        file.array("tokenizer.ggml.token_type").map(|a| a.iter().map(|v| if let gguf::Value::Int(i) = v { *i } else { 1 }).collect()).unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(gguf_error(format!("{} token types for {} tokens", types.len(), tokens.len())));
    }
    let id = |key: &str| -> Result<Option<usize>> {
        match file.uint(key) {
            None => Ok(None),
            Some(i) if (i as usize) < tokens.len() => Ok(Some(i as usize)),
            Some(i) => Err(gguf_error(format!("`{key}` is {i}, outside the {} tokens", tokens.len()))),
        }
    };
    let (bos, unk) = (id("tokenizer.ggml.bos_token_id")?, id("tokenizer.ggml.unknown_token_id")?);
    id("tokenizer.ggml.eos_token_id")?;
    let alphabet: std::collections::HashSet<char> = byte_alphabet().into_iter().collect();
    let spelled = |token: &str| token.chars().all(|c| alphabet.contains(&c));
    let byte_level = model == "gpt2";
    let (model_json, normalizer, pre_tokenizer, decoder) = match model {
        "gpt2" => {
            let table = byte_alphabet();
            // Tokens spelled outside the byte alphabet are respelled byte by byte, as transformers does.
            for token in &mut tokens {
                if !spelled(token) {
                    *token = token.bytes().map(|b| table[b as usize]).collect();
                }
            }
            let merges = strings("tokenizer.ggml.merges")?.ok_or_else(|| gguf_error("a `gpt2` tokenizer needs `tokenizer.ggml.merges`"))?;
            let pre = file.str("tokenizer.ggml.pre").unwrap_or("default");
            let merges = merges
                .iter()
                .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| gguf_error(format!("the merge {m:?} is not two tokens"))))
                .collect::<Result<Vec<_>>>()?;
            let model = Bpe { merges, unk_token: None, sentencepiece: false };
            (
                model,
                Value::Null,
                byte_level_pre_tokenizer(pre)?,
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
            )
        }
        "llama" => {
            let gemma = matches!(file.architecture()?, "gemma" | "gemma2" | "gemma3");
            let merges = if gemma {
                // Gemma stores runs of spaces as spaces, and its merge order is the file's order.
                for token in &mut tokens {
                    if token.len() > 1 && token.chars().all(|c| c == ' ') {
                        *token = "▁".repeat(token.len());
                    }
                }
                merges_from_vocabulary(&tokens, |id| id as f64)
            } else {
                let scores: Vec<f64> = file
                    .array("tokenizer.ggml.scores")
                    .map(|a| a.iter().map(|v| if let gguf::Value::Float(f) = v { *f } else { 0.0 }).collect())
                    .unwrap_or_default();
                if scores.len() != tokens.len() {
                    return Err(gguf_error(format!("{} scores for {} tokens", scores.len(), tokens.len())));
                }
                merges_from_vocabulary(&tokens, |id| -scores[id])
            };
            let merges = merges.into_iter().map(|(l, r)| (tokens[l].clone(), tokens[r].clone())).collect();
            let model = Bpe { merges, unk_token: unk.map(|u| tokens[u].clone()), sentencepiece: true };
            let decode = |strip: bool| {
                let mut steps =
                    vec![json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}), json!({"type": "ByteFallback"}), json!({"type": "Fuse"})];
                if strip {
                    steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                json!({"type": "Sequence", "decoders": steps})
            };
            let prefix_space = file.bool("tokenizer.ggml.add_space_prefix").unwrap_or(!gemma);
            if gemma && !prefix_space {
                let normalizer = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
                let pre = json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false});
                (model, normalizer, pre, decode(false))
            } else {
                let scheme = if prefix_space { "first" } else { "never" };
                let pre = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false});
                (model, Value::Null, pre, decode(prefix_space))
            }
        }
        other => return Err(gguf_error(format!("tokenizer model `{other}` is not supported (gpt2, llama); supply tokenizer.json"))),
    };
    // Control tokens (type 3) stay whole and are special; user-defined ones (4) stay whole.
    let added: Vec<tokenizers::AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(token, ty)| (**ty == 3 && (!byte_level || spelled(token))) || **ty == 4)
        .map(|(token, ty)| tokenizers::AddedToken::from(token.clone(), *ty == 3).single_word(false).lstrip(false).rstrip(false).normalized(false))
        .collect();
    let add_bos = file.bool("tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
    let post_processor = match bos.filter(|_| add_bos) {
        Some(bos) => {
            let token = &tokens[bos];
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": token, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {token.clone(): {"id": token, "ids": [bos], "tokens": [token]}}})
        }
        None if byte_level => json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}),
        None => Value::Null,
    };
    let components = json!({"normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor, "decoder": decoder});
    Ok(GgufTokenizer { tokens, model: model_json, added, components })
}

/// The BPE model of a GGUF tokenizer.
struct Bpe {
    merges: Vec<(String, String)>,
    unk_token: Option<String>,
    /// SentencePiece-style (`llama`): byte fallback, unknown pieces fused; else byte-level (`gpt2`).
    sentencepiece: bool,
}

/// The `tokenizer.json` a GGUF file's tokenizer metadata stands for, as transformers' GGUF loader makes it, in parts:
/// the vocabulary and merges go to `tokenizers`' BPE builder as they are (for Gemma 3's 262 144 tokens, writing them
/// out as JSON for `tokenizers` to parse took most of the tokenizer's loading time and memory).
struct GgufTokenizer {
    tokens: Vec<String>,
    model: Bpe,
    added: Vec<tokenizers::AddedToken>,
    /// `normalizer`, `pre_tokenizer`, `post_processor` and `decoder`, as `tokenizer.json` writes them.
    components: Value,
}

impl GgufTokenizer {
    /// Builds the tokenizer as `tokenizers` builds one from `tokenizer.json`: components, model, then every added
    /// token in one call.
    fn build(self) -> Result<Tokenizer> {
        use tokenizers::{DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder};
        check_components(&self.components)?;
        let tokenizer_error = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(self.tokens.len());
        for (id, token) in self.tokens.iter().enumerate() {
            if vocab.insert(token.clone(), id as u32).is_some() {
                return Err(gguf_error(format!("token {token:?} appears twice in the vocabulary")));
            }
        }
        // `tokenizers` slices out of range on a merge whose two tokens do not join into a vocabulary token.
        for (first, second) in &self.model.merges {
            let joined = format!("{first}{second}");
            if !vocab.contains_key(&joined) {
                let merge = format!("{first} {second}");
                return Err(Error::Tokenizer(format!("the BPE merge {merge:?} makes {joined:?}, which is not in the vocabulary")));
            }
        }
        let mut bpe = tokenizers::models::bpe::BPE::builder()
            .vocab_and_merges(vocab, self.model.merges)
            .fuse_unk(self.model.sentencepiece)
            .byte_fallback(self.model.sentencepiece)
            .ignore_merges(false);
        if let Some(unk) = self.model.unk_token {
            bpe = bpe.unk_token(unk);
        }
        fn component<T: serde::de::DeserializeOwned>(components: &Value, key: &str) -> Result<Option<T>> {
            Some(components[key].clone()).filter(|v| !v.is_null()).map(serde_json::from_value).transpose().map_err(|e| Error::Tokenizer(format!("{key}: {e}")))
        }
        let normalizer: Option<NormalizerWrapper> = component(&self.components, "normalizer")?;
        let pre_tokenizer: Option<PreTokenizerWrapper> = component(&self.components, "pre_tokenizer")?;
        let post_processor: Option<PostProcessorWrapper> = component(&self.components, "post_processor")?;
        let decoder: Option<DecoderWrapper> = component(&self.components, "decoder")?;
        let mut inner = TokenizerBuilder::<ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>::new()
            .with_model(ModelWrapper::BPE(bpe.build().map_err(tokenizer_error)?))
            .with_normalizer(normalizer)
            .with_pre_tokenizer(pre_tokenizer)
            .with_post_processor(post_processor)
            .with_decoder(decoder)
            .build()
            .map_err(tokenizer_error)?;
        inner.add_tokens(self.added).map_err(tokenizer_error)?;
        Ok(Tokenizer::wrap(inner.into()))
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
