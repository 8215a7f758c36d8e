//! Choosing and loading a model: the embedded default analog, released models by HF repo id or
//! URL (a model folder or a GGUF file), and local files (picker or drag-and-drop), with progress
//! and status.

use analog_core::catalog::Catalog;
use leptos::prelude::*;

use super::bridge::{BackendBadge, done, send};
use super::{AppState, ModelStatus, base_url, human_bytes, human_params, state};
use crate::protocol::{Event, HF_HUB, ModelLocation, ModelSource, Request, model_location};

/// Fetches `catalog.json`, then loads the model the URL names (or the catalog's default).
pub fn load_catalog_then_model(state: AppState) {
    leptos::task::spawn_local(async move {
        match fetch_catalog().await {
            Ok(catalog) => {
                let wanted = state.model_ref.get_untracked();
                let wanted = if wanted.is_empty() { catalog.default.clone() } else { wanted };
                state.catalog.set(Some(catalog));
                load_ref(state, &wanted);
            }
            Err(e) => state.model.set(ModelStatus::Error(format!("cannot read catalog.json: {e}"))),
        }
    });
}

async fn fetch_catalog() -> Result<Catalog, String> {
    let text = crate::fetch::page_text("catalog.json", "catalog").await?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Loads a catalog id, an HF repo id (`owner/name`, or `owner/name/file.gguf`) or a URL (a
/// model folder or a `.gguf` file).
pub fn load_ref(state: AppState, reference: &str) {
    let catalog = state.catalog.get_untracked().unwrap_or_default();
    let source = if let Some(m) = catalog.models.iter().find(|m| m.id == reference) {
        ModelSource::Url {
            base: format!("{}{}", base_url(), m.path),
            label: m.id.clone(),
            sha256: m.files.iter().map(|f| (f.name.clone(), f.sha256.clone())).collect(),
            recorded_by: "the catalog".into(),
        }
    } else {
        let hub = state.hub.get_value().unwrap_or_else(|| HF_HUB.to_string());
        let label = reference.trim().to_string();
        match model_location(reference, &hub) {
            Ok(ModelLocation::Folder(base)) => ModelSource::Url { base, label, sha256: Vec::new(), recorded_by: String::new() },
            Ok(ModelLocation::Gguf(url)) => ModelSource::Gguf { url, label, sha256: None, recorded_by: String::new() },
            Err(e) => {
                state.model.set(ModelStatus::Error(e));
                return;
            }
        }
    };
    state.model_ref.set(reference.trim().to_string());
    load(state, source, Vec::new());
}

/// Loads the analog a transfer report names from its `url` (a model folder or a GGUF file),
/// refusing weights whose sha256 is not the one the report records.
pub fn load_report_analog(state: AppState, location: ModelLocation, id: &str, weights_sha256: &str, report_id: &str) {
    let recorded_by = format!("the report `{report_id}`");
    let label = id.to_string();
    let source = match location {
        ModelLocation::Folder(base) => {
            // The URL it comes from, so that a shared link loads the same files.
            state.model_ref.set(base.clone());
            ModelSource::Url { base, label, sha256: vec![("model.safetensors".into(), weights_sha256.to_string())], recorded_by }
        }
        ModelLocation::Gguf(url) => {
            state.model_ref.set(url.clone());
            ModelSource::Gguf { url, label, sha256: Some(weights_sha256.to_string()), recorded_by }
        }
    };
    load(state, source, Vec::new());
}

/// Local files: `config.json`, `model.safetensors`, `tokenizer.json`, or one `.gguf` file (with an
/// optional `tokenizer.json`); `tokenizer_config.json` may come with either.
pub fn load_files(state: AppState, files: Vec<web_sys::File>) {
    let names = files.iter().map(web_sys::File::name).collect();
    state.model_ref.set(String::new());
    load(state, ModelSource::Files { names }, files);
}

thread_local! {
    /// The last load asked for, for "Try again" after a failure or a worker crash.
    static LAST_LOAD: std::cell::RefCell<Option<(ModelSource, Vec<web_sys::File>)>> = const { std::cell::RefCell::new(None) };
}

/// Repeats the last load (after a network error or a restarted worker).
fn retry(state: AppState) {
    if let Some((source, files)) = LAST_LOAD.with_borrow(Clone::clone) {
        load(state, source, files);
    }
}

fn load(state: AppState, source: ModelSource, files: Vec<web_sys::File>) {
    LAST_LOAD.set(Some((source.clone(), files.clone())));
    state.model.set(ModelStatus::Loading { what: "starting".into(), done: 0, total: None, bytes_per_s: None });
    send(
        |job| Request::Load { job, source },
        &files,
        move |event| match event {
            Event::Progress { what, done, total, bytes_per_s, .. } => state.model.set(ModelStatus::Loading { what, done, total, bytes_per_s }),
            Event::Loaded { job, info, from_cache } => {
                if state.layer.get_untracked() >= info.n_layers {
                    state.layer.set(info.n_layers / 2);
                }
                state.model.set(ModelStatus::Ready { info, from_cache, ready_ms: super::widgets::now_ms() });
                done(job);
            }
            Event::Failed { job, errors } => {
                state.model.set(ModelStatus::Error(errors.join("; ")));
                done(job);
            }
            _ => {}
        },
    );
}

/// The model picker: catalog and hub models, an HF repo id or URL (folder or GGUF file), local
/// files by picker or drag-and-drop, the backend badge and the status line. No props.
#[component]
pub fn ModelPicker() -> impl IntoView {
    let state = state();
    let (custom, set_custom) = signal(String::new());
    let (dragging, set_dragging) = signal(false);
    let options = move || {
        let catalog = state.catalog.get().unwrap_or_default();
        // A model loaded by URL or from files is not in the list: shown as itself, not as a blank.
        let current = state.model_ref.get();
        let listed = catalog.models.iter().any(|m| m.id == current) || catalog.hub.iter().any(|h| h.repo == current);
        let own = catalog.models.into_iter().map(|m| {
            let label = format!("{} · {} · {} ({})", m.id, human_params(m.n_params), human_bytes(m.bytes as f64), m.note);
            view! { <option value=m.id.clone()>{label}</option> }
        });
        let hub = catalog.hub.into_iter().map(|h| {
            let pair = match (&h.frontier, h.size_ratio()) {
                (Some(f), Some(ratio)) => {
                    format!(" · {:.1}% of {}{}", ratio * 100.0, f.name, if f.distilled { ", distilled" } else { ", not distilled" })
                }
                _ => String::new(),
            };
            let label = format!("{} · {} {}{pair} · ≈{} as f32", h.repo, human_params(h.n_params), h.family, human_bytes(h.f32_bytes() as f64));
            view! { <option value=h.repo.clone()>{label}</option> }
        });
        let from_files = LAST_LOAD.with_borrow(|last| matches!(last, Some((ModelSource::Files { .. }, _))));
        let other = (!listed && (!current.is_empty() || from_files)).then(|| {
            let label = if current.is_empty() { "local files".to_string() } else { current.clone() };
            view! { <option value=current.clone()>{label}</option> }
        });
        (own.chain(hub).collect_view(), other)
    };
    let on_files = move |files: Option<web_sys::FileList>| {
        let Some(list) = files else { return };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        if !files.is_empty() {
            load_files(state, files);
        }
    };
    view! {
        <section class="model-picker" aria-label="model"
            class:dragging=dragging
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); set_dragging.set(true); }
            on:dragleave=move |_| set_dragging.set(false)
            on:drop=move |ev: leptos::ev::DragEvent| {
                ev.prevent_default();
                set_dragging.set(false);
                on_files(ev.data_transfer().and_then(|d| d.files()));
            }>
            <div class="row">
                <label>"Model "
                    <select data-testid="model-select" aria-label="model"
                        prop:value=move || state.model_ref.get()
                        on:change=move |ev| load_ref(state, &event_target_value(&ev))>
                        {options}
                    </select>
                </label>
                <BackendBadge/>
            </div>
            <div class="row">
                <input type="text" data-testid="model-url" placeholder="HF repo id (owner/name or owner/name/file.gguf), or https URL of a model folder or .gguf file"
                    prop:value=custom on:input=move |ev| set_custom.set(event_target_value(&ev))
                    on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { load_ref(state, &custom.get_untracked()) }/>
                <button data-testid="model-load" on:click=move |_| load_ref(state, &custom.get_untracked())>"Load"</button>
                <label class="file-button">"Local files…"
                    <input type="file" multiple data-testid="model-files" accept=".json,.safetensors,.gguf"
                        on:change=move |ev| {
                            let input: web_sys::HtmlInputElement = event_target(&ev);
                            on_files(input.files());
                        }/>
                </label>
            </div>
            <HubPair/>
            <Status/>
        </section>
    }
}

