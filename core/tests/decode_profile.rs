//! Profiling aid, not part of the suite: decodes a real GGUF file on burn's CPU backend in a dedicated worker in
//! headless Chromium (as the app's worker does: wasm SIMD128, one thread) and prints milliseconds per token, then
//! again with a yield to the event loop after every token, which is what a turn of the loop costs. Serve the models
//! with CORS (e.g. a local server on 127.0.0.1), then
//! `ANALOG_MODEL_URL=http://127.0.0.1:PORT/file.gguf cargo test --release --target wasm32-unknown-unknown
//! -p analog-core -p analog-kernels -p analog-app --test decode_profile -- --nocapture`. Without the variable the
//! test does nothing. Swapping `run_in_dedicated_worker` for node (no configure line) and `NODE_ARGS=--cpu-prof`
//! gives V8's profile of the same run.
#![cfg(target_arch = "wasm32")]

use analog_core::{Decoder, GenerateOptions, Hooks, Sampling, TextModel, device};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen(inline_js = "
export async function fetch_model(url) { const r = await fetch(url); globalThis.__model = new Uint8Array(await r.arrayBuffer()); }
export function take_model() { const m = globalThis.__model; globalThis.__model = null; return m; }
export function turn() { return new Promise(r => setTimeout(r, 0)); }")]
extern "C" {
    async fn fetch_model(url: &str) -> JsValue;
    fn take_model() -> Vec<u8>;
    async fn turn() -> JsValue;
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn now() -> f64;
    #[wasm_bindgen(js_namespace = console, js_name = log)]
    fn log(s: &str);
}

#[wasm_bindgen_test]
async fn decode_a_real_model() {
    let Some(url) = option_env!("ANALOG_MODEL_URL") else { return };
    fetch_model(url).await;
    let bytes = take_model();
    let start = now();
    let model = TextModel::from_gguf(&bytes, None, &device::cpu()).expect("model loads");
    drop(bytes);
    log(&format!("load {:.0} ms", now() - start));
    let ids = model.encode("Once upon a time, in a small village by the sea, there lived").expect("encode");
    let tokens = 64;
    let options = GenerateOptions { max_new_tokens: tokens + 1, sampling: Sampling::default(), stop_at_eos: false };
    for yielding in [false, true] {
        let mut hooks = Hooks::new();
        let mut decoder = Decoder::new(&model, &ids, &options, &hooks).expect("decoder");
        let (mut first, mut waited) = (None, 0.0);
        while decoder.next(&mut hooks).await.expect("a step").is_some() {
            first.get_or_insert_with(now);
            if yielding {
                let at = now();
                turn().await;
                waited += now() - at;
            }
        }
        let per_token = (now() - first.unwrap_or_default()) / tokens as f64;
        log(&format!(
            "{} prompt tokens, {tokens} decoded: {per_token:.1} ms/token, of which {:.1} ms waiting on the event loop",
            ids.len(),
            waited / tokens as f64
        ));
    }
}
