//! The lab's story corpus: a seeded generator over one small English grammar (`grammar.txt`), with
//! latent attributes the built-in steering sets target (mood, topic, register, compliance), and a
//! validator that tells whether a sentence is one the grammar can produce.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, Result};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const GRAMMAR: &str = include_str!("grammar.txt");

/// A symbol of a rule's alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sym {
    /// A literal token (stored lower-case for matching, original case for generation).
    Word(String),
    Rule(String),
    /// A per-story binding such as `$HERO`.
    Bound(String),
}

/// The grammar: rules by name, each a list of alternatives.
#[derive(Debug, Clone)]
pub struct Grammar {
    rules: BTreeMap<String, Vec<Vec<Sym>>>,
}

/// The rule a binding's values come from (and that the validator accepts in its place).
fn binding_class(name: &str) -> &'static str {
    match name {
        "HERO" | "FRIEND" => "NAME",
        "PRON" => "PRON",
        "POSS" => "POSS",
        "OBJ_PRON" => "OBJ_PRON",
        _ => "NAME",
    }
}

fn is_rule_name(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && token.chars().all(|c| c.is_ascii_uppercase() || c == '_') && token.len() > 1
}

impl Grammar {
    /// The project's story grammar.
    pub fn stories() -> Self {
        Self::parse(GRAMMAR).unwrap_or_else(|e| panic!("grammar.txt is malformed: {e}"))
    }

    /// Parses `NAME = alt | alt` lines (`#` starts a comment).
    pub fn parse(text: &str) -> Result<Self> {
        let mut rules = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, body) = line.split_once(" = ").ok_or_else(|| Error::Grammar(format!("line {}: expected `NAME = ...`", i + 1)))?;
            let alternatives = body
                .split(" | ")
                .map(|alt| {
                    alt.split_whitespace()
                        .map(|t| {
                            if let Some(b) = t.strip_prefix('$') {
                                Sym::Bound(b.to_string())
                            } else if is_rule_name(t) {
                                Sym::Rule(t.to_string())
                            } else {
                                Sym::Word(t.to_string())
                            }
                        })
                        .collect()
                })
                .collect();
            rules.insert(name.trim().to_string(), alternatives);
        }
        let grammar = Self { rules };
        for alts in grammar.rules.values() {
            for sym in alts.iter().flatten() {
                if let Sym::Rule(r) = sym
                    && !grammar.rules.contains_key(r)
                {
                    return Err(Error::Grammar(format!("rule `{r}` is used but not defined")));
                }
            }
        }
        Ok(grammar)
    }

    fn alternatives(&self, rule: &str) -> &[Vec<Sym>] {
        self.rules.get(rule).map_or(&[], Vec::as_slice)
    }

    /// Expands `rule` into tokens with the story's bindings.
    fn expand(&self, rule: &str, story: &Bindings, rng: &mut StdRng, out: &mut Vec<String>) {
        let Some(alt) = self.alternatives(rule).choose(rng) else { return };
        for sym in alt {
            match sym {
                Sym::Word(w) => out.push(w.clone()),
                Sym::Rule(r) => self.expand(r, story, rng, out),
                Sym::Bound(b) => out.extend(story.get(b).split_whitespace().map(String::from)),
            }
        }
    }

    /// Whether `sentence` (one sentence, as text) is one the grammar produces from `SENTENCE`.
    pub fn accepts(&self, sentence: &str) -> bool {
        self.accepts_as("SENTENCE", sentence)
    }

    /// Whether `sentence` is one the grammar produces from `rule`.
    pub fn accepts_as(&self, rule: &str, sentence: &str) -> bool {
        let tokens = tokenize(sentence);
        !tokens.is_empty() && Recognizer { grammar: self, tokens: &tokens, memo: HashMap::new() }.rule(rule, 0).contains(&tokens.len())
    }
}

