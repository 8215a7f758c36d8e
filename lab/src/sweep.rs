//! The analog size sweep (issue 21): analogs at about 0.5%, 1%, 2% and 5% of the frontier's
//! parameters, each distilled from the same frontier with the default analog's recipe (corpus,
//! tokenizer, loss, schedule and seed), only the shape differing. Each lives in
//! `OUT/sweep/<label>/` and trains (or resumes) like any lab model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use analog_core::report::stats::{global_similarity, linear_cka, slope};
use analog_core::report::{
    AnalogModel, ExtractionEstimate, FrontierModel, Geometry, GlobalSimilarity, LayerCka, MapperValidation, Mapping, MappingKind, Provenance, RefusalFidelity,
    ReportKind, TransferReport,
};
use analog_core::steering::metrics::{EvalSpec, MetricRow, evaluate, random_like};
use analog_core::steering::{Aggregation, Application, DatasetEntry, HookSite, Method, PairFormat, PairSet, SteeringVector, collect, steering_vector};
use analog_core::{GenerateOptions, HookPoint, Hooks, Positions, Sampling, TextModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Grammar};
use crate::error::{Error, Result};
use crate::mapper::{MapperTraining, ReluMapper};
use crate::patching::{mean_row, patch_scores};
use crate::pipeline::{self, FRONTIER, HELD_OUT_SEED, RunSpec, held_out_loss, read, read_json, token_stream};
use crate::train::Shape;
use crate::transfer::{AffineMap, activations, embedding_rows};

/// One analog of the sweep: a label for its nominal share of the frontier and its exact shape.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SweepAnalog {
    pub label: &'static str,
    pub shape: Shape,
}

impl SweepAnalog {
    /// The exact share of the frontier's parameters.
    pub fn share(&self) -> f64 {
        self.shape.n_params() as f64 / FRONTIER.n_params() as f64
    }
}

const fn shape(d_model: usize, n_layers: usize, n_heads: usize, n_kv_heads: usize, d_mlp: usize) -> Shape {
    Shape { vocab_size: 512, d_model, n_layers, n_heads, n_kv_heads, d_mlp, context_length: 256 }
}

/// The sweep's analogs, smallest first. The 512-token embedding and head dominate small widths,
/// so the sizes come mostly from width; heads keep an even head dimension for RoPE. The last one is
/// the default analog's shape ([`pipeline::ANALOG`]).
pub const SWEEP: [SweepAnalog; 4] = [
    SweepAnalog { label: "0.5pct", shape: shape(12, 2, 2, 1, 32) },
    SweepAnalog { label: "1pct", shape: shape(20, 2, 2, 1, 56) },
    SweepAnalog { label: "2pct", shape: shape(32, 3, 4, 2, 80) },
    SweepAnalog { label: "5pct", shape: pipeline::ANALOG },
];

/// The sweep's analogs, or only the one labelled `only`.
fn selected(only: Option<&str>) -> impl Iterator<Item = &'static SweepAnalog> {
    SWEEP.iter().filter(move |a| only.is_none_or(|o| o == a.label))
}

/// The frontier's training steps (`lab all`'s default): the extraction student's full budget.
pub const FRONTIER_STEPS: usize = 2500;

/// Where one sweep analog lives.
pub fn analog_dir(out: &Path, analog: &SweepAnalog) -> PathBuf {
    out.join("sweep").join(analog.label)
}

/// The sweep analog's run: the default analog's recipe with its own shape.
pub fn run_spec(analog: &SweepAnalog, steps: usize) -> RunSpec {
    RunSpec { shape: analog.shape, ..pipeline::default_run(true, steps) }
}

/// Trains the frontier if `OUT/frontier` has no finished model, then every sweep analog that has
/// none (each resumes from its checkpoint).
pub fn train(out: &Path, frontier_steps: usize, steps: usize, only: Option<&str>, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let (frontier, _) = pipeline::model_dirs(out);
    if !frontier.join("model.safetensors").is_file() {
        progress("training the frontier");
        pipeline::train_model(out, &frontier, &pipeline::default_run(false, frontier_steps), None, 20, 100)?;
    }
    for analog in selected(only) {
        let dir = analog_dir(out, analog);
        if dir.join("model.safetensors").is_file() {
            continue;
        }
        progress(&format!("distilling the {} analog ({} parameters, {:.2}% of the frontier)", analog.label, analog.shape.n_params(), 100.0 * analog.share()));
        pipeline::train_model(out, &dir, &run_spec(analog, steps), Some(&frontier), 20, 100)?;
    }
    Ok(())
}

/// What each size's measurement runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureSettings {
    /// Bootstrap seeds per pair set: each resamples the pairs (seed 0 keeps them as they are) and
    /// seeds the sampling and the random direction; intervals are over these.
    pub seeds: usize,
    pub coefs: Vec<f32>,
    pub samples_per_prompt: usize,
    /// (analog layer, frontier layer), both `resid_post`: after the first analog block and the
    /// second frontier block, as the published study.
    pub layers: (usize, usize),
    pub refusal_requests: usize,
    pub refusal_coef: f32,
    /// Steps of the extraction student (the frontier trained for 2,500); 0 skips the estimate.
    pub extraction_steps: usize,
    /// Tokens the analog samples for the student to train on.
    pub extraction_pool_tokens: usize,
}

/// A mean over seeds with its 95% t-interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

impl Interval {
    /// `None` without values; a single value has an interval of zero width.
    pub fn of(values: &[f64]) -> Option<Self> {
        const T975: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half = if n < 2 {
            0.0
        } else {
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
            T975.get(n - 2).copied().unwrap_or(1.96) * sd / (n as f64).sqrt()
        };
        Some(Self { mean, low: mean - half, high: mean + half, n })
    }
}

