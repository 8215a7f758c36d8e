//! The steering engine on real models: extraction equals a plain computation on captured
//! activations, and a happy/sad vector moves stories260k's next-token preference as it should.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use analog_core::steering::metrics::{EvalSpec, evaluate};
use analog_core::steering::{Aggregation, HookSite, Method, PairSet, VectorModel, collect, collect_stats, mean_diff_vector, steering_vector, sweep};
use analog_core::{HookPoint, Hooks, Positions, TextModel, device, read_f32};
use analog_tests::{backends, fixture_dir, load_dir, max_abs_diff, shared_model};

fn datasets(name: &str) -> PairSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/datasets").join(name);
    PairSet::from_jsonl(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn identity(m: &TextModel) -> VectorModel {
    VectorModel { id: "test".into(), weights_sha256: "0".repeat(64), d_model: m.config().d_model }
}

/// One prompt at a time, no batching or padding: the activation at `point` per position.
fn captured(m: &TextModel, prompt: &str, point: HookPoint) -> Vec<Vec<f32>> {
    let ids = m.encode(prompt).unwrap();
    let mut hooks = Hooks::new().capture(point);
    pollster::block_on(m.last_logits(&[ids], &mut hooks)).unwrap();
    let values = pollster::block_on(read_f32(hooks.take(point).unwrap())).unwrap();
    values.chunks(m.config().d_model).map(<[f32]>::to_vec).collect()
}

#[test]
fn batched_extraction_equals_a_plain_reference_computation() {
    let m = load_dir(&fixture_dir("gpt_neox"), &device::cpu()).unwrap();
    let pairs = PairSet::new(datasets("sentiment.jsonl").pairs.into_iter().take(20).collect()).unwrap();
    for aggregation in [Aggregation::Last, Aggregation::Mean] {
        let acts = pollster::block_on(collect(&m, &pairs, HookSite::ResidPost, aggregation, &mut analog_core::progress::Silent)).unwrap();
        let layers: Vec<usize> = (0..m.config().n_layers).collect();
        let vector = steering_vector(&acts, Method::MeanDiff, &layers, identity(&m), &pairs).unwrap();
        for &layer in &layers {
            let d = m.config().d_model;
            let mut expected = vec![0.0f32; d];
            for pair in &pairs.pairs {
                let agg = |prompt: &str| {
                    let rows = captured(&m, prompt, HookPoint::ResidPost(layer));
                    match aggregation {
                        Aggregation::Last => rows.last().unwrap().clone(),
                        Aggregation::Mean => (0..d).map(|i| rows.iter().map(|r| r[i]).sum::<f32>() / rows.len() as f32).collect(),
                    }
                };
                let (p, n) = (agg(&pair.positive), agg(&pair.negative));
                for i in 0..d {
                    expected[i] += (p[i] - n[i]) / pairs.len() as f32;
                }
            }
            let got = &vector.directions[&layer].direction;
            let diff = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "{aggregation:?} layer {layer}: batched extraction differs by {diff}");
        }
    }
}

/// The device-side statistics path (fused kernel on wgpu, tensor reference on the CPU) gives the
/// same mean-difference vector and mean norms as reading every prompt's row back.
#[test]
fn statistics_on_the_device_equal_the_row_by_row_vector() {
    for (backend, device) in backends() {
        let m = load_dir(&fixture_dir("qwen2"), &device).unwrap();
        // 21 pairs: the last batch of 16 prompts is partial.
        let pairs = PairSet::new(datasets("sentiment.jsonl").pairs.into_iter().take(21).collect()).unwrap();
        let layers: Vec<usize> = (0..m.config().n_layers).collect();
        for aggregation in [Aggregation::Last, Aggregation::Mean] {
            let acts = pollster::block_on(collect(&m, &pairs, HookSite::ResidPost, aggregation, &mut analog_core::progress::Silent)).unwrap();
            let rows = steering_vector(&acts, Method::MeanDiff, &layers, identity(&m), &pairs).unwrap();
            let stats = pollster::block_on(collect_stats(&m, &pairs, HookSite::ResidPost, aggregation, &mut analog_core::progress::Silent)).unwrap();
            assert_eq!(stats.n_pairs, 21);
            let fast = mean_diff_vector(&stats, &layers, identity(&m), &pairs).unwrap();
            for layer in &layers {
                let (a, b) = (&rows.directions[layer], &fast.directions[layer]);
                let diff = max_abs_diff(&a.direction, &b.direction);
                assert!(diff < 1e-4, "{backend} {aggregation:?} layer {layer}: directions differ by {diff}");
                assert!(
                    (a.mean_resid_norm - b.mean_resid_norm).abs() < 1e-3 * a.mean_resid_norm.max(1.0),
                    "{backend} {aggregation:?} layer {layer}: mean norms {} vs {}",
                    a.mean_resid_norm,
                    b.mean_resid_norm
                );
            }
        }
    }
}

