//! Chat templates: the Jinja programs that turn a conversation into the text an instruct model was
//! trained on, rendered the way HF transformers' `apply_chat_template` renders them.
//!
//! A template comes from `tokenizer_config.json` (`chat_template`), a `chat_template.jinja` file or
//! GGUF metadata (`tokenizer.chat_template`). Transformers renders it with Jinja2 in an immutable
//! sandbox with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, a `tojson` filter
//! that does not escape HTML, and the globals `raise_exception` and `strftime_now`; the variables are
//! `messages`, `add_generation_prompt`, `tools` and `documents` (both `None` here) and the special
//! tokens. This module sets up minijinja the same way, adds Python's string and dict methods and
//! prints values as Python would (`None`, `True`, `['a', 1]`).
//!
//! Templates come from the Hub and are untrusted programs. Every render runs on a fuel budget (each
//! step and each 64 bytes a template creates cost fuel), with a limit on nested calls and on the
//! length of the output, so a hostile template ends with an [`Error::ChatTemplate`] instead of
//! hanging or exhausting memory.
//!
//! ```
//! # fn demo() -> analog_core::Result<()> {
//! use analog_core::chat::{ChatMessage, ChatTemplate};
//! let source = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
//!               {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
//! let template = ChatTemplate::new(source, "", "<|im_end|>")?;
//! let text = template.render(&[ChatMessage::user("Hi!")], true)?;
//! assert_eq!(text, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
//! # Ok(()) }
//! # demo().unwrap();
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, ValueKind, ValueOrKwargs, from_args};
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most text one render may produce (1 MiB); a longer rendering is an error rather than a prompt.
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The fuel of one render. Real templates use a few thousand per conversation turn; this stops a
/// template after about a million steps or about 64 MiB of created text, whichever comes first.
const FUEL: u64 = 1_000_000;

/// minijinja's recursion limit, in its units (a macro call costs about six): about 80 nested macro
/// calls, which fit in a 256 KiB stack (measured with minijinja at opt-level 3), well inside the
/// 1 MiB a wasm thread has. Real templates nest a handful (a recursive macro that prints a JSON
/// schema goes as deep as the schema). It is also minijinja's maximum.
const RECURSION_LIMIT: usize = 500;

/// How deeply `tojson` and value printing descend into nested lists and maps.
const MAX_VALUE_DEPTH: usize = 128;

/// The name the template is compiled under; minijinja puts it in its error positions.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation, as chat templates see it: `message.role`, `message.content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others, such as `tool`).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    fn with_role(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_owned(), content: content.into() }
    }

    /// A `system` turn: instructions that frame the whole conversation.
    pub fn system(content: impl Into<String>) -> Self {
        Self::with_role("system", content)
    }

    /// A `user` turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self::with_role("user", content)
    }

    /// An `assistant` turn: something the model said earlier.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::with_role("assistant", content)
    }
}

/// Reads the current time as seconds since the Unix epoch, for `strftime_now`.
type Clock = fn() -> i64;

/// A compiled chat template with the special tokens it may refer to.
///
/// Cheap to clone (the compiled template is shared) and usable in wasm: rendering needs no threads.
///
/// The rendered text usually begins with the BOS token's text (`{{ bos_token }}` is the first thing
/// most templates print), so callers should encode it without adding another BOS token.
#[derive(Clone)]
pub struct ChatTemplate {
    source: Arc<str>,
    env: Arc<Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_bytes", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is an [`Error::ChatTemplate`] naming line and reason.
    ///
    /// `bos_token` and `eos_token` are the texts of the model's special tokens, visible to the
    /// template as `bos_token` and `eos_token`. Pass `""` for a token the model does not have: the
    /// variable is then left undefined, as transformers leaves it when the token is `null`.
    ///
    /// `strftime_now(format)` reads the clock in UTC (transformers uses the machine's local time).
    /// In the browser (wasm32-unknown-unknown) there is no clock without JavaScript, so there
    /// `strftime_now` is left undefined: templates that check `strftime_now is defined`, as
    /// Llama 3.x's do, fall back to their own default date.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        Self::with_clock(source, bos_token, eos_token, system_clock())
    }

    /// Like [`new`](Self::new), with the clock `strftime_now` reads (none: `strftime_now` is left undefined).
    fn with_clock(source: &str, bos_token: &str, eos_token: &str, clock: Option<Clock>) -> Result<Self> {
        let mut env = environment(clock).map_err(|err| describe(&err, source))?;
        let compiled = neutralize_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, compiled).map_err(|err| describe(&err, source))?;
        Ok(Self { source: Arc::from(source), env: Arc::new(env), bos_token: bos_token.to_owned(), eos_token: eos_token.to_owned() })
    }

    /// From `tokenizer_config.json` bytes: `chat_template` as a string, or as a list of
    /// `{name, template}` (the one named `default` is taken), with `bos_token`/`eos_token` as strings
    /// or AddedToken objects `{"content": ...}`.
    ///
    /// `Ok(None)` when the config has no template; malformed JSON is an error, and so is a list of
    /// named templates without a `default`.
    pub fn from_tokenizer_config(bytes: &[u8]) -> Result<Option<Self>> {
        let config: TokenizerConfig = serde_json::from_slice(bytes).map_err(|err| Error::ChatTemplate(format!("tokenizer_config.json: {err}")))?;
        let source = match config.chat_template {
            None => return Ok(None),
            Some(TemplateField::One(source)) => source,
            Some(TemplateField::Named(list)) if list.is_empty() => return Ok(None),
            Some(TemplateField::Named(list)) => match list.iter().find(|named| named.name == "default") {
                Some(named) => named.template.clone(),
                None => {
                    let names: Vec<&str> = list.iter().map(|named| named.name.as_str()).collect();
                    return Err(Error::ChatTemplate(format!(
                        "tokenizer_config.json has several chat templates ({}) and none is named `default`",
                        names.join(", ")
                    )));
                }
            },
        };
        let token = |field: Option<TokenField>| field.map(TokenField::into_content).unwrap_or_default();
        Self::new(&source, &token(config.bos_token), &token(config.eos_token)).map(Some)
    }

    /// The template's Jinja source, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation; `add_generation_prompt` appends the assistant turn opener, so the
    /// model's continuation is its reply.
    ///
    /// Errors: whatever the template raises with `raise_exception` (many refuse a `system` turn or
    /// turns that do not alternate), a failure inside the template (naming its line), a template
    /// that runs out of fuel or nests calls too deeply, and output longer than 1 MiB.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut context: BTreeMap<&str, Value> = BTreeMap::new();
        let messages: Vec<Value> = messages.iter().map(MessageObject::value).collect();
        context.insert("messages", Value::from(messages));
        context.insert("add_generation_prompt", Value::from(add_generation_prompt));
        context.insert("tools", Value::from(()));
        context.insert("documents", Value::from(()));
        for (name, token) in [("bos_token", &self.bos_token), ("eos_token", &self.eos_token)] {
            if !token.is_empty() {
                context.insert(name, Value::from(token.as_str()));
            }
        }
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|err| describe(&err, &self.source))?;
        let text = template.render(Value::from_pairs(context)).map_err(|err| describe(&err, &self.source))?;
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(Error::ChatTemplate(format!(
                "the rendered conversation is {} bytes, more than the {MAX_OUTPUT_BYTES}-byte limit; the template or the conversation is too large",
                text.len()
            )));
        }
        Ok(text)
    }
}