/// One vector family's transfer on one pair set, over seeds: the slope of the frontier's
/// logit-difference shift relative to the native vector's (the transfer ratio), and the change in
/// the frontier's trigger rate from coefficient 0 to the largest one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferRow {
    pub pair_set: String,
    /// `native`, `affine`, `autoencoder` (mapped analog vectors) or `random` (equal norm).
    pub vector: String,
    pub ratio: Option<Interval>,
    pub trigger_change: Option<Interval>,
}

/// Lee et al.'s global similarity of the token embeddings, as published (raw cosines over every
/// shared token) and with the two choices a reader of the paper may make differently: embeddings
/// centred on their mean first, and only tokens the corpus uses often.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Similarity {
    pub raw: f64,
    pub centred: f64,
    pub frequent_raw: f64,
    pub frequent_centred: f64,
    /// Tokens seen at least [`FREQUENT`] times in the training corpus.
    pub n_frequent: usize,
    pub n_tokens: usize,
}

/// Occurrences in the training corpus from which a token counts as frequent.
pub const FREQUENT: usize = 1000;

/// Refusal rates on held-out requests (see [`analog_core::report::RefusalFidelity`]), with how many
/// sampled replies were recognisable as a refusal or a compliance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    pub fidelity: RefusalFidelity,
    pub classified: BTreeMap<String, usize>,
}

/// Everything measured on one sweep analog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeResult {
    pub label: String,
    pub shape: Shape,
    pub n_params: usize,
    pub share: f64,
    pub analog_loss: f64,
    pub frontier_loss: f64,
    pub similarity: Similarity,
    pub layer_cka: Vec<LayerCka>,
    pub mappers: Vec<MapperValidation>,
    pub transfer: Vec<TransferRow>,
    pub refusal: Refusal,
    pub extraction: Option<ExtractionEstimate>,
    /// Held-out loss of the frontier's shape trained on the corpus itself for the student's
    /// budget (same recipe and seed as the frontier): what that budget buys with the real data.
    pub budget_control_loss: Option<f64>,
    /// The v1 lab report of this analog: each pair set at seed 0 (the pairs as published) with the
    /// affine map as its interventions, and every study section.
    pub report: TransferReport,
    pub settings: MeasureSettings,
    pub seconds: f64,
}

type Predict<'a> = &'a dyn Fn(&[f32]) -> Vec<f32>;

/// Seed of the held-out corpus (the training corpus is seed 0).
const HELD_OUT_CORPUS_SEED: u64 = 1;

fn centred(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mean = mean_row(rows);
    rows.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect()
}

fn similarity(analog: &TextModel, frontier: &TextModel, counts: &[usize]) -> Result<Similarity> {
    let (a, f) = (embedding_rows(&analog.model)?, embedding_rows(&frontier.model)?);
    let n = a.len().min(f.len());
    let (a, f) = (&a[..n], &f[..n]);
    let frequent: Vec<usize> = (0..n).filter(|&i| counts.get(i).copied().unwrap_or(0) >= FREQUENT).collect();
    let pick = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> { frequent.iter().map(|&i| rows[i].clone()).collect() };
    let r = |x: &[Vec<f32>], y: &[Vec<f32>]| global_similarity(x, y).unwrap_or(0.0);
    Ok(Similarity {
        raw: r(a, f),
        centred: r(&centred(a), &centred(f)),
        frequent_raw: r(&pick(a), &pick(f)),
        frequent_centred: r(&centred(&pick(a)), &centred(&pick(f))),
        n_frequent: frequent.len(),
        n_tokens: n,
    })
}

/// `pairs` resampled with replacement (seed 0: as they are).
fn bootstrap(pairs: &PairSet, seed: u64) -> Result<PairSet> {
    if seed == 0 {
        return Ok(pairs.clone());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let n = pairs.pairs.len();
    Ok(PairSet::new((0..n).map(|_| pairs.pairs[rng.random_range(0..n)].clone()).collect())?)
}

/// `native` with its direction at `layer` replaced by `direction` (the frontier's own residual
/// scale stays, so `normalise` gives every vector the same magnitude).
fn with_direction(native: &SteeringVector, layer: usize, direction: Vec<f32>) -> SteeringVector {
    let mut v = native.clone();
    v.method = Method::Imported;
    if let Some(d) = v.directions.get_mut(&layer) {
        d.norm = analog_core::steering::linalg::norm(&direction);
        d.direction = direction;
    }
    v
}

fn logit_slope(coefs: &[f32], rows: &[MetricRow], random: bool) -> Option<f64> {
    let (x, y): (Vec<f64>, Vec<f64>) = coefs
        .iter()
        .zip(rows)
        .filter_map(|(c, r)| Some((f64::from(*c), f64::from(if random { r.random.logit_diff_shift? } else { r.steered.logit_diff_shift? }))))
        .unzip();
    slope(&x, &y)
}

fn trigger_change(rows: &[MetricRow], random: bool) -> Option<f64> {
    let rate = |r: &MetricRow| if random { r.random.trigger_rate } else { r.steered.trigger_rate };
    Some(f64::from(rate(rows.last()?)? - rate(rows.first()?)?))
}

/// How often a model refuses when it continues `requests` (sampled at temperature 1) with `edits`
/// applied: the share of refusals among the replies the grammar recognises as a refusal or a
/// compliance (0 when none is), so that steering which breaks the text does not pass for steering
/// which changes the decision; and how many replies were recognisable.
fn refusal_rate(model: &TextModel, requests: &[(String, bool)], edits: &[analog_core::Edit]) -> Result<(f64, usize)> {
    let grammar = Grammar::stories();
    let (mut refused, mut classified) = (0usize, 0usize);
    for (i, (prompt, _)) in requests.iter().enumerate() {
        let ids = model.encode(prompt)?;
        let options = GenerateOptions { max_new_tokens: 16, sampling: Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: i as u64 }, stop_at_eos: true };
        let mut hooks = edits.iter().cloned().fold(Hooks::new(), Hooks::edit);
        let out = pollster::block_on(model.generate(&ids, &options, &mut hooks, &mut |_| true))?;
        if let Some(refuses) = corpus::reply_refuses(&grammar, &out.text) {
            classified += 1;
            refused += usize::from(refuses);
        }
    }
    Ok((refused as f64 / classified.max(1) as f64, classified))
}

