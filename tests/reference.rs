//! analog-core against HF transformers on tiny random models of every supported family, on the
//! CPU backend and on wgpu (natively: Mesa lavapipe), plus the real pretrained stories260k.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use analog_core::{GenerateOptions, HookPoint, Hooks, Sampling, read_f32};
use analog_tests::{backends, fixture_dir, load_dir, max_abs_diff, reference, shared_model};

const FIXTURES: [&str; 7] = ["llama", "qwen2", "qwen3", "gemma3", "gpt2", "gpt_neox", "gpt_neox_sequential"];
const LOGIT_TOLERANCE: f32 = 1e-3;

fn greedy(max_new_tokens: usize, stop_at_eos: bool) -> GenerateOptions {
    GenerateOptions { max_new_tokens, sampling: Sampling::default(), stop_at_eos }
}

#[test]
fn logits_greedy_ids_and_params_match_transformers() {
    for (backend, device) in backends() {
        for name in FIXTURES {
            let r = reference(name);
            let m = load_dir(&fixture_dir(name), &device).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.config().architecture.model_type(), r.architecture);
            assert_eq!(m.model.n_params, r.n_params, "{name}: parameter count");
            let ids = m.encode(&r.prompt).unwrap();
            assert_eq!(ids, r.input_ids, "{name}: tokenization");
            let logits = pollster::block_on(m.last_logits(std::slice::from_ref(&ids), &mut Hooks::new())).unwrap().remove(0);
            let diff = max_abs_diff(&logits, &r.logits);
            assert!(diff < LOGIT_TOLERANCE, "{name} on {backend}: logits differ by {diff}");
            let out = pollster::block_on(m.generate(&ids, &greedy(r.greedy_ids.len(), false), &mut Hooks::new(), &mut |_| true)).unwrap();
            assert_eq!(out.ids, r.greedy_ids, "{name} on {backend}: greedy ids (KV cache)");
        }
    }
}

#[test]
fn every_hook_matches_transformers_hidden_states() {
    for (backend, device) in backends() {
        for name in FIXTURES {
            let r = reference(name);
            let m = load_dir(&fixture_dir(name), &device).unwrap();
            let points = HookPoint::all(m.config().n_layers);
            assert_eq!(points.len(), r.activations.len(), "{name}: every hook has a reference");
            let mut hooks = Hooks::new().capture_all(points.iter().copied());
            pollster::block_on(m.last_logits(std::slice::from_ref(&r.input_ids), &mut hooks)).unwrap();
            for point in points {
                let expected: Vec<f32> = r.activations[&point.to_string()].concat();
                let got = pollster::block_on(read_f32(hooks.take(point).unwrap())).unwrap();
                let scale = expected.iter().fold(1.0f32, |m, x| m.max(x.abs()));
                let diff = max_abs_diff(&got, &expected);
                assert!(diff < 1e-4 * scale.max(10.0), "{name} on {backend}: {point} differs by {diff} (scale {scale})");
            }
        }
    }
}

#[test]
fn batched_prefill_with_padding_matches_single_prompts() {
    for (backend, device) in backends() {
        for name in FIXTURES {
            let r = reference(name);
            let m = load_dir(&fixture_dir(name), &device).unwrap();
            let rows: Vec<Vec<u32>> = r.batch.iter().map(|b| m.encode(&b.prompt).unwrap()).collect();
            for (row, b) in rows.iter().zip(&r.batch) {
                assert_eq!(row, &b.input_ids);
            }
            let logits = pollster::block_on(m.last_logits(&rows, &mut Hooks::new())).unwrap();
            for (got, b) in logits.iter().zip(&r.batch) {
                let diff = max_abs_diff(got, &b.logits);
                assert!(diff < LOGIT_TOLERANCE, "{name} on {backend}: batched logits for {:?} differ by {diff}", b.prompt);
            }
        }
    }
}

#[test]
fn stories260k_tells_a_story_on_both_backends() {
    let Some(dir) = shared_model("stories260k") else {
        eprintln!("skipped: ../shared/models/stories260k is not on this machine");
        return;
    };
    let mut runs = Vec::new();
    for (backend, device) in backends() {
        let m = load_dir(&dir, &device).unwrap();
        let ids = m.encode("Once upon a time").unwrap();
        assert_eq!(ids[0], 1, "the Llama post-processor prepends <s>");
        let out = pollster::block_on(m.generate(&ids, &greedy(40, true), &mut Hooks::new(), &mut |_| true)).unwrap();
        println!("stories260k on {backend}: Once upon a time{}", out.text);
        let words = ["was", "the", "a", "she", "he", "her", "they", "named", "day", "big", "little", "to", "and"];
        let lower = out.text.to_lowercase();
        let hits = words.iter().filter(|w| lower.split(|c: char| !c.is_alphabetic()).any(|t| t == **w)).count();
        assert!(hits >= 4, "{backend}: not a TinyStories-like continuation: {:?}", out.text);
        runs.push(out.ids);
    }
    assert_eq!(runs[0], runs[1], "CPU and wgpu greedy continuations differ");
}

