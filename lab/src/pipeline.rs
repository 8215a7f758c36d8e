//! The lab's steps, each reading and writing files under one output directory so that every step
//! can be rerun (and training resumed) on its own:
//!
//! ```text
//! corpus/      train.txt, held_out.txt (stories separated by <|endoftext|>), stats.json
//! tokenizer.json
//! frontier/    config.json, model.safetensors, tokenizer.json, log.jsonl, checkpoint/
//! analog/      the same, distilled from the frontier
//! shipped/     the analog in the weight format it is published in, and formats.json (why)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use analog_core::catalog::{CATALOG_FORMAT, Catalog, CatalogModel, CatalogReport, Frontier, HubModel};
use analog_core::steering::DatasetEntry;
use analog_core::{Device, Model, Tokenizer, device};
use burn::module::Module;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Grammar};
use crate::error::{Error, Result};
use crate::tokenizer::{END_OF_TEXT, train as train_tokenizer};
use crate::train::{self, LogRow, Schedule, Shape};

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

pub(crate) fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        io(std::fs::create_dir_all(dir), dir)?;
    }
    io(std::fs::write(path, bytes), path)
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    io(std::fs::read(path), path)
}

/// Reads and parses a JSON file the lab wrote.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&read(path)?).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

/// `value` as pretty JSON with a final newline.
pub(crate) fn pretty_json(value: &impl Serialize, what: &'static str) -> Result<String> {
    serde_json::to_string_pretty(value).map(|text| text + "\n").map_err(|source| Error::Serialise { what, source })
}

/// Corpus settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorpusSpec {
    pub seed: u64,
    pub train_stories: usize,
    pub held_out_stories: usize,
}

/// Writes the training and held-out corpora (held-out stories use another seed) and their stats.
pub fn write_corpus(out: &Path, spec: &CorpusSpec) -> Result<corpus::CorpusStats> {
    let grammar = Grammar::stories();
    let (train, stats) = corpus::generate(&grammar, spec.seed, spec.train_stories);
    let (held_out, held_stats) = corpus::generate(&grammar, spec.seed + 1, spec.held_out_stories);
    let join = |stories: &[corpus::Story]| stories.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(&format!("\n{END_OF_TEXT}\n"));
    write(&out.join("corpus/train.txt"), join(&train))?;
    write(&out.join("corpus/held_out.txt"), join(&held_out))?;
    let summary = serde_json::json!({ "spec": spec, "train": stats, "held_out": held_stats });
    write(&out.join("corpus/stats.json"), pretty_json(&summary, "the corpus stats")?)?;
    Ok(stats)
}

fn stories(out: &Path, file: &str) -> Result<Vec<String>> {
    let path = out.join("corpus").join(file);
    let text = String::from_utf8(read(&path)?).map_err(|_| Error::NotText { path })?;
    Ok(text.split(&format!("\n{END_OF_TEXT}\n")).map(String::from).collect())
}

/// Trains the tokenizer on the training corpus and writes `tokenizer.json`.
pub fn write_tokenizer(out: &Path, vocab_size: usize) -> Result<()> {
    let json = train_tokenizer(&stories(out, "train.txt")?, vocab_size)?;
    write(&out.join("tokenizer.json"), json)
}

/// The corpus as one token stream, stories separated (and preceded) by `<|endoftext|>`.
pub fn token_stream(out: &Path, file: &str) -> Result<(Vec<u32>, u32)> {
    let path = out.join("tokenizer.json");
    let tokenizer = Tokenizer::from_bytes(&read(&path)?)?;
    let eos = tokenizer.token_id(END_OF_TEXT).ok_or(Error::Missing { path, what: "<|endoftext|> token" })?;
    let mut stream = Vec::new();
    for story in stories(out, file)? {
        stream.push(eos);
        stream.extend(tokenizer.encode(&story)?);
    }
    stream.push(eos);
    Ok((stream, eos))
}

/// What a model directory's training run is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub shape: Shape,
    pub schedule: Schedule,
    /// Weight of next-token cross-entropy; `1 − alpha` goes to the distillation KL.
    pub alpha: f32,
    pub temperature: f32,
}

/// Seed of the held-out windows every held-out loss is measured on.
pub const HELD_OUT_SEED: u64 = 12345;