/// A message as the template sees it: a dict whose keys come in Python's order, `role` then
/// `content`, so `message|tojson` and `message.items()` match transformers.
#[derive(Debug)]
struct MessageObject {
    role: Value,
    content: Value,
}

impl MessageObject {
    fn value(message: &ChatMessage) -> Value {
        Value::from_object(Self { role: Value::from(message.role.as_str()), content: Value::from(message.content.as_str()) })
    }
}

impl Object for MessageObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(self.role.clone()),
            "content" => Some(self.content.clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// The parts of `tokenizer_config.json` a chat template needs.
#[derive(Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    chat_template: Option<TemplateField>,
    #[serde(default)]
    bos_token: Option<TokenField>,
    #[serde(default)]
    eos_token: Option<TokenField>,
}

/// `chat_template`: one template, or several with names.
#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// A special token: its text, or an AddedToken object carrying the text in `content`.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenField {
    Text(String),
    Added { content: String },
}

impl TokenField {
    fn into_content(self) -> String {
        match self {
            Self::Text(text) | Self::Added { content: text } => text,
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn system_clock() -> Option<Clock> {
    fn now() -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
    Some(now)
}

/// `std::time::SystemTime::now` panics in wasm32-unknown-unknown.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn system_clock() -> Option<Clock> {
    None
}

/// The environment transformers renders in, as far as minijinja can be it.
fn environment(clock: Option<Clock>) -> std::result::Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(false).build()?);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_debug(false);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(python_methods);
    env.set_formatter(python_formatter);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    if let Some(clock) = clock {
        env.add_function("strftime_now", move |format: &str| strftime(format, clock()));
    }
    Ok(env)
}

/// Python's methods on strings, lists and dicts: minijinja-contrib's, with `str.title` as Python
/// has it (theirs is Jinja's `|title`, which capitalises differently after `'` and `«`) and
/// `str.rsplit`, `str.removeprefix` and `str.removesuffix` added.
fn python_methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> std::result::Result<Value, minijinja::Error> {
    if let Some(text) = value.as_str() {
        match method {
            "title" => {
                let () = from_args(args)?;
                return Ok(Value::from(python_title(text)));
            }
            "rsplit" => {
                let (separator, max_splits): (Option<&str>, Option<i64>) = from_args(args)?;
                let limit = max_splits.and_then(|max| usize::try_from(max).ok());
                let parts = match separator {
                    Some("") => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "rsplit: empty separator")),
                    Some(separator) => rsplit_on(text, separator, limit),
                    None => rsplit_whitespace(text, limit),
                };
                return Ok(Value::from(parts.into_iter().map(Value::from).collect::<Vec<_>>()));
            }
            "removeprefix" => {
                let (prefix,): (&str,) = from_args(args)?;
                return Ok(Value::from(text.strip_prefix(prefix).unwrap_or(text)));
            }
            "removesuffix" => {
                let (suffix,): (&str,) = from_args(args)?;
                return Ok(Value::from(text.strip_suffix(suffix).unwrap_or(text)));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `str.title`: a cased character after a cased one is lowered, after anything else raised.
fn python_title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_is_cased = false;
    for c in text.chars() {
        if c.is_uppercase() {
            if previous_is_cased {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
            previous_is_cased = true;
        } else if c.is_lowercase() {
            if previous_is_cased {
                out.push(c);
            } else {
                out.extend(c.to_uppercase());
            }
            previous_is_cased = true;
        } else {
            out.push(c);
            previous_is_cased = false;
        }
    }
    out
}

/// `str.rsplit(separator, max_splits)`; `None` splits everywhere.
fn rsplit_on<'a>(text: &'a str, separator: &str, limit: Option<usize>) -> Vec<&'a str> {
    let mut parts: Vec<&str> = match limit {
        Some(limit) => text.rsplitn(limit.saturating_add(1), separator).collect(),
        None => text.rsplit(separator).collect(),
    };
    parts.reverse();
    parts
}