/// Text sampled from `model` (stories from `<|endoftext|>`, temperature 1), `tokens` long.
fn sample_pool(model: &TextModel, eos: u32, tokens: usize) -> Result<Vec<u32>> {
    let mut pool = vec![eos];
    let mut seed = 0;
    while pool.len() < tokens {
        let options = GenerateOptions { max_new_tokens: 200, sampling: Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed }, stop_at_eos: true };
        let out = pollster::block_on(model.generate(&[eos], &options, &mut Hooks::new(), &mut |_| true))?;
        pool.extend(model.encode(&out.text)?);
        pool.push(eos);
        seed += 1;
    }
    Ok(pool)
}

/// `(analog − student) / (analog − frontier)`: the share of the frontier's advantage over the
/// analog that the student recovers (0: nothing beyond the analog; 1: the frontier's loss).
pub fn gap_closed(analog_loss: f64, frontier_loss: f64, student_loss: f64) -> Option<f64> {
    let gap = analog_loss - frontier_loss;
    (gap > 0.0).then(|| (analog_loss - student_loss) / gap)
}

/// Trains (or resumes) a frontier-shaped student in `dir` on text sampled from the analog in
/// `analog_dir`, distilled from the analog's logits on it (no corpus text, no frontier), and
/// returns its estimate.
/// `eos` is the `<|endoftext|>` id; `windows` are the held-out windows every loss is measured on.
fn extraction(
    out: &Path,
    analog_dir: &Path,
    analog: &TextModel,
    losses: (f64, f64),
    (eos, windows): (u32, &[Vec<u32>]),
    settings: &MeasureSettings,
    dir: &Path,
) -> Result<ExtractionEstimate> {
    let pool_path = analog_dir.join(format!("pool-{}.json", settings.extraction_pool_tokens));
    let pool: Vec<u32> = if pool_path.is_file() {
        read_json(&pool_path)?
    } else {
        let pool = sample_pool(analog, eos, settings.extraction_pool_tokens)?;
        crate::pipeline::write(&pool_path, serde_json::to_string(&pool).map_err(|source| Error::Serialise { what: "the sample pool", source })?)?;
        pool
    };
    let frontier_run = pipeline::default_run(false, FRONTIER_STEPS);
    let spec = RunSpec { alpha: 0.0, temperature: 1.0, ..pipeline::default_run(false, settings.extraction_steps) };
    if !dir.join("model.safetensors").is_file() {
        pipeline::train_model_on(out, dir, &spec, Some(analog_dir), &pool, 20, 100)?;
    }
    let student = pipeline::load_text_model(dir)?;
    let (analog_loss, frontier_loss) = losses;
    let student_loss = f64::from(held_out_loss(&student.model, windows)?);
    let tokens = |run: &RunSpec| (run.schedule.steps * run.schedule.batch * run.schedule.seq_len) as u64;
    Ok(ExtractionEstimate {
        data: format!(
            "{} tokens of text sampled from the analog (temperature 1, from <|endoftext|>), distilled from the analog's logits at T = 1: no corpus text, no frontier",
            pool.len()
        ),
        student_n_params: FRONTIER.n_params() as u64,
        student_tokens: tokens(&spec),
        frontier_tokens: tokens(&frontier_run),
        analog_loss,
        frontier_loss,
        student_loss,
        gap_closed: gap_closed(analog_loss, frontier_loss, student_loss).unwrap_or(0.0),
    })
}

/// The held-out loss of the frontier's shape and recipe trained on the corpus for `steps` (trained
/// once into `OUT/sweep/control-<steps>/`, resumable).
fn budget_control(out: &Path, steps: usize, windows: &[Vec<u32>]) -> Result<f64> {
    if steps == FRONTIER_STEPS {
        // The frontier's own recipe, seed and budget: the control is the frontier.
        return Ok(f64::from(held_out_loss(&pipeline::load_text_model(&out.join("frontier"))?.model, windows)?));
    }
    let dir = out.join("sweep").join(format!("control-{steps}"));
    if !dir.join("model.safetensors").is_file() {
        pipeline::train_model(out, &dir, &pipeline::default_run(false, steps), None, 20, 100)?;
    }
    Ok(f64::from(held_out_loss(&pipeline::load_text_model(&dir)?.model, windows)?))
}

/// The held-out windows training evaluates on, from the held-out token stream.
fn held_out_windows(held: &[u32]) -> Vec<Vec<u32>> {
    crate::train::batch(held, 64, pipeline::default_run(true, 0).schedule.seq_len, &mut StdRng::seed_from_u64(HELD_OUT_SEED))
}