/// Mean cross-entropy over fixed held-out windows.
pub fn held_out_loss(model: &Model, windows: &[Vec<u32>]) -> Result<f32> {
    let mut total = 0.0;
    for chunk in windows.chunks(16) {
        let loss = train::cross_entropy(train::logits(model, chunk)?, chunk);
        total += pollster::block_on(analog_core::read_f32(loss))?[0] * chunk.len() as f32;
    }
    Ok(total / windows.len().max(1) as f32)
}

/// Trains (or resumes) the model in `dir` per `spec`; with a `teacher` directory, distils from it.
/// Checkpoints every `checkpoint_every` steps; `log.jsonl` gets one row per `log_every` steps.
pub fn train_model(out: &Path, dir: &Path, spec: &RunSpec, teacher: Option<&Path>, log_every: usize, checkpoint_every: usize) -> Result<()> {
    let (stream, _) = token_stream(out, "train.txt")?;
    train_model_on(out, dir, spec, teacher, &stream, log_every, checkpoint_every)
}

/// [`train_model`] on another token `stream` (the extraction student trains on the analog's
/// samples); held-out losses are still measured on the corpus's held-out stories.
pub fn train_model_on(out: &Path, dir: &Path, spec: &RunSpec, teacher: Option<&Path>, stream: &[u32], log_every: usize, checkpoint_every: usize) -> Result<()> {
    let (held, eos) = token_stream(out, "held_out.txt")?;
    let mut held_rng = StdRng::seed_from_u64(HELD_OUT_SEED);
    let held_windows = train::batch(&held, 64, spec.schedule.seq_len, &mut held_rng);
    let config = spec.shape.config_json(eos)?;
    write(&dir.join("config.json"), &config)?;
    write(&dir.join("tokenizer.json"), read(&out.join("tokenizer.json"))?)?;
    write(&dir.join("run.json"), pretty_json(spec, "the run settings")?)?;

    let ad = device::cpu().autodiff();
    let checkpoint = dir.join("checkpoint");
    let state_path = checkpoint.join("state.json");
    let (weights, start, mut tokens_seen): (Vec<u8>, usize, u64) = if state_path.is_file() {
        let state: serde_json::Value = read_json(&state_path)?;
        let step = state["step"].as_u64().unwrap_or(0) as usize;
        eprintln!("resuming {} at step {step}", dir.display());
        (read(&checkpoint.join("model.safetensors"))?, step, state["tokens"].as_u64().unwrap_or(0))
    } else {
        (spec.shape.init_safetensors(spec.schedule.seed)?, 0, 0)
    };
    let mut model = train::load(&config, &weights, &ad)?;
    let mut optimizer = spec.schedule.optimizer();
    let optimizer_path = checkpoint.join("optimizer.bin");
    if start > 0 && optimizer_path.is_file() {
        optimizer = optimizer.load(&optimizer_path).map_err(|e| Error::Optimizer { path: optimizer_path.clone(), reason: format!("{e:?}") })?;
    }
    let teacher_model = match teacher {
        Some(t) => Some(train::load(&String::from_utf8_lossy(&read(&t.join("config.json"))?), &read(&t.join("model.safetensors"))?, &device::cpu())?),
        None => None,
    };
    let mut rng = StdRng::seed_from_u64(spec.schedule.seed ^ 0xDA7A);
    // Skip the batches already seen so a resumed run sees the same data as an uninterrupted one.
    for _ in 0..start {
        train::batch(stream, spec.schedule.batch, spec.schedule.seq_len, &mut rng);
    }
    let mut log = io(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log.jsonl")), &dir.join("log.jsonl"))?;
    let started = Instant::now();
    let mut running = Vec::new();
    for step in start..spec.schedule.steps {
        let rows = train::batch(stream, spec.schedule.batch, spec.schedule.seq_len, &mut rng);
        let logits = train::logits(&model, &rows)?;
        let ce = train::cross_entropy(logits.clone(), &rows);
        let loss = match &teacher_model {
            Some(teacher) => {
                let teacher_logits = train::logits(teacher, &rows)?;
                let teacher_logits = Tensor3::from_data(teacher_logits.into_data(), &ad);
                ce.clone() * spec.alpha + train::distillation_kl(logits, teacher_logits, spec.temperature) * (1.0 - spec.alpha)
            }
            None => ce.clone(),
        };
        let lr = spec.schedule.lr_at(step);
        running.push(pollster::block_on(analog_core::read_f32(ce.detach()))?[0]);
        model = train::step(model, &mut optimizer, loss, lr);
        tokens_seen += (spec.schedule.batch * spec.schedule.seq_len) as u64;
        let last = step + 1 == spec.schedule.steps;
        if (step + 1) % log_every == 0 || last {
            let evaluate = (step + 1) % checkpoint_every == 0 || last;
            let held_out_loss = if evaluate { Some(held_out_loss(&model.valid(), &held_windows)?) } else { None };
            let row = LogRow {
                step: step + 1,
                tokens: tokens_seen,
                loss: running.iter().sum::<f32>() / running.len().max(1) as f32,
                lr,
                seconds: started.elapsed().as_secs_f64(),
                held_out_loss,
                parts: Default::default(),
            };
            running.clear();
            eprintln!("{}: step {} loss {:.4} held-out {:?} ({:.0}s)", dir.display(), row.step, row.loss, row.held_out_loss, row.seconds);
            let line = serde_json::to_string(&row).map_err(|source| Error::Serialise { what: "a training log row", source })?;
            io(writeln!(log, "{line}"), &dir.join("log.jsonl"))?;
        }
        if (step + 1) % checkpoint_every == 0 || last {
            let bytes = train::export_safetensors(&model.valid())?;
            write(&checkpoint.join("model.safetensors"), &bytes)?;
            optimizer.save(&optimizer_path).map_err(|e| Error::Optimizer { path: optimizer_path.clone(), reason: format!("{e:?}") })?;
            write(&state_path, serde_json::json!({ "step": step + 1, "tokens": tokens_seen }).to_string())?;
        }
    }
    let bytes = train::export_safetensors(&model.valid())?;
    write(&dir.join("model.safetensors"), bytes)
}

type Tensor3 = burn::tensor::Tensor<3>;

/// Default paths of the two models.
pub fn model_dirs(out: &Path) -> (PathBuf, PathBuf) {
    (out.join("frontier"), out.join("analog"))
}

pub fn cpu() -> Device {
    device::cpu()
}

/// The frontier model: 4 layers of width 256 (~3.2M parameters with a 512-token vocabulary).
pub const FRONTIER: Shape = Shape { vocab_size: 512, d_model: 256, n_layers: 4, n_heads: 8, n_kv_heads: 4, d_mlp: 688, context_length: 256 };
/// The analog: 2 layers of width 64 (4.8% of the frontier).
pub const ANALOG: Shape = Shape { vocab_size: 512, d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_mlp: 160, context_length: 256 };

/// Default runs: the frontier on the corpus, the analog distilled from it.
pub fn default_run(analog: bool, steps: usize) -> RunSpec {
    let schedule = Schedule {
        steps,
        batch: 16,
        seq_len: 128,
        lr: if analog { 3e-3 } else { 1e-3 },
        warmup: (steps / 20).max(1),
        weight_decay: 0.01,
        seed: if analog { 2 } else { 1 },
    };
    RunSpec { shape: if analog { ANALOG } else { FRONTIER }, schedule, alpha: if analog { 0.5 } else { 1.0 }, temperature: 2.0 }
}

/// Prompts for the unsteered grammaticality check: beginnings of sentences the grammar produces.
pub const SAMPLE_PROMPTS: [&str; 6] = ["Once upon a time", "One day,", "Tom said,", "The bride", "After school,", "Lily"];

/// Samples `per_prompt` continuations of each prompt; returns the share of their complete sentences
/// the grammar accepts, how many sentences that was, and the texts.
pub fn grammaticality(dir: &Path, per_prompt: usize, tokens: usize) -> Result<(f32, usize, Vec<String>)> {
    let model = load_text_model(dir)?;
    let prompts: Vec<String> = SAMPLE_PROMPTS.iter().map(|p| (*p).to_string()).collect();
    let texts: Vec<String> = continuations(&model, &prompts, &[], per_prompt, tokens, 0)?.into_iter().map(|(p, c)| format!("{p}{c}")).collect();
    let (ok, total) = corpus::grammatical_share(&Grammar::stories(), &texts);
    Ok((ok as f32 / total.max(1) as f32, total, texts))
}

/// Loads a model directory in HF layout.
pub fn load_text_model(dir: &Path) -> Result<analog_core::TextModel> {
    analog_core::TextModel::from_bytes(
        &read(&dir.join("config.json"))?,
        &analog_core::WeightFiles::Single(&read(&dir.join("model.safetensors"))?),
        &read(&dir.join("tokenizer.json"))?,
        &device::cpu(),
    )
    .map_err(Error::from)
}

/// Sampled continuations (temperature 1) of each prompt, with `edits` applied.
fn continuations(
    model: &analog_core::TextModel,
    prompts: &[String],
    edits: &[analog_core::Edit],
    per_prompt: usize,
    tokens: usize,
    seed: u64,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (p, prompt) in prompts.iter().enumerate() {
        let ids = model.encode(prompt)?;
        for s in 0..per_prompt {
            let options = analog_core::GenerateOptions {
                max_new_tokens: tokens,
                sampling: analog_core::Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: seed + (p * per_prompt + s) as u64 },
                stop_at_eos: true,
            };
            let mut hooks = edits.iter().cloned().fold(analog_core::Hooks::new(), analog_core::Hooks::edit);
            let generated = pollster::block_on(model.generate(&ids, &options, &mut hooks, &mut |_| true))?;
            out.push((prompt.clone(), generated.text));
        }
    }
    Ok(out)
}

