//! In headless Chromium (`cargo xtask test`): reference fixtures on WebGPU and on burn's CPU
//! backend inside the browser gives transformers' logits and greedy ids.
#![cfg(target_arch = "wasm32")]

use analog_core::{Device, GenerateOptions, Hooks, Sampling, TextModel, WeightFiles, device};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

struct Fixture {
    name: &'static str,
    config: &'static [u8],
    weights: &'static [u8],
    tokenizer: &'static [u8],
    reference: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            config: include_bytes!(concat!("../../tests/fixtures/", $name, "/config.json")),
            weights: include_bytes!(concat!("../../tests/fixtures/", $name, "/model.safetensors")),
            tokenizer: include_bytes!(concat!("../../tests/fixtures/", $name, "/tokenizer.json")),
            reference: include_bytes!(concat!("../../tests/fixtures/", $name, "/reference.json")),
        }
    };
}

async fn check(fixture: &Fixture, device: &Device, backend: &str) {
    let reference: serde_json::Value = serde_json::from_slice(fixture.reference).expect("reference.json");
    let model = TextModel::from_bytes(fixture.config, &WeightFiles::Single(fixture.weights), fixture.tokenizer, device).expect("model loads");
    let prompt = reference["prompt"].as_str().expect("prompt");
    let ids = model.encode(prompt).expect("encode");
    let want_ids: Vec<u32> = serde_json::from_value(reference["input_ids"].clone()).expect("ids");
    assert_eq!(ids, want_ids, "{} on {backend}: tokenization", fixture.name);
    let logits = model.last_logits(std::slice::from_ref(&ids), &mut Hooks::new()).await.expect("logits").remove(0);
    let want: Vec<f32> = serde_json::from_value(reference["logits"].clone()).expect("logits");
    let diff = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "{} on {backend}: logits differ by {diff}", fixture.name);
    let greedy: Vec<u32> = serde_json::from_value(reference["greedy_ids"].clone()).expect("greedy ids");
    let options = GenerateOptions { max_new_tokens: greedy.len(), sampling: Sampling::default(), stop_at_eos: false };
    let out = model.generate(&ids, &options, &mut Hooks::new(), &mut |_| true).await.expect("generate");
    assert_eq!(out.ids, greedy, "{} on {backend}: greedy ids", fixture.name);
}

#[wasm_bindgen_test]
async fn reference_fixtures_on_webgpu_and_cpu_in_the_browser() {
    let fixtures = [fixture!("qwen2"), fixture!("gpt_neox"), fixture!("qwen3"), fixture!("gemma3")];
    let cpu = device::cpu();
    for f in &fixtures {
        check(f, &cpu, "cpu (wasm)").await;
    }
    let webgpu = device::wgpu_async().await.expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    for f in &fixtures {
        check(f, &webgpu, "webgpu").await;
    }
}
