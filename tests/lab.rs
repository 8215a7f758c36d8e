//! The published reference-lab artifacts: what `public/catalog.json` lists exists with the recorded
//! sizes and hashes, the models load and have the stated sizes, the report validates and names the
//! published weights, a visitor's comparison reproduces the report's analog numbers, and the default
//! analog writes grammatical stories.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use analog_core::catalog::Catalog;
use analog_core::report::{self, sha256_hex};
use analog_core::steering::{DatasetEntry, PairFormat, VectorModel};
use analog_core::{GenerateOptions, Hooks, Sampling, TextModel, WeightFiles, device};
use analog_lab::corpus::{Grammar, sentences};

fn public() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../public")
}

fn catalog() -> Catalog {
    serde_json::from_slice(&std::fs::read(public().join("catalog.json")).expect("public/catalog.json")).unwrap()
}

fn model(id: &str) -> (TextModel, String) {
    let dir = public().join("models").join(id);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let weights = read("model.safetensors");
    (TextModel::from_bytes(&read("config.json"), &WeightFiles::Single(&weights), &read("tokenizer.json"), &device::cpu()).unwrap(), sha256_hex(&weights))
}

#[test]
fn catalog_files_match_their_recorded_sizes_and_hashes() {
    let catalog = catalog();
    assert_eq!(catalog.default, "story-analog");
    assert!(catalog.models.iter().any(|m| m.role == "reference-frontier" && m.note.contains("published only so that reports can be verified")));
    for m in &catalog.models {
        let dir = public().join(&m.path);
        let card = std::fs::read_to_string(dir.join("MODEL_CARD.md")).unwrap();
        assert!(dir.join("loss.svg").is_file());
        for f in &m.files {
            let bytes = std::fs::read(dir.join(&f.name)).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.name);
            let sha = sha256_hex(&bytes);
            assert_eq!(sha, f.sha256, "{} {}", m.id, f.name);
            assert!(card.contains(&sha), "the card of {} records {}", m.id, f.name);
        }
    }
}

#[test]
fn models_load_with_the_stated_sizes_and_the_report_names_them() {
    let (analog, analog_sha) = model("story-analog");
    let (frontier, frontier_sha) = model("story-frontier");
    let ratio = analog.model.n_params as f64 / frontier.model.n_params as f64;
    assert!((0.005..=0.05).contains(&ratio), "analog is {:.2}% of the frontier", ratio * 100.0);
    assert!((3_000_000..=20_000_000).contains(&frontier.model.n_params));
    let catalog = catalog();
    for r in catalog.reports.iter().filter(|r| r.analog == "story-analog") {
        let report = report::parse(&std::fs::read(public().join(&r.path)).unwrap()).unwrap();
        assert_eq!(report.kind, report::ReportKind::Lab);
        assert_eq!(report.analog.weights_sha256, analog_sha);
        assert_eq!(report.analog.n_params, analog.model.n_params as u64);
        assert_eq!(report.frontier.as_ref().unwrap().n_params, Some(frontier.model.n_params as u64));
        assert_ne!(frontier_sha, analog_sha);
        let built_in: Vec<DatasetEntry> = serde_json::from_slice(&std::fs::read(public().join("datasets/index.json")).unwrap()).unwrap();
        let ids: Vec<&str> = report.interventions.iter().map(|iv| iv.id.as_str()).collect();
        let expected: Vec<&str> = built_in.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, expected, "one intervention per built-in pair set");
        assert!(ids.contains(&analog_lab::study::STORY_MOOD), "the corpus mood pairs are a built-in set");
    }
}

#[test]
fn a_visitor_reproduces_the_reports_analog_numbers() {
    let (analog, sha) = model("story-analog");
    let path = public().join("reports/story-lab-transfer.json");
    let report = report::parse(&std::fs::read(&path).unwrap()).unwrap();
    let inputs: Vec<_> = report
        .interventions
        .iter()
        .map(|iv| {
            let url = iv.pairs.url.as_ref().unwrap();
            let bytes = std::fs::read(path.parent().unwrap().join(url)).unwrap();
            report::InterventionInputs { pairs: iv.pairs_from_bytes(&bytes, PairFormat::Jsonl).unwrap(), vector: iv.vector_from_bytes(None).unwrap() }
        })
        .collect();
    let local = VectorModel { id: "story-analog".into(), weights_sha256: sha, d_model: analog.config().d_model };
    let cmp = pollster::block_on(report::compare(&analog, &local, &report, &inputs, &mut analog_core::progress::Silent)).unwrap();
    assert!(cmp.weights_match);
    for iv in &cmp.interventions {
        assert!(iv.vector_cosine > 0.999, "{}: {}", iv.id, iv.vector_cosine);
        assert!(iv.max_abs_diff.unwrap() < 1e-3, "{}: {:?}", iv.id, iv.max_abs_diff);
    }
}

