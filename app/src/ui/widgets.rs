//! Widgets more than one view uses: a streamed generation and its view, the sampling controls,
//! a long job's progress bar with its Stop button, the error line, and reading a picked file.
//! Charts are in [`super::charts`].

use analog_core::{GenerateOptions, Sampling, TokenText};
use leptos::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::bridge::cancel;
use crate::protocol::{Event, Job};

/// One token of a stream: its id, its vocabulary piece, and what it stands for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenChip {
    pub id: u32,
    pub piece: String,
    pub shown: TokenText,
}

/// One streamed generation, as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stream {
    /// The prompt as typed when the job started.
    pub prompt_text: String,
    pub prompt: Vec<TokenChip>,
    pub tokens: Vec<TokenChip>,
    pub text: String,
    /// idle, running, done or error
    pub state: &'static str,
    pub stats: String,
    pub error: Option<String>,
    /// `performance.now()` when the page asked for this generation, and when its first token arrived (for the
    /// page-load benchmark).
    pub requested_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    /// Speed of the finished generation, prefill included.
    pub tokens_per_s: Option<f64>,
    /// Prompt tokens per second up to the first new token.
    pub prefill_tokens_per_s: Option<f64>,
    /// New tokens per second after the first.
    pub decode_tokens_per_s: Option<f64>,
    /// WebGPU compute dispatches per token after the first.
    pub dispatches_per_token: Option<f64>,
}

impl Stream {
    /// Applies one event of this stream.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Prompt { ids, pieces, texts, .. } => {
                let prompt_text = std::mem::take(&mut self.prompt_text);
                let requested_ms = self.requested_ms.or_else(now_ms);
                let mut texts = texts.into_iter();
                let prompt = ids.into_iter().zip(pieces).map(|(id, piece)| TokenChip { id, piece, shown: texts.next().unwrap_or_default() }).collect();
                *self = Stream { prompt_text, requested_ms, prompt, state: "running", ..Stream::default() };
            }
            Event::Token { id, piece, text, shown, .. } => {
                if self.first_token_ms.is_none() {
                    self.first_token_ms = now_ms();
                }
                self.tokens.push(TokenChip { id, piece, shown });
                self.text.push_str(&text);
            }
            Event::Generated { tokens, seconds, prompt_tokens, first_token_seconds, dispatches_per_token, stop, .. } => {
                self.state = "done";
                let rate = if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
                self.tokens_per_s = Some(rate);
                let per_second = |n: usize, s: f64| (n > 0 && s > 0.0).then(|| n as f64 / s);
                self.prefill_tokens_per_s = per_second(prompt_tokens, first_token_seconds);
                self.decode_tokens_per_s = per_second(tokens.saturating_sub(1), seconds - first_token_seconds);
                self.dispatches_per_token = dispatches_per_token;
                let dispatches = dispatches_per_token.map(|d| format!(" · {d:.0} GPU dispatches/token")).unwrap_or_default();
                self.stats = format!("{tokens} tokens in {seconds:.2} s · {rate:.1} tokens/s{dispatches} · stopped: {}", stop.replace('_', " "));
            }
            Event::Failed { errors, .. } => {
                self.state = "error";
                self.error = Some(errors.join("; "));
            }
            _ => {}
        }
    }
}

/// The page's `performance.now()`.
pub fn now_ms() -> Option<f64> {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now())
}

/// Sampling controls shared by the playground and the studio.
#[derive(Debug, Clone, Copy)]
pub struct SamplingControls {
    pub max_tokens: RwSignal<usize>,
    pub temperature: RwSignal<f32>,
    pub top_k: RwSignal<usize>,
    pub top_p: RwSignal<f32>,
    pub seed: RwSignal<u64>,
}

impl SamplingControls {
    pub fn new() -> Self {
        Self { max_tokens: RwSignal::new(48), temperature: RwSignal::new(0.8), top_k: RwSignal::new(40), top_p: RwSignal::new(0.95), seed: RwSignal::new(7) }
    }

    pub fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_tokens.get_untracked(),
            sampling: Sampling {
                temperature: self.temperature.get_untracked(),
                top_k: self.top_k.get_untracked(),
                top_p: self.top_p.get_untracked(),
                seed: self.seed.get_untracked(),
            },
            stop_at_eos: true,
        }
    }
}

fn number_input<T: std::str::FromStr + ToString + Copy + Send + Sync + 'static>(
    label: &'static str,
    value: RwSignal<T>,
    step: &'static str,
    testid: &'static str,
) -> impl IntoView {
    view! {
        <label class="control">{label}
            <input type="number" step=step data-testid=testid prop:value=move || value.get().to_string()
                on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { value.set(v) }/>
        </label>
    }
}

/// Number inputs for `controls`: max tokens, temperature, top-k, top-p and seed.
#[component]
pub fn Controls(controls: SamplingControls) -> impl IntoView {
    view! {
        <div class="controls">
            {number_input("max new tokens", controls.max_tokens, "1", "max-tokens")}
            {number_input("temperature (0 = greedy)", controls.temperature, "0.1", "temperature")}
            {number_input("top-k (0 = off)", controls.top_k, "1", "top-k")}
            {number_input("top-p", controls.top_p, "0.05", "top-p")}
            {number_input("seed", controls.seed, "1", "seed")}
        </div>
    }
}

