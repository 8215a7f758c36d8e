//! The lab's transfer study over every built-in pair set, written as a v1 transfer report.

use std::collections::BTreeMap;
use std::path::Path;

use analog_core::report::{
    self, AnalogModel, CoefResult, FrontierModel, Geometry, GlobalSimilarity, Intervention, Mapping, MappingKind, MetricName, PairSetRef, Provenance,
    ReportKind, TransferReport, VectorRef,
};
use analog_core::steering::metrics::{EvalSpec, MetricRow};
use analog_core::steering::{DatasetEntry, PairFormat, PairSet, SteeringVector, VectorModel};
use analog_core::{HookPoint, TextModel, WeightFiles, device};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::error::{Error, Result};
use crate::pipeline::{read, read_json, token_stream};
use crate::transfer::{AffineMap, embedding_similarity, study};

/// The text whose perplexity the study measures (the published report was measured on it).
pub const STUDY_TEXT: &str = "Once upon a time, there was a little girl named Lily. She played with her ball in the park.";

/// What the study needs to know about where it runs.
pub struct StudySettings<'a> {
    pub datasets_dir: &'a Path,
    pub analog_id: &'a str,
    pub frontier_id: &'a str,
    pub report_id: &'a str,
    pub coefs: Vec<f32>,
    /// (analog layer, frontier layer), both `resid_post`.
    pub layers: (usize, usize),
    pub samples_per_prompt: usize,
    pub code_revision: String,
    pub hardware: String,
    pub date: String,
}

/// The logit-difference probe for one pair set on the story models. The built-in sets name their
/// target and counter words for general English models; in the story corpus a reply starts after
/// `said, "`, and the 512-token BPE splits " No" and " Yes" into the same first token (" "), which
/// would make the probe measure nothing. So dialogue concepts are probed at the opening quote
/// ("No" vs "Yes", "Good" vs "Hey": words the grammar opens those replies with), and the rest
/// keep the set's own words. Refuses probes whose two words share their first token.
pub(crate) fn probe(model: &TextModel, dataset: &DatasetEntry) -> Result<(Vec<String>, String, String)> {
    let quoted = |target: &str, counter: &str| {
        let prompts = dataset.neutral_prompts.iter().map(|p| if p.ends_with("said,") { format!("{p} \"") } else { p.clone() }).collect();
        (prompts, target.to_string(), counter.to_string())
    };
    let (prompts, target, counter) = match dataset.id.as_str() {
        "refusal" => quoted("No", "Yes"),
        "formality" => quoted("Good", "Hey"),
        STORY_MOOD => (dataset.neutral_prompts.iter().map(|p| format!("{p} felt so")).collect(), " happy".into(), " sad".into()),
        _ => (
            dataset.neutral_prompts.clone(),
            dataset.target_tokens.first().cloned().ok_or(Error::Study("a pair set has no target token"))?,
            dataset.counter_tokens.first().cloned().ok_or(Error::Study("a pair set has no counter token"))?,
        ),
    };
    for prompt in &prompts {
        let t = analog_core::steering::metrics::continuation_token(model, prompt, &target)?;
        let c = analog_core::steering::metrics::continuation_token(model, prompt, &counter)?;
        if t == c {
            return Err(Error::SameProbeToken { dataset: dataset.id.clone(), target, counter, prompt: prompt.clone() });
        }
    }
    Ok((prompts, target, counter))
}

/// The measured rows of one intervention, one per coefficient.
pub(crate) struct Rows<'a> {
    pub analog: &'a [MetricRow],
    pub native: &'a [MetricRow],
    pub mapped: &'a [MetricRow],
}

/// One pair set's intervention in a v1 report: the analog vector at `layers.0`, mapped to the
/// frontier's `layers.1`, with the measured rows (the random baseline is the mapped vector's).
#[allow(clippy::too_many_arguments)]
pub(crate) fn intervention(
    dataset: &DatasetEntry,
    pairs: &PairSet,
    analog_vector: &SteeringVector,
    layers: (usize, usize),
    mapping: Mapping,
    evaluation: EvalSpec,
    coefs: &[f32],
    rows: Rows<'_>,
) -> Result<Intervention> {
    let (la, lf) = layers;
    let direction = analog_vector.directions.get(&la).cloned().ok_or(Error::Study("extraction gave no direction at the analog layer"))?;
    let results = coefs
        .iter()
        .enumerate()
        .map(|(i, &coef)| CoefResult {
            coef,
            analog: rows.analog.get(i).map(|r| r.steered.clone()),
            analog_random_baseline: rows.analog.get(i).map(|r| r.random.clone()),
            frontier_native: rows.native.get(i).map(|r| r.steered.clone()),
            frontier_mapped: rows.mapped.get(i).map(|r| r.steered.clone()),
            random_baseline: rows.mapped.get(i).map(|r| r.random.clone()),
        })
        .collect();
    Ok(Intervention {
        id: dataset.id.clone(),
        concept: dataset.concept.clone(),
        pairs: PairSetRef {
            n_pairs: pairs.len(),
            sha256: pairs.sha256(),
            inline: None,
            url: Some(format!("../datasets/{}", dataset.file)),
            prompt_format: analog_core::steering::PromptFormat::Plain,
        },
        method: analog_vector.method,
        aggregation: analog_vector.aggregation,
        analog_hook: analog_vector.site,
        analog_layer: la,
        vector: VectorRef { norm: direction.norm, mean_resid_norm: direction.mean_resid_norm, values: Some(direction.direction), url: None, sha256: None },
        frontier_layer: Some(lf),
        mapping: Some(mapping),
        evaluation,
        effect_metric: MetricName::LogitDiffShift,
        results,
    })
}