/// Sentences of `prompt + continuation` that end inside the continuation: every sentence the model
/// wrote at least part of, including the one the prompt began.
fn continuation_sentences(prompt: &str, continuation: &str) -> Vec<String> {
    let text = format!("{prompt}{continuation}");
    let mut offset = 0;
    let mut out = Vec::new();
    for s in corpus::sentences(&text) {
        let start = text[offset..].find(&s).map_or(offset, |i| offset + i);
        offset = start + s.len();
        if offset > prompt.trim_end().len() {
            out.push(s);
        }
    }
    out
}

/// The corpus mood pair set `lab all` and `lab transfer` write into the datasets directory (see
/// [`corpus::mood_pair`]): 64 stories told happy and sad.
pub const STORY_MOOD_PAIRS: &str = "story-mood.jsonl";

/// The published mood-steering measurement: the mean difference of the last-token `resid_post`
/// activations of the corpus mood pairs (the token where the next mood word is chosen) after the
/// analog's first block, scaled by the mean residual norm and added at every position. Layer 0
/// was chosen over layer 1 by measuring both with `analog lab mood` (README: the lab).
pub const MOOD: MoodSteering<'static> = MoodSteering {
    pairs: STORY_MOOD_PAIRS,
    site: analog_core::steering::HookSite::ResidPost,
    layer: 0,
    aggregation: analog_core::steering::Aggregation::Last,
    method: analog_core::steering::Method::MeanDiff,
    prompt_only: false,
    normalise: true,
};
pub const MOOD_COEFS: [f32; 10] = [0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 1.0, 2.0];
/// Samples per story opening at each coefficient (five openings: 80 samples per coefficient).
pub const MOOD_SAMPLES_PER_PROMPT: usize = 16;

