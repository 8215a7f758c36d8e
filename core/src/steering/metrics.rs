//! What a steering vector does, per coefficient: CAA-style logit shift of target vs counter tokens,
//! KL(steered ‖ baseline) on neutral prompts, trigger rate of a lexicon in sampled continuations
//! (ActAdd), perplexity of neutral text (capability cost), and all of it again for a random
//! direction of equal norm (the noise baseline). Steered and baseline runs share seeds.

use burn::tensor::activation::log_softmax;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vector::{Application, SteeringVector};
use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Sampling, TextModel, read_f32};
use crate::hooks::{Hooks, Positions};
use crate::progress::Progress;

/// What to measure on, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Prompts after which the target vs counter next token is scored.
    pub logit_prompts: Vec<String>,
    /// Text whose first token is the target (e.g. `" happy"`); none skips the logit metric.
    pub target: Option<String>,
    /// Text whose first token is the counter-target (e.g. `" sad"`); goes with `target`.
    pub counter: Option<String>,
    /// Prompts for KL and trigger-rate sampling.
    pub neutral_prompts: Vec<String>,
    /// Texts whose perplexity is measured under steering.
    pub neutral_texts: Vec<String>,
    /// Words whose appearance (whole word, any case) in a continuation counts as a trigger.
    pub lexicon: Vec<String>,
    /// Sampled continuations per neutral prompt for the trigger rate.
    pub samples_per_prompt: usize,
    /// Maximum tokens per sampled continuation.
    pub sample_tokens: usize,
    /// Sampling temperature of the continuations.
    pub temperature: f32,
    /// Base seed: sample `s` of prompt `p` uses `seed + 1000 p + s`; the random baseline direction
    /// uses `seed ^ 0x5EED`.
    pub seed: u64,
    /// Token positions the vector is added at.
    pub positions: Positions,
    /// Scale each direction to the layer's mean residual norm first (`coef` becomes a fraction of it).
    pub normalise: bool,
}

/// Story openings that KL and trigger sampling follow when a pair set names no prompts of its own.
pub const NEUTRAL_PROMPTS: [&str; 3] =
    ["Once upon a time, there was a little boy named Tim. He", "One day, a girl went to the park with her mom. She", "The dog looked at the big tree and"];

/// Texts whose perplexity under steering measures the capability cost.
pub const NEUTRAL_TEXTS: [&str; 2] = [
    "Once upon a time, there was a little girl named Lily. She liked to play in the park with her ball.",
    "Tom and his dog went for a walk. They saw a bird in a tree and a cat on the wall.",
];

impl EvalSpec {
    /// Sampled continuations per prompt in [`Self::sweep`].
    pub const SAMPLES_PER_PROMPT: usize = 4;
    /// Tokens per sampled continuation in [`Self::sweep`].
    pub const SAMPLE_TOKENS: usize = 24;

    /// The coefficient sweep every front end runs (browser, `analog steer-eval`, `analog report
    /// export`, the lab), so that their numbers are comparable: `prompts` serve as both logit and
    /// neutral prompts ([`NEUTRAL_PROMPTS`] when empty), perplexity on [`NEUTRAL_TEXTS`],
    /// [`Self::SAMPLES_PER_PROMPT`] continuations of [`Self::SAMPLE_TOKENS`] tokens per prompt at
    /// temperature 1, seed 0, the vector added at every position. Override fields with struct update
    /// syntax where a flag asks for something else.
    pub fn sweep(prompts: Vec<String>, target: Option<String>, counter: Option<String>, lexicon: Vec<String>, normalise: bool) -> Self {
        let prompts = if prompts.is_empty() { NEUTRAL_PROMPTS.map(String::from).to_vec() } else { prompts };
        Self {
            logit_prompts: prompts.clone(),
            target,
            counter,
            neutral_prompts: prompts,
            neutral_texts: NEUTRAL_TEXTS.map(String::from).to_vec(),
            lexicon,
            samples_per_prompt: Self::SAMPLES_PER_PROMPT,
            sample_tokens: Self::SAMPLE_TOKENS,
            temperature: 1.0,
            seed: 0,
            positions: Positions::ALL,
            normalise,
        }
    }

    /// [`Self::sweep`] with a built-in pair set's prompts, first target and counter tokens, and lexicon.
    pub fn for_dataset(entry: &super::DatasetEntry, normalise: bool) -> Self {
        Self::sweep(
            entry.neutral_prompts.clone(),
            entry.target_tokens.first().cloned(),
            entry.counter_tokens.first().cloned(),
            entry.lexicon.clone(),
            normalise,
        )
    }
}