/// For a hub model paired with a frontier model (`hub-pair`): the size ratio against the paper's
/// 0.5–5% band, whether it was distilled, the developers' claim and its source, and the memory
/// its weights need as f32. Nothing for other models. No props.
#[component]
fn HubPair() -> impl IntoView {
    let state = state();
    move || {
        let current = state.model_ref.get();
        let catalog = state.catalog.get().unwrap_or_default();
        let hub = catalog.hub.into_iter().find(|h| h.repo == current)?;
        let frontier = hub.frontier.clone()?;
        let ratio = hub.size_ratio()?;
        let band = if hub.in_band() == Some(true) { "inside the 0.5–5% analog band" } else { "outside the 0.5–5% analog band" };
        let text = format!(
            "Analog of {} ({}): {:.2}% of its size, {band}; {}. Its developers: “{}”. Weights need ≈{} as f32.",
            frontier.name,
            human_params(frontier.n_params),
            ratio * 100.0,
            if frontier.distilled { "distilled from the family's larger models" } else { "not distilled" },
            frontier.claim,
            human_bytes(hub.f32_bytes() as f64),
        );
        Some(view! {
            <p class="hub-pair" data-testid="hub-pair">{text}" "<a href=frontier.source.clone() target="_blank" rel="noopener noreferrer">"source"</a></p>
        })
    }
}

