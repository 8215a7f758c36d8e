//! Publishing: the two models in HF layout with model cards (hashes, sizes, losses, measured quality
//! and a loss-curve picture) and `catalog.json`.

use std::fmt::Write as _;
use std::path::Path;

use analog_core::catalog::CatalogFile;
use analog_core::report::{TransferReport, sha256_hex};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::train::LogRow;

/// The files of a published model.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Measured quality that goes into a card.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// Share of sampled sentences the grammar accepts.
    pub grammatical: f32,
    pub samples: usize,
    pub held_out_loss: f32,
    pub tokens_seen: u64,
    pub steps: usize,
    pub train_seconds: f64,
}

/// One row of the mood-steering check on the analog.
#[derive(Debug, Clone, Serialize)]
pub struct SteeringRow {
    pub coef: f32,
    pub trigger_rate: f32,
    pub grammatical: f32,
}

/// Wall time of a training run from its log: `seconds` restarts at zero when a run resumes from a
/// checkpoint, so the segments are added up.
pub fn training_seconds(log: &[LogRow]) -> f64 {
    let (mut done, mut last) = (0.0, 0.0);
    for row in log {
        if row.seconds < last {
            done += last;
        }
        last = row.seconds;
    }
    done + last
}

/// The catalog entries (name, size, sha256) of the published files in `dir`.
pub fn file_entries(dir: &Path) -> Result<Vec<CatalogFile>> {
    MODEL_FILES
        .iter()
        .map(|name| {
            let bytes = crate::pipeline::read(&dir.join(name))?;
            Ok(CatalogFile { name: (*name).into(), bytes: bytes.len() as u64, sha256: sha256_hex(&bytes) })
        })
        .collect()
}

/// An SVG loss curve (training loss per logged step, held-out loss as points).
pub fn loss_svg(rows: &[LogRow], title: &str) -> String {
    let (w, h, pad) = (640.0, 320.0, 48.0);
    let max_step = rows.last().map_or(1, |r| r.step).max(1) as f64;
    let max_loss = rows.iter().map(|r| f64::from(r.loss)).fold(0.1, f64::max);
    let x = |s: usize| pad + (w - 2.0 * pad) * s as f64 / max_step;
    let y = |l: f32| h - pad - (h - 2.0 * pad) * f64::from(l) / max_loss;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{pad}\" y=\"24\" font-size=\"14\">{title}</text>\n"
    );
    let _ = writeln!(svg, "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", h - pad, w - pad, h - pad);
    let _ = writeln!(svg, "<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>", h - pad);
    for i in 0..=4 {
        let l = max_loss * f64::from(i) / 4.0;
        let _ = writeln!(svg, "<text x=\"8\" y=\"{:.1}\">{l:.2}</text>", y(l as f32) + 4.0);
    }
    let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{}\">step {}</text>", w - pad - 60.0, h - 16.0, max_step);
    let points: Vec<String> = rows.iter().map(|r| format!("{:.1},{:.1}", x(r.step), y(r.loss))).collect();
    let _ = writeln!(svg, "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/>", points.join(" "));
    for r in rows {
        if let Some(l) = r.held_out_loss {
            let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#dc2626\"/>", x(r.step), y(l));
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" fill=\"#2563eb\">training loss</text><text x=\"{}\" y=\"{}\" fill=\"#dc2626\">held-out loss</text>",
        w - 220.0,
        pad,
        w - 120.0,
        pad
    );
    svg.push_str("</svg>\n");
    svg
}

pub fn read_log(dir: &Path) -> Result<Vec<LogRow>> {
    let path = dir.join("log.jsonl");
    let text = String::from_utf8(crate::pipeline::read(&path)?).map_err(|_| Error::NotText { path: path.clone() })?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).map_err(|source| Error::Json { path: path.clone(), source })).collect()
}

/// Everything a model card states.
pub struct Card<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub n_params: usize,
    pub frontier_params: usize,
    pub shape: String,
    pub training: &'a str,
    pub corpus: &'a str,
    pub quality: &'a Quality,
    pub steering: &'a [SteeringRow],
    pub transfer: Option<&'a TransferReport>,
    pub files: &'a [CatalogFile],
    pub command: &'a str,
    /// How the mood vector was extracted and applied (the steering table's heading).
    pub steering_setup: String,
    /// The weight formats measured and the one shipped (the analog's card).
    pub formats: Option<&'a crate::formats::FormatChoice>,
}