/// Seed of the stories whose openings prompt the mood-steering samples and whose two tellings make
/// the published story-mood pair set (apart from the training and held-out corpora's seeds 0, 1).
pub const MOOD_SEED: u64 = 100;

/// Prompts for the mood-steering check: the openings of five stories, each followed by the hero's
/// pronoun, after which the corpus always states the mood (so an unsteered model that follows the
/// corpus is happy about half the time).
pub fn mood_prompts() -> Vec<String> {
    let grammar = Grammar::stories();
    (0..5).map(|i| corpus::mood_prompt(&grammar, MOOD_SEED + 1, i)).collect()
}

/// Tokens generated per mood-steering sample: the mood sentence after the opening and the next.
pub const MOOD_TOKENS: usize = 24;
/// How the mood vector is extracted and applied.
#[derive(Debug, Clone, Copy)]
pub struct MoodSteering<'a> {
    /// The pair set's file in the datasets directory.
    pub pairs: &'a str,
    pub site: analog_core::steering::HookSite,
    pub layer: usize,
    pub aggregation: analog_core::steering::Aggregation,
    pub method: analog_core::steering::Method,
    /// Add the vector only over the prompt (`true`) or at every position, generated tokens included.
    pub prompt_only: bool,
    /// Scale the unit direction by the mean residual norm (`true`) or add the raw mean difference.
    pub normalise: bool,
}