/// Measures one sweep analog against the frontier (see [`SizeResult`]); `datasets` holds the
/// built-in pair sets and `index.json`.
pub fn measure(
    out: &Path,
    datasets: &Path,
    analog_spec: &SweepAnalog,
    settings: &MeasureSettings,
    provenance: Provenance,
    progress: &mut dyn FnMut(&str),
) -> Result<SizeResult> {
    let started = std::time::Instant::now();
    let dir = analog_dir(out, analog_spec);
    let (analog, analog_id) = crate::study::load(&dir)?;
    let (frontier, frontier_id) = crate::study::load(&out.join("frontier"))?;
    let (la, lf) = settings.layers;
    let label = analog_spec.label;

    progress(&format!("{label}: held-out losses, geometry"));
    // The held-out corpus, tokenised once: the loss windows and the map windows come from it.
    let (held, eos) = token_stream(out, "held_out.txt")?;
    let windows = held_out_windows(&held);
    let analog_loss = f64::from(held_out_loss(&analog.model, &windows)?);
    let frontier_loss = f64::from(held_out_loss(&frontier.model, &windows)?);
    let (train_stream, _) = token_stream(out, "train.txt")?;
    let mut counts = vec![0usize; analog.config().vocab_size];
    for &t in &train_stream {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let similarity = similarity(&analog, &frontier, &counts)?;

    // Residual streams of both models on the same held-out tokens: 48 windows to fit maps on, 16 to
    // validate them on (never seen by a fit).
    let map_windows = crate::train::batch(&held, 64, 64, &mut StdRng::seed_from_u64(2024));
    let (fit_windows, check_windows) = map_windows.split_at(48);
    let per_layer = |model: &TextModel, layers: usize| -> Result<Vec<Vec<Vec<f32>>>> {
        (0..layers).map(|l| Ok(activations(&model.model, &map_windows, HookPoint::ResidPost(l))?)).collect()
    };
    let acts_a = per_layer(&analog, analog.config().n_layers)?;
    let acts_f = per_layer(&frontier, frontier.config().n_layers)?;
    let mut layer_cka = Vec::new();
    for (a, xa) in acts_a.iter().enumerate() {
        for (f, xf) in acts_f.iter().enumerate() {
            let cka = linear_cka(xa, xf).ok_or(Error::Study("CKA of a layer without variance"))?;
            layer_cka.push(LayerCka { analog_layer: a, frontier_layer: f, cka: cka.clamp(0.0, 1.0), n_tokens: xa.len() as u64 });
        }
    }

    progress(&format!("{label}: fitting and validating both maps"));
    // Windows hold 65 tokens (64 predictions and their last target); rows follow window order.
    let split: usize = fit_windows.iter().map(Vec::len).sum();
    let starts: Vec<usize> = check_windows
        .iter()
        .scan(split, |next, w| {
            let start = *next;
            *next += w.len();
            Some(start)
        })
        .collect();
    let (x, y) = (&acts_a[la], &acts_f[lf]);
    let affine = AffineMap::fit(&x[..split], &y[..split], 1e-4).ok_or(Error::Study("the affine map is singular"))?;
    let relu = ReluMapper::fit(&x[..split], &y[..split], &MapperTraining::default())?.ok_or(Error::Study("no activations to fit the ReLU mapper on"))?;
    let mean = mean_row(&y[..split]);
    let ablated = patch_scores(&frontier.model, lf, check_windows, &|_, _| mean.clone())?;
    let mut mappers = Vec::new();
    let predict: [(MappingKind, Predict<'_>); 2] = [(MappingKind::Affine, &|r| affine.apply(r)), (MappingKind::Autoencoder, &|r| relu.apply(r))];
    for (kind, f) in predict {
        let quality = crate::transfer::fit_quality(&x[split..], &y[split..], f);
        let patched = patch_scores(&frontier.model, lf, check_windows, &|w, t| f(&x[starts[w] + t]))?;
        mappers.push(MapperValidation {
            kind,
            analog_layer: la,
            frontier_layer: lf,
            fvu: quality.fvu,
            cosine: quality.cosine.clamp(-1.0, 1.0),
            kl_patched: patched.kl,
            kl_mean_ablation: ablated.kl,
            agreement_patched: patched.agreement,
            agreement_mean_ablation: ablated.agreement,
            n_tokens: patched.n_tokens,
        });
    }

    let index: Vec<DatasetEntry> = read_json(&datasets.join("index.json"))?;
    let mut transfer = Vec::new();
    let mut interventions = Vec::new();
    let mut refusal_vectors = None;
    let affine_mapping = Mapping { kind: MappingKind::Affine, fvu: Some(mappers[0].fvu), cosine: Some(mappers[0].cosine), n_samples: Some(split as u64) };
    // The ReLU map carries a difference by what it does to the activations it is added to.
    let relu_at: Vec<Vec<f32>> = x[..split].iter().step_by(16).cloned().collect();
    for dataset in &index {
        let path = datasets.join(&dataset.file);
        let text = String::from_utf8(read(&path)?).map_err(|_| Error::NotText { path })?;
        let pairs = PairSet::parse(&text, PairFormat::from_name(&dataset.file))?;
        let (prompts, target, counter) = crate::study::probe(&analog, dataset)?;
        let mut per_vector: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for seed in 0..settings.seeds as u64 {
            progress(&format!("{label}: {} seed {seed}", dataset.id));
            let spec = EvalSpec {
                neutral_texts: vec![crate::study::STUDY_TEXT.into()],
                samples_per_prompt: settings.samples_per_prompt,
                seed,
                ..EvalSpec::sweep(prompts.clone(), Some(target.clone()), Some(counter.clone()), dataset.lexicon.clone(), true)
            };
            let sample = bootstrap(&pairs, seed)?;
            let va = pollster::block_on(collect(&analog, &sample, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent))?;
            let va = steering_vector(&va, Method::MeanDiff, &[la], analog_id.clone(), &sample)?;
            let vn = pollster::block_on(collect(&frontier, &sample, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent))?;
            let vn = steering_vector(&vn, Method::MeanDiff, &[lf], frontier_id.clone(), &sample)?;
            let a_dir = va.directions.get(&la).ok_or(Error::Study("extraction gave no direction at the analog layer"))?.direction.clone();
            let mapped_affine = with_direction(&vn, lf, affine.apply_direction(&a_dir));
            let mapped_relu = with_direction(&vn, lf, relu.apply_direction(&a_dir, &relu_at));
            let native_rows = pollster::block_on(evaluate(&frontier, &vn, &settings.coefs, &spec, &mut analog_core::progress::Silent))?;
            let native_slope = logit_slope(&settings.coefs, &native_rows, false).filter(|s| s.abs() > 1e-9);
            let mut record = |name: &'static str, rows: &[MetricRow], random: bool| {
                let entry = per_vector.entry(name).or_default();
                if let Some(ratio) = native_slope.and_then(|n| Some(logit_slope(&settings.coefs, rows, random)? / n)) {
                    entry.0.push(ratio);
                }
                if let Some(change) = trigger_change(rows, random) {
                    entry.1.push(change);
                }
            };
            record("native", &native_rows, false);
            record("random", &native_rows, true);
            let affine_rows = pollster::block_on(evaluate(&frontier, &mapped_affine, &settings.coefs, &spec, &mut analog_core::progress::Silent))?;
            record("affine", &affine_rows, false);
            let relu_rows = pollster::block_on(evaluate(&frontier, &mapped_relu, &settings.coefs, &spec, &mut analog_core::progress::Silent))?;
            record("autoencoder", &relu_rows, false);
            if seed == 0 {
                let analog_rows = pollster::block_on(evaluate(&analog, &va, &settings.coefs, &spec, &mut analog_core::progress::Silent))?;
                let rows = crate::study::Rows { analog: &analog_rows, native: &native_rows, mapped: &affine_rows };
                interventions.push(crate::study::intervention(dataset, &pairs, &va, (la, lf), affine_mapping.clone(), spec.clone(), &settings.coefs, rows)?);
            }
            if dataset.id == "refusal" && seed == 0 {
                refusal_vectors = Some((vn.clone(), mapped_affine.clone()));
            }
        }
        for (name, (ratios, changes)) in per_vector {
            transfer.push(TransferRow {
                pair_set: dataset.id.clone(),
                vector: name.into(),
                ratio: Interval::of(&ratios),
                trigger_change: Interval::of(&changes),
            });
        }
    }

    progress(&format!("{label}: refusal on held-out requests"));
    let grammar = Grammar::stories();
    let requests: Vec<(String, bool)> = (0..settings.refusal_requests as u64).map(|i| corpus::request_prompt(&grammar, HELD_OUT_CORPUS_SEED, i)).collect();
    let data_refusal_rate = requests.iter().filter(|(_, complies)| !complies).count() as f64 / requests.len().max(1) as f64;
    let (native, mapped) = refusal_vectors.ok_or(Error::Study("the pair sets have no `refusal` set"))?;
    let how = Application { coef: settings.refusal_coef, positions: Positions::ALL, normalise: true, ablate: false, preserve_norm: false };
    let random = random_like(&native, 0x5EED);
    let mut classified = BTreeMap::new();
    let mut rate = |name: &str, model: &TextModel, edits: &[analog_core::Edit]| -> Result<f64> {
        let (rate, n) = refusal_rate(model, &requests, edits)?;
        classified.insert(name.to_string(), n);
        Ok(rate)
    };
    let fidelity = RefusalFidelity {
        n_requests: requests.len() as u64,
        data_refusal_rate: Some(data_refusal_rate),
        analog_refusal_rate: rate("analog", &analog, &[])?,
        frontier_refusal_rate: rate("frontier", &frontier, &[])?,
        coef: settings.refusal_coef,
        frontier_native_rate: rate("frontier_native", &frontier, &native.edits(&how))?,
        frontier_mapped_rate: rate("frontier_mapped", &frontier, &mapped.edits(&how))?,
        frontier_random_rate: rate("frontier_random", &frontier, &random.edits(&how))?,
    };

    let (extraction, budget_control_loss) = if settings.extraction_steps > 0 {
        progress(&format!("{label}: extraction student ({} steps)", settings.extraction_steps));
        let estimate = extraction(
            out,
            &dir,
            &analog,
            (analog_loss, frontier_loss),
            (eos, &windows),
            settings,
            &dir.join(format!("student-{}", settings.extraction_steps)),
        )?;
        progress(&format!("frontier shape on the corpus for {} steps (the budget control)", settings.extraction_steps));
        (Some(estimate), Some(budget_control(out, settings.extraction_steps, &windows)?))
    } else {
        (None, None)
    };
    let id = format!("story-sweep-{label}");
    let report = TransferReport {
        id: id.clone(),
        kind: ReportKind::Lab,
        frontier: Some(FrontierModel {
            id: "story-frontier".into(),
            n_params: Some(frontier.model.n_params as u64),
            n_layers: frontier.config().n_layers,
            d_model: Some(frontier.config().d_model),
        }),
        geometry: Some(Geometry {
            global_similarity: Some(GlobalSimilarity { pearson_r: similarity.raw, n_tokens: similarity.n_tokens as u64, seed: None }),
            layer_cka: Some(layer_cka.clone()),
        }),
        mapper_validation: Some(mappers.clone()),
        refusal_fidelity: Some(fidelity.clone()),
        extraction_estimate: extraction.clone(),
        ..TransferReport::measured(
            AnalogModel::of(&analog, id, analog_id.weights_sha256.clone(), None),
            "Analog Explorer reference lab",
            interventions,
            provenance,
        )
    }
    .validated()?;
    Ok(SizeResult {
        label: label.into(),
        shape: analog_spec.shape,
        n_params: analog_spec.shape.n_params(),
        share: analog_spec.share(),
        analog_loss,
        frontier_loss,
        similarity,
        layer_cka,
        mappers,
        transfer,
        refusal: Refusal { fidelity, classified },
        extraction,
        budget_control_loss,
        report,
        settings: settings.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The interval as `mean [low, high]`, or a dash.
fn interval_text(i: Option<Interval>, percent: bool) -> String {
    let scale = if percent { 100.0 } else { 1.0 };
    let unit = if percent { "%" } else { "" };
    i.map_or_else(|| "—".into(), |i| format!("{:.0}{unit} [{:.0}, {:.0}]", i.mean * scale, i.low * scale, i.high * scale))
}

fn transfer_of<'a>(r: &'a SizeResult, pair_set: &str, vector: &str) -> Option<&'a TransferRow> {
    r.transfer.iter().find(|t| t.pair_set == pair_set && t.vector == vector)
}

/// The median over pair sets of one vector family's mean transfer ratio (a set whose native slope
/// is near zero gives an extreme ratio; the median is not moved by one).
fn median_ratio(r: &SizeResult, vector: &str) -> Option<f64> {
    let mut ratios: Vec<f64> = r.transfer.iter().filter(|t| t.vector == vector).filter_map(|t| t.ratio.map(|i| i.mean)).collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    (n > 0).then(|| if n % 2 == 1 { ratios[n / 2] } else { (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0 })
}

/// The trade-off table in Markdown: fidelity and risk per analog size.
pub fn table(results: &[SizeResult]) -> String {
    let mut md = String::from(
        "| analog | parameters | share of frontier | held-out loss (frontier) | embedding r: raw / centred, frequent tokens | best layer CKA | map FVU affine / ReLU | patched KL affine / ReLU / mean-ablated | story-mood transfer, affine | story-mood transfer, ReLU | median transfer over sets, affine / ReLU / random | refusal rate analog / frontier (data; recognisable replies) | frontier refusal steered: native / mapped / random | extraction: gap closed |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let m = |k: MappingKind| r.mappers.iter().find(|m| m.kind == k);
        let (aff, relu) = (m(MappingKind::Affine), m(MappingKind::Autoencoder));
        let f = &r.refusal.fidelity;
        let classified = |k: &str| r.refusal.classified.get(k).copied().unwrap_or(0);
        let best_cka = r.layer_cka.iter().map(|l| l.cka).fold(f64::NAN, f64::max);
        let pct = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{:.0}%", 100.0 * v));
        let _ = writeln!(
            md,
            "| {} | {} | {:.2}% | {:.3} ({:.3}) | {:.3} / {:.3} | {:.3} | {} / {} | {} / {} / {:.3} | {} | {} | {} / {} / {} | {:.0}% / {:.0}% ({:.0}%; {} and {} of {}) | {:.0}% / {:.0}% / {:.0}% | {} |",
            r.label,
            r.n_params,
            100.0 * r.share,
            r.analog_loss,
            r.frontier_loss,
            r.similarity.raw,
            r.similarity.frequent_centred,
            best_cka,
            aff.map_or("—".into(), |m| format!("{:.3}", m.fvu)),
            relu.map_or("—".into(), |m| format!("{:.3}", m.fvu)),
            aff.map_or("—".into(), |m| format!("{:.3}", m.kl_patched)),
            relu.map_or("—".into(), |m| format!("{:.3}", m.kl_patched)),
            aff.map_or(f64::NAN, |m| m.kl_mean_ablation),
            interval_text(transfer_of(r, crate::study::STORY_MOOD, "affine").and_then(|t| t.ratio), true),
            interval_text(transfer_of(r, crate::study::STORY_MOOD, "autoencoder").and_then(|t| t.ratio), true),
            pct(median_ratio(r, "affine")),
            pct(median_ratio(r, "autoencoder")),
            pct(median_ratio(r, "random")),
            100.0 * f.analog_refusal_rate,
            100.0 * f.frontier_refusal_rate,
            100.0 * f.data_refusal_rate.unwrap_or(f64::NAN),
            classified("analog"),
            classified("frontier"),
            f.n_requests,
            100.0 * f.frontier_native_rate,
            100.0 * f.frontier_mapped_rate,
            100.0 * f.frontier_random_rate,
            r.extraction.as_ref().map_or("—".into(), |e| format!(
                "{:.0}%: student {:.3} after {} of the frontier's {} tokens (corpus-trained at that budget: {})",
                100.0 * e.gap_closed,
                e.student_loss,
                e.student_tokens,
                e.frontier_tokens,
                r.budget_control_loss.map_or("—".into(), |l| format!("{l:.3}"))
            )),
        );
    }
    md
}

/// The per-set transfer table: every pair set and vector family, ratio and trigger-rate change
/// with their intervals over seeds.
pub fn transfer_table(results: &[SizeResult]) -> String {
    let mut md = String::from("| analog | pair set | vector | transfer ratio (95% CI over seeds) | trigger-rate change (95% CI) |\n|---|---|---|---|---|\n");
    for r in results {
        for t in &r.transfer {
            let _ =
                writeln!(md, "| {} | {} | {} | {} | {} |", r.label, t.pair_set, t.vector, interval_text(t.ratio, true), interval_text(t.trigger_change, true));
        }
    }
    md
}

/// The trade-off figure: against the analog's share of the frontier (log scale), fidelity on the
/// left (story-mood transfer ratio of both maps with 95% intervals, the paper's 70% bar, and the
/// embedding similarity) and risk on the right (extraction gap closed and the held-out loss gap).
pub fn svg(results: &[SizeResult]) -> String {
    let (w, h, pad, gap) = (880.0, 360.0, 56.0, 64.0);
    let panel = (w - 2.0 * pad - gap) / 2.0;
    let (lo, hi) = (0.003f64.ln(), 0.08f64.ln());
    let x = |share: f64, left: f64| left + panel * (share.ln() - lo) / (hi - lo);
    // Legends take two rows above each panel, outside the plot area.
    let (top, bottom) = (72.0, h - 56.0);
    // Fidelity: -0.5 .. 1.5; risk: -0.5 .. 1.0 (shares), loss gap on the same axis in nats.
    let y = |v: f64, min: f64, max: f64| bottom - (bottom - top) * ((v.clamp(min, max) - min) / (max - min));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"Analog size against transfer fidelity and extraction risk\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // The fidelity panel is in percent; the risk panel holds a share and a loss gap in nats, so plain numbers.
    let panels = [(pad, "Fidelity", -0.5, 1.5, true), (pad + panel + gap, "Risk", -0.5, 1.0, false)];
    for (left, title, min, max, percent) in panels {
        let _ = writeln!(s, "<text x=\"{left}\" y=\"24\" font-size=\"14\" font-weight=\"bold\">{title}</text>");
        let _ = writeln!(s, "<rect x=\"{left}\" y=\"{top}\" width=\"{panel}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>", bottom - top);
        for tick in [0.005, 0.01, 0.02, 0.05] {
            let tx = x(tick, left);
            let _ = writeln!(s, "<line x1=\"{tx:.1}\" y1=\"{bottom}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#999\"/>", bottom + 5.0);
            let _ = writeln!(s, "<text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}%</text>", bottom + 18.0, tick * 100.0);
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">analog parameters, share of the frontier (log scale)</text>",
            left + panel / 2.0,
            h - 12.0
        );
        let mut v = min;
        while v <= max + 1e-9 {
            let ty = y(v, min, max);
            let _ = writeln!(s, "<line x1=\"{}\" y1=\"{ty:.1}\" x2=\"{left}\" y2=\"{ty:.1}\" stroke=\"#999\"/>", left - 5.0);
            let label = if percent { format!("{:.0}%", v * 100.0) } else { format!("{v:.1}") };
            let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>", left - 8.0, ty + 4.0);
            v += 0.5;
        }
        let zero = y(0.0, min, max);
        let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{zero:.1}\" x2=\"{}\" y2=\"{zero:.1}\" stroke=\"#ccc\"/>", left + panel);
    }
    let (fl, rl) = (panels[0].0, panels[1].0);
    let bar = y(MIN_SUCCESS, -0.5, 1.5);
    let _ = writeln!(s, "<line x1=\"{fl}\" y1=\"{bar:.1}\" x2=\"{}\" y2=\"{bar:.1}\" stroke=\"#dc2626\" stroke-dasharray=\"6 4\"/>", fl + panel);
    let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" fill=\"#dc2626\">paper's 70% bar</text>", fl + 4.0, bar - 4.0);
    // Series: (panel left, min, max, colour, label, x offset, value per result with its interval).
    type Series<'a> = (f64, f64, f64, &'a str, &'a str, f64, Box<dyn Fn(&SizeResult) -> Option<Interval> + 'a>);
    let series: Vec<Series<'_>> = vec![
        (
            fl,
            -0.5,
            1.5,
            "#2563eb",
            "story-mood transfer, affine map",
            -5.0,
            Box::new(|r| transfer_of(r, crate::study::STORY_MOOD, "affine").and_then(|t| t.ratio)),
        ),
        (
            fl,
            -0.5,
            1.5,
            "#7c3aed",
            "story-mood transfer, ReLU map",
            5.0,
            Box::new(|r| transfer_of(r, crate::study::STORY_MOOD, "autoencoder").and_then(|t| t.ratio)),
        ),
        (fl, -0.5, 1.5, "#059669", "embedding r (centred, frequent tokens)", 0.0, Box::new(|r| Interval::of(&[r.similarity.frequent_centred]))),
        (
            rl,
            -0.5,
            1.0,
            "#dc2626",
            "extraction: gap closed (budgets in the table)",
            0.0,
            Box::new(|r| r.extraction.as_ref().and_then(|e| Interval::of(&[e.gap_closed]))),
        ),
        (rl, -0.5, 1.0, "#d97706", "held-out loss gap to the frontier (nats)", 0.0, Box::new(|r| Interval::of(&[r.analog_loss - r.frontier_loss]))),
    ];
    for (left, min, max, colour, label, dx, value) in &series {
        let points: Vec<(f64, Interval)> = results.iter().filter_map(|r| Some((x(r.share, *left) + dx, value(r)?))).collect();
        let line: Vec<String> = points.iter().map(|(px, i)| format!("{px:.1},{:.1}", y(i.mean, *min, *max))).collect();
        let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>", line.join(" "));
        for (px, i) in &points {
            if i.high > i.low {
                let _ = writeln!(
                    s,
                    "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
                    y(i.low, *min, *max),
                    y(i.high, *min, *max)
                );
            }
            let _ = writeln!(
                s,
                "<circle cx=\"{px:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{label}: {:.3}</title></circle>",
                y(i.mean, *min, *max),
                i.mean
            );
            if !(*min..=*max).contains(&i.mean) {
                // Off the scale: drawn at the edge, with its value written beside it.
                let (tx, ty) = (px - 6.0, y(i.mean, *min, *max) - 6.0);
                let _ = writeln!(s, "<text x=\"{tx:.1}\" y=\"{ty:.1}\" fill=\"{colour}\" text-anchor=\"end\">{:.2} (off scale)</text>", i.mean);
            }
        }
    }
    for (slot, left) in [fl, rl].into_iter().enumerate() {
        let mut lx = left;
        let mut ly = 40.0;
        for (l, _, _, colour, label, _, _) in &series {
            if usize::from(*l > fl) != slot {
                continue;
            }
            let width = 14.0 + 6.2 * label.chars().count() as f64;
            if lx + width > left + panel {
                lx = left;
                ly += 14.0;
            }
            let _ = writeln!(
                s,
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{label}</text>",
                ly - 9.0,
                lx + 14.0
            );
            lx += width + 10.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The paper's success bar for a transferred intervention.
const MIN_SUCCESS: f64 = analog_core::report::compare::MIN_SUCCESS_RATE;

/// Measures every sweep analog that has no `measurements.json` yet (or all of them with
/// `remeasure`), keeping each result next to its model.
pub fn measure_all(
    out: &Path,
    datasets: &Path,
    settings: &MeasureSettings,
    provenance: &Provenance,
    remeasure: bool,
    only: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<SizeResult>> {
    let mut results = Vec::new();
    for analog in selected(only) {
        let path = analog_dir(out, analog).join("measurements.json");
        let result = if path.is_file() && !remeasure {
            read_json(&path)?
        } else {
            let result = measure(out, datasets, analog, settings, provenance.clone(), progress)?;
            pipeline::write(&path, pipeline::pretty_json(&result, "the sweep measurements")?)?;
            result
        };
        progress(&format!("{}: measured in {:.0} s", result.label, result.seconds));
        results.push(result);
    }
    Ok(results)
}

/// Where the published sweep lives under the public directory.
pub const PUBLIC_DIR: &str = "lab/sweep";

/// Publishes the sweep into `public`: each analog's files and card under `lab/sweep/<label>/`, its
/// report as `reports/story-sweep-<label>.json` (listed in the catalog), and the trade-off table,
/// figure and data as `lab/sweep.md`, `lab/sweep.svg` and `lab/sweep.json`.
pub fn publish(out: &Path, public: &Path, results: &[SizeResult], command: &str) -> Result<()> {
    let mut catalog: analog_core::catalog::Catalog = read_json(&public.join("catalog.json"))?;
    catalog.reports.retain(|r| !r.id.starts_with("story-sweep-"));
    for r in results {
        let Some(analog) = SWEEP.iter().find(|a| a.label == r.label) else { continue };
        let target = public.join(PUBLIC_DIR).join(&r.label);
        for f in crate::publish::MODEL_FILES {
            pipeline::write(&target.join(f), read(&analog_dir(out, analog).join(f))?)?;
        }
        pipeline::write(&target.join("MODEL_CARD.md"), card(r, analog, command))?;
        let mut report = r.report.clone();
        report.analog.url = Some(format!("../{PUBLIC_DIR}/{}/", r.label));
        let path = format!("reports/{}.json", report.id);
        pipeline::write(&public.join(&path), report.validated()?.to_json())?;
        catalog.reports.push(analog_core::catalog::CatalogReport {
            id: r.report.id.clone(),
            path,
            analog: r.report.analog.id.clone(),
            frontier: "story-frontier".into(),
        });
    }
    pipeline::write(&public.join("catalog.json"), pipeline::pretty_json(&catalog, "the catalog")?)?;
    pipeline::write(&public.join("lab/sweep.json"), pipeline::pretty_json(&results, "the sweep results")?)?;
    pipeline::write(&public.join("lab/sweep.svg"), svg(results))?;
    let settings: String = results
        .iter()
        .map(|r| {
            let m = &r.settings;
            format!(
                "- {}: {} seeds, coefficients {:?}, {} samples per prompt, layers {:?}, {} refusal requests at coefficient {}, extraction student {} steps on {} sampled tokens\n",
                r.label, m.seeds, m.coefs, m.samples_per_prompt, m.layers, m.refusal_requests, m.refusal_coef, m.extraction_steps, m.extraction_pool_tokens
            )
        })
        .collect();
    let md = format!(
        "# Analog size sweep: fidelity against risk\n\nPublished by `{command}` ({}). Each size was measured with the settings below (a size measured earlier keeps its `measurements.json`; `--only <size> --remeasure` redoes one); `lab/sweep.json` holds every number.\n\n{settings}\n![trade-off figure](sweep.svg)\n\n{}\n## Transfer per pair set\n\n{}",
        results.first().map_or(String::new(), |r| format!("{}, {}", r.report.provenance.date, r.report.provenance.hardware)),
        table(results),
        transfer_table(results)
    );
    pipeline::write(&public.join("lab/sweep.md"), md)
}

fn card(r: &SizeResult, analog: &SweepAnalog, command: &str) -> String {
    let s = analog.shape;
    format!(
        "# story-sweep-{label}\n\nA lab artifact of the analog size sweep: distilled from `story-frontier` with the default analog's recipe \
         (same corpus, tokenizer, loss, schedule and seed), only its shape differing. Not the default analog; see `../../sweep.md` for what was measured on it.\n\n\
         | | |\n|---|---|\n| parameters | {n} ({share:.2}% of the frontier's {fp}) |\n| shape | {layers} layers, d_model {d}, {heads} heads ({kv} kv), d_mlp {mlp}, vocab {vocab} |\n\
         | held-out loss | {loss:.4} nats/token (frontier {floss:.4}) |\n| made by | `{command}` |\n",
        label = r.label,
        n = r.n_params,
        share = 100.0 * r.share,
        fp = FRONTIER.n_params(),
        layers = s.n_layers,
        d = s.d_model,
        heads = s.n_heads,
        kv = s.n_kv_heads,
        mlp = s.d_mlp,
        vocab = s.vocab_size,
        loss = r.analog_loss,
        floss = r.frontier_loss,
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every analog sits near its nominal share, inside the paper's 0.5–5% band (within rounding),
    /// with even head dimensions and whole KV groups.
    #[test]
    fn the_sweep_spans_the_band() {
        let nominal = [0.005, 0.01, 0.02, 0.05];
        for (analog, want) in SWEEP.iter().zip(nominal) {
            let s = analog.shape;
            assert!((analog.share() / want - 1.0).abs() < 0.1, "{}: {:.4}", analog.label, analog.share());
            assert_eq!(s.d_model % s.n_heads, 0);
            assert_eq!((s.d_model / s.n_heads) % 2, 0);
            assert_eq!(s.n_heads % s.n_kv_heads, 0);
        }
        assert!(SWEEP.windows(2).all(|w| w[0].shape.n_params() < w[1].shape.n_params()));
    }

    /// The extraction estimate on cases with a known answer: a student no better than the analog
    /// closed nothing, one as good as the frontier closed all of it, half-way is a half; without
    /// a gap there is nothing to close.
    #[test]
    fn the_gap_closed_has_known_answers() {
        assert_eq!(gap_closed(1.0, 0.5, 1.0), Some(0.0));
        assert_eq!(gap_closed(1.0, 0.5, 0.5), Some(1.0));
        assert_eq!(gap_closed(1.0, 0.5, 0.75), Some(0.5));
        assert!(gap_closed(1.0, 0.5, 1.25).unwrap() < 0.0);
        assert_eq!(gap_closed(0.5, 0.5, 0.4), None);
    }

    #[test]
    fn intervals_widen_with_spread_and_shrink_with_seeds() {
        assert_eq!(Interval::of(&[]), None);
        let one = Interval::of(&[0.7]).unwrap();
        assert_eq!((one.low, one.high), (0.7, 0.7));
        let three = Interval::of(&[0.6, 0.7, 0.8]).unwrap();
        // sd 0.1, t(0.975, 2) = 4.303: half-width 0.248.
        assert!((three.mean - 0.7).abs() < 1e-12 && (three.high - 0.7 - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-9, "{three:?}");
        let six = Interval::of(&[0.6, 0.7, 0.8, 0.6, 0.7, 0.8]).unwrap();
        assert!(six.high - six.low < three.high - three.low);
    }
}
