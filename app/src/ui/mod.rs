//! The page: a shell with the model picker and the backend badge, and four views (Playground,
//! Steering, Reports, About). Every model job goes to the worker through [`bridge`].

mod about;
mod bridge;
mod charts;
mod models;
mod playground;
mod reports;
mod steering;
mod store;
mod widgets;

use analog_core::catalog::Catalog;
use analog_core::device::BackendKind;
use leptos::prelude::*;

use crate::protocol::ModelInfo;

pub use bridge::{cancel, done, send};

/// Where the model stands, as the `model-status` element shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    Loading {
        what: String,
        done: u64,
        total: Option<u64>,
        bytes_per_s: Option<f64>,
    },
    /// `ready_ms`: the page's `performance.now()` when the model became ready (for the page-load benchmark).
    Ready {
        info: ModelInfo,
        from_cache: bool,
        ready_ms: Option<f64>,
    },
    Error(String),
}

impl ModelStatus {
    /// Whether the loaded model came with a chat template (the chat toggles show then).
    pub fn has_chat_template(&self) -> bool {
        matches!(self, Self::Ready { info, .. } if info.has_chat_template)
    }

    fn state(&self) -> &'static str {
        match self {
            Self::Loading { .. } => "loading",
            Self::Ready { .. } => "ready",
            Self::Error(_) => "error",
        }
    }
}

/// The four views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Play,
    Steer,
    Reports,
    About,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Play, Tab::Steer, Tab::Reports, Tab::About];

    fn slug(self) -> &'static str {
        match self {
            Self::Play => "play",
            Self::Steer => "steer",
            Self::Reports => "reports",
            Self::About => "about",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Play => "Playground",
            Self::Steer => "Steering studio",
            Self::Reports => "Transfer reports",
            Self::About => "About",
        }
    }

    fn from_slug(slug: &str) -> Self {
        Self::ALL.into_iter().find(|t| t.slug() == slug).unwrap_or(Self::Play)
    }
}

/// Page-wide state; the shareable part is mirrored into the URL.
#[derive(Clone, Copy)]
pub struct AppState {
    pub backend: RwSignal<Option<(BackendKind, String)>>,
    pub model: RwSignal<ModelStatus>,
    pub catalog: RwSignal<Option<Catalog>>,
    pub tab: RwSignal<Tab>,
    /// Which model is loaded: a catalog id, an HF repo id or a URL ("" for local files).
    pub model_ref: RwSignal<String>,
    pub prompt: RwSignal<String>,
    pub pair_set: RwSignal<String>,
    pub layer: RwSignal<usize>,
    pub coef: RwSignal<f32>,
    pub saved: RwSignal<store::Saved>,
    /// A problem with saving (e.g. storage quota), shown with an offer to export.
    pub storage_error: RwSignal<Option<String>>,
    /// Stored work this version could not read, kept aside and offered as a download.
    pub unreadable_saved: RwSignal<Option<String>>,
    /// A stand-in for the HF hub on this machine (`hub=` in the URL, for tests); `None`: huggingface.co.
    pub hub: StoredValue<Option<String>>,
}

pub fn state() -> AppState {
    expect_context::<AppState>()
}

/// The site's base URL (where `index.html` lives), for absolute URLs the worker can fetch.
pub fn base_url() -> String {
    let href = web_sys::window().and_then(|w| w.document()).and_then(|d| d.base_uri().ok().flatten()).unwrap_or_default();
    web_sys::Url::new_with_base(".", &href).map(|u| u.href()).unwrap_or(href)
}

pub fn start() {
    console_error_panic_hook::set_once();
    mount_to_body(App);
}