/// Mood steering: the vector of `mood` at each coefficient on samples after [`mood_prompts`]: the
/// share of samples containing a word of the sentiment set's happy lexicon, and the share of the
/// sentences the model wrote that the grammar accepts.
pub fn mood_steering(
    dir: &Path,
    datasets: &Path,
    mood: MoodSteering<'_>,
    coefs: &[f32],
    per_prompt: usize,
    tokens: usize,
    show: &mut dyn FnMut(f32, &str),
) -> Result<Vec<crate::publish::SteeringRow>> {
    let model = load_text_model(dir)?;
    let index: Vec<DatasetEntry> = read_json(&datasets.join("index.json"))?;
    let sentiment = index.iter().find(|d| d.id == "sentiment").ok_or(Error::Missing { path: datasets.join("index.json"), what: "`sentiment` pair set" })?;
    let pairs = analog_core::steering::PairSet::from_jsonl(&String::from_utf8_lossy(&read(&datasets.join(mood.pairs))?))?;
    let identity = analog_core::steering::VectorModel { id: "analog".into(), weights_sha256: String::new(), d_model: model.config().d_model };
    let acts = pollster::block_on(analog_core::steering::collect(&model, &pairs, mood.site, mood.aggregation, &mut analog_core::progress::Silent))?;
    let vector = analog_core::steering::steering_vector(&acts, mood.method, &[mood.layer], identity, &pairs)?;
    let grammar = Grammar::stories();
    let lexicon: Vec<String> = sentiment.lexicon.iter().map(|w| w.to_lowercase()).collect();
    let prompts = mood_prompts();
    let mut rows = Vec::new();
    for &coef in coefs {
        let mut samples = Vec::new();
        for prompt in &prompts {
            let positions =
                if mood.prompt_only { analog_core::Positions { start: 0, end: Some(model.encode(prompt)?.len()) } } else { analog_core::Positions::ALL };
            let how = analog_core::steering::Application { coef, positions, normalise: mood.normalise, ablate: false, preserve_norm: false };
            samples.extend(continuations(&model, std::slice::from_ref(prompt), &vector.edits(&how), per_prompt, tokens, samples.len() as u64)?);
        }
        for (p, c) in &samples {
            show(coef, &format!("{p}{c}"));
        }
        let hits = samples.iter().filter(|(_, c)| c.to_lowercase().split(|ch: char| !ch.is_alphanumeric()).any(|w| lexicon.iter().any(|l| l == w))).count();
        let sentences: Vec<String> = samples.iter().flat_map(|(p, c)| continuation_sentences(p, c)).filter(|s| s.ends_with(['.', '!', '?', '"'])).collect();
        let ok = sentences.iter().filter(|s| grammar.accepts(s)).count();
        rows.push(crate::publish::SteeringRow {
            coef,
            trigger_rate: hits as f32 / samples.len().max(1) as f32,
            grammatical: ok as f32 / sentences.len().max(1) as f32,
        });
    }
    Ok(rows)
}

/// Released small models the app offers by HF repo id: (repo, family, parameters as their model
/// cards state them, note). They are fetched from the hub by the visitor's browser, never by tests.
pub const HUB_MODELS: [(&str, &str, u64, &str); 4] = [
    ("HuggingFaceTB/SmolLM2-135M", "llama", 134_515_008, "SmolLM2, 30 layers"),
    ("EleutherAI/pythia-70m", "gpt_neox", 70_426_624, "Pythia, 6 layers"),
    ("openai-community/gpt2", "gpt2", 124_439_808, "GPT-2 small, 12 layers"),
    ("Qwen/Qwen2.5-0.5B", "qwen2", 494_032_768, "Qwen2.5, 24 layers; about 2 GB in memory"),
];

/// A released small model and the frontier model it stands in for (see [`ANALOG_PAIRS`]).
pub struct AnalogPair {
    pub repo: &'static str,
    pub family: &'static str,
    pub n_params: u64,
    pub note: &'static str,
    pub frontier: &'static str,
    pub frontier_params: u64,
    pub distilled: bool,
    pub claim: &'static str,
    pub source: &'static str,
}