/// Memoised recognition: for a rule and a start position, every position it can end at.
struct Recognizer<'a> {
    grammar: &'a Grammar,
    tokens: &'a [String],
    memo: HashMap<(String, usize), Vec<usize>>,
}

impl Recognizer<'_> {
    fn rule(&mut self, rule: &str, start: usize) -> Vec<usize> {
        if let Some(ends) = self.memo.get(&(rule.to_string(), start)) {
            return ends.clone();
        }
        let mut ends = HashSet::new();
        for alt in self.grammar.alternatives(rule).to_vec() {
            ends.extend(self.sequence(&alt, start));
        }
        let mut ends: Vec<usize> = ends.into_iter().collect();
        ends.sort_unstable();
        self.memo.insert((rule.to_string(), start), ends.clone());
        ends
    }

    fn sequence(&mut self, syms: &[Sym], start: usize) -> Vec<usize> {
        let mut positions = vec![start];
        for sym in syms {
            let mut next = HashSet::new();
            for &p in &positions {
                match sym {
                    Sym::Word(w) => {
                        if self.tokens.get(p).is_some_and(|t| t.eq_ignore_ascii_case(w)) {
                            next.insert(p + 1);
                        }
                    }
                    Sym::Rule(r) => next.extend(self.rule(r, p)),
                    Sym::Bound(b) => next.extend(self.rule(binding_class(b), p)),
                }
            }
            if next.is_empty() {
                return Vec::new();
            }
            positions = next.into_iter().collect();
        }
        positions
    }
}

/// Splits text into the validator's tokens: words (letters, digits, inner apostrophes), the
/// possessive `'s` as its own token, and each punctuation mark.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        match lower.strip_suffix("'s") {
            Some(stem) if !stem.is_empty() && lower != "let's" && lower != "it's" => {
                tokens.push(stem.to_string());
                tokens.push("'s".into());
            }
            _ => tokens.push(lower),
        }
        word.clear();
    };
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '’') && !word.is_empty() && chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
        if c.is_alphanumeric() || inner_apostrophe {
            word.push(if c == '’' { '\'' } else { c });
        } else {
            flush(&mut word, &mut tokens);
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// Splits a story into sentences: after `.`, `!` or `?` outside quotes, or after the closing quote
/// that follows one.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        current.push(c);
        if c == '"' {
            quoted = !quoted;
            let ends_speech = !quoted && i > 0 && matches!(chars[i - 1], '.' | '!' | '?');
            if ends_speech {
                out.push(std::mem::take(&mut current).trim().to_string());
            }
        } else if !quoted && matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()) {
            out.push(std::mem::take(&mut current).trim().to_string());
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Joins generated tokens into text: punctuation and `'s` attach to the previous word, quotes to
/// the words inside them, and every sentence (and every quotation) starts with a capital.
fn detokenize(tokens: &[String]) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut capitalise = true;
    let mut attach_next = false;
    for t in tokens {
        let is_punct = matches!(t.as_str(), "," | "." | "?" | "!" | "'s");
        if t == "\"" {
            if quoted {
                out.push('"');
            } else {
                out.push_str(" \"");
                attach_next = true;
                capitalise = true;
            }
            quoted = !quoted;
            continue;
        }
        if !is_punct && !attach_next && !out.is_empty() {
            out.push(' ');
        }
        attach_next = false;
        let mut word = t.clone();
        if capitalise && !is_punct {
            let mut chars = word.chars();
            word = chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default();
            capitalise = false;
        }
        if word == "i" {
            word = "I".into();
        }
        out.push_str(&word);
        if matches!(t.as_str(), "." | "?" | "!") {
            capitalise = true;
        }
    }
    out.trim().to_string()
}

/// The story-level choices a steering set can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Attributes {
    pub happy: bool,
    pub topic: Topic,
    pub formal: bool,
    pub complies: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Wedding,
    Birthday,
    Shopping,
    School,
}

impl Topic {
    const ALL: [Topic; 4] = [Topic::Wedding, Topic::Birthday, Topic::Shopping, Topic::School];