/// The metrics of one run (steered or random). Optional metrics are absent when the evaluation
/// does not define them (no target tokens, no lexicon, no neutral texts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Mean over logit prompts of logP(target) − logP(counter).
    pub logit_diff: Option<f32>,
    /// `logit_diff` minus its unsteered value.
    pub logit_diff_shift: Option<f32>,
    /// Mean probability of the target token.
    pub prob_target: Option<f32>,
    /// Mean KL(steered ‖ baseline) of next-token distributions on neutral prompts (nats).
    pub kl: f32,
    /// Share of sampled continuations containing a lexicon word.
    pub trigger_rate: Option<f32>,
    /// Perplexity of the neutral texts under steering.
    pub perplexity: Option<f32>,
}

/// One coefficient of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub coef: f32,
    pub steered: Metrics,
    /// The same application with a random direction of equal norm per layer.
    pub random: Metrics,
}

/// Baseline values every coefficient is compared with.
struct Baseline {
    log_probs: Vec<Vec<f32>>,
    logit_diff: Option<f32>,
}

/// The first token `continuation` adds after `prompt` (tokenised in context).
pub fn continuation_token(model: &TextModel, prompt: &str, continuation: &str) -> Result<u32> {
    let base = model.encode(prompt)?;
    let full = model.encode(&format!("{prompt}{continuation}"))?;
    let common = base.iter().zip(&full).take_while(|(a, b)| a == b).count();
    full.get(common).copied().ok_or_else(|| Error::NoContinuationToken { continuation: continuation.into(), prompt: prompt.into() })
}

fn log_probs(logits: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    logits
        .into_iter()
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
            row.into_iter().map(|x| x - lse).collect()
        })
        .collect()
}

fn encode_all(model: &TextModel, prompts: &[String]) -> Result<Vec<Vec<u32>>> {
    prompts.iter().map(|p| model.encode(p)).collect()
}