/// Released small models paired with the frontier model they stand in for. Parameters
/// are counted from each model's config.json by `ModelConfig::hf_tensors` (tested below); the
/// frontier sizes and the distillation claims are the developers' own, with their source.
pub const ANALOG_PAIRS: [AnalogPair; 5] = [
    AnalogPair {
        repo: "google/gemma-3-270m",
        family: "gemma3_text",
        n_params: 268_098_176,
        note: "Gemma 3 270M, 18 layers, 262k vocabulary",
        frontier: "Gemma 3 27B",
        frontier_params: 27_000_000_000,
        distilled: true,
        claim: "every Gemma 3 model is trained with distillation from a larger teacher",
        source: "https://arxiv.org/abs/2503.19786",
    },
    AnalogPair {
        repo: "Qwen/Qwen3-0.6B",
        family: "qwen3",
        n_params: 596_049_920,
        note: "Qwen3 0.6B, 28 layers",
        frontier: "Qwen3-32B",
        frontier_params: 32_800_000_000,
        distilled: true,
        claim: "small Qwen3 models learn by strong-to-weak distillation from Qwen3-32B and Qwen3-235B-A22B",
        source: "https://arxiv.org/abs/2505.09388",
    },
    AnalogPair {
        repo: "meta-llama/Llama-3.2-1B",
        family: "llama",
        n_params: 1_235_814_400,
        note: "Llama 3.2 1B, 16 layers (gated: needs an accepted licence)",
        frontier: "Llama 3.1 70B",
        frontier_params: 70_600_000_000,
        distilled: true,
        claim: "logits of Llama 3.1 8B and 70B were token-level targets in pre-training",
        source: "https://huggingface.co/meta-llama/Llama-3.2-1B",
    },
    AnalogPair {
        repo: "EleutherAI/pythia-70m-deduped",
        family: "gpt_neox",
        n_params: 70_426_624,
        note: "Pythia 70M (deduplicated), 6 layers",
        frontier: "Pythia 6.9B",
        frontier_params: 6_857_302_016,
        distilled: false,
        claim: "same data in the same order as its larger siblings; not distilled",
        source: "https://arxiv.org/abs/2304.01373",
    },
    AnalogPair {
        repo: "HuggingFaceTB/SmolLM2-135M-Instruct",
        family: "llama",
        n_params: 134_515_008,
        note: "SmolLM2 135M Instruct, 30 layers (7.9% of its sibling: outside the 0.5–5% band)",
        frontier: "SmolLM2-1.7B",
        frontier_params: 1_711_376_384,
        distilled: false,
        claim: "same data mixture and tokenizer as SmolLM2-1.7B; not distilled",
        source: "https://arxiv.org/abs/2502.02737",
    },
];

/// What `publish` names things.
pub struct PublishSettings<'a> {
    pub public: &'a Path,
    pub analog_id: &'a str,
    pub frontier_id: &'a str,
    pub command: &'a str,
}

/// Training figures from `dir`'s log; grammaticality of the model in `shipped` (the published files).
fn quality(dir: &Path, shipped: &Path) -> Result<crate::publish::Quality> {
    let log = crate::publish::read_log(dir)?;
    let last = log.last().ok_or(Error::Missing { path: dir.join("log.jsonl"), what: "training log rows" })?;
    let held_out_loss = log.iter().rev().find_map(|r| r.held_out_loss).ok_or(Error::Missing { path: dir.join("log.jsonl"), what: "held-out loss" })?;
    let (grammatical, samples, _) = grammaticality(shipped, 8, 60)?;
    Ok(crate::publish::Quality {
        grammatical,
        samples,
        held_out_loss,
        tokens_seen: last.tokens,
        steps: last.step,
        train_seconds: crate::publish::training_seconds(&log),
    })
}

