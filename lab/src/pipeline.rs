//! The lab's steps, each reading and writing files under one output directory so that every step
//! can be rerun (and training resumed) on its own:
//!
//! ```text
//! corpus/      train.txt, held_out.txt (stories separated by <|endoftext|>), stats.json
//! tokenizer.json
//! frontier/    config.json, model.safetensors, tokenizer.json, log.jsonl, checkpoint/
//! analog/      the same, distilled from the frontier
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use analog_core::{Device, Model, Tokenizer, device};
use burn::module::Module;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Grammar};
use crate::tokenizer::{END_OF_TEXT, train as train_tokenizer};
use crate::train::{self, LogRow, Schedule, Shape};

pub type Result<T> = std::result::Result<T, String>;

fn io<T>(r: std::io::Result<T>, what: &Path) -> Result<T> {
    r.map_err(|e| format!("{}: {e}", what.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        io(std::fs::create_dir_all(dir), dir)?;
    }
    io(std::fs::write(path, bytes), path)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    io(std::fs::read(path), path)
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
    write(&out.join("corpus/stats.json"), serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n")?;
    Ok(stats)
}

fn stories(out: &Path, file: &str) -> Result<Vec<String>> {
    let text = String::from_utf8(read(&out.join("corpus").join(file))?).map_err(|e| e.to_string())?;
    Ok(text.split(&format!("\n{END_OF_TEXT}\n")).map(String::from).collect())
}

/// Trains the tokenizer on the training corpus and writes `tokenizer.json`.
pub fn write_tokenizer(out: &Path, vocab_size: usize) -> Result<()> {
    let json = train_tokenizer(&stories(out, "train.txt")?, vocab_size)?;
    write(&out.join("tokenizer.json"), json)
}

/// The corpus as one token stream, stories separated (and preceded) by `<|endoftext|>`.
pub fn token_stream(out: &Path, file: &str) -> Result<(Vec<u32>, u32)> {
    let tokenizer = Tokenizer::from_bytes(&read(&out.join("tokenizer.json"))?).map_err(|e| e.to_string())?;
    let eos = tokenizer.token_id(END_OF_TEXT).ok_or("the tokenizer has no <|endoftext|>")?;
    let mut stream = Vec::new();
    for story in stories(out, file)? {
        stream.push(eos);
        stream.extend(tokenizer.encode(&story).map_err(|e| e.to_string())?);
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

/// Mean cross-entropy over fixed held-out windows.
pub fn held_out_loss(model: &Model, windows: &[Vec<u32>]) -> Result<f32> {
    let mut total = 0.0;
    for chunk in windows.chunks(16) {
        let loss = train::cross_entropy(train::logits(model, chunk).map_err(|e| e.to_string())?, chunk);
        total += pollster::block_on(analog_core::read_f32(loss)).map_err(|e| e.to_string())?[0] * chunk.len() as f32;
    }
    Ok(total / windows.len().max(1) as f32)
}

/// Trains (or resumes) the model in `dir` per `spec`; with a `teacher` directory, distils from it.
/// Checkpoints every `checkpoint_every` steps; `log.jsonl` gets one row per `log_every` steps.
pub fn train_model(out: &Path, dir: &Path, spec: &RunSpec, teacher: Option<&Path>, log_every: usize, checkpoint_every: usize) -> Result<()> {
    let (stream, eos) = token_stream(out, "train.txt")?;
    let (held, _) = token_stream(out, "held_out.txt")?;
    let mut held_rng = StdRng::seed_from_u64(12345);
    let held_windows = train::batch(&held, 64, spec.schedule.seq_len, &mut held_rng);
    let config = spec.shape.config_json(eos);
    write(&dir.join("config.json"), &config)?;
    write(&dir.join("tokenizer.json"), read(&out.join("tokenizer.json"))?)?;
    write(&dir.join("run.json"), serde_json::to_string_pretty(spec).unwrap_or_default() + "\n")?;

    let ad = device::cpu().autodiff();
    let checkpoint = dir.join("checkpoint");
    let state_path = checkpoint.join("state.json");
    let (weights, start, mut tokens_seen): (Vec<u8>, usize, u64) = if state_path.is_file() {
        let state: serde_json::Value = serde_json::from_slice(&read(&state_path)?).map_err(|e| e.to_string())?;
        let step = state["step"].as_u64().unwrap_or(0) as usize;
        eprintln!("resuming {} at step {step}", dir.display());
        (read(&checkpoint.join("model.safetensors"))?, step, state["tokens"].as_u64().unwrap_or(0))
    } else {
        (spec.shape.init_safetensors(spec.schedule.seed), 0, 0)
    };
    let mut model = train::load(&config, &weights, &ad).map_err(|e| e.to_string())?;
    let mut optimizer = spec.schedule.optimizer();
    if start > 0 && checkpoint.join("optimizer.bin").is_file() {
        optimizer = optimizer.load(checkpoint.join("optimizer.bin")).map_err(|e| format!("optimizer state: {e:?}"))?;
    }
    let teacher_model = match teacher {
        Some(t) => Some(train::load(&String::from_utf8_lossy(&read(&t.join("config.json"))?), &read(&t.join("model.safetensors"))?, &device::cpu()).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut rng = StdRng::seed_from_u64(spec.schedule.seed ^ 0xDA7A);
    // Skip the batches already seen so a resumed run sees the same data as an uninterrupted one.
    for _ in 0..start {
        train::batch(&stream, spec.schedule.batch, spec.schedule.seq_len, &mut rng);
    }
    let mut log = io(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log.jsonl")), &dir.join("log.jsonl"))?;
    let started = Instant::now();
    let mut running = Vec::new();
    for step in start..spec.schedule.steps {
        let rows = train::batch(&stream, spec.schedule.batch, spec.schedule.seq_len, &mut rng);
        let logits = train::logits(&model, &rows).map_err(|e| e.to_string())?;
        let ce = train::cross_entropy(logits.clone(), &rows);
        let loss = match &teacher_model {
            Some(teacher) => {
                let teacher_logits = train::logits(teacher, &rows).map_err(|e| e.to_string())?;
                let teacher_logits = Tensor3::from_data(teacher_logits.into_data(), &ad);
                ce.clone() * spec.alpha + train::distillation_kl(logits, teacher_logits, spec.temperature) * (1.0 - spec.alpha)
            }
            None => ce.clone(),
        };
        let lr = spec.schedule.lr_at(step);
        running.push(pollster::block_on(analog_core::read_f32(ce.detach())).map_err(|e| e.to_string())?[0]);
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
            io(writeln!(log, "{}", serde_json::to_string(&row).unwrap_or_default()), &dir.join("log.jsonl"))?;
        }
        if (step + 1) % checkpoint_every == 0 || last {
            let bytes = train::export_safetensors(&model.valid()).map_err(|e| e.to_string())?;
            write(&checkpoint.join("model.safetensors"), &bytes)?;
            optimizer.save(checkpoint.join("optimizer.bin")).map_err(|e| format!("optimizer state: {e:?}"))?;
            write(&state_path, serde_json::json!({ "step": step + 1, "tokens": tokens_seen }).to_string())?;
        }
    }
    let bytes = train::export_safetensors(&model.valid()).map_err(|e| e.to_string())?;
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
/// The analog: 2 layers of width 48 (~3% of the frontier).
pub const ANALOG: Shape = Shape { vocab_size: 512, d_model: 48, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_mlp: 128, context_length: 256 };

/// Default runs: the frontier on the corpus, the analog distilled from it.
pub fn default_run(analog: bool, steps: usize) -> RunSpec {
    let schedule = Schedule { steps, batch: 16, seq_len: 128, lr: if analog { 3e-3 } else { 1e-3 }, warmup: (steps / 20).max(1), weight_decay: 0.01, seed: if analog { 2 } else { 1 } };
    RunSpec { shape: if analog { ANALOG } else { FRONTIER }, schedule, alpha: if analog { 0.5 } else { 1.0 }, temperature: 2.0 }
}

/// Samples `n` continuations of `prompts` and the share of their sentences the grammar accepts.
pub fn grammaticality(dir: &Path, prompts: &[&str], per_prompt: usize, tokens: usize, seed: u64) -> Result<(f32, Vec<String>)> {
    let model = analog_core::TextModel::from_bytes(
        &read(&dir.join("config.json"))?,
        &analog_core::WeightFiles::Single(&read(&dir.join("model.safetensors"))?),
        &read(&dir.join("tokenizer.json"))?,
        &device::cpu(),
    )
    .map_err(|e| e.to_string())?;
    let mut texts = Vec::new();
    for (p, prompt) in prompts.iter().enumerate() {
        let ids = model.encode(prompt).map_err(|e| e.to_string())?;
        for s in 0..per_prompt {
            let options = analog_core::GenerateOptions {
                max_new_tokens: tokens,
                sampling: analog_core::Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: seed + (p * 1000 + s) as u64 },
                stop_at_eos: true,
            };
            let out = pollster::block_on(model.generate(&ids, &options, &mut analog_core::Hooks::new(), &mut |_| true)).map_err(|e| e.to_string())?;
            texts.push(format!("{prompt}{}", out.text));
        }
    }
    let (ok, total) = corpus::grammatical_share(&Grammar::stories(), &texts);
    Ok((ok as f32 / total.max(1) as f32, texts))
}
