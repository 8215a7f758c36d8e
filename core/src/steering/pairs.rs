//! Contrastive prompt pairs: JSONL (`{"positive", "negative", "label"?}`), the CAA A/B format
//! (`question`, `answer_matching_behavior`, `answer_not_matching_behavior`) and two-column CSV.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One contrastive pair: the prompt with the concept and the prompt without (or with its opposite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pair {
    /// The prompt with the concept.
    pub positive: String,
    /// The prompt without it, or with its opposite.
    pub negative: String,
    /// Optional free-text label (e.g. a sub-category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The question of a CAA A/B item: both prompts begin with it and end with their answers. In the
    /// chat format the question is the user's turn and the answer begins the assistant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

impl Pair {
    /// The user's turn and the start of the assistant's reply that stand for `prompt` (the positive or
    /// negative one) in the chat format: a CAA item's question and answer, else the whole prompt and nothing.
    pub fn chat_turns<'a>(&'a self, prompt: &'a str) -> (&'a str, &'a str) {
        match self.question.as_deref().and_then(|q| prompt.strip_prefix(q).map(|answer| (q, answer))) {
            Some(turns) => turns,
            None => (prompt, ""),
        }
    }
}

/// A problem with one line of a pair file (1-based line numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("the pair set is empty: at least 2 pairs are needed to extract a direction")]
    TooFew,
    #[error("the pair set has {0} pairs; at most {MAX_PAIRS} are accepted")]
    TooMany(usize),
}

/// Bounds that keep a pasted or uploaded file from exhausting memory.
pub const MAX_PAIRS: usize = 10_000;
pub const MAX_PROMPT_CHARS: usize = 4_000;

/// An ordered set of pairs and the sha256 of its canonical JSONL serialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSet {
    pub pairs: Vec<Pair>,
}

/// The two pair-file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairFormat {
    /// One JSON object per line: `{"positive", "negative", "label"?}` or a CAA A/B item.
    Jsonl,
    /// A `positive,negative[,label]` header, then one pair per row.
    Csv,
}

impl PairFormat {
    /// CSV when the file name (or URL, query and fragment ignored) ends in `.csv` in any case,
    /// JSONL otherwise.
    pub fn from_name(name: &str) -> Self {
        let path = name.split(['?', '#']).next().unwrap_or(name);
        if path.to_ascii_lowercase().ends_with(".csv") { Self::Csv } else { Self::Jsonl }
    }
}

/// A built-in pair set's entry in `public/datasets/index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub id: String,
    /// The pair file, relative to `index.json`.
    pub file: String,
    /// The dataset card (Markdown), relative to `index.json`.
    pub card: String,
    pub concept: String,
    /// What the positive prompts show (e.g. `happy`).
    pub positive: String,
    /// What the negative prompts show (e.g. `sad`).
    pub negative: String,
    pub n_pairs: usize,
    /// Continuations whose first token is the logit-difference target (e.g. `" happy"`).
    pub target_tokens: Vec<String>,
    /// Continuations whose first token is the counter-target (e.g. `" sad"`).
    pub counter_tokens: Vec<String>,
    /// Trigger words of the concept.
    pub lexicon: Vec<String>,
    /// Prompts the steering is measured after.
    pub neutral_prompts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaaLine {
    question: String,
    answer_matching_behavior: String,
    answer_not_matching_behavior: String,
}

impl PairSet {
    /// Parses a pair file in `format`.
    pub fn parse(text: &str, format: PairFormat) -> Result<Self, PairError> {
        match format {
            PairFormat::Jsonl => Self::from_jsonl(text),
            PairFormat::Csv => Self::from_csv(text),
        }
    }