#[test]
fn the_default_analog_tells_a_grammatical_greedy_story() {
    let (analog, _) = model("story-analog");
    let prompt = "Once upon a time";
    let ids = analog.encode(prompt).unwrap();
    let options = GenerateOptions { max_new_tokens: 80, sampling: Sampling::default(), stop_at_eos: true };
    let out = pollster::block_on(analog.generate(&ids, &options, &mut Hooks::new(), &mut |_| true)).unwrap();
    let text = format!("{prompt}{}", out.text);
    let grammar = Grammar::stories();
    let complete: Vec<String> = sentences(&text).into_iter().filter(|s| s.ends_with(['.', '!', '?', '"'])).collect();
    assert!(complete.len() >= 3, "{text}");
    for s in &complete {
        assert!(grammar.accepts(s), "{s:?} in {text:?}");
    }
}

#[test]
fn the_published_story_mood_pairs_are_what_the_grammar_generates() {
    let published = std::fs::read_to_string(public().join("datasets").join(analog_lab::pipeline::STORY_MOOD_PAIRS)).unwrap();
    assert_eq!(published, analog_lab::pipeline::mood_pairs_jsonl(analog_lab::pipeline::MOOD_SEED, 64));
    let pairs = analog_core::steering::PairSet::from_jsonl(&published).unwrap();
    assert_eq!(pairs.len(), 64);
}

/// The size sweep as published: four analogs across the 0.5–5% band, smallest first, each with
/// its files beside a valid lab report that names their weights and carries every study section,
/// listed in the catalog; and the trade-off table and figure.
#[test]
fn the_size_sweep_is_published_with_its_reports() {
    let catalog = catalog();
    let sweep: Vec<_> = catalog.reports.iter().filter(|r| r.id.starts_with("story-sweep-")).collect();
    assert_eq!(sweep.len(), analog_lab::sweep::SWEEP.len());
    let (_, frontier_sha) = model("story-frontier");
    let mut shares = Vec::new();
    for r in sweep {
        let path = public().join(&r.path);
        let report = report::parse(&std::fs::read(&path).unwrap()).unwrap();
        let dir = path.parent().unwrap().join(report.analog.url.as_ref().unwrap());
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let weights = read("model.safetensors");
        assert_eq!(sha256_hex(&weights), report.analog.weights_sha256, "{}", r.id);
        assert_ne!(sha256_hex(&weights), frontier_sha);
        let analog = TextModel::from_bytes(&read("config.json"), &WeightFiles::Single(&weights), &read("tokenizer.json"), &device::cpu()).unwrap();
        assert_eq!(analog.model.n_params as u64, report.analog.n_params);
        let frontier = report.frontier.as_ref().unwrap();
        shares.push(report.analog.n_params as f64 / frontier.n_params.unwrap() as f64);
        assert!(report.mapper_validation.as_ref().is_some_and(|m| m.len() == 2), "{}: both maps validated", r.id);
        assert!(report.refusal_fidelity.is_some() && report.extraction_estimate.is_some(), "{}", r.id);
        assert!(report.geometry.as_ref().and_then(|g| g.layer_cka.as_ref()).is_some_and(|c| c.len() == report.analog.n_layers * frontier.n_layers));
        assert!(std::fs::read_to_string(dir.join("MODEL_CARD.md")).unwrap().contains("lab sweep"));
    }
    assert!(shares.windows(2).all(|w| w[0] < w[1]), "{shares:?}");
    assert!(shares[0] > 0.0045 && shares[shares.len() - 1] <= 0.05, "{shares:?}");
    let svg = std::fs::read_to_string(public().join("lab/sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("70% bar"));
    let table = std::fs::read_to_string(public().join("lab/sweep.md")).unwrap();
    assert!(table.contains("lab sweep") && table.lines().filter(|l| l.starts_with("| 0.5pct") || l.starts_with("| 5pct")).count() >= 2);
}