/// The page: header with the model picker, the tabs, storage warnings and the chosen view.
/// Creates and provides [`AppState`] from the URL and the saved work. No props.
#[component]
fn App() -> impl IntoView {
    let url = store::UrlState::read();
    let (saved, unreadable) = store::Saved::load();
    let state = AppState {
        backend: RwSignal::new(None),
        model: RwSignal::new(ModelStatus::Loading { what: "starting the worker".into(), done: 0, total: None, bytes_per_s: None }),
        catalog: RwSignal::new(None),
        tab: RwSignal::new(Tab::from_slug(&url.tab)),
        model_ref: RwSignal::new(url.model.clone()),
        prompt: RwSignal::new(url.prompt.clone().unwrap_or_else(|| "Once upon a time".into())),
        pair_set: RwSignal::new(url.pairs.clone().unwrap_or_else(|| "sentiment".into())),
        layer: RwSignal::new(url.layer.unwrap_or(0)),
        coef: RwSignal::new(url.coef.unwrap_or(0.5)),
        saved: RwSignal::new(saved),
        storage_error: RwSignal::new(None),
        unreadable_saved: RwSignal::new(unreadable),
        hub: StoredValue::new(
            url.hub.as_deref().and_then(|hub| crate::protocol::hub_base(hub).map_err(|e| web_sys::console::warn_1(&format!("ignoring hub=: {e}").into())).ok()),
        ),
    };
    provide_context(state);
    bridge::start(state, url.webgpu);
    models::load_catalog_then_model(state);
    store::mirror_to_url(state);
    store::persist(state);
    store::follow_other_tabs(state);

    let tabs = move || {
        Tab::ALL
            .into_iter()
            .map(|t| {
                view! {
                    <a href=format!("#/{}", t.slug()) class="tab" class:active=move || state.tab.get() == t
                        data-testid=format!("tab-{}", t.slug())
                        on:click=move |_| state.tab.set(t)>{t.title()}</a>
                }
            })
            .collect_view()
    };
    view! {
        <header>
            <div class="brand">
                <h1>"Analog Explorer"</h1>
                <span class="tagline">"Steer a released analog model in your browser, and check the lab's transfer report."</span>
            </div>
            <models::ModelPicker/>
        </header>
        <nav aria-label="views">{tabs}</nav>
        <StorageWarning/>
        <main>
            <Show when=move || state.tab.get() == Tab::Play><playground::Playground/></Show>
            <Show when=move || state.tab.get() == Tab::Steer><steering::Studio/></Show>
            <Show when=move || state.tab.get() == Tab::Reports><reports::Reports/></Show>
            <Show when=move || state.tab.get() == Tab::About><about::About/></Show>
        </main>
        <footer>
            "Every number on this page is computed here, in your browser, by "
            <a href="https://github.com/analog-explorer/analog-explorer">"analog-core"</a>
            " — nothing is sent anywhere."
        </footer>
    }
}

/// Warnings about saved work: saving failed (`storage-error`, with an export), or stored work
/// could not be read (`storage-unreadable`, with download and discard). No props.
#[component]
fn StorageWarning() -> impl IntoView {
    let state = state();
    let failed = move || {
        state.storage_error.get().map(|e| {
            view! {
                <div class="warning" role="alert" data-testid="storage-error">
                    {format!("Your work could not be saved in this browser: {e}. ")}
                    <button data-testid="storage-export" on:click=move |_| store::export_all(state)>"Export everything as a file"</button>
                </div>
            }
        })
    };
    let unreadable = move || {
        state.unreadable_saved.get().map(|text| {
            view! {
                <div class="warning" role="alert" data-testid="storage-unreadable">
                    "The work saved in this browser could not be read (it is damaged, or a newer version wrote it). It was kept aside, untouched: "
                    <button on:click=move |_| store::download("analog-explorer-unreadable.json", "application/json", text.as_bytes())>"Download it"</button>
                    " "
                    <button on:click=move |_| {
                        store::Saved::discard_unreadable();
                        state.unreadable_saved.set(None);
                    }>"Discard it"</button>
                </div>
            }
        })
    };
    (failed, unreadable)
}

/// Bytes as B/kB/MB/GB.
pub fn human_bytes(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// Parameter counts as K/M/B.
pub fn human_params(n: u64) -> String {
    match n as f64 {
        n if n >= 1e9 => format!("{:.1}B", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.0}K", n / 1e3),
        n => format!("{n}"),
    }
}
