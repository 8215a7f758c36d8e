//! Playground: prompt (or, for models with a chat template, a chat message), streaming generation
//! with sampling controls, tokens/s, the token view and the residual stream per layer (norms and
//! logit lens).

use analog_core::TokenText;
use leptos::prelude::*;

use super::bridge::{cancel, done, send};
use super::charts::{Axis, BarChart};
use super::widgets::{Controls, SamplingControls, Stream, StreamView, TokenChip, now_ms};
use super::{ModelStatus, state};
use crate::protocol::{Event, Job, LayerView, Request};

/// Text as a token chip shows it: a space as `␣`, a newline as `↵`, a tab as `⇥` and other
/// control characters as their code, so that every character is visible.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => "␣".to_string(),
            '\n' => "↵".to_string(),
            '\t' => "⇥".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// A token's text as shown: with [`visible`] markers (a special token's text is its name).
fn spelled(shown: &TokenText) -> String {
    if shown.special { shown.text.clone() } else { visible(&shown.text) }
}

/// A token's bytes that do not form a character yet, as hex in `‹›`; `None` when there are none.
fn partial_hex(shown: &TokenText) -> Option<String> {
    (!shown.partial.is_empty()).then(|| format!("‹{}›", shown.partial.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")))
}

/// What a token stands for, on one line: [`spelled`], then [`partial_hex`].
fn label(shown: &TokenText) -> String {
    spelled(shown) + &partial_hex(shown).unwrap_or_default()
}

/// One token: what it stands for (special tokens by name, bytes that do not form a character
/// yet as hex in `‹›`), its id below, and its vocabulary piece on hover.
fn chip(chip: TokenChip, is_prompt: bool) -> impl IntoView {
    let TokenChip { id, piece, shown } = chip;
    let partial = partial_hex(&shown);
    let title = format!("piece {piece:?} · id {id}{}", if partial.is_some() { " · bytes of a character that a later token completes" } else { "" });
    let text = spelled(&shown);
    view! {
        <span class="token" class:prompt=is_prompt class:special=shown.special title=title data-id=id>
            <b>{text}{partial.map(|p| view! { <span class="partial">{p}</span> })}</b>
            <small>{id.to_string()}</small>
        </span>
    }
}

/// The prompt and generated tokens of `stream` as chips (prompt tokens shaded); chips already
/// shown stay as they are while new tokens stream in.
#[component]
pub fn TokenView(stream: RwSignal<Stream>) -> impl IntoView {
    let chips = move || {
        stream.with(|s| {
            let prompt = s.prompt.iter().map(|c| (c, true));
            let generated = s.tokens.iter().map(|c| (c, false));
            prompt.chain(generated).enumerate().map(|(i, (c, is_prompt))| (i, is_prompt, c.clone())).collect::<Vec<_>>()
        })
    };
    view! {
        <details class="tokens" open>
            <summary>"Tokens: the text each stands for (␣ space, ↵ newline, ‹hex› part of a character), its id below; prompt shaded, hover for the vocabulary piece"</summary>
            <div class="token-list" data-testid="token-view">
                <For each=chips key=|(i, is_prompt, c)| format!("{i}:{is_prompt}:{}:{}:{:?}", c.id, c.shown.text, c.shown.partial) let((_, is_prompt, c))>
                    {chip(c, is_prompt)}
                </For>
            </div>
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
                    <BarChart values=Signal::derive(move || lens.with(|l| l.iter().map(|r| (r.layer as f64, f64::from(r.resid_norm))).collect()))
                        title="‖resid_post‖ per layer" testid="resid-chart" x_axis=Axis::LAYER y_axis=Axis::value("‖resid_post‖")
                        chosen=Signal::derive(move || Some((state.layer.get() as f64, format!("steering layer {}", state.layer.get()))))/>
                    <table data-testid="logit-lens">
                        <thead><tr><th>"layer"</th><th>"logit lens: most likely next tokens"</th></tr></thead>
                        <tbody>
                            {move || lens.get().into_iter().map(|r| view! {
                                <tr><td>{r.layer}</td><td>{r.top.iter().map(|(t, p)| format!("{} {:.0}%", label(t), p * 100.0)).collect::<Vec<_>>().join(" · ")}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </Show>
        </section>
    }
}