/// `str.rsplit(None, max_splits)`: splits on runs of whitespace from the right, dropping empty parts.
fn rsplit_whitespace(text: &str, limit: Option<usize>) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text.trim_end();
    while !rest.is_empty() {
        if limit == Some(parts.len()) {
            parts.push(rest);
            break;
        }
        match rest.rfind(char::is_whitespace) {
            Some(index) => {
                let after = index + rest[index..].chars().next().map_or(1, char::len_utf8);
                parts.push(&rest[after..]);
                rest = rest[..index].trim_end();
            }
            None => {
                parts.push(rest);
                rest = "";
            }
        }
    }
    parts.reverse();
    parts
}

/// The message of a template's `raise_exception`, kept apart from minijinja's own errors.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Turns a minijinja error into one that names the line and what went wrong there.
fn describe(err: &minijinja::Error, source: &str) -> Error {
    let line = err.line().filter(|&line| line > 0);
    let quoted = line.and_then(|line| source_line(source, line)).map(|text| format!("`{text}`"));
    let at = match (line, &quoted) {
        (Some(line), Some(text)) => format!(" (line {line}: {text})"),
        (Some(line), None) => format!(" (line {line})"),
        (None, _) => String::new(),
    };
    let detail = err.detail().unwrap_or("");
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(inner) = cause {
        if let Some(raised) = inner.downcast_ref::<Raised>() {
            return Error::ChatTemplate(format!("the template rejected the conversation: {raised}{at}"));
        }
        cause = inner.source();
    }
    Error::ChatTemplate(match (err.kind(), line) {
        (ErrorKind::SyntaxError, Some(line)) => {
            let mut message = match quoted {
                Some(text) => format!("syntax error on line {line}: {detail} ({text})"),
                None => format!("syntax error on line {line}: {detail}"),
            };
            let unclosed = detail.contains("end of input, expected end of block") || detail.starts_with("unknown statement end");
            let at_byte = err.range().map_or(source.len(), |range| range.start);
            if let Some((keyword, opened)) = innermost_open_block(source, at_byte).filter(|_| unclosed) {
                message.push_str(&format!("; the `{{% {keyword} %}}` on line {opened} is not closed"));
            }
            message
        }
        (ErrorKind::OutOfFuel, _) => format!(
            "the template used up its budget of {FUEL} fuel (one per step and per 64 bytes it creates) and was stopped: it loops too long or builds too much text{at}"
        ),
        (ErrorKind::InvalidOperation, _) if detail.contains("recursion limit") => {
            format!("the template nests macro calls too deeply (about 80 levels, recursion limit {RECURSION_LIMIT}) and was stopped{at}")
        }
        (ErrorKind::UndefinedError, _) if detail.is_empty() => {
            format!("the template used a value that is not defined (a message or field this conversation does not have?){at}")
        }
        (kind, _) if detail.is_empty() => format!("{kind}{at}"),
        (kind, _) => format!("{kind}: {detail}{at}"),
    })
}

/// Line `line` (1-based) of `source`, trimmed and shortened for an error message.
fn source_line(source: &str, line: usize) -> Option<String> {
    const MAX_CHARS: usize = 80;
    let text = source.lines().nth(line.checked_sub(1)?)?.trim();
    if text.is_empty() {
        return None;
    }
    if text.chars().count() <= MAX_CHARS {
        return Some(text.to_owned());
    }
    Some(text.chars().take(MAX_CHARS).chain("…".chars()).collect())
}

/// A `{% ... %}` tag in a template's source.
struct Tag<'a> {
    /// Byte offsets of `{%` and just past `%}`.
    start: usize,
    end: usize,
    /// `-`, `+` or nothing, right after `{%` and right before `%}`.
    open_mark: &'a str,
    close_mark: &'a str,
    /// What is between the marks, untrimmed.
    body: &'a str,
}

impl<'a> Tag<'a> {
    /// The statement keyword: `for`, `endif`, `generation`...
    fn keyword(&self) -> &'a str {
        self.body.split_whitespace().next().unwrap_or("")
    }
}

