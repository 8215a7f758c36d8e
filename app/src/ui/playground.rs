//! Playground: prompt (or, for models with a chat template, a chat message), streaming generation
//! with sampling controls, tokens/s, the token view and the residual stream per layer (norms and
//! logit lens).

use leptos::prelude::*;

use super::bridge::{cancel, done, send};
use super::charts::BarChart;
use super::widgets::{Controls, SamplingControls, Stream, StreamView, now_ms};
use super::{ModelStatus, state};
use crate::protocol::{Event, Job, LayerView, Request};

/// The prompt and generated tokens of `stream` as chips (piece and id; prompt tokens shaded).
#[component]
pub fn TokenView(stream: RwSignal<Stream>) -> impl IntoView {
    let chips = move || {
        stream.with(|s| {
            let prompt = s.prompt.iter().map(|(id, piece)| (id, piece, true));
            let generated = s.tokens.iter().map(|(id, piece)| (id, piece, false));
            prompt
                .chain(generated)
                .map(|(id, piece, is_prompt)| {
                    let shown = piece.replace(['Ġ', '▁'], "␣").replace('\n', "⏎");
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

/// The "Chat" toggle (`chat-mode`), shown while the loaded model has a chat template; `chat`
/// turns on with each such model loaded.
#[component]
pub fn ChatToggle(chat: RwSignal<bool>) -> impl IntoView {
    let state = state();
    Effect::new(move |_| {
        if state.model.with(ModelStatus::has_chat_template) {
            chat.set(true);
        }
    });
    view! {
        <Show when=move || state.model.with(ModelStatus::has_chat_template)>
            <label class="toggle" title="Send the prompt as one user message in the model's chat format; the output is the assistant's reply">
                <input type="checkbox" data-testid="chat-mode" prop:checked=chat on:change=move |ev| chat.set(event_target_checked(&ev))/>"Chat: send the text as a user message in the model's chat template"
            </label>
        </Show>
    }
}

/// The playground view: prompt, sampling, Generate/Stop/Inspect, the streamed output, the token
/// view and the residual stream per layer (norms and logit lens). No props.
#[component]
pub fn Playground() -> impl IntoView {
    let state = state();
    let controls = SamplingControls::new();
    let stream = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let running: RwSignal<Option<Job>> = RwSignal::new(None);
    let lens: RwSignal<Vec<LayerView>> = RwSignal::new(Vec::new());
    let chat = RwSignal::new(true);
    let ready = move || matches!(state.model.get(), ModelStatus::Ready { .. });
    let chatting = move || chat.get() && state.model.with(ModelStatus::has_chat_template);

    let generate = move || {
        if running.get_untracked().is_some() || !ready() {
            return;
        }
        let prompt = state.prompt.get_untracked();
        let chat = chat.get_untracked() && state.model.with_untracked(ModelStatus::has_chat_template);
        // In chat mode the output is the assistant's reply alone (the token view shows the
        // conversation as the template wrote it).
        stream.set(Stream { state: "running", prompt_text: if chat { String::new() } else { prompt.clone() }, requested_ms: now_ms(), ..Stream::default() });
        let options = controls.options();
        let job = send(
            |job| Request::Generate { job, prompt, options, steer: Vec::new(), chat },
            &[],
            move |event| {
                let finished = matches!(event, Event::Generated { .. } | Event::Failed { .. });
                let job = event.job();
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
            <p class="hint">
                {move || if chatting() { "Chat mode: your text is sent as a message to the model, and the output is its reply. " } else { "Type a prompt and generate. " }}
                "Ctrl+Enter generates; the model runs in a worker, so the page stays responsive."
            </p>
            <ChatToggle chat=chat/>
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