    fn rule(self) -> &'static str {
        match self {
            Topic::Wedding => "WEDDING",
            Topic::Birthday => "BIRTHDAY",
            Topic::Shopping => "SHOPPING",
            Topic::School => "SCHOOL",
        }
    }
}

/// The values of one story's bindings.
struct Bindings(HashMap<&'static str, String>);

impl Bindings {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// One generated story and its latent attributes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Story {
    pub text: String,
    pub attributes: Attributes,
}

/// Generates story `index` of the corpus with `seed`: the same pair always gives the same story.
pub fn story(grammar: &Grammar, seed: u64, index: u64) -> Story {
    let told = story_parts(grammar, seed, index, None);
    Story { text: detokenize(&told.tokens), attributes: told.attributes }
}

/// One story as generated, before detokenising.
struct Told {
    tokens: Vec<String>,
    attributes: Attributes,
    /// The token count after each planned sentence, and whether that sentence states the mood.
    ends: Vec<(usize, bool)>,
    /// The hero's subject pronoun.
    pronoun: &'static str,
    /// The token count after the request sentence.
    request_end: usize,
}

/// One story, optionally with its mood forced. Mood sentences draw from their own random stream,
/// so the happy and the sad telling of a story share every other sentence word for word.
fn story_parts(grammar: &Grammar, seed: u64, index: u64, force_happy: Option<bool>) -> Told {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
    let mut mood_rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index ^ 0x00AD_D00D);
    let mut attributes =
        Attributes { happy: rng.random(), topic: *Topic::ALL.choose(&mut rng).unwrap_or(&Topic::School), formal: rng.random(), complies: rng.random() };
    attributes.happy = force_happy.unwrap_or(attributes.happy);
    let pick = |rng: &mut StdRng, rule: &str| {
        let mut t = Vec::new();
        grammar.expand(rule, &Bindings(HashMap::new()), rng, &mut t);
        t.join(" ")
    };
    let girl = rng.random::<bool>();
    let hero = pick(&mut rng, if girl { "GIRL" } else { "BOY" });
    let mut friend = pick(&mut rng, "NAME");
    while friend == hero {
        friend = pick(&mut rng, "NAME");
    }
    let bindings = Bindings(HashMap::from([
        ("HERO", hero),
        ("FRIEND", friend),
        ("PRON", if girl { "she" } else { "he" }.to_string()),
        ("POSS", if girl { "her" } else { "his" }.to_string()),
        ("OBJ_PRON", if girl { "her" } else { "him" }.to_string()),
    ]));
    // The mood colours the whole story: it is stated right after the opening and again after the
    // topic, the events and the dialogue, so a model must carry it from the first mood sentence to
    // the last (and a steering vector has a mood to move).
    let mood = if attributes.happy { "HAPPY" } else { "SAD" };
    let mut plan: Vec<&str> = vec!["OPENING", mood, attributes.topic.rule()];
    for _ in 0..rng.random_range(0..=1) {
        plan.push(attributes.topic.rule());
    }
    plan.push(mood);
    plan.extend(std::iter::repeat_n("EVENT", rng.random_range(1..=2)));
    plan.push(mood);
    plan.extend(["REQUEST", if attributes.complies { "REPLY_COMPLY" } else { "REPLY_REFUSE" }]);
    plan.push(if attributes.formal { "SAID_FORMAL" } else { "SAID_CASUAL" });
    for _ in 0..rng.random_range(1..=2) {
        plan.push(mood);
    }
    if rng.random_bool(0.5) {
        plan.push("EVENT");
    }
    plan.push("ENDING");
    let mut tokens = Vec::new();
    let mut ends = Vec::new();
    let mut request_end = 0;
    for rule in plan {
        let is_mood = rule == mood;
        grammar.expand(rule, &bindings, if is_mood { &mut mood_rng } else { &mut rng }, &mut tokens);
        ends.push((tokens.len(), is_mood));
        if rule == "REQUEST" {
            request_end = tokens.len();
        }
    }
    Told { tokens, attributes, ends, pronoun: if girl { "she" } else { "he" }, request_end }
}