/// Copies both models into `public/models/<id>/` with cards and loss curves, the report into
/// `public/reports/`, and writes `public/catalog.json`.
pub fn publish(out: &Path, settings: &PublishSettings<'_>, report: &analog_core::report::TransferReport, progress: &mut dyn FnMut(&str)) -> Result<()> {
    use crate::publish::{Card, card, file_entries, loss_svg, read_log};
    let (frontier_dir, analog_dir) = model_dirs(out);
    let corpus_stats: serde_json::Value = read_json(&out.join("corpus/stats.json"))?;
    let corpus = format!(
        "the project's procedural story corpus: {} training stories ({} sentences, {} distinct), {} held-out stories from another seed",
        corpus_stats["train"]["stories"], corpus_stats["train"]["sentences"], corpus_stats["train"]["distinct_sentences"], corpus_stats["held_out"]["stories"]
    );
    let frontier_params = FRONTIER.n_params();
    let mut catalog_models = Vec::new();
    for (dir, id, analog) in [(&frontier_dir, settings.frontier_id, false), (&analog_dir, settings.analog_id, true)] {
        progress(&format!("{id}: measuring quality"));
        let target = settings.public.join("models").join(id);
        // The analog ships in the format `formats::ship` chose; every quality figure is measured on it.
        let (shipped, formats) = if analog { (crate::formats::shipped_dir(out), Some(crate::formats::read_choice(out)?)) } else { (dir.to_path_buf(), None) };
        for f in crate::publish::MODEL_FILES {
            write(&target.join(f), read(&shipped.join(f))?)?;
        }
        let q = quality(dir, &shipped)?;
        let steering = if analog {
            mood_steering(&shipped, &settings.public.join("datasets"), MOOD, &MOOD_COEFS, MOOD_SAMPLES_PER_PROMPT, MOOD_TOKENS, &mut |_, _| {})?
        } else {
            Vec::new()
        };
        let spec: RunSpec = read_json(&dir.join("run.json"))?;
        let shape = spec.shape;
        let files = file_entries(&target)?;
        let training = if analog {
            format!(
                "distilled from {}: {} × next-token cross-entropy + {} × T² KL to the frontier's logits at T = {}; AdamW, lr {}, batch {} × {} tokens",
                settings.frontier_id,
                spec.alpha,
                1.0 - spec.alpha,
                spec.temperature,
                spec.schedule.lr,
                spec.schedule.batch,
                spec.schedule.seq_len
            )
        } else {
            format!(
                "next-token cross-entropy; AdamW, lr {}, batch {} × {} tokens, warm-up then cosine decay",
                spec.schedule.lr, spec.schedule.batch, spec.schedule.seq_len
            )
        };
        let role = if analog {
            format!(
                "The **default analog** of Analog Explorer: a small model distilled from `{}` on the same data, released so that anyone can study steering on it and check the transfer report.",
                settings.frontier_id
            )
        } else {
            "The **reference frontier**, published only so that reports can be verified: the model the analog stands in for.".to_string()
        };
        let shape_text = format!(
            "{} layers, d_model {}, {} heads ({} kv), d_mlp {}, vocab {}, context {}",
            shape.n_layers, shape.d_model, shape.n_heads, shape.n_kv_heads, shape.d_mlp, shape.vocab_size, shape.context_length
        );
        let text = card(&Card {
            id,
            role: &role,
            n_params: shape.n_params(),
            frontier_params,
            shape: shape_text,
            training: &training,
            corpus: &corpus,
            quality: &q,
            steering: &steering,
            transfer: Some(report),
            files: &files,
            command: settings.command,
            steering_setup: format!(
                "`datasets/{}` (the corpus's stories told happy and sad), layer {} `resid_post`, {} direction of {}-token activations, {}, added at {}; {MOOD_TOKENS} tokens sampled after each of five story openings, {MOOD_SAMPLES_PER_PROMPT} samples each",
                MOOD.pairs,
                MOOD.layer,
                MOOD.method,
                MOOD.aggregation,
                if MOOD.normalise { "coefficient × mean residual norm" } else { "raw" },
                if MOOD.prompt_only { "the prompt's positions" } else { "every position" }
            ),
            formats: formats.as_ref(),
        });
        write(&target.join("MODEL_CARD.md"), text)?;
        write(&target.join("loss.svg"), loss_svg(&read_log(dir)?, &format!("{id}: loss per token (nats)")))?;
        catalog_models.push(CatalogModel {
            id: id.into(),
            role: if analog { "analog" } else { "reference-frontier" }.into(),
            note: if analog { "default analog" } else { "reference frontier, published only so that reports can be verified" }.into(),
            path: format!("models/{id}/"),
            architecture: "llama".into(),
            n_params: shape.n_params() as u64,
            bytes: files.iter().map(|f| f.bytes).sum::<u64>(),
            files,
            held_out_loss: f64::from(q.held_out_loss),
            grammatical: f64::from(q.grammatical),
            weight_format: formats.as_ref().map_or(analog_core::quant::WeightFormat::F32, |c| c.shipped),
        });
    }
    let report_path = format!("reports/{}.json", report.id);
    write(&settings.public.join(&report_path), report.to_json())?;
    // The size sweep's reports (`analog lab sweep`) stay listed.
    let catalog_path = settings.public.join("catalog.json");
    let sweep_reports: Vec<CatalogReport> = if catalog_path.is_file() {
        read_json::<Catalog>(&catalog_path)?.reports.into_iter().filter(|r| r.id.starts_with("story-sweep-")).collect()
    } else {
        Vec::new()
    };
    let catalog = Catalog {
        format: CATALOG_FORMAT.into(),
        default: settings.analog_id.into(),
        models: catalog_models,
        hub: ANALOG_PAIRS
            .iter()
            .map(|p| HubModel {
                repo: p.repo.into(),
                family: p.family.into(),
                n_params: p.n_params,
                note: p.note.into(),
                frontier: Some(Frontier {
                    name: p.frontier.into(),
                    n_params: p.frontier_params,
                    distilled: p.distilled,
                    claim: p.claim.into(),
                    source: p.source.into(),
                }),
            })
            .chain(HUB_MODELS.iter().map(|&(repo, family, n_params, note)| HubModel {
                repo: repo.into(),
                family: family.into(),
                n_params,
                note: note.into(),
                frontier: None,
            }))
            .collect(),
        reports: std::iter::once(CatalogReport {
            id: report.id.clone(),
            path: report_path,
            analog: settings.analog_id.into(),
            frontier: settings.frontier_id.into(),
        })
        .chain(sweep_reports)
        .collect(),
    };
    write(&settings.public.join("catalog.json"), pretty_json(&catalog, "the catalog")?)
}

