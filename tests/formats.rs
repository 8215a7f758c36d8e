//! Smaller weight files: f16 and q8_0 checkpoints written by `analog_core::quant::convert` load on
//! every backend and give logits close to the f32 originals; malformed q8_0 files are refused.

use analog_core::quant::{Q8_SCALES_SUFFIX, WeightFormat, convert};
use analog_core::{Hooks, TextModel, WeightFiles, device};
use analog_tests::{DirWeights, backends, fixture_dir, load_dir, max_abs_diff, reference, shared_model};

const FIXTURES: [&str; 5] = ["llama", "qwen2", "gpt2", "gpt_neox", "gpt_neox_sequential"];

fn read(dir: &std::path::Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
}

fn last_logits(model: &TextModel, ids: &[u32]) -> Vec<f32> {
    pollster::block_on(model.last_logits(&[ids.to_vec()], &mut Hooks::new())).unwrap().remove(0)
}

/// The weights of a model directory, converted to `format` (single files and shards alike), and
/// the original weight bytes.
fn converted(dir: &std::path::Path, format: WeightFormat) -> (Vec<u8>, usize) {
    let weights = DirWeights::read(dir);
    (convert(&weights.files(), format).unwrap(), weights.byte_len())
}

/// Logits of the f32 original and of `format`, on `device`, for `ids`, and both weight sizes.
fn logits_both(dir: &std::path::Path, format: WeightFormat, ids: &[u32], device: &analog_core::Device) -> (Vec<f32>, Vec<f32>, usize, usize) {
    let (small_weights, original_bytes) = converted(dir, format);
    let original = load_dir(dir, device).unwrap();
    let small = TextModel::from_bytes(&read(dir, "config.json"), &WeightFiles::Single(&small_weights), &read(dir, "tokenizer.json"), device).unwrap();
    assert_eq!(small.model.n_params, original.model.n_params, "q8_0 scales are not parameters");
    (last_logits(&original, ids), last_logits(&small, ids), original_bytes, small_weights.len())
}

#[test]
fn f16_and_q8_0_checkpoints_give_logits_close_to_f32_on_every_backend() {
    for (backend, device) in backends() {
        for name in FIXTURES {
            let r = reference(name);
            for (format, tolerance, max_size) in [(WeightFormat::F16, 2e-3, 0.55), (WeightFormat::Q8_0, 5e-2, 0.40)] {
                let (full, small, _, small_bytes) = logits_both(&fixture_dir(name), format, &r.input_ids, &device);
                let full_bytes = converted(&fixture_dir(name), WeightFormat::F32).0.len();
                let scale = full.iter().fold(1.0f32, |m, x| m.max(x.abs()));
                let diff = max_abs_diff(&full, &small);
                assert!(diff < tolerance * scale, "{name} {format:?} on {backend}: logits differ by {diff} (scale {scale})");
                assert!((small_bytes as f64) < max_size * full_bytes as f64, "{name} {format:?}: {small_bytes} bytes vs {full_bytes}");
            }
        }
    }
}

#[test]
fn a_q8_0_real_model_keeps_its_next_token_choices() {
    let Some(dir) = shared_model("stories260k") else { return };
    let model = load_dir(&dir, &device::cpu()).unwrap();
    let ids = model.encode("Once upon a time, there was a little girl named Lily. She").unwrap();
    let (full, small, _, _) = logits_both(&dir, WeightFormat::Q8_0, &ids, &device::cpu());
    let top = |l: &[f32]| l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    assert_eq!(top(&full), top(&small));
    let scale = full.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    assert!(max_abs_diff(&full, &small) < 0.02 * scale, "q8_0 moved a logit by {} (scale {scale})", max_abs_diff(&full, &small));
}

/// A llama fixture's weights with one tensor's q8_0 scales replaced by `edit`.
fn tampered(edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)) -> Result<TextModel, analog_core::Error> {
    let dir = fixture_dir("llama");
    let (q8, _) = converted(&dir, WeightFormat::Q8_0);
    let parsed = safetensors::SafeTensors::deserialize(&q8).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        parsed.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    TextModel::from_bytes(&read(&dir, "config.json"), &WeightFiles::Single(&bytes), &read(&dir, "tokenizer.json"), &device::cpu())
}

#[test]
fn malformed_q8_0_files_are_refused_with_the_tensor_named() {
    let scales_of = |t: &(String, safetensors::Dtype, Vec<usize>, Vec<u8>)| t.0.ends_with(Q8_SCALES_SUFFIX);
    // Too few scales for the values.
    let err = tampered(|ts| {
        let s = ts.iter_mut().find(|t| scales_of(t)).unwrap();
        s.2 = vec![s.2[0] - 1];
        s.3.truncate(s.3.len() - 2);
    })
    .err()
    .expect("short scales refused")
    .to_string();
    assert!(err.contains("q8_0 tensor") && err.contains("scales"), "{err}");
    // Scales without their tensor.
    let err = tampered(|ts| ts.push(("model.nothing.weight.q8_0_scales".into(), safetensors::Dtype::F16, vec![1], vec![0, 60]))).err().expect("orphan refused").to_string();
    assert!(err.contains("model.nothing.weight"), "{err}");
    // I8 values without scales.
    let err = tampered(|ts| ts.retain(|t| !scales_of(t))).err().expect("bare I8 refused").to_string();
    assert!(err.contains("dtype I8"), "{err}");
    // A non-finite scale.
    let err = tampered(|ts| {
        let s = ts.iter_mut().find(|t| scales_of(t)).unwrap();
        s.3[0..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    })
    .err()
    .expect("infinite scale refused")
    .to_string();
    assert!(err.contains("NaN or infinite"), "{err}");
}