/// The model's status (`model-status`, `data-state` loading/ready/error): download progress,
/// the loaded model's facts, or the error with "Try again" (`model-retry`). No props.
#[component]
fn Status() -> impl IntoView {
    let state = state();
    let body = move || match state.model.get() {
        ModelStatus::Loading { what, done, total, bytes_per_s } => {
            let (value, max) = match total {
                Some(t) if t > 0 => (done as f64, t as f64),
                _ => (0.0, 1.0),
            };
            let detail = match (total, bytes_per_s) {
                (Some(t), Some(r)) => format!("{what}: {} of {} · {}/s", human_bytes(done as f64), human_bytes(t as f64), human_bytes(r)),
                (Some(t), None) => format!("{what}: {} of {}", human_bytes(done as f64), human_bytes(t as f64)),
                _ if done > 0 => format!("{what}: {}", human_bytes(done as f64)),
                _ => what,
            };
            view! { <progress value=value max=max></progress><span>{detail}</span> }.into_any()
        }
        ModelStatus::Ready { info, from_cache, ready_ms } => {
            // Older workers do not say what the weights hold: parameters × 4 bytes then.
            let held = if info.weight_bytes > 0 { info.weight_bytes as f64 } else { info.n_params as f64 * 4.0 };
            let memory = human_bytes(held);
            let seconds: f64 = info.load_profile.iter().map(|(_, s)| s).sum();
            let profile = info.load_profile.iter().map(|(stage, s)| format!("{stage} {s:.2}")).collect::<Vec<_>>().join(" · ");
            let loaded = if info.load_profile.is_empty() { String::new() } else { format!(" · loaded in {seconds:.1} s") };
            let text = format!(
                "{} · {} · {} parameters · {} layers · d_model {} · context {} · weights {memory} in memory{loaded}{}{}{}",
                info.label,
                info.architecture,
                human_params(info.n_params as u64),
                info.n_layers,
                info.d_model,
                info.context_length,
                if info.has_chat_template { " · chat template" } else { "" },
                if from_cache { " · loaded from this browser's cache" } else { "" },
                info.verified.map(|v| format!(" · {v}")).unwrap_or_default(),
            );
            // The load profile on hover, and for the benchmark.
            let title = if profile.is_empty() { String::new() } else { format!("seconds per stage of loading: {profile}") };
            view! {
                <span title=title data-load-profile=profile data-load-seconds=format!("{seconds:.3}") data-ready-ms=ready_ms.map(|t| format!("{t:.0}"))
                    data-wasm-memory-bytes=info.wasm_memory_bytes
                    data-weight-bytes=info.weight_bytes>{text}</span>
            }
            .into_any()
        }
        ModelStatus::Error(e) => {
            let can_retry = LAST_LOAD.with_borrow(Option::is_some);
            view! {
                <span class="error">{e}</span>
                {can_retry.then(|| view! { <button data-testid="model-retry" on:click=move |_| retry(state)>"Try again"</button> })}
            }
            .into_any()
        }
    };
    view! {
        <div class="status" data-testid="model-status" data-state=move || state.model.with(|m| m.state()) role="status" aria-live="polite">
            {body}
        </div>
    }
}