/// `stream`'s prompt and generated text (`testid`, `data-state`, timing attributes for the
/// benchmark), its stats and error, under an optional `title`.
#[component]
pub fn StreamView(stream: RwSignal<Stream>, testid: &'static str, #[prop(optional)] title: &'static str) -> impl IntoView {
    view! {
        <div class="stream">
            {(!title.is_empty()).then(|| view! { <h3>{title}</h3> })}
            <div class="output" data-testid=testid data-state=move || stream.with(|s| s.state) aria-live="polite"
                data-requested-ms=move || stream.with(|s| s.requested_ms.map(|t| format!("{t:.0}")))
                data-first-token-ms=move || stream.with(|s| s.first_token_ms.map(|t| format!("{t:.0}")))
                data-tokens-per-s=move || stream.with(|s| s.tokens_per_s.map(|t| format!("{t:.2}")))
                data-prefill-tokens-per-s=move || stream.with(|s| s.prefill_tokens_per_s.map(|t| format!("{t:.2}")))
                data-decode-tokens-per-s=move || stream.with(|s| s.decode_tokens_per_s.map(|t| format!("{t:.2}")))
                data-dispatches-per-token=move || stream.with(|s| s.dispatches_per_token.map(|t| format!("{t:.1}")))
                data-prompt-tokens=move || stream.with(|s| s.prompt.len())
                data-new-tokens=move || stream.with(|s| s.tokens.len())>
                <span class="prompt-text">{move || stream.with(|s| s.prompt_text.clone())}</span>
                <span class="generated">{move || stream.with(|s| s.text.clone())}</span>
            </div>
            <div class="stats">{move || stream.with(|s| s.stats.clone())}</div>
            {move || stream.with(|s| s.error.clone()).map(|e| view! { <div class="error" role="alert">{e}</div> })}
        </div>
    }
}

/// A long job (an extraction, a coefficient sweep, a report comparison) as the page follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobProgress {
    pub job: Job,
    /// Which of a view's jobs this is (a view shows each kind's bar where its button is).
    pub kind: &'static str,
    /// The part of the job under way ("running the pairs", "sweeping the layers").
    pub what: String,
    pub done: u64,
    pub total: Option<u64>,
    /// When the part under way began (`performance.now()`), for the estimate of the time left.
    part_began_ms: f64,
    /// Stop was pressed; the job ends at its next step.
    pub stopping: bool,
}

impl JobProgress {
    pub fn starting(job: Job, kind: &'static str, what: &str) -> Self {
        Self { job, kind, what: what.into(), done: 0, total: None, part_began_ms: now_ms().unwrap_or(0.0), stopping: false }
    }

    /// Applies a progress event; a new part starts its own clock.
    pub fn update(&mut self, what: String, done: u64, total: Option<u64>) {
        if what != self.what {
            self.part_began_ms = now_ms().unwrap_or(0.0);
            self.what = what;
        }
        self.done = done;
        self.total = total;
    }

    /// Seconds left in the part under way, at the pace of its steps so far.
    fn seconds_left(&self) -> Option<f64> {
        let total = self.total?;
        let elapsed = now_ms()? - self.part_began_ms;
        (self.done > 0 && total >= self.done).then(|| elapsed / self.done as f64 * (total - self.done) as f64 / 1000.0)
    }

    /// "running the pairs: 16 of 46 · about 12 s left".
    fn text(&self) -> String {
        let count = self.total.map_or_else(String::new, |t| format!(": {} of {t}", self.done));
        let left = match self.seconds_left() {
            _ if self.stopping => " · stopping…".to_string(),
            Some(s) if s >= 90.0 => format!(" · about {:.0} min left", s / 60.0),
            Some(s) => format!(" · about {:.0} s left", s.ceil()),
            None => String::new(),
        };
        format!("{}{count}{left}", self.what)
    }
}

/// The bar of `progress` while it holds a job of `kind` (`testid`, `role="status"`): a
/// `<progress>` (`value`/`max` attributes; indeterminate before the first step), what the job is
/// doing with an estimate of the time left, and Stop (`job-stop`), which ends the job at its next
/// step.
#[component]
pub fn JobBar(progress: RwSignal<Option<JobProgress>>, kind: &'static str, testid: &'static str) -> impl IntoView {
    let mine = move || progress.with(|p| p.as_ref().is_some_and(|p| p.kind == kind));
    let value = move || progress.with(|p| p.as_ref().filter(|p| p.total.is_some()).map(|p| p.done.to_string()));
    let max = move || progress.with(|p| p.as_ref().and_then(|p| p.total).map(|t| t.max(1).to_string()));
    let label = move || progress.with(|p| p.as_ref().map(|p| p.what.clone()).unwrap_or_default());
    let stop = move |_| {
        progress.update(|p| {
            if let Some(p) = p {
                p.stopping = true;
                cancel(p.job);
            }
        })
    };
    view! {
        <Show when=mine>
            <div class="job" data-testid=testid role="status">
                <progress value=value max=max aria-label=label></progress>
                <span class="job-text">{move || progress.with(|p| p.as_ref().map(JobProgress::text).unwrap_or_default())}</span>
                <button data-testid="job-stop" disabled=move || progress.with(|p| p.as_ref().is_some_and(|p| p.stopping)) on:click=stop>"Stop"</button>
            </div>
        </Show>
    }
}

/// An error line (`role="alert"`), shown while `message` holds one.
#[component]
pub fn ErrorLine(#[prop(into)] message: Signal<Option<String>>, #[prop(optional)] testid: Option<&'static str>) -> impl IntoView {
    move || message.get().map(|m| view! { <div class="error" role="alert" data-testid=testid>{m}</div> })
}

/// The name and bytes of the file picked in a file input (then cleared, so that picking the same
/// file again fires `change`); `None` when nothing was picked or it cannot be read.
pub async fn read_picked(ev: &leptos::ev::Event) -> Option<(String, Vec<u8>)> {
    let input: web_sys::HtmlInputElement = event_target(ev);
    let file = input.files()?.get(0)?;
    let buffer = JsFuture::from(file.array_buffer()).await.ok()?;
    input.set_value("");
    Some((file.name(), js_sys::Uint8Array::new(&buffer).to_vec()))
}