#[test]
fn vector_files_are_deterministic_and_validated() {
    let m = load_dir(&fixture_dir("llama"), &device::cpu()).unwrap();
    let pairs = datasets("weddings.jsonl");
    let acts = pollster::block_on(collect(&m, &pairs, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent)).unwrap();
    for method in Method::ALL {
        let v = steering_vector(&acts, method, &[0, 1], identity(&m), &pairs).unwrap();
        let json = v.to_json();
        let back = analog_core::steering::SteeringVector::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, v, "{method}: JSON round trip");
        assert_eq!(back.to_json(), json, "{method}: deterministic bytes");
        assert_eq!(v.pairs.n_pairs, pairs.len());
    }
    let rows = sweep(&acts);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.probe_accuracy) && r.cohens_d.is_finite()));
    let bad = r#"{"format":"analog-steering-vector/v1","model":{"id":"x","weights_sha256":"0","d_model":4},"hook":"resid_post","method":"pca","aggregation":"last","pairs":{"sha256":"0","n_pairs":2},"directions":{"0":{"norm":1,"mean_resid_norm":1,"direction":[1,2,3]}}}"#;
    let err = analog_core::steering::SteeringVector::from_json(bad.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("layer 0 has 3 dimensions, but d_model is 4"), "{err}");

    // A vector from another model is refused before any hook is built.
    let v = steering_vector(&acts, Method::MeanDiff, &[0, 1], identity(&m), &pairs).unwrap();
    let d_model = m.config().d_model;
    assert!(v.check_fits(d_model, 2).is_ok());
    let err = v.check_fits(d_model + 16, 2).unwrap_err().to_string();
    assert!(err.contains(&format!("extracted on a model with d_model {d_model}, this one has {}", d_model + 16)), "{err}");
    let err = v.check_fits(d_model, 1).unwrap_err().to_string();
    assert!(err.contains("names layer 1, but the model has 1 layers"), "{err}");
    assert!(v.select_layers(&[1]).check_layer(1).is_ok());
    let err = v.select_layers(&[1]).check_layer(0).unwrap_err().to_string();
    assert!(err.contains("no direction at layer 0 (it has layers 1)"), "{err}");
}

#[test]
fn happy_sad_vector_moves_stories260k_monotonically() {
    let Some(dir) = shared_model("stories260k") else {
        eprintln!("skipped: ../shared/models/stories260k is not on this machine");
        return;
    };
    let m = load_dir(&dir, &device::cpu()).unwrap();
    let pairs = datasets("sentiment.jsonl");
    let acts = pollster::block_on(collect(&m, &pairs, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent)).unwrap();
    let vector = steering_vector(&acts, Method::MeanDiff, &[3], identity(&m), &pairs).unwrap();
    let spec = EvalSpec {
        logit_prompts: vec!["Once upon a time, there was a little girl named Lily. She felt".into()],
        target: Some(" happy".into()),
        counter: Some(" sad".into()),
        neutral_prompts: vec!["Once upon a time, there was a little boy named Tim. He".into()],
        neutral_texts: vec!["Once upon a time, there was a little girl named Lily. She liked to play in the park.".into()],
        lexicon: vec!["happy".into(), "smiled".into()],
        samples_per_prompt: 2,
        sample_tokens: 12,
        temperature: 1.0,
        seed: 1,
        positions: Positions::ALL,
        normalise: false,
    };
    let coefs = [-4.0, -2.0, 0.0, 2.0, 4.0];
    let rows = pollster::block_on(evaluate(&m, &vector, &coefs, &spec, &mut analog_core::progress::Silent)).unwrap();
    println!("stories260k happy−sad, layer 3, mean-diff:");
    for r in &rows {
        println!(
            "  coef {:>5}: logP(happy) − logP(sad) = {:>8.4}  KL {:.4}  ppl {:.3}  | random shift {:>8.4}",
            r.coef,
            r.steered.logit_diff.unwrap(),
            r.steered.kl,
            r.steered.perplexity.unwrap(),
            r.random.logit_diff_shift.unwrap()
        );
    }
    let diffs: Vec<f32> = rows.iter().map(|r| r.steered.logit_diff.unwrap()).collect();
    assert!(diffs.windows(2).all(|w| w[1] > w[0]), "logit difference must grow with the coefficient: {diffs:?}");
    assert!(rows[0].steered.logit_diff_shift.unwrap() < 0.0 && rows[4].steered.logit_diff_shift.unwrap() > 0.0);
    assert!(rows[2].steered.kl.abs() < 1e-6, "coefficient 0 leaves the distribution unchanged");
    // The concept direction moves the preference far more than a random one of equal norm.
    assert!(rows[4].steered.logit_diff_shift.unwrap() > 3.0 * rows[4].random.logit_diff_shift.unwrap().abs());
}