/// The id of the corpus's own mood pair set in the report.
pub const STORY_MOOD: &str = "story-mood";

pub(crate) fn load(dir: &Path) -> Result<(TextModel, VectorModel)> {
    let file = |name: &str| read(&dir.join(name));
    let weights = file("model.safetensors")?;
    let model = TextModel::from_bytes(&file("config.json")?, &WeightFiles::Single(&weights), &file("tokenizer.json")?, &device::cpu())?;
    let id = VectorModel {
        id: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        weights_sha256: report::sha256_hex(&weights),
        d_model: model.config().d_model,
    };
    Ok((model, id))
}

/// Runs the study on the shipped analog (`out/shipped`, see [`crate::formats::ship`]) and
/// `out/frontier` over the built-in pair sets of `index.json`, the corpus mood pairs among them
/// ([`crate::pipeline::write_mood_pairs`] writes them), and returns the report.
pub fn run(out: &Path, settings: &StudySettings<'_>, progress: &mut dyn FnMut(&str)) -> Result<TransferReport> {
    let (analog, analog_id) = load(&crate::formats::shipped_dir(out))?;
    let (frontier, frontier_id) = load(&out.join("frontier"))?;
    let (la, lf) = settings.layers;

    progress("fitting the affine map on held-out corpus activations");
    let (held, _) = token_stream(out, "held_out.txt")?;
    let windows = crate::train::batch(&held, 64, 64, &mut StdRng::seed_from_u64(2024));
    let x = crate::transfer::activations(&analog.model, &windows, HookPoint::ResidPost(la))?;
    let y = crate::transfer::activations(&frontier.model, &windows, HookPoint::ResidPost(lf))?;
    let split = x.len() * 3 / 4;
    let map = AffineMap::fit(&x[..split], &y[..split], 1e-4).ok_or(Error::Study("the affine map is singular"))?;
    let quality = map.quality(&x[split..], &y[split..]);
    let n_tokens = analog.config().vocab_size.min(frontier.config().vocab_size);
    let similarity = embedding_similarity(&analog.model, &frontier.model, n_tokens)?;

    let index: Vec<DatasetEntry> = read_json(&settings.datasets_dir.join("index.json"))?;
    let mut interventions = Vec::new();
    for dataset in &index {
        progress(&format!("{}: extracting, mapping, measuring", dataset.id));
        let path = settings.datasets_dir.join(&dataset.file);
        let text = String::from_utf8(read(&path)?).map_err(|_| Error::NotText { path })?;
        let pairs = PairSet::parse(&text, PairFormat::from_name(&dataset.file))?;
        let (prompts, target, counter) = probe(&analog, dataset)?;
        let spec = EvalSpec {
            neutral_texts: vec![STUDY_TEXT.into()],
            samples_per_prompt: settings.samples_per_prompt,
            ..EvalSpec::sweep(prompts, Some(target), Some(counter), dataset.lexicon.clone(), true)
        };
        let s = pollster::block_on(study(&analog, &frontier, (&analog_id, &frontier_id), pairs.clone(), (la, lf), &map, &settings.coefs, &spec))?;
        let mapping = Mapping { kind: MappingKind::Affine, fvu: Some(quality.fvu), cosine: Some(quality.cosine), n_samples: Some(split as u64) };
        let rows = Rows { analog: &s.analog_rows, native: &s.native_rows, mapped: &s.mapped_rows };
        interventions.push(intervention(dataset, &pairs, &s.analog_vector, (la, lf), mapping, spec, &settings.coefs, rows)?);
        progress(&format!("{}: cos(mapped, native) = {:.3}", dataset.id, s.cos_mapped_native));
    }
    let analog_model = AnalogModel::of(&analog, settings.analog_id, analog_id.weights_sha256.clone(), Some(format!("../models/{}/", settings.analog_id)));
    let provenance = Provenance {
        code_revision: settings.code_revision.clone(),
        seeds: BTreeMap::from([("evaluation".into(), 0), ("map_windows".into(), 2024)]),
        date: settings.date.clone(),
        hardware: settings.hardware.clone(),
        software: Some(format!("analog-explorer {} (burn 0.22, flex CPU)", env!("CARGO_PKG_VERSION"))),
    };
    let report = TransferReport {
        id: settings.report_id.into(),
        kind: ReportKind::Lab,
        frontier: Some(FrontierModel {
            id: settings.frontier_id.into(),
            n_params: Some(frontier.model.n_params as u64),
            n_layers: frontier.config().n_layers,
            d_model: Some(frontier.config().d_model),
        }),
        geometry: Some(Geometry {
            global_similarity: Some(GlobalSimilarity { pearson_r: similarity, n_tokens: n_tokens as u64, seed: None }),
            layer_cka: None,
        }),
        ..TransferReport::measured(analog_model, "Analog Explorer reference lab", interventions, provenance)
    };
    Ok(report.validated()?)
}
