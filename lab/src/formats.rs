//! Which weight format the analog ships in: its f32, f16 and q8_0 files measured on held-out
//! perplexity and greedy continuations; the smallest whose perplexity is within 1% of f32 ships.

use std::path::{Path, PathBuf};

use analog_core::quant::{WeightFormat, convert};
use analog_core::{GenerateOptions, Hooks, Sampling, TextModel, WeightFiles};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pipeline::{SAMPLE_PROMPTS, cpu, held_out_loss, pretty_json, read, read_json, token_stream, write};
use crate::train;

/// Largest held-out perplexity increase over f32 that counts as negligible.
pub const PERPLEXITY_TOLERANCE: f32 = 0.01;
/// Greedy tokens compared per prompt.
pub const GREEDY_TOKENS: usize = 40;
/// The measurement, beside the shipped weights.
pub const FORMATS_FILE: &str = "formats.json";

/// One format of a model, measured against the f32 original.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormatRow {
    pub format: WeightFormat,
    /// Size of `model.safetensors` in this format.
    pub bytes: u64,
    pub held_out_loss: f32,
    /// Held-out perplexity over the f32 model's (exp of the loss difference).
    pub perplexity_ratio: f32,
    /// Prompts whose greedy continuation is token for token the f32 model's.
    pub greedy_identical: usize,
    pub greedy_prompts: usize,
    /// Mean number of leading greedy tokens shared with the f32 model (of [`GREEDY_TOKENS`]).
    pub greedy_shared_prefix: f32,
}

/// Every format's row and the one that ships.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormatChoice {
    pub rows: Vec<FormatRow>,
    pub shipped: WeightFormat,
}

impl FormatChoice {
    pub fn shipped_row(&self) -> Option<&FormatRow> {
        self.rows.iter().find(|r| r.format == self.shipped)
    }
}

/// The smallest format whose perplexity is within [`PERPLEXITY_TOLERANCE`] of f32 (f32 itself
/// qualifies, so there is always one).
pub fn choose(rows: &[FormatRow]) -> WeightFormat {
    rows.iter().filter(|r| r.perplexity_ratio <= 1.0 + PERPLEXITY_TOLERANCE).min_by_key(|r| r.bytes).map_or(WeightFormat::F32, |r| r.format)
}

fn greedy_ids(model: &TextModel, prompt: &str) -> Result<Vec<u32>> {
    let ids = model.encode(prompt)?;
    let options = GenerateOptions { max_new_tokens: GREEDY_TOKENS, sampling: Sampling::default(), stop_at_eos: false };
    Ok(pollster::block_on(model.generate(&ids, &options, &mut Hooks::new(), &mut |_| true))?.ids)
}

/// Measures f32, f16 and q8_0 of the model in `dir` on the held-out windows training evaluates on.
pub fn measure(out: &Path, dir: &Path, seq_len: usize) -> Result<Vec<FormatRow>> {
    let (held, _) = token_stream(out, "held_out.txt")?;
    let windows = train::batch(&held, 64, seq_len, &mut StdRng::seed_from_u64(crate::pipeline::HELD_OUT_SEED));
    let config = read(&dir.join("config.json"))?;
    let tokenizer = read(&dir.join("tokenizer.json"))?;
    let original = read(&dir.join("model.safetensors"))?;
    let mut rows = Vec::new();
    let mut reference: Option<(f32, Vec<Vec<u32>>)> = None;
    for format in [WeightFormat::F32, WeightFormat::F16, WeightFormat::Q8_0] {
        let bytes = convert(&WeightFiles::Single(&original), format)?;
        let text_model = TextModel::from_bytes(&config, &WeightFiles::Single(&bytes), &tokenizer, &cpu())?;
        let loss = held_out_loss(&text_model.model, &windows)?;
        let greedy = SAMPLE_PROMPTS.iter().map(|p| greedy_ids(&text_model, p)).collect::<Result<Vec<_>>>()?;
        let (base_loss, base_greedy) = reference.get_or_insert_with(|| (loss, greedy.clone()));
        let shared: Vec<usize> = greedy.iter().zip(base_greedy.iter()).map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count()).collect();
        rows.push(FormatRow {
            format,
            bytes: bytes.len() as u64,
            held_out_loss: loss,
            perplexity_ratio: (loss - *base_loss).exp(),
            greedy_identical: greedy.iter().zip(base_greedy.iter()).filter(|(a, b)| a == b).count(),
            greedy_prompts: greedy.len(),
            greedy_shared_prefix: shared.iter().sum::<usize>() as f32 / shared.len().max(1) as f32,
        });
    }
    Ok(rows)
}

/// Where the analog's shipped files go: `out/shipped/`.
pub fn shipped_dir(out: &Path) -> PathBuf {
    out.join("shipped")
}

/// Measures the analog in `out/analog`, picks its format and writes the shipped model directory
/// (`config.json`, `tokenizer.json`, `model.safetensors` in that format, `formats.json`).
pub fn ship(out: &Path, seq_len: usize) -> Result<FormatChoice> {
    let analog = out.join("analog");
    let rows = measure(out, &analog, seq_len)?;
    let choice = FormatChoice { shipped: choose(&rows), rows };
    let target = shipped_dir(out);
    let weights = convert(&WeightFiles::Single(&read(&analog.join("model.safetensors"))?), choice.shipped)?;
    write(&target.join("model.safetensors"), weights)?;
    for f in ["config.json", "tokenizer.json"] {
        write(&target.join(f), read(&analog.join(f))?)?;
    }
    write(&target.join(FORMATS_FILE), pretty_json(&choice, "the weight-format choice")?)?;
    Ok(choice)
}

/// Reads what [`ship`] wrote.
pub fn read_choice(out: &Path) -> Result<FormatChoice> {
    read_json(&shipped_dir(out).join(FORMATS_FILE))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(format: WeightFormat, bytes: u64, perplexity_ratio: f32) -> FormatRow {
        FormatRow { format, bytes, held_out_loss: 0.0, perplexity_ratio, greedy_identical: 0, greedy_prompts: 0, greedy_shared_prefix: 0.0 }
    }

    #[test]
    fn the_smallest_format_within_one_percent_ships() {
        let rows = [row(WeightFormat::F32, 400, 1.0), row(WeightFormat::F16, 200, 1.001), row(WeightFormat::Q8_0, 110, 1.009)];
        assert_eq!(choose(&rows), WeightFormat::Q8_0);
        let rows = [row(WeightFormat::F32, 400, 1.0), row(WeightFormat::F16, 200, 1.001), row(WeightFormat::Q8_0, 110, 1.02)];
        assert_eq!(choose(&rows), WeightFormat::F16);
        assert_eq!(choose(&[row(WeightFormat::F32, 400, 1.0)]), WeightFormat::F32);
    }
}