/// The block tags of `source` in order, skipping comments and what `{% raw %}` blocks hold (a
/// light scan for rewriting and error hints, not a parser: a `%}` inside a string ends a tag early).
fn block_tags(source: &str) -> Vec<Tag<'_>> {
    let mut tags = Vec::new();
    let mut at = 0;
    let mut in_raw = false;
    while let Some(found) = source[at..].find('{') {
        let start = at + found;
        let after = &source[start..];
        if after.starts_with("{#") && !in_raw {
            at = after.find("#}").map_or(source.len(), |end| start + end + 2);
            continue;
        }
        if !after.starts_with("{%") {
            at = start + 1;
            continue;
        }
        let Some(close) = after.find("%}") else { break };
        let inner = &after[2..close];
        let open_mark = if inner.starts_with(['-', '+']) { &inner[..1] } else { "" };
        let rest = &inner[open_mark.len()..];
        let close_mark = if rest.ends_with(['-', '+']) { &rest[rest.len() - 1..] } else { "" };
        let tag = Tag { start, end: start + close + 2, open_mark, close_mark, body: &rest[..rest.len() - close_mark.len()] };
        at = tag.end;
        match (tag.keyword(), in_raw) {
            ("raw", false) => in_raw = true,
            ("endraw", true) => in_raw = false,
            (_, true) => continue,
            _ => {}
        }
        tags.push(tag);
    }
    tags
}

/// Rewrites transformers' `{% generation %}…{% endgeneration %}` (which marks the assistant's
/// tokens for training masks and renders its body unchanged) as `{% if true %}…{% endif %}`,
/// keeping the whitespace-control marks, so minijinja, which has no such tag, renders the same
/// text. The rewrite keeps every byte offset, so error positions still point into `source`.
fn neutralize_generation_tags(source: &str) -> Cow<'_, str> {
    let tags: Vec<Tag<'_>> = block_tags(source).into_iter().filter(|tag| matches!(tag.body.trim(), "generation" | "endgeneration")).collect();
    if tags.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut copied = 0;
    for tag in tags {
        out.push_str(&source[copied..tag.start]);
        let statement = if tag.keyword() == "generation" { " if true" } else { " endif" };
        out.push_str(&format!("{{%{}{statement:width$}{}%}}", tag.open_mark, tag.close_mark, width = tag.body.len()));
        copied = tag.end;
    }
    out.push_str(&source[copied..]);
    Cow::Owned(out)
}

/// The innermost block left open by the tags that end before byte `end` of `source`: its keyword
/// and line. For syntax errors at the end of a template, or at an `{% end... %}` that closes the
/// wrong block.
fn innermost_open_block(source: &str, end: usize) -> Option<(&str, usize)> {
    const OPENERS: [&str; 10] = ["for", "if", "macro", "call", "filter", "with", "autoescape", "block", "raw", "generation"];
    let mut open: Vec<(&str, usize)> = Vec::new();
    for tag in block_tags(source).into_iter().take_while(|tag| tag.end <= end) {
        let keyword = tag.keyword();
        // `{% set x %}...{% endset %}` captures a block; `{% set x = ... %}` does not.
        if OPENERS.contains(&keyword) || (keyword == "set" && !tag.body.contains('=')) {
            open.push((keyword, source[..tag.start].matches('\n').count() + 1));
        } else if keyword.starts_with("end") {
            open.pop();
        }
    }
    open.pop()
}

/// Prints `{{ value }}` as Jinja2 does, with Python's `str()`: `None`, `True`, `1.0`, `['a', 1]`.
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::String => out.write_str(value.as_str().unwrap_or_default()).map_err(minijinja::Error::from),
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            let mut text = Bounded::default();
            python_repr(state, value, 0, &mut text)?;
            out.write_str(&text.0).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// A string that refuses to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct Bounded(String);

impl Bounded {
    fn push(&mut self, text: &str) -> std::result::Result<(), minijinja::Error> {
        if self.0.len() + text.len() > MAX_OUTPUT_BYTES {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("a printed value would be longer than the {MAX_OUTPUT_BYTES}-byte output limit"),
            ));
        }
        self.0.push_str(text);
        Ok(())
    }
}

/// Charges one step for a value visited while printing, and refuses values nested too deeply
/// (a namespace can hold itself).
fn enter(state: &State, depth: usize) -> std::result::Result<(), minijinja::Error> {
    if depth > MAX_VALUE_DEPTH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("a value is nested more than {MAX_VALUE_DEPTH} levels deep (does it contain itself?)"),
        ));
    }
    state.consume_fuel(1)
}

/// Python's `repr()` of a value: how lists and dicts print their items (strings quoted).
fn python_repr(state: &State, value: &Value, depth: usize, out: &mut Bounded) -> std::result::Result<(), minijinja::Error> {
    enter(state, depth)?;
    match value.kind() {
        ValueKind::Undefined => out.push("Undefined"),
        ValueKind::None => out.push("None"),
        ValueKind::Bool => out.push(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push(&python_number(value)),
        ValueKind::String => out.push(&python_str_repr(value.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push("[")?;
            for (index, item) in value.try_iter()?.enumerate() {
                if index > 0 {
                    out.push(", ")?;
                }
                python_repr(state, &item, depth + 1, out)?;
            }
            out.push("]")
        }
        ValueKind::Map => {
            out.push("{")?;
            for (index, key) in value.try_iter()?.enumerate() {
                if index > 0 {
                    out.push(", ")?;
                }
                python_repr(state, &key, depth + 1, out)?;
                out.push(": ")?;
                python_repr(state, &value.get_item(&key)?, depth + 1, out)?;
            }
            out.push("}")
        }
        _ => out.push(&value.to_string()),
    }
}

/// A number as Python prints it: integers as they are, floats with `float.__repr__`.
fn python_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(float) => python_float(float),
        Err(_) => value.to_string(),
    }
}

