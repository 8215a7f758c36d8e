//! Smaller weight files: f16 and q8_0 checkpoints written by `analog_core::quant::convert` load on
//! every backend and give logits close to the f32 originals; malformed q8_0 files are refused.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use analog_core::model::{Linear, LinearWeight};
use analog_core::quant::{Q8_SCALES_SUFFIX, WeightFormat, convert};
use analog_core::{GenerateOptions, Hooks, Sampling, TextModel, WeightFiles, device};
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

fn linears(model: &TextModel) -> Vec<&Linear> {
    model.model.blocks.iter().flat_map(|b| [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o, &b.mlp.up, &b.mlp.down]).collect()
}

#[test]
fn q8_0_weights_stay_quantised_on_wgpu_and_the_cpu_and_agree() {
    let [(_, cpu), (_, wgpu)] = <[_; 2]>::try_from(backends()).unwrap_or_else(|_| unreachable!("cpu and wgpu"));
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let (q8, _) = converted(&dir, WeightFormat::Q8_0);
        let load = |device| TextModel::from_bytes(&read(&dir, "config.json"), &WeightFiles::Single(&q8), &read(&dir, "tokenizer.json"), device).unwrap();
        let (on_cpu, on_gpu) = (load(&cpu), load(&wgpu));
        // wgpu keeps every linear weight that needs no reordering in q8_0 (GPT-2 and GPT-NeoX split their fused
        // q/k/v projection, so those are f32); the CPU keeps those whose storage rows are whole groups of 32.
        let kept = linears(&on_gpu).iter().filter(|l| matches!(l.weight, LinearWeight::Quant(_))).count();
        let expected = if matches!(name, "llama" | "qwen2") { 6 } else { 3 } * on_gpu.config().n_layers;
        assert_eq!(kept, expected, "{name}: q8_0 linear weights on wgpu");
        let whole_rows = |w: &LinearWeight| match w {
            LinearWeight::Quant(q) => (if q.matrix.transposed { q.matrix.rows } else { q.matrix.cols }).is_multiple_of(32),
            LinearWeight::F32(_) => false,
        };
        let packable = linears(&on_gpu).iter().filter(|l| whole_rows(&l.weight)).count();
        let kept_on_cpu = linears(&on_cpu).iter().filter(|l| matches!(l.weight, LinearWeight::Quant(_))).count();
        assert_eq!(kept_on_cpu, packable, "{name}: q8_0 linear weights on the CPU");
        assert!(kept_on_cpu > 0, "{name}");
        // Each decoded token runs the q8_0 matrix-vector kernel on wgpu, and integer dot products against activations
        // quantised to 16 bits per group of 32 on the CPU (their error: under 1/65 534 of each group's largest value).
        let ids = reference(name).input_ids;
        let (a, b) = (last_logits(&on_cpu, &ids), last_logits(&on_gpu, &ids));
        let scale = a.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        assert!(max_abs_diff(&a, &b) < 1e-3 * scale, "{name}: CPU and wgpu q8_0 logits differ by {}", max_abs_diff(&a, &b));
        let options = GenerateOptions { max_new_tokens: 12, sampling: Sampling::default(), stop_at_eos: false };
        let run = |m: &TextModel| pollster::block_on(m.generate(&ids, &options, &mut Hooks::new(), &mut |_| true)).unwrap().ids;
        assert_eq!(run(&on_cpu), run(&on_gpu), "{name}: greedy ids");
    }
}

/// A llama fixture's weights with one tensor's q8_0 scales replaced by `edit`, loaded on `device`.
/// A tensor of a safetensors file: name, dtype, shape, raw bytes.
type RawTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

fn tampered(device: &analog_core::Device, edit: impl Fn(&mut Vec<RawTensor>)) -> Result<TextModel, analog_core::Error> {
    let dir = fixture_dir("llama");
    let (q8, _) = converted(&dir, WeightFormat::Q8_0);
    let parsed = safetensors::SafeTensors::deserialize(&q8).unwrap();
    let mut tensors: Vec<RawTensor> = parsed.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    TextModel::from_bytes(&read(&dir, "config.json"), &WeightFiles::Single(&bytes), &read(&dir, "tokenizer.json"), device)
}