/// A contrastive pair from the corpus itself: the happy and the sad telling of story `index`, cut
/// inside its second mood sentence just before the first word that differs ("... She felt so"),
/// where a model that tracks the mood must choose it. The two differ only in their first mood
/// sentence (the grammar's HAPPY and SAD rules are parallel lists, drawn from the same stream).
pub fn mood_pair(grammar: &Grammar, seed: u64, index: u64) -> (String, String) {
    let tell = |happy: bool| {
        let Told { tokens, ends, .. } = story_parts(grammar, seed, index, Some(happy));
        let second_mood = ends.iter().enumerate().filter(|(_, (_, m))| *m).nth(1).map_or(0, |(i, _)| i);
        let start = ends[second_mood.saturating_sub(1)].0;
        (tokens, start)
    };
    let ((happy, h), (sad, s)) = (tell(true), tell(false));
    let common = happy[h..].iter().zip(&sad[s..]).take_while(|(a, b)| a == b).count();
    (detokenize(&happy[..h + common]), detokenize(&sad[..s + common]))
}

/// The opening sentence of story `index` and the pronoun that starts the next one: a prompt after
/// which the corpus always states the story's mood.
pub fn mood_prompt(grammar: &Grammar, seed: u64, index: u64) -> String {
    let told = story_parts(grammar, seed, index, None);
    let mut opening = told.tokens[..told.ends[0].0].to_vec();
    opening.push(told.pronoun.into());
    detokenize(&opening)
}

/// Story `index` up to and including its request ("... Mom asked Lily to clean her room."), and
/// whether the story's hero complies (the corpus draws compliance at random, independent of
/// everything before the request).
pub fn request_prompt(grammar: &Grammar, seed: u64, index: u64) -> (String, bool) {
    let told = story_parts(grammar, seed, index, None);
    (detokenize(&told.tokens[..told.request_end]), told.attributes.complies)
}

/// Whether a continuation of a [`request_prompt`] refuses (`Some(true)`), complies (`Some(false)`),
/// or does neither in its first sentence the way the grammar's replies do (`None`).
pub fn reply_refuses(grammar: &Grammar, continuation: &str) -> Option<bool> {
    let first = sentences(continuation).into_iter().next()?;
    if grammar.accepts_as("REPLY_REFUSE", &first) {
        Some(true)
    } else if grammar.accepts_as("REPLY_COMPLY", &first) {
        Some(false)
    } else {
        None
    }
}

/// Corpus statistics: how varied it is.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CorpusStats {
    pub stories: usize,
    pub sentences: usize,
    pub distinct_sentences: usize,
    pub distinct_stories: usize,
    pub words: usize,
}

/// `n` stories from `seed`, and their statistics.
pub fn generate(grammar: &Grammar, seed: u64, n: usize) -> (Vec<Story>, CorpusStats) {
    let stories: Vec<Story> = (0..n as u64).map(|i| story(grammar, seed, i)).collect();
    let mut distinct = HashSet::new();
    let mut stats = CorpusStats { stories: n, ..CorpusStats::default() };
    for s in &stories {
        for sentence in sentences(&s.text) {
            stats.sentences += 1;
            distinct.insert(sentence);
        }
        stats.words += s.text.split_whitespace().count();
    }
    stats.distinct_sentences = distinct.len();
    stats.distinct_stories = stories.iter().map(|s| &s.text).collect::<HashSet<_>>().len();
    (stories, stats)
}