/// `float.__repr__`: the shortest text that reads back as the same float, in positional notation
/// for exponents -4 to 15 (always with a `.`), otherwise as `1.5e-05` / `1e+16`.
fn python_float(float: f64) -> String {
    if float.is_nan() {
        return "nan".to_owned();
    }
    if float.is_infinite() {
        return if float > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let scientific = format!("{float:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let positional = format!("{float}");
        if positional.contains('.') { positional } else { positional + ".0" }
    } else {
        format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs())
    }
}

/// Python's `repr()` of a string: single quotes unless the text has `'` and no `"`, with `\n`,
/// `\t`, `\\` and control characters escaped. (Python also escapes the non-printable characters
/// of its Unicode tables; here only C0, DEL and C1 controls are.)
fn python_str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// How `tojson` writes JSON: the options of Python's `json.dumps`, which transformers' filter
/// passes through (`ensure_ascii=False`, `indent=None`, `separators=None`, `sort_keys=False`).
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// The `tojson` filter as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, with no HTML escaping. Arguments may be positional, in that
/// order, or keywords.
fn tojson(state: &State, value: &Value, args: Rest<ValueOrKwargs>) -> std::result::Result<Value, minijinja::Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    if positional.len() > 4 {
        return Err(minijinja::Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments: ensure_ascii, indent, separators, sort_keys"));
    }
    let mut positional = positional.iter().cloned();
    let (ensure_ascii, indent, separators, sort_keys) = (positional.next(), positional.next(), positional.next(), positional.next());
    let argument = |name: &str, positional: Option<Value>| -> std::result::Result<Option<Value>, minijinja::Error> {
        let keyword: Option<Value> = kwargs.get(name)?;
        match (positional, keyword) {
            (Some(_), Some(_)) => Err(minijinja::Error::new(ErrorKind::TooManyArguments, format!("tojson got two values for `{name}`"))),
            (positional, keyword) => Ok(positional.or(keyword).filter(|value| !value.is_none() && !value.is_undefined())),
        }
    };
    let ensure_ascii = argument("ensure_ascii", ensure_ascii)?.is_some_and(|value| value.is_true());
    let indent = match argument("indent", indent)? {
        None => None,
        Some(value) if value.kind() == ValueKind::String => Some(value.as_str().unwrap_or_default().to_owned()),
        Some(value) => match value.as_i64() {
            Some(width) if width > MAX_OUTPUT_BYTES as i64 => {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson indent {width} is wider than the output limit")));
            }
            Some(width) => Some(" ".repeat(usize::try_from(width).unwrap_or(0))),
            None => {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson indent must be a number or a string, not {}", value.kind())));
            }
        },
    };
    let (item_separator, key_separator) = match argument("separators", separators)? {
        None => (if indent.is_some() { "," } else { ", " }.to_owned(), ": ".to_owned()),
        Some(pair) => {
            let parts: Vec<Value> = pair.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                    (item.as_str().unwrap_or_default().to_owned(), key.as_str().unwrap_or_default().to_owned())
                }
                _ => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson separators must be a pair of strings")),
            }
        }
    };
    let sort_keys = argument("sort_keys", sort_keys)?.is_some_and(|value| value.is_true());
    kwargs.assert_all_used()?;
    let style = JsonStyle { ensure_ascii, indent, item_separator, key_separator, sort_keys };
    let mut out = Bounded::default();
    write_json(state, value, &style, 0, &mut out)?;
    Ok(Value::from(out.0))
}

/// Writes `value` as `json.dumps` would with `style`.
fn write_json(state: &State, value: &Value, style: &JsonStyle, depth: usize, out: &mut Bounded) -> std::result::Result<(), minijinja::Error> {
    enter(state, depth)?;
    let newline = |out: &mut Bounded, level: usize| -> std::result::Result<(), minijinja::Error> {
        if let Some(indent) = &style.indent {
            out.push("\n")?;
            for _ in 0..level {
                out.push(indent)?;
            }
        }
        Ok(())
    };
    match value.kind() {
        ValueKind::None => out.push("null"),
        ValueKind::Bool => out.push(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => out.push(&value.to_string()),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(float) if float.is_nan() => out.push("NaN"),
            Ok(float) if float.is_infinite() => out.push(if float > 0.0 { "Infinity" } else { "-Infinity" }),
            Ok(float) => out.push(&python_float(float)),
            Err(_) => out.push(&value.to_string()),
        },
        ValueKind::String => out.push(&json_string(value.as_str().unwrap_or_default(), style.ensure_ascii)),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                return out.push("[]");
            }
            out.push("[")?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(&style.item_separator)?;
                }
                newline(out, depth + 1)?;
                write_json(state, item, style, depth + 1, out)?;
            }
            newline(out, depth)?;
            out.push("]")
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                entries.push((json_key(&key)?, value.get_item(&key)?));
            }
            if entries.is_empty() {
                return out.push("{}");
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push("{")?;
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(&style.item_separator)?;
                }
                newline(out, depth + 1)?;
                out.push(&json_string(key, style.ensure_ascii))?;
                out.push(&style.key_separator)?;
                write_json(state, item, style, depth + 1, out)?;
            }
            newline(out, depth)?;
            out.push("}")
        }
        kind => Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson cannot write a value of type {kind}"))),
    }
}