/// A random vector with the same per-layer norms as `vector` (seeded).
pub fn random_like(vector: &SteeringVector, seed: u64) -> SteeringVector {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vector.clone();
    for d in out.directions.values_mut() {
        // Box–Muller normals give an isotropic direction.
        let raw: Vec<f32> = (0..d.direction.len())
            .map(|_| {
                let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect();
        let n = super::linalg::norm(&raw).max(f32::MIN_POSITIVE);
        d.direction = raw.iter().map(|x| x / n * d.norm).collect();
    }
    out
}

struct Evaluator<'a> {
    model: &'a TextModel,
    spec: &'a EvalSpec,
    logit_rows: Vec<Vec<u32>>,
    neutral_rows: Vec<Vec<u32>>,
    text_rows: Vec<Vec<u32>>,
    target: Option<(u32, u32)>,
    baseline: Baseline,
}

impl<'a> Evaluator<'a> {
    async fn new(model: &'a TextModel, spec: &'a EvalSpec) -> Result<Self> {
        let target = match (&spec.target, &spec.counter, spec.logit_prompts.first()) {
            (Some(t), Some(c), Some(prompt)) => Some((continuation_token(model, prompt, t)?, continuation_token(model, prompt, c)?)),
            _ => None,
        };
        let mut eval = Self {
            model,
            spec,
            logit_rows: encode_all(model, &spec.logit_prompts)?,
            neutral_rows: encode_all(model, &spec.neutral_prompts)?,
            text_rows: encode_all(model, &spec.neutral_texts)?,
            target,
            baseline: Baseline { log_probs: Vec::new(), logit_diff: None },
        };
        if !eval.neutral_rows.is_empty() {
            eval.baseline.log_probs = log_probs(model.last_logits(&eval.neutral_rows, &mut Hooks::new()).await?);
        }
        eval.baseline.logit_diff = eval.logit_diff(&mut Hooks::new()).await?.map(|(d, _)| d);
        Ok(eval)
    }

    async fn logit_diff(&self, hooks: &mut Hooks) -> Result<Option<(f32, f32)>> {
        let Some((t, c)) = self.target else { return Ok(None) };
        if self.logit_rows.is_empty() {
            return Ok(None);
        }
        let lp = log_probs(self.model.last_logits(&self.logit_rows, hooks).await?);
        let n = lp.len() as f32;
        let diff = lp.iter().map(|r| r[t as usize] - r[c as usize]).sum::<f32>() / n;
        let prob = lp.iter().map(|r| r[t as usize].exp()).sum::<f32>() / n;
        Ok(Some((diff, prob)))
    }

    async fn kl(&self, hooks: &mut Hooks) -> Result<f32> {
        if self.neutral_rows.is_empty() {
            return Ok(0.0);
        }
        let steered = log_probs(self.model.last_logits(&self.neutral_rows, hooks).await?);
        let total: f32 =
            steered.iter().zip(&self.baseline.log_probs).map(|(s, b)| s.iter().zip(b).map(|(ls, lb)| ls.exp() * (ls - lb)).sum::<f32>().max(0.0)).sum();
        Ok(total / steered.len() as f32)
    }

    async fn trigger_rate(&self, hooks: &mut Hooks) -> Result<Option<f32>> {
        if self.spec.lexicon.is_empty() || self.neutral_rows.is_empty() || self.spec.samples_per_prompt == 0 {
            return Ok(None);
        }
        let lexicon: Vec<String> = self.spec.lexicon.iter().map(|w| w.to_lowercase()).collect();
        let (mut hits, mut total) = (0usize, 0usize);
        for (p, row) in self.neutral_rows.iter().enumerate() {
            for s in 0..self.spec.samples_per_prompt {
                let options = GenerateOptions {
                    max_new_tokens: self.spec.sample_tokens,
                    sampling: Sampling { temperature: self.spec.temperature, top_k: 0, top_p: 1.0, seed: self.spec.seed + (p * 1000 + s) as u64 },
                    stop_at_eos: true,
                };
                hooks.clear_captures();
                let out = self.model.generate(row, &options, hooks, &mut |_| true).await?;
                let text = out.text.to_lowercase();
                hits += usize::from(text.split(|c: char| !c.is_alphanumeric()).any(|w| lexicon.iter().any(|l| l == w)));
                total += 1;
            }
        }
        Ok(Some(hits as f32 / total as f32))
    }

    async fn perplexity(&self, hooks: &mut Hooks) -> Result<Option<f32>> {
        if self.text_rows.is_empty() {
            return Ok(None);
        }
        let (mut nll, mut count) = (0.0f64, 0usize);
        for row in self.text_rows.iter().filter(|r| r.len() > 1) {
            let hidden = self.model.prefill(std::slice::from_ref(row), hooks)?;
            let vocab = self.model.config().vocab_size;
            let lp = read_f32(log_softmax(self.model.model.unembed(hidden), 2)).await?;
            for (pos, next) in row.iter().skip(1).enumerate() {
                nll -= f64::from(lp[pos * vocab + *next as usize]);
                count += 1;
            }
        }
        Ok((count > 0).then(|| (nll / count as f64).exp() as f32))
    }

    async fn measure(&self, vector: &SteeringVector, coef: f32) -> Result<Metrics> {
        let how = Application { coef, positions: self.spec.positions, normalise: self.spec.normalise, ablate: false, preserve_norm: false };
        let hooks = || vector.edits(&how).into_iter().fold(Hooks::new(), Hooks::edit);
        let logit = self.logit_diff(&mut hooks()).await?;
        Ok(Metrics {
            logit_diff: logit.map(|(d, _)| d),
            logit_diff_shift: logit.zip(self.baseline.logit_diff).map(|((d, _), b)| d - b),
            prob_target: logit.map(|(_, p)| p),
            kl: self.kl(&mut hooks()).await?,
            trigger_rate: self.trigger_rate(&mut hooks()).await?,
            perplexity: self.perplexity(&mut hooks()).await?,
        })
    }
}

/// Measures `vector` at every coefficient, with an equal-norm random direction beside it.
pub async fn evaluate(model: &TextModel, vector: &SteeringVector, coefs: &[f32], spec: &EvalSpec, progress: &mut impl Progress) -> Result<Vec<MetricRow>> {
    if vector.model.d_model != model.config().d_model {
        return Err(Error::VectorDimension { hook: vector.site.to_string(), expected: model.config().d_model, found: vector.model.d_model });
    }
    let eval = Evaluator::new(model, spec).await?;
    let random = random_like(vector, spec.seed ^ 0x5EED);
    let mut rows = Vec::with_capacity(coefs.len());
    // Two steps per coefficient: the vector, then the random direction.
    let steps = 2 * coefs.len();
    for (i, &coef) in coefs.iter().enumerate() {
        let steered = eval.measure(vector, coef).await?;
        progress.step("measuring coefficients", 2 * i + 1, steps).await?;
        let beside = eval.measure(&random, coef).await?;
        progress.step("measuring coefficients", 2 * i + 2, steps).await?;
        rows.push(MetricRow { coef, steered, random: beside });
    }
    Ok(rows)
}