#[test]
fn steering_edit_changes_the_next_layer_input_by_exactly_the_vector() {
    use analog_core::{Edit, EditOp, Positions};
    // On wgpu the additions run as the fused steering kernel, on the CPU as its tensor reference.
    for (backend, device) in analog_tests::backends() {
        let m = load_dir(&fixture_dir("llama"), &device).unwrap();
        let ids = m.encode("The cat sat").unwrap();
        let d = m.config().d_model;
        let v: Vec<f32> = (0..d).map(|i| (i as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).cos() * 0.5).collect();
        let capture = |hooks: Hooks| {
            let mut hooks = hooks.capture(HookPoint::ResidPre(1));
            pollster::block_on(m.last_logits(std::slice::from_ref(&ids), &mut hooks)).unwrap();
            pollster::block_on(read_f32(hooks.take(HookPoint::ResidPre(1)).unwrap())).unwrap()
        };
        let base = capture(Hooks::new());
        let at = |op| Edit::new(HookPoint::ResidPost(0), op, Positions::from(1));
        // Two additions at one point (one fused launch of two vectors).
        let steered = capture(Hooks::new().edit(at(EditOp::Add(v.clone()))).edit(at(EditOp::Add(w.clone()))));
        for (pos, (b, s)) in base.chunks(d).zip(steered.chunks(d)).enumerate() {
            for i in 0..d {
                let expected = if pos >= 1 { b[i] + v[i] + w[i] } else { b[i] };
                assert!((s[i] - expected).abs() < 1e-5, "{backend}: pos {pos} dim {i}");
            }
        }
        // Norm-preserving: the direction of b + v, the length of b.
        let kept = capture(Hooks::new().edit(at(EditOp::AddPreservingNorm(v.clone()))));
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        for (pos, (b, s)) in base.chunks(d).zip(kept.chunks(d)).enumerate() {
            let added: Vec<f32> = b.iter().zip(&v).map(|(a, c)| a + c).collect();
            for i in 0..d {
                let expected = if pos >= 1 { added[i] * norm(b) / norm(&added) } else { b[i] };
                assert!((s[i] - expected).abs() < 1e-4, "{backend}: norm-preserving pos {pos} dim {i}: {} vs {expected}", s[i]);
            }
        }
    }
}

#[test]
fn the_logit_lens_at_the_last_layer_is_the_models_own_prediction() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load_dir(&fixture_dir(name), &analog_core::device::cpu()).unwrap();
        let ids = m.encode(&r.prompt).unwrap();
        let lens = pollster::block_on(analog_core::lens::logit_lens(&m, &ids, 5)).unwrap();
        assert_eq!(lens.len(), m.config().n_layers);
        let want = analog_core::lens::top_probabilities(&r.logits, 5);
        let last = &lens[lens.len() - 1].top;
        assert_eq!(last.iter().map(|t| t.0).collect::<Vec<_>>(), want.iter().map(|t| t.0).collect::<Vec<_>>(), "{name}");
        assert!(last.iter().zip(&want).all(|(a, b)| (a.1 - b.1).abs() < 1e-4), "{name}: {last:?} vs {want:?}");
        assert!(lens.iter().all(|row| row.resid_norm.is_finite() && row.resid_norm > 0.0));
    }
}

#[test]
fn step_by_step_decoding_equals_generate_and_cancels() {
    let r = reference("llama");
    let m = load_dir(&fixture_dir("llama"), &analog_core::device::cpu()).unwrap();
    let ids = m.encode(&r.prompt).unwrap();
    let options = greedy(r.greedy_ids.len(), false);
    let mut hooks = Hooks::new();
    let mut decoder = analog_core::Decoder::new(&m, &ids, &options, &hooks).unwrap();
    let mut streamed = Vec::new();
    while let Some(event) = pollster::block_on(decoder.next(&mut hooks)).unwrap() {
        streamed.push(event.id);
        if streamed.len() == 3 {
            decoder.cancel();
        }
    }
    let out = decoder.finish().unwrap();
    assert_eq!(out.stop, analog_core::StopReason::Cancelled);
    assert_eq!(out.ids, r.greedy_ids[..3]);
    assert_eq!(streamed, out.ids);
}