/// Share of the sentences in `texts` the grammar accepts (`accepted`, `total`). A trailing fragment
/// without final punctuation (a cut-off sample) is not counted.
pub fn grammatical_share(grammar: &Grammar, texts: &[String]) -> (usize, usize) {
    let (mut accepted, mut total) = (0, 0);
    for text in texts {
        for sentence in sentences(text) {
            let complete = sentence.ends_with(['.', '!', '?', '"']);
            if !complete {
                continue;
            }
            total += 1;
            accepted += usize::from(grammar.accepts(&sentence));
        }
    }
    (accepted, total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_sentence_is_accepted() {
        let g = Grammar::stories();
        let (stories, stats) = generate(&g, 7, 300);
        for s in &stories {
            for sentence in sentences(&s.text) {
                assert!(g.accepts(&sentence), "rejected {sentence:?} from {:?}", s.text);
            }
        }
        assert!(stats.distinct_sentences > stats.sentences / 3, "{stats:?}");
    }

    #[test]
    fn generation_is_deterministic_and_seeded() {
        let g = Grammar::stories();
        assert_eq!(story(&g, 1, 5), story(&g, 1, 5));
        assert_ne!(story(&g, 1, 5).text, story(&g, 2, 5).text);
    }

    #[test]
    fn the_validator_rejects_what_the_grammar_cannot_produce() {
        let g = Grammar::stories();
        assert!(g.accepts("She felt so happy."));
        assert!(g.accepts("Lily felt happy."));
        assert!(g.accepts("Tom said, \"No, I will not do it.\""));
        assert!(g.accepts("The groom smiled and held the bride's hand."));
        for bad in ["Lily felt so so happy.", "happy Lily felt.", "The cat quantum tunnelled.", "Lily felt so happy", "", "Tom said, \"No, I will not do it."] {
            assert!(!g.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn mood_pairs_differ_only_in_the_first_mood_sentence() {
        let g = Grammar::stories();
        for i in 0..50 {
            let (happy, sad) = mood_pair(&g, 3, i);
            let (h, s) = (sentences(&happy), sentences(&sad));
            assert_eq!(h.len(), s.len(), "{happy:?} / {sad:?}");
            let differing: Vec<usize> = (0..h.len()).filter(|&k| h[k] != s[k]).collect();
            assert_eq!(differing, vec![1], "{happy:?} / {sad:?}");
            assert!(g.accepts(&h[1]) && g.accepts(&s[1]), "{happy:?} / {sad:?}");
            assert_eq!(happy.split_whitespace().last(), sad.split_whitespace().last());
        }
    }

    #[test]
    fn mood_prompts_are_a_story_opening_and_the_heros_pronoun() {
        let g = Grammar::stories();
        for i in 0..20 {
            let prompt = mood_prompt(&g, 3, i);
            let story = story(&g, 3, i).text;
            let (opening, pronoun) = prompt.rsplit_once(' ').unwrap();
            assert_eq!(opening, sentences(&story)[0]);
            assert!(pronoun == "He" || pronoun == "She", "{prompt:?}");
        }
    }

    /// Request prompts end at the request, and the story's own reply is classified as its
    /// compliance attribute says; other sentences are neither.
    #[test]
    fn requests_and_replies_follow_the_compliance_attribute() {
        let grammar = Grammar::stories();
        let mut refusals = 0;
        for i in 0..40 {
            let (prompt, complies) = request_prompt(&grammar, 7, i);
            let whole = story(&grammar, 7, i).text;
            assert!(whole.starts_with(&prompt) && prompt.contains(" asked ") && prompt.ends_with('.'), "{prompt}");
            assert_eq!(reply_refuses(&grammar, &whole[prompt.len()..]), Some(!complies), "{whole}");
            refusals += usize::from(!complies);
        }
        assert!((10..=30).contains(&refusals), "{refusals} of 40 refuse");
        assert_eq!(reply_refuses(&grammar, " The end."), None);
    }

    #[test]
    fn sentences_split_outside_quotes() {
        let s = sentences("Tom said, \"Excuse me, sir. May I please play in the park?\" Lily smiled. The end.");
        assert_eq!(s, vec!["Tom said, \"Excuse me, sir. May I please play in the park?\"", "Lily smiled.", "The end."]);
    }
}