#[test]
fn malformed_q8_0_files_are_refused_with_the_tensor_named() {
    // On wgpu linear weights stay q8_0 and take another reading path: both must refuse.
    for (backend, device) in backends() {
        let tampered = |edit: &dyn Fn(&mut Vec<RawTensor>)| tampered(&device, edit);
        let scales_of = |t: &RawTensor| t.0.ends_with(Q8_SCALES_SUFFIX);
        // Too few scales for the values.
        let err = tampered(&|ts| {
            for s in ts.iter_mut().filter(|t| scales_of(t)) {
                s.2 = vec![s.2[0] - 1];
                s.3.truncate(s.3.len() - 2);
            }
        })
        .err()
        .expect("short scales refused")
        .to_string();
        assert!(err.contains("q8_0 tensor") && err.contains("scales"), "{backend}: {err}");
        // Scales without their tensor.
        let err = tampered(&|ts| ts.push(("model.nothing.weight.q8_0_scales".into(), safetensors::Dtype::F16, vec![1], vec![0, 60])))
            .err()
            .expect("orphan refused")
            .to_string();
        assert!(err.contains("model.nothing.weight"), "{backend}: {err}");
        // I8 values without scales.
        let err = tampered(&|ts| ts.retain(|t| !scales_of(t))).err().expect("bare I8 refused").to_string();
        assert!(err.contains("dtype I8"), "{backend}: {err}");
        // A non-finite scale.
        let err = tampered(&|ts| {
            for s in ts.iter_mut().filter(|t| scales_of(t)) {
                s.3[0..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
            }
        })
        .err()
        .expect("infinite scale refused")
        .to_string();
        assert!(err.contains("NaN or infinite"), "{backend}: {err}");
    }
}

/// The footprint read from the headers is what the tensors take as f32, whatever the stored
/// format: the same for the f32 original, its f16 and its q8_0 copies.
#[test]
fn the_f32_footprint_is_read_from_the_headers() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let weights = DirWeights::read(&dir);
        let original = analog_core::weights::footprint(&weights.files()).unwrap();
        let model = load_dir(&dir, &device::cpu()).unwrap();
        let c = model.config();
        // Before the weights are downloaded, config.json alone gives the same f32 figures (a file may also hold
        // buffers the model does not read, such as GPT-2's causal masks).
        let planned = analog_core::weights::footprint_of_config(c);
        assert_eq!((planned.largest_bytes, planned.device_largest_bytes), (original.largest_bytes, original.largest_bytes), "{name}: {planned:?}");
        assert_eq!(planned.total_bytes, 4 * model.model.n_params as u64, "{name}: config footprint vs the parameters loaded");
        assert_eq!(original.largest_bytes, (c.vocab_size * c.d_model * 4) as u64, "{name}: the largest tensor is an embedding ({})", original.largest);
        // Tied embeddings are stored once and counted once; untied ones twice.
        assert!(original.total_bytes >= model.model.n_params as u64 * 4 - original.largest_bytes, "{name}: {original:?}");
        for format in [WeightFormat::F16, WeightFormat::Q8_0] {
            let small = convert(&weights.files(), format).unwrap();
            let converted = analog_core::weights::footprint(&WeightFiles::Single(&small)).unwrap();
            // The f32 figures agree; what the file stores shrinks with the format.
            assert_eq!(
                (&converted.largest, converted.largest_bytes, converted.total_bytes),
                (&original.largest, original.largest_bytes, original.total_bytes),
                "{name} as {format:?}"
            );
            assert!(converted.stored_bytes < original.stored_bytes || original.stored_bytes < original.total_bytes, "{name} as {format:?}: {converted:?}");
        }
    }
}
