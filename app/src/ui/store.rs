//! Nothing lost: the visitor's pair sets, vectors and results live in `localStorage` (saved on
//! every change, exported and imported as one file), and the shareable state lives in the URL.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

pub use crate::saved::{Saved, SavedPairs, SavedResult, SavedVector};

use super::{AppState, Tab};

const KEY: &str = "analog-explorer/v1";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Where stored text that could not be read is kept, so that saving again does not destroy it.
const UNREADABLE_KEY: &str = "analog-explorer/v1.unreadable";

impl Saved {
    /// What this browser holds, and stored text that cannot be read (damaged, or written by a
    /// newer version): that text is copied aside before anything overwrites it, and offered on
    /// every visit until the visitor discards it.
    pub fn load() -> (Self, Option<String>) {
        let store = storage();
        let kept_aside = || store.as_ref().and_then(|s| s.get_item(UNREADABLE_KEY).ok().flatten());
        let Some(text) = store.as_ref().and_then(|s| s.get_item(KEY).ok().flatten()) else { return (Self::default(), kept_aside()) };
        match serde_json::from_str(&text) {
            Ok(saved) => (saved, kept_aside()),
            Err(_) => {
                if let Some(s) = &store {
                    let _ = s.set_item(UNREADABLE_KEY, &text);
                }
                (Self::default(), Some(text))
            }
        }
    }

    /// Forgets the unreadable text kept aside (the visitor chose to discard it).
    pub fn discard_unreadable() {
        if let Some(s) = storage() {
            let _ = s.remove_item(UNREADABLE_KEY);
        }
    }
}

/// Saves on every change; a failure (quota, storage disabled) is shown with an offer to export.
pub fn persist(state: AppState) {
    Effect::new(move |_| {
        let saved = state.saved.get();
        let Ok(text) = serde_json::to_string(&saved) else { return };
        let result = match storage() {
            Some(s) => s.set_item(KEY, &text).map_err(|e| format!("{e:?}")),
            None => Err("this browser gives the page no storage".into()),
        };
        state.storage_error.set(result.err().map(|e| if e.contains("Quota") { "the browser's storage quota is full".to_string() } else { e }));
    });
}

/// Follows saves made in other tabs of this site, so that one tab's save does not overwrite
/// another's work.
pub fn follow_other_tabs(state: AppState) {
    let Some(window) = web_sys::window() else { return };
    let on_storage = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::StorageEvent)>::new(move |event: web_sys::StorageEvent| {
        if event.key().as_deref() != Some(KEY) {
            return;
        }
        if let Some(saved) = event.new_value().and_then(|text| serde_json::from_str::<Saved>(&text).ok()) {
            state.saved.set(saved);
        }
    });
    let _ = window.add_event_listener_with_callback("storage", on_storage.as_ref().unchecked_ref());
    on_storage.forget();
}

/// Offers `bytes` as a download named `name`.
pub fn download(name: &str, mime: &str, bytes: &[u8]) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options) else { return };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
    if let Ok(a) = document.create_element("a") {
        let a: web_sys::HtmlAnchorElement = a.unchecked_into();
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

pub fn export_all(state: AppState) {
    let text = serde_json::to_string_pretty(&state.saved.get_untracked()).unwrap_or_default();
    download("analog-explorer-saved.json", "application/json", text.as_bytes());
}

/// The shareable state in the URL: `#/<tab>?model=…&pairs=…&layer=…&coef=…&prompt=…`
/// (`webgpu=0` forces the CPU backend; `hub=http://127.0.0.1:…/` resolves HF repo ids against a
/// stand-in for huggingface.co on this machine, for tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UrlState {
    pub tab: String,
    pub model: String,
    pub pairs: Option<String>,
    pub layer: Option<usize>,
    pub coef: Option<f32>,
    pub prompt: Option<String>,
    pub webgpu: bool,
    pub hub: Option<String>,
}

fn decode(s: &str) -> String {
    js_sys::decode_uri_component(&s.replace('+', " ")).ok().and_then(|v| v.as_string()).unwrap_or_default()
}

fn encode(s: &str) -> String {
    js_sys::encode_uri_component(s).as_string().unwrap_or_default()
}

impl UrlState {
    pub fn parse(hash: &str, search: &str) -> Self {
        let hash = hash.trim_start_matches('#').trim_start_matches('/');
        let (tab, query) = hash.split_once('?').unwrap_or((hash, ""));
        let mut out = UrlState { tab: tab.to_string(), webgpu: true, ..UrlState::default() };
        for pair in query.split('&').chain(search.trim_start_matches('?').split('&')) {
            let Some((k, v)) = pair.split_once('=') else { continue };
            let v = decode(v);
            match k {
                "model" => out.model = v,
                "pairs" => out.pairs = Some(v),
                "layer" => out.layer = v.parse().ok(),
                "coef" => out.coef = v.parse().ok().filter(|c: &f32| c.is_finite()),
                "prompt" => out.prompt = Some(v),
                "webgpu" => out.webgpu = v != "0",
                "hub" => out.hub = Some(v),
                _ => {}
            }
        }
        out
    }

    pub fn read() -> Self {
        let location = web_sys::window().map(|w| w.location());
        let hash = location.as_ref().and_then(|l| l.hash().ok()).unwrap_or_default();
        let search = location.as_ref().and_then(|l| l.search().ok()).unwrap_or_default();
        Self::parse(&hash, &search)
    }
}

/// Keeps the URL's hash in step with the shareable state (replaceState: no history spam).
pub fn mirror_to_url(state: AppState) {
    Effect::new(move |_| {
        let tab = state.tab.get();
        let mut query = vec![];
        let model = state.model_ref.get();
        if !model.is_empty() {
            query.push(format!("model={}", encode(&model)));
        }
        if tab == Tab::Steer {
            query.push(format!("pairs={}", encode(&state.pair_set.get())));
            query.push(format!("layer={}", state.layer.get()));
            query.push(format!("coef={}", state.coef.get()));
        }
        query.push(format!("prompt={}", encode(&state.prompt.get())));
        if let Some(hub) = state.hub.get_value() {
            query.push(format!("hub={}", encode(&hub)));
        }
        let hash = format!("#/{}?{}", tab.slug(), query.join("&"));
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&hash));
        }
    });
}