pub fn card(c: &Card<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n\n{}\n", c.id, c.role);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| architecture | `llama` ({}) |", c.shape);
    let _ = writeln!(s, "| parameters | {} |", c.n_params);
    if c.n_params != c.frontier_params {
        let _ = writeln!(s, "| size vs the frontier | {:.2}% ({} / {}) |", 100.0 * c.n_params as f64 / c.frontier_params as f64, c.n_params, c.frontier_params);
    }
    let _ = writeln!(s, "| data | {} |", c.corpus);
    let _ = writeln!(s, "| training | {} |", c.training);
    let _ = writeln!(s, "| tokens seen | {} ({} steps, {:.0} s on this machine) |", c.quality.tokens_seen, c.quality.steps, c.quality.train_seconds);
    let _ = writeln!(s, "| held-out loss | {:.4} nats/token |", c.quality.held_out_loss);
    let goal = if c.n_params == c.frontier_params {
        format!("; goal ≥ 90%: {}", if c.quality.grammatical >= 0.9 { "met" } else { "**not met**" })
    } else {
        String::new()
    };
    let _ = writeln!(s, "| grammatical sampled sentences | {:.1}% of {} sentences (temperature 1){goal} |", 100.0 * c.quality.grammatical, c.quality.samples);
    let _ = writeln!(s, "\n![loss curve](loss.svg)\n");
    if !c.steering.is_empty() {
        let _ = writeln!(s, "## Mood steering ({})\n", c.steering_setup);
        let _ = writeln!(s, "| coefficient | mood-lexicon trigger rate | grammatical sentences |\n|---|---|---|");
        for r in c.steering {
            let _ = writeln!(s, "| {} | {:.1}% | {:.1}% |", r.coef, 100.0 * r.trigger_rate, 100.0 * r.grammatical);
        }
        let best = c.steering.iter().filter(|r| r.grammatical >= 0.8).map(|r| r.trigger_rate).fold(0.0f32, f32::max);
        let verdict = if best >= 0.8 { "met" } else { "**not met**" };
        let _ = writeln!(
            s,
            "\nGoal: a trigger rate of at least 80% at some coefficient while at least 80% of sentences stay grammatical. Best trigger rate with ≥ 80% grammatical: {:.1}%: {verdict}.",
            100.0 * best
        );
        s.push('\n');
    }
    if let Some(report) = c.transfer {
        let _ = writeln!(s, "## Transfer to the frontier (from `reports/{}.json`)\n", report.id);
        if let Some(g) = report.geometry.as_ref().and_then(|g| g.global_similarity.as_ref()) {
            let _ = writeln!(s, "Global similarity of the embedding geometries: r = {:.3} over {} tokens.\n", g.pearson_r, g.n_tokens);
        }
        let _ = writeln!(
            s,
            "Slopes of `logit_diff_shift` against the coefficient on the frontier. The transfer ratio is mapped / native; the paper's success bar is 70%. It is left out (—) where the native vector itself moves the probe by less than 0.1 per unit.\n"
        );
        let _ = writeln!(
            s,
            "| pair set | map FVU | map cosine | analog slope | native slope | mapped slope | random slope | transfer ratio |\n|---|---|---|---|---|---|---|---|"
        );
        for iv in &report.interventions {
            let slope = |f: &dyn Fn(&analog_core::report::CoefResult) -> Option<f32>| {
                let (x, y): (Vec<f64>, Vec<f64>) = iv.results.iter().filter_map(|r| Some((f64::from(r.coef), f64::from(f(r)?)))).unzip();
                analog_core::report::stats::slope(&x, &y)
            };
            let analog = slope(&|r| r.analog.as_ref()?.logit_diff_shift);
            let native = slope(&|r| r.frontier_native.as_ref()?.logit_diff_shift);
            let mapped = slope(&|r| r.frontier_mapped.as_ref()?.logit_diff_shift);
            let random = slope(&|r| r.random_baseline.as_ref()?.logit_diff_shift);
            let ratio = native.zip(mapped).filter(|(n, _)| n.abs() >= 0.1).map(|(n, m)| format!("{:.0}%", 100.0 * m / n)).unwrap_or_else(|| "—".into());
            let f = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.2}"));
            let m = iv.mapping.as_ref();
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
                iv.id,
                m.and_then(|m| m.fvu).unwrap_or(f64::NAN),
                m.and_then(|m| m.cosine).unwrap_or(f64::NAN),
                f(analog),
                f(native),
                f(mapped),
                f(random),
                ratio
            );
        }
        s.push('\n');
    }
    if let Some(choice) = c.formats {
        let _ = writeln!(s, "## Weight format\n");
        let _ = writeln!(
            s,
            "`model.safetensors` is **{}**: the smallest format whose held-out perplexity is within {:.0}% of the f32 model's (`analog convert` writes the others). Held-out loss on the 64 windows training evaluates on; greedy continuations of {} tokens after each of the sample prompts, compared with f32's.\n",
            choice.shipped,
            100.0 * crate::formats::PERPLEXITY_TOLERANCE,
            crate::formats::GREEDY_TOKENS
        );
        let _ = writeln!(
            s,
            "| format | bytes | held-out loss | perplexity vs f32 | greedy continuations identical | mean shared greedy prefix |\n|---|---|---|---|---|---|"
        );
        for r in &choice.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:+.3}% | {} / {} | {:.1} tokens |",
                r.format,
                r.bytes,
                r.held_out_loss,
                100.0 * (r.perplexity_ratio - 1.0),
                r.greedy_identical,
                r.greedy_prompts,
                r.greedy_shared_prefix
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Files\n\n| file | bytes | sha256 |\n|---|---|---|");
    for f in c.files {
        let _ = writeln!(s, "| `{}` | {} | `{}` |", f.name, f.bytes, f.sha256);
    }
    let _ = writeln!(s, "\nRegenerate with `{}`. Every number here was measured by that command.", c.command);
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn training_seconds_add_up_resumed_segments() {
        let row = |step, seconds| LogRow { step, tokens: 0, loss: 1.0, lr: 1e-3, seconds, held_out_loss: None, parts: Default::default() };
        assert_eq!(training_seconds(&[row(10, 5.0), row(20, 9.0), row(30, 4.0), row(40, 8.0)]), 17.0);
        assert_eq!(training_seconds(&[row(10, 5.0), row(20, 9.0)]), 9.0);
        assert_eq!(training_seconds(&[]), 0.0);
    }
}