/// Pairs in the published corpus mood set.
pub const MOOD_PAIRS: usize = 64;

/// Writes the published corpus mood pair set into `datasets` and its entry into `index.json`
/// (so the app offers it beside the general-English sets; the study and the mood check read it).
pub fn write_mood_pairs(datasets: &Path) -> Result<()> {
    write(&datasets.join(STORY_MOOD_PAIRS), mood_pairs_jsonl(MOOD_SEED, MOOD_PAIRS))?;
    let index_path = datasets.join("index.json");
    let mut index: Vec<DatasetEntry> = read_json(&index_path)?;
    let lexicon = index
        .iter()
        .find(|d| d.id == "sentiment")
        .map(|d| d.lexicon.clone())
        .ok_or(Error::Missing { path: index_path.clone(), what: "`sentiment` pair set" })?;
    let entry = DatasetEntry {
        id: crate::study::STORY_MOOD.into(),
        file: STORY_MOOD_PAIRS.into(),
        card: "story-mood.md".into(),
        concept: "Mood of a story in the lab's corpus: the same story told happy vs sad".into(),
        positive: "happy".into(),
        negative: "sad".into(),
        n_pairs: MOOD_PAIRS,
        target_tokens: vec![" happy".into()],
        counter_tokens: vec![" sad".into()],
        lexicon,
        neutral_prompts: mood_prompts(),
    };
    match index.iter_mut().find(|d| d.id == crate::study::STORY_MOOD) {
        Some(existing) => *existing = entry,
        None => index.push(entry),
    }
    write(&index_path, pretty_json(&index, "the dataset index")?)
}

/// Writes `n` corpus mood pairs (see [`corpus::mood_pair`]) as pair-set JSONL.
pub fn mood_pairs_jsonl(seed: u64, n: usize) -> String {
    let grammar = Grammar::stories();
    (0..n as u64)
        .map(|i| {
            let (positive, negative) = corpus::mood_pair(&grammar, seed, i);
            serde_json::json!({ "positive": positive, "negative": negative, "label": "mood" }).to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The parameter counts of the hub table, counted from each model's config.json (the sizes
    /// that matter, as the repositories publish them) by the runtime's own weight tables.
    #[test]
    fn hub_parameter_counts_follow_from_the_configs() {
        let configs = [
            (
                "google/gemma-3-270m",
                r#"{"model_type":"gemma3_text","vocab_size":262144,"hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,
                   "num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"max_position_embeddings":32768,"sliding_window":512}"#,
            ),
            (
                "Qwen/Qwen3-0.6B",
                r#"{"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,
                   "num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"max_position_embeddings":40960,"tie_word_embeddings":true}"#,
            ),
            (
                "meta-llama/Llama-3.2-1B",
                r#"{"model_type":"llama","vocab_size":128256,"hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,
                   "num_attention_heads":32,"num_key_value_heads":8,"head_dim":64,"max_position_embeddings":131072,"tie_word_embeddings":true}"#,
            ),
            (
                "EleutherAI/pythia-70m-deduped",
                r#"{"model_type":"gpt_neox","vocab_size":50304,"hidden_size":512,"intermediate_size":2048,"num_hidden_layers":6,
                   "num_attention_heads":8,"max_position_embeddings":2048,"rotary_pct":0.25}"#,
            ),
            (
                "HuggingFaceTB/SmolLM2-135M-Instruct",
                r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,
                   "num_attention_heads":9,"num_key_value_heads":3,"max_position_embeddings":8192,"tie_word_embeddings":true}"#,
            ),
        ];
        for (repo, json) in configs {
            let config = analog_core::ModelConfig::from_hf_json(json.as_bytes()).unwrap();
            let counted: u64 = config.hf_tensors().iter().map(|(_, shape)| shape.iter().product::<usize>() as u64).sum();
            let listed = ANALOG_PAIRS.iter().find(|p| p.repo == repo).unwrap().n_params;
            assert_eq!(counted, listed, "{repo}");
        }
    }
}
