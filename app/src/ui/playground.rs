//! Playground: prompt, streaming generation with sampling controls, tokens/s, the token view and
//! the residual stream per layer (norms and logit lens).

use analog_core::{GenerateOptions, Sampling};
use leptos::prelude::*;

use super::bridge::{cancel, done, send};
use super::charts::BarChart;
use super::{ModelStatus, state};
use crate::protocol::{Event, Job, LayerView, Request};

/// One streamed generation, as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stream {
    /// The prompt as typed when the job started.
    pub prompt_text: String,
    pub prompt: Vec<(u32, String)>,
    pub tokens: Vec<(u32, String)>,
    pub text: String,
    /// idle, running, done or error
    pub state: &'static str,
    pub stats: String,
    pub error: Option<String>,
    /// `performance.now()` when the first token arrived (for the page-load benchmark).
    pub first_token_ms: Option<f64>,
    /// Decode speed of the finished generation.
    pub tokens_per_s: Option<f64>,
}

impl Stream {
    /// Applies one event of this stream.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Prompt { ids, pieces, .. } => {
                let prompt_text = std::mem::take(&mut self.prompt_text);
                *self = Stream { prompt_text, prompt: ids.into_iter().zip(pieces).collect(), state: "running", ..Stream::default() };
            }
            Event::Token { id, piece, text, .. } => {
                if self.first_token_ms.is_none() {
                    self.first_token_ms = web_sys::window().and_then(|w| w.performance()).map(|p| p.now());
                }
                self.tokens.push((id, piece));
                self.text.push_str(&text);
            }
            Event::Generated { tokens, seconds, stop, .. } => {
                self.state = "done";
                let rate = if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
                self.tokens_per_s = Some(rate);
                self.stats = format!("{tokens} tokens in {seconds:.2} s · {rate:.1} tokens/s · stopped: {}", stop.replace('_', " "));
            }
            Event::Failed { errors, .. } => {
                self.state = "error";
                self.error = Some(errors.join("; "));
            }
            _ => {}
        }
    }
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

/// The generated text with the prompt, and the token view.
#[component]
pub fn StreamView(stream: RwSignal<Stream>, testid: &'static str, #[prop(optional)] title: &'static str) -> impl IntoView {
    view! {
        <div class="stream">
            {(!title.is_empty()).then(|| view! { <h3>{title}</h3> })}
            <div class="output" data-testid=testid data-state=move || stream.with(|s| s.state) aria-live="polite"
                data-first-token-ms=move || stream.with(|s| s.first_token_ms.map(|t| format!("{t:.0}")))
                data-tokens-per-s=move || stream.with(|s| s.tokens_per_s.map(|t| format!("{t:.2}")))>
                <span class="prompt-text">{move || stream.with(|s| s.prompt_text.clone())}</span>
                <span class="generated">{move || stream.with(|s| s.text.clone())}</span>
            </div>
            <div class="stats">{move || stream.with(|s| s.stats.clone())}</div>
            {move || stream.with(|s| s.error.clone()).map(|e| view! { <div class="error" role="alert">{e}</div> })}
        </div>
    }
}

#[component]
pub fn TokenView(stream: RwSignal<Stream>) -> impl IntoView {
    let chips = move || {
        stream.with(|s| {
            let prompt = s.prompt.iter().map(|(id, piece)| (id, piece, true));
            let generated = s.tokens.iter().map(|(id, piece)| (id, piece, false));
            prompt
                .chain(generated)
                .map(|(id, piece, is_prompt)| {
                    let shown = piece.replace('Ġ', "␣").replace('▁', "␣").replace('\n', "⏎");
                    view! { <span class="token" class:prompt=is_prompt title=format!("id {id}")><b>{shown}</b><small>{id.to_string()}</small></span> }
                })
                .collect_view()
        })
    };
    view! {
        <details class="tokens" open>
            <summary>"Tokens (pieces and ids; prompt tokens shaded)"</summary>
            <div class="token-list" data-testid="token-view">{chips}</div>
        </details>
    }
}

#[component]
pub fn Playground() -> impl IntoView {
    let state = state();
    let controls = SamplingControls::new();
    let stream = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let running: RwSignal<Option<Job>> = RwSignal::new(None);
    let lens: RwSignal<Vec<LayerView>> = RwSignal::new(Vec::new());
    let ready = move || matches!(state.model.get(), ModelStatus::Ready { .. });

    let generate = move || {
        if running.get_untracked().is_some() || !ready() {
            return;
        }
        let prompt = state.prompt.get_untracked();
        stream.set(Stream { state: "running", prompt_text: prompt.clone(), ..Stream::default() });
        let options = controls.options();
        let job = send(
            |job| Request::Generate { job, prompt, options, steer: Vec::new() },
            &[],
            move |event| {
                let finished = matches!(event, Event::Generated { .. } | Event::Failed { .. });
                let job = event_job(&event);
                stream.update(|s| s.apply(event));
                if finished {
                    running.set(None);
                    done(job);
                }
            },
        );
        running.set(Some(job));
    };
    let inspect = move || {
        let prompt = state.prompt.get_untracked();
        send(
            |job| Request::Inspect { job, prompt },
            &[],
            move |event| match event {
                Event::Inspected { job, layers } => {
                    lens.set(layers);
                    done(job);
                }
                Event::Failed { job, errors } => {
                    stream.update(|s| s.error = Some(errors.join("; ")));
                    done(job);
                }
                _ => {}
            },
        );
    };
    view! {
        <section class="view" aria-labelledby="play-title">
            <h2 id="play-title">"Playground"</h2>
            <p class="hint">"Type a prompt and generate. Ctrl+Enter generates; the model runs in a worker, so the page stays responsive."</p>
            <textarea data-testid="prompt" rows="3" aria-label="prompt"
                prop:value=move || state.prompt.get()
                on:input=move |ev| state.prompt.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) { ev.prevent_default(); generate() }></textarea>
            <Controls controls=controls/>
            <div class="buttons">
                <button data-testid="generate" class="primary" disabled=move || !ready() || running.get().is_some() on:click=move |_| generate()>"Generate"</button>
                <button data-testid="stop" disabled=move || running.get().is_none() on:click=move |_| if let Some(job) = running.get_untracked() { cancel(job) }>"Stop"</button>
                <button data-testid="inspect" disabled=move || !ready() on:click=move |_| inspect()>"Inspect the residual stream"</button>
            </div>
            <StreamView stream=stream testid="output"/>
            <TokenView stream=stream/>
            <Show when=move || !lens.with(Vec::is_empty)>
                <h3>"Residual stream at the prompt's last token"</h3>
                <div class="lens">
                    <BarChart values=Signal::derive(move || lens.with(|l| l.iter().map(|r| (format!("L{}", r.layer), f64::from(r.resid_norm))).collect()))
                        title="‖resid_post‖ per layer"/>
                    <table data-testid="logit-lens">
                        <thead><tr><th>"layer"</th><th>"logit lens: most likely next tokens"</th></tr></thead>
                        <tbody>
                            {move || lens.get().into_iter().map(|r| view! {
                                <tr><td>{r.layer}</td><td>{r.top.iter().map(|(t, p)| format!("{t:?} {:.0}%", p * 100.0)).collect::<Vec<_>>().join(" · ")}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </Show>
        </section>
    }
}

pub fn event_job(event: &Event) -> Job {
    event.job()
}
