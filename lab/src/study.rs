//! The lab's transfer study over every built-in pair set, written as a v1 transfer report.

use std::collections::BTreeMap;
use std::path::Path;

use analog_core::report::{
    self, AnalogModel, CoefResult, FrontierModel, Geometry, GlobalSimilarity, Intervention, Mapping, MappingKind, MetricName, PairSetRef, Provenance,
    Publisher, ReportKind, SCHEMA_VERSION, TransferReport, VectorRef,
};
use analog_core::steering::metrics::EvalSpec;
use analog_core::steering::{PairSet, VectorModel};
use analog_core::{HookPoint, Positions, TextModel, WeightFiles, device};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::pipeline::{Result, token_stream};
use crate::transfer::{AffineMap, embedding_similarity, study};

/// A built-in pair set's entry in `public/datasets/index.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub file: String,
    pub concept: String,
    pub target_tokens: Vec<String>,
    pub counter_tokens: Vec<String>,
    pub lexicon: Vec<String>,
    pub neutral_prompts: Vec<String>,
}

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
fn probe(model: &TextModel, dataset: &Dataset) -> Result<(Vec<String>, String, String)> {
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
            dataset.target_tokens.first().cloned().ok_or("no target token")?,
            dataset.counter_tokens.first().cloned().ok_or("no counter token")?,
        ),
    };
    for prompt in &prompts {
        let t = analog_core::steering::metrics::continuation_token(model, prompt, &target).map_err(|e| e.to_string())?;
        let c = analog_core::steering::metrics::continuation_token(model, prompt, &counter).map_err(|e| e.to_string())?;
        if t == c {
            return Err(format!("{}: `{target}` and `{counter}` start with the same token after {prompt:?}", dataset.id));
        }
    }
    Ok((prompts, target, counter))
}

/// The id of the corpus's own mood pair set in the report.
pub const STORY_MOOD: &str = "story-mood";

fn load(dir: &Path) -> Result<(TextModel, VectorModel)> {
    let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()));
    let weights = read("model.safetensors")?;
    let model =
        TextModel::from_bytes(&read("config.json")?, &WeightFiles::Single(&weights), &read("tokenizer.json")?, &device::cpu()).map_err(|e| e.to_string())?;
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
    let x = crate::transfer::activations(&analog.model, &windows, HookPoint::ResidPost(la)).map_err(|e| e.to_string())?;
    let y = crate::transfer::activations(&frontier.model, &windows, HookPoint::ResidPost(lf)).map_err(|e| e.to_string())?;
    let split = x.len() * 3 / 4;
    let map = AffineMap::fit(&x[..split], &y[..split], 1e-4).ok_or("the affine map is singular")?;
    let quality = map.quality(&x[split..], &y[split..]);
    let n_tokens = analog.config().vocab_size.min(frontier.config().vocab_size);
    let similarity = embedding_similarity(&analog.model, &frontier.model, n_tokens).map_err(|e| e.to_string())?;

    let index: Vec<Dataset> =
        serde_json::from_slice(&std::fs::read(settings.datasets_dir.join("index.json")).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let mut interventions = Vec::new();
    for dataset in &index {
        progress(&format!("{}: extracting, mapping, measuring", dataset.id));
        let text = std::fs::read_to_string(settings.datasets_dir.join(&dataset.file)).map_err(|e| e.to_string())?;
        let pairs = PairSet::from_jsonl(&text).map_err(|e| e.to_string())?;
        let (prompts, target, counter) = probe(&analog, dataset)?;
        let spec = EvalSpec {
            logit_prompts: prompts.clone(),
            target: Some(target),
            counter: Some(counter),
            neutral_prompts: prompts,
            neutral_texts: vec!["Once upon a time, there was a little girl named Lily. She played with her ball in the park.".into()],
            lexicon: dataset.lexicon.clone(),
            samples_per_prompt: settings.samples_per_prompt,
            sample_tokens: 24,
            temperature: 1.0,
            seed: 0,
            positions: Positions::ALL,
            normalise: true,
        };
        let s = pollster::block_on(study(&analog, &frontier, (&analog_id, &frontier_id), pairs.clone(), (la, lf), &map, &settings.coefs, &spec))
            .map_err(|e| e.to_string())?;
        let direction = s.analog_vector.directions.get(&la).cloned().ok_or("no analog direction")?;
        let results = settings
            .coefs
            .iter()
            .enumerate()
            .map(|(i, &coef)| CoefResult {
                coef,
                analog: Some(s.analog_rows[i].steered.clone()),
                analog_random_baseline: Some(s.analog_rows[i].random.clone()),
                frontier_native: Some(s.native_rows[i].steered.clone()),
                frontier_mapped: Some(s.mapped_rows[i].steered.clone()),
                random_baseline: Some(s.mapped_rows[i].random.clone()),
            })
            .collect();
        interventions.push(Intervention {
            id: dataset.id.clone(),
            concept: dataset.concept.clone(),
            pairs: PairSetRef { n_pairs: pairs.len(), sha256: pairs.sha256(), inline: None, url: Some(format!("../datasets/{}", dataset.file)) },
            method: s.analog_vector.method,
            aggregation: s.analog_vector.aggregation,
            analog_hook: s.analog_vector.site,
            analog_layer: la,
            vector: VectorRef { norm: direction.norm, mean_resid_norm: direction.mean_resid_norm, values: Some(direction.direction), url: None, sha256: None },
            frontier_layer: Some(lf),
            mapping: Some(Mapping { kind: MappingKind::Affine, fvu: Some(quality.fvu), cosine: Some(quality.cosine), n_samples: Some(split as u64) }),
            evaluation: spec,
            effect_metric: MetricName::LogitDiffShift,
            results,
        });
        progress(&format!("{}: cos(mapped, native) = {:.3}", dataset.id, s.cos_mapped_native));
    }
    let report = TransferReport {
        schema_version: SCHEMA_VERSION.into(),
        id: settings.report_id.into(),
        kind: ReportKind::Lab,
        publisher: Publisher { name: "Analog Explorer reference lab".into(), url: None, contact: None },
        analog: AnalogModel {
            id: settings.analog_id.into(),
            weights_sha256: analog_id.weights_sha256.clone(),
            n_params: analog.model.n_params as u64,
            d_model: analog.config().d_model,
            n_layers: analog.config().n_layers,
            url: Some(format!("../models/{}/", settings.analog_id)),
        },
        frontier: Some(FrontierModel {
            id: settings.frontier_id.into(),
            n_params: Some(frontier.model.n_params as u64),
            n_layers: frontier.config().n_layers,
            d_model: Some(frontier.config().d_model),
        }),
        geometry: Some(Geometry { global_similarity: Some(GlobalSimilarity { pearson_r: similarity, n_tokens: n_tokens as u64, seed: None }) }),
        interventions,
        provenance: Provenance {
            code_revision: settings.code_revision.clone(),
            seeds: BTreeMap::from([("evaluation".into(), 0), ("map_windows".into(), 2024)]),
            date: settings.date.clone(),
            hardware: settings.hardware.clone(),
            software: Some(format!("analog-explorer {} (burn 0.22, flex CPU)", env!("CARGO_PKG_VERSION"))),
        },
    };
    let errors = report::validate::check(&report);
    if !errors.is_empty() {
        return Err(format!("the study's report is invalid:\n{}", report::ValidationErrors(errors)));
    }
    Ok(report)
}