    /// Parses JSONL where each line is either `{"positive", "negative", "label"?}` or a CAA A/B
    /// item, which becomes `question + answer_matching` vs `question + answer_not_matching`.
    pub fn from_jsonl(text: &str) -> Result<Self, PairError> {
        let mut pairs = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let err = |reason: String| PairError::Line { line, reason };
            let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| err(format!("not JSON: {e}")))?;
            let pair = if value.get("question").is_some() && value.get("positive").is_none() {
                let caa: CaaLine = serde_json::from_value(value).map_err(|e| err(format!("not a CAA A/B item: {e}")))?;
                Pair {
                    positive: format!("{}{}", caa.question, caa.answer_matching_behavior),
                    negative: format!("{}{}", caa.question, caa.answer_not_matching_behavior),
                    label: None,
                    question: Some(caa.question),
                }
            } else {
                serde_json::from_value::<Pair>(value).map_err(|e| err(format!("expected {{\"positive\": \"...\", \"negative\": \"...\"}}: {e}")))?
            };
            check_pair(&pair).map_err(err)?;
            pairs.push(pair);
            if pairs.len() > MAX_PAIRS {
                return Err(PairError::TooMany(pairs.len()));
            }
        }
        Self::new(pairs)
    }

    /// Parses CSV with a `positive,negative[,label]` header; fields may be double-quoted.
    pub fn from_csv(text: &str) -> Result<Self, PairError> {
        let mut rows = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = rows.next() else { return Err(PairError::TooFew) };
        let columns = split_csv(header).map_err(|reason| PairError::Line { line: 1, reason })?;
        let find = |name: &str| columns.iter().position(|c| c.trim().eq_ignore_ascii_case(name));
        let (Some(pos), Some(neg)) = (find("positive"), find("negative")) else {
            return Err(PairError::Line { line: 1, reason: "the header must name `positive` and `negative` columns".into() });
        };
        let label = find("label");
        let mut pairs = Vec::new();
        for (i, raw) in rows {
            let line = i + 1;
            let fields = split_csv(raw).map_err(|reason| PairError::Line { line, reason })?;
            let get = |idx: usize| {
                fields.get(idx).cloned().ok_or_else(|| PairError::Line { line, reason: format!("expected {} columns, found {}", columns.len(), fields.len()) })
            };
            let pair =
                Pair { positive: get(pos)?, negative: get(neg)?, label: label.and_then(|l| fields.get(l).cloned()).filter(|l| !l.is_empty()), question: None };
            check_pair(&pair).map_err(|reason| PairError::Line { line, reason })?;
            pairs.push(pair);
            if pairs.len() > MAX_PAIRS {
                return Err(PairError::TooMany(pairs.len()));
            }
        }
        Self::new(pairs)
    }

    pub fn new(pairs: Vec<Pair>) -> Result<Self, PairError> {
        if pairs.len() < 2 {
            return Err(PairError::TooFew);
        }
        Ok(Self { pairs })
    }

    /// One canonical JSON object per line, keys in a fixed order.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for pair in &self.pairs {
            // Serialising a plain struct of strings cannot fail.
            out.push_str(&serde_json::to_string(pair).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// sha256 (hex) of [`Self::to_jsonl`]: identifies the pairs a vector was extracted from.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.to_jsonl().as_bytes()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_pair(pair: &Pair) -> Result<(), String> {
    for (name, text) in [("positive", &pair.positive), ("negative", &pair.negative)] {
        if text.trim().is_empty() {
            return Err(format!("`{name}` is empty"));
        }
        if text.chars().count() > MAX_PROMPT_CHARS {
            return Err(format!("`{name}` is longer than {MAX_PROMPT_CHARS} characters"));
        }
    }
    Ok(())
}

/// Splits one CSV record (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_caa_lines_parse() {
        let text = concat!(
            "{\"positive\": \"I am happy\", \"negative\": \"I am sad\", \"label\": \"mood\"}\n",
            "\n",
            "{\"question\": \"Q? (A) yes (B) no\\nAnswer:\", \"answer_matching_behavior\": \" (A)\", \"answer_not_matching_behavior\": \" (B)\"}\n",
        );
        let set = PairSet::from_jsonl(text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.pairs[1].positive, "Q? (A) yes (B) no\nAnswer: (A)");
        assert_eq!(set.pairs[1].negative, "Q? (A) yes (B) no\nAnswer: (B)");
        assert_eq!(set.sha256().len(), 64);
        assert_eq!(PairSet::from_jsonl(&set.to_jsonl()).unwrap(), set);
        assert_eq!(set.pairs[1].chat_turns(&set.pairs[1].negative), ("Q? (A) yes (B) no\nAnswer:", " (B)"));
        assert_eq!(set.pairs[0].chat_turns(&set.pairs[0].positive), ("I am happy", ""));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let ok = "{\"positive\": \"a\", \"negative\": \"b\"}\n";
        let cases = [
            (format!("{ok}{{\"positive\": \"a\"}}\n"), "line 2: expected"),
            (format!("{ok}{ok}not json\n"), "line 3: not JSON"),
            (format!("{ok}{{\"positive\": \" \", \"negative\": \"b\"}}\n"), "line 2: `positive` is empty"),
            (format!("{ok}{{\"question\": \"q\", \"answer_matching_behavior\": \"a\"}}\n"), "line 2: not a CAA A/B item"),
            (ok.to_string(), "empty"),
        ];
        for (text, expected) in cases {
            let err = PairSet::from_jsonl(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn csv_with_quotes() {
        let set = PairSet::from_csv("positive,negative\n\"Hi, \"\"friend\"\"\",bye\nyes,no\n").unwrap();
        assert_eq!(set.pairs[0].positive, "Hi, \"friend\"");
        assert!(PairSet::from_csv("a,b\nx,y\n").unwrap_err().to_string().contains("line 1"));
        assert!(PairSet::from_csv("positive,negative\nx\n").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn the_format_follows_the_file_name() {
        assert_eq!(PairFormat::from_name("pairs.CSV"), PairFormat::Csv);
        assert_eq!(PairFormat::from_name("https://lab.example/x.csv?v=2#top"), PairFormat::Csv);
        assert_eq!(PairFormat::from_name("pairs.jsonl"), PairFormat::Jsonl);
        assert_eq!(PairFormat::from_name("csv"), PairFormat::Jsonl);
        assert_eq!(PairSet::parse("positive,negative\na,b\nc,d\n", PairFormat::Csv).unwrap().len(), 2);
    }

    #[test]
    fn the_published_dataset_index_parses() {
        let index: Vec<DatasetEntry> = serde_json::from_str(include_str!("../../../public/datasets/index.json")).unwrap();
        assert!(index.iter().any(|d| d.id == "sentiment" && d.target_tokens == [" happy"]));
        assert!(index.iter().all(|d| d.n_pairs > 0 && !d.neutral_prompts.is_empty()));
    }
}