/// A dict key as `json.dumps` turns it into a string.
fn json_key(key: &Value) -> std::result::Result<String, minijinja::Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::None => Ok("null".to_owned()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::Number => Ok(python_number(key)),
        kind => Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: keys must be strings, numbers, booleans or none, not {kind}"))),
    }
}

/// A JSON string literal as `json.dumps` writes it; `ensure_ascii` escapes everything outside
/// printable ASCII as `\uXXXX` (surrogate pairs above U+FFFF).
fn json_string(text: &str, ensure_ascii: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A moment on the UTC calendar.
struct DateTime {
    year: i64,
    /// 1 to 12.
    month: u32,
    /// 1 to 31.
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 (Sunday) to 6.
    weekday: u32,
    /// 1 to 366.
    year_day: u32,
}

impl DateTime {
    fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let year_day = days - days_from_civil(year, 1, 1) + 1;
        let number = |value: i64| u32::try_from(value).unwrap_or(0);
        Self {
            year,
            month,
            day,
            hour: number(second_of_day / 3600),
            minute: number(second_of_day % 3600 / 60),
            second: number(second_of_day % 60),
            weekday: number((days + 4).rem_euclid(7)),
            year_day: number(year_day),
        }
    }
}

/// The (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

/// The day counted from 1970-01-01 of a calendar date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// `datetime.strftime` in the C locale, as glibc formats it: the common directives with the flags
/// `-` (no padding), `_` (pad with spaces), `0` (pad with zeros) and `^` (upper case); unknown
/// directives are copied as they are.
fn strftime(format: &str, unix_seconds: i64) -> String {
    let t = DateTime::from_unix(unix_seconds);
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let flag = chars.next_if(|c| matches!(c, '-' | '_' | '0' | '^'));
        let Some(directive) = chars.next() else {
            out.push('%');
            out.extend(flag);
            break;
        };
        let number = |value: i64, width: usize, pad: char| -> String {
            let pad = match flag {
                Some('-') => return value.to_string(),
                Some('_') => ' ',
                Some('0') => '0',
                _ => pad,
            };
            let digits = value.to_string();
            let fill: String = std::iter::repeat_n(pad, width.saturating_sub(digits.len())).collect();
            fill + &digits
        };
        let text = |value: &str| if flag == Some('^') { value.to_uppercase() } else { value.to_owned() };
        let weekday = WEEKDAYS[t.weekday as usize % 7];
        let month = MONTHS[(t.month as usize + 11) % 12];
        let hour12 = match t.hour % 12 {
            0 => 12,
            hour => hour,
        };
        let am_pm = if t.hour < 12 { "AM" } else { "PM" };
        let year_day0 = i64::from(t.year_day) - 1;
        let piece = match directive {
            'a' => text(&weekday[..3]),
            'A' => text(weekday),
            'b' | 'h' => text(&month[..3]),
            'B' => text(month),
            'C' => number(t.year.div_euclid(100), 2, '0'),
            'd' => number(i64::from(t.day), 2, '0'),
            'e' => number(i64::from(t.day), 2, ' '),
            'H' => number(i64::from(t.hour), 2, '0'),
            'I' => number(i64::from(hour12), 2, '0'),
            'k' => number(i64::from(t.hour), 2, ' '),
            'l' => number(i64::from(hour12), 2, ' '),
            'j' => number(i64::from(t.year_day), 3, '0'),
            'm' => number(i64::from(t.month), 2, '0'),
            'M' => number(i64::from(t.minute), 2, '0'),
            'S' => number(i64::from(t.second), 2, '0'),
            'p' => am_pm.to_owned(),
            'P' => am_pm.to_lowercase(),
            'y' => number(t.year.rem_euclid(100), 2, '0'),
            'Y' => number(t.year, 1, '0'),
            'u' => number(i64::from((t.weekday + 6) % 7 + 1), 1, '0'),
            'w' => number(i64::from(t.weekday), 1, '0'),
            'U' => number((year_day0 + 7 - i64::from(t.weekday)) / 7, 2, '0'),
            'W' => number((year_day0 + 7 - i64::from((t.weekday + 6) % 7)) / 7, 2, '0'),
            's' => unix_seconds.to_string(),
            'D' | 'x' => format!("{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100)),
            'F' => format!("{}-{:02}-{:02}", t.year, t.month, t.day),
            'R' => format!("{:02}:{:02}", t.hour, t.minute),
            'T' | 'X' => format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            'r' => format!("{hour12:02}:{:02}:{:02} {am_pm}", t.minute, t.second),
            'c' => format!("{} {} {:>2} {:02}:{:02}:{:02} {}", &weekday[..3], &month[..3], t.day, t.hour, t.minute, t.second, t.year),
            'z' => "+0000".to_owned(),
            'Z' => "UTC".to_owned(),
            'n' => "\n".to_owned(),
            't' => "\t".to_owned(),
            '%' => "%".to_owned(),
            other => {
                let mut verbatim = String::from('%');
                verbatim.extend(flag);
                verbatim.push(other);
                verbatim
            }
        };
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `tests/fixtures/chat/expected.json`, written by `generate.py` with Jinja2.
    #[derive(Deserialize)]
    struct Expected {
        /// The moment `strftime_now` read, in seconds since the Unix epoch (UTC).
        now_unix: i64,
        templates: BTreeMap<String, TemplateInfo>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct TemplateInfo {
        bos_token: String,
        eos_token: String,
    }

    #[derive(Deserialize)]
    struct Case {
        template: String,
        conversation: String,
        messages: Vec<ChatMessage>,
        add_generation_prompt: bool,
        /// The rendered text, or absent when Jinja2 failed.
        rendered: Option<String>,
        /// The message of the template's `raise_exception`, when it raised one.
        raised: Option<String>,
    }

    const EXPECTED: &str = include_str!("../../tests/fixtures/chat/expected.json");

    fn template_source(name: &str) -> &'static str {
        match name {
            "smollm2" => include_str!("../../tests/fixtures/chat/smollm2.jinja"),
            "gemma-3" => include_str!("../../tests/fixtures/chat/gemma-3.jinja"),
            "qwen3" => include_str!("../../tests/fixtures/chat/qwen3.jinja"),
            "llama-3.2" => include_str!("../../tests/fixtures/chat/llama-3.2.jinja"),
            "features" => include_str!("../../tests/fixtures/chat/features.jinja"),
            other => panic!("expected.json names a template `{other}` this test does not include"),
        }
    }

    fn plain(source: &str) -> ChatTemplate {
        ChatTemplate::new(source, "<s>", "</s>").unwrap()
    }

    /// The `strftime_now` moment of the fixtures: 2025-03-09 14:05:07 UTC (`NOW` in generate.py).
    const FIXED_NOW: i64 = 1_741_529_107;

    fn fixed_clock() -> i64 {
        FIXED_NOW
    }

    /// Renders `source` for a one-turn conversation, which must fail; the error's text.
    fn render_err(source: &str) -> String {
        let err = plain(source).render(&[ChatMessage::user("hi")], true).unwrap_err().to_string();
        assert!(err.starts_with("chat template: "), "{err}");
        err
    }

    #[test]
    fn every_render_matches_jinja2_byte_for_byte() {
        let expected: Expected = serde_json::from_str(EXPECTED).unwrap();
        assert_eq!(expected.now_unix, FIXED_NOW);
        let mut compiled = BTreeMap::new();
        for (name, info) in &expected.templates {
            let template = ChatTemplate::with_clock(template_source(name), &info.bos_token, &info.eos_token, Some(fixed_clock as Clock)).unwrap();
            compiled.insert(name.clone(), template);
        }
        assert!(expected.cases.len() >= 100, "only {} cases", expected.cases.len());
        for case in &expected.cases {
            let template = &compiled[&case.template];
            let label = format!("{} / {} / add_generation_prompt={}", case.template, case.conversation, case.add_generation_prompt);
            match (template.render(&case.messages, case.add_generation_prompt), &case.rendered) {
                (Ok(text), Some(want)) => assert_eq!(&text, want, "{label}"),
                (Err(err), None) => {
                    let message = err.to_string();
                    if let Some(raised) = &case.raised {
                        assert!(message.contains(&format!("rejected the conversation: {raised}")), "{label}: {message}");
                    }
                }
                (got, want) => panic!("{label}: got {got:?}, Jinja2 gave {want:?} (raised {:?})", case.raised),
            }
        }
    }

    #[test]
    fn templates_can_be_shared_with_a_worker() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<ChatTemplate>();
    }

    #[test]
    fn fixtures_hold_the_real_templates() {
        // The SmolLM2 template came out of the GGUF's metadata; it opens with its default system prompt.
        assert!(template_source("smollm2").contains("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
        assert!(template_source("gemma-3").starts_with("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}"));
    }

    #[test]
    fn from_tokenizer_config_reads_strings_lists_and_added_tokens() {
        let config = br#"{"chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false, "__type": "AddedToken"}}"#;
        let template = ChatTemplate::from_tokenizer_config(config).unwrap().unwrap();
        assert_eq!(template.render(&[ChatMessage::user("hi")], false).unwrap(), "<s>hi</s>");
        assert_eq!(template.source(), "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}");

        let named =
            br#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ messages|length }}"}], "bos_token": null}"#;
        let template = ChatTemplate::from_tokenizer_config(named).unwrap().unwrap();
        assert_eq!(template.render(&[ChatMessage::user("a"), ChatMessage::assistant("b")], false).unwrap(), "2");

        assert!(ChatTemplate::from_tokenizer_config(br#"{"bos_token": "<s>"}"#).unwrap().is_none());
        assert!(ChatTemplate::from_tokenizer_config(br#"{"chat_template": null}"#).unwrap().is_none());
        let no_default = ChatTemplate::from_tokenizer_config(br#"{"chat_template": [{"name": "rag", "template": "x"}]}"#).unwrap_err();
        assert!(no_default.to_string().contains("none is named `default`"), "{no_default}");
        let malformed = ChatTemplate::from_tokenizer_config(b"{\"chat_template\": ").unwrap_err();
        assert!(malformed.to_string().contains("tokenizer_config.json"), "{malformed}");
    }

    #[test]
    fn a_missing_token_is_undefined_as_in_transformers() {
        let template = ChatTemplate::new("[{{ bos_token }}|{{ bos_token is defined }}|{{ eos_token }}]", "", "<eos>").unwrap();
        assert_eq!(template.render(&[], false).unwrap(), "[|False|<eos>]");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ChatTemplate::new("{{ bos_token }}\n{% for m in messages %}\n{{ m.content }}\n", "", "").unwrap_err().to_string();
        assert!(err.starts_with("chat template: syntax error on line 3: unexpected end of input"), "{err}");
        assert!(err.ends_with("the `{% for %}` on line 2 is not closed"), "{err}");
        let err = ChatTemplate::new("{% for m in messages %}\n{% if m.content %}\nx\n{% endfor %}", "", "").unwrap_err().to_string();
        assert!(err.contains("syntax error on line 4: unknown statement endfor"), "{err}");
        assert!(err.ends_with("the `{% if %}` on line 2 is not closed"), "{err}");
        let err = ChatTemplate::new("text\n{{ messages[0].content", "", "").unwrap_err().to_string();
        assert!(err.contains("syntax error on line 2"), "{err}");
        let err = ChatTemplate::new("ok\n{% if %}\n", "", "").unwrap_err().to_string();
        assert!(err.contains("syntax error on line 2"), "{err}");
        assert!(err.contains("{% if %}"), "{err}");
    }

    #[test]
    fn raise_exception_fails_with_the_templates_message() {
        let err = render_err("{% if messages[0].role != 'system' %}\n{{ raise_exception('no system role') }}\n{% endif %}");
        assert!(err.contains("rejected the conversation: no system role"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn huge_ranges_and_long_loops_stop() {
        let err = render_err("{% for i in range(100000000) %}x{% endfor %}");
        assert!(err.contains("range") || err.contains("fuel"), "{err}");
        let err = render_err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
        assert!(err.contains("budget of 1000000 fuel"), "{err}");
    }

    #[test]
    fn doubling_a_string_runs_out_of_fuel_not_memory() {
        let err = render_err("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}");
        assert!(err.contains("fuel"), "{err}");
        let err = render_err("{{ 'x' * 1000000000000 }}");
        assert!(err.contains("too large") || err.contains("fuel"), "{err}");
    }

    #[test]
    fn deep_macro_recursion_stops() {
        let err = render_err("{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}");
        assert!(err.contains("nests macro calls too deeply"), "{err}");
        let err = render_err("{% macro a(n) %}{{ b(n) }}{% endmacro %}{% macro b(n) %}{{ a(n) }}{% endmacro %}{{ a(0) }}");
        assert!(err.contains("nests macro calls too deeply"), "{err}");
    }

    #[test]
    fn deeply_nested_source_is_a_syntax_error_not_a_stack_overflow() {
        let parens = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
        let err = ChatTemplate::new(&parens, "", "").unwrap_err().to_string();
        assert!(err.contains("syntax error on line 1"), "{err}");
        let ifs = format!("{}x{}", "{% if true %}".repeat(10_000), "{% endif %}".repeat(10_000));
        let err = ChatTemplate::new(&ifs, "", "").unwrap_err().to_string();
        assert!(err.contains("syntax error on line 1"), "{err}");
    }

    #[test]
    fn self_containing_values_do_not_hang_printing() {
        let err = render_err("{% set ns = namespace(a=1) %}{% set ns.b = [ns, ns] %}{{ ns.b|tojson }}");
        assert!(err.contains("nested more than") || err.contains("fuel") || err.contains("cannot write"), "{err}");
    }

    #[test]
    fn output_beyond_the_cap_is_an_error() {
        let err = render_err("{{ 'x' * 2000000 }}");
        assert!(err.contains("more than the 1048576-byte limit"), "{err}");
    }

    #[test]
    fn undefined_functions_are_named() {
        let err = render_err("line one\n{{ format_the_prompt(messages) }}");
        assert!(err.contains("format_the_prompt"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = "{% for m in messages %}\n{%- generation -%}\n {{ m.content }} \n{%- endgeneration %}\n|{% endfor %}";
        let rewritten = neutralize_generation_tags(source);
        assert_eq!(rewritten, "{% for m in messages %}\n{%- if true    -%}\n {{ m.content }} \n{%- endif         %}\n|{% endfor %}");
        assert_eq!(rewritten.len(), source.len());
        let template = plain(source);
        assert_eq!(template.render(&[ChatMessage::user("a"), ChatMessage::assistant("b")], false).unwrap(), "a|b|");
        assert_eq!(
            neutralize_generation_tags("{# {% generation %} #}{% raw %}{% generation %}{% endraw %}"),
            "{# {% generation %} #}{% raw %}{% generation %}{% endraw %}"
        );
    }

    #[test]
    fn strftime_matches_c_strftime() {
        // 2024-02-29 13:04:05 UTC, a Thursday.
        let t = 1_709_211_845;
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(strftime("%A %B %-d, %Y %I:%M:%S %p %j %u %w %%", t), "Thursday February 29, 2024 01:04:05 PM 060 4 4 %");
        assert_eq!(strftime("%F %T %y %e %^a %Q", t), "2024-02-29 13:04:05 24 29 THU %Q");
        assert_eq!(strftime("%c", 0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(strftime("%U %W", 1_704_067_200), "00 01"); // 2024-01-01, a Monday
        assert_eq!(strftime("%Y-%m-%d", -86_400), "1969-12-31");
    }

    #[test]
    fn floats_print_as_python_does() {
        for (float, want) in
            [(1.0, "1.0"), (0.1, "0.1"), (1e16, "1e+16"), (1.5e-5, "1.5e-05"), (1e15, "1000000000000000.0"), (-2.5, "-2.5"), (0.0001, "0.0001")]
        {
            assert_eq!(python_float(float), want);
        }
    }
}
