//! Step 3 of the studio: the layer, the coefficient and the prompt, then baseline and steered
//! generations side by side from the same seed.

use leptos::prelude::*;

use super::{StudioState, model_ready, studio};
use crate::protocol::{Event, Request};
use crate::ui::bridge::{done, send};
use crate::ui::widgets::{Controls, JobBar, SamplingControls, Stream, StreamView};
use crate::ui::{AppState, ModelStatus, state};

/// Streams the baseline (stream 0) and the steered generation (stream 1) of the prompt; with
/// `chat`, of the prompt as a user message in the model's chat format (the outputs are replies).
fn compare(studio: StudioState, app: AppState, controls: SamplingControls, chat: bool, baseline: RwSignal<Stream>, steered: RwSignal<Stream>) {
    let Some(steer) = studio.steer(app) else { return studio.fail("extract or load a vector first") };
    let prompt = app.prompt.get_untracked();
    let shown = if chat { String::new() } else { prompt.clone() };
    baseline.set(Stream { state: "running", prompt_text: shown.clone(), ..Stream::default() });
    steered.set(Stream { state: "running", prompt_text: shown, ..Stream::default() });
    let options = controls.options();
    send(
        |job| Request::Compare { job, prompt, options, steer, chat },
        &[],
        move |event| {
            let stream = match &event {
                Event::Prompt { stream, .. } | Event::Token { stream, .. } | Event::Generated { stream, .. } => *stream,
                _ => 0,
            };
            let last = matches!(event, Event::Generated { stream: 1, .. });
            let failed = matches!(event, Event::Failed { .. });
            let job = event.job();
            if failed {
                baseline.update(|b| b.apply(event.clone()));
                steered.update(|b| b.apply(event));
            } else if stream == 0 {
                baseline.update(|b| b.apply(event));
            } else {
                steered.update(|b| b.apply(event));
            }
            if last || failed {
                done(job);
            }
        },
    );
}

/// "3 · Steer": layer (`layer`), coefficient (`coef`) and normalisation, the prompt
/// (`steer-prompt`; sent in the chat format with `steer-chat`, shown for models with a chat
/// template) and sampling, the two buttons (`steer-generate`, `coef-sweep`, its progress `coef-progress`), and the baseline and
/// steered outputs (`baseline-output`, `steered-output`). No props.
#[component]
pub fn SteerPanel() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let controls = SamplingControls::new();
    let baseline = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let steered = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let normalise = studio.normalise;
    let chat = RwSignal::new(false);
    let chatting = move || chat.get_untracked() && app.model.with_untracked(ModelStatus::has_chat_template);
    let no_vector = move || !model_ready(app) || studio.vector.with(Option::is_none);
    let coef_label = move || {
        if normalise.get() {
            format!("Coefficient: {:.2} × the layer's mean residual norm", app.coef.get())
        } else {
            format!("Coefficient: {:.2} × the raw vector", app.coef.get())
        }
    };
    view! {
        <h3>"3 · Steer"</h3>
        <div class="controls">
            <label class="control">"Layer"
                <input type="number" min="0" data-testid="layer" prop:value=move || app.layer.get().to_string()
                    on:change=move |ev| if let Ok(l) = event_target_value(&ev).parse() { app.layer.set(l) }/>
            </label>
            <label class="control wide">{coef_label}
                <input type="range" data-testid="coef" min=move || if normalise.get() { "-2" } else { "-16" } max=move || if normalise.get() { "2" } else { "16" }
                    step=move || if normalise.get() { "0.05" } else { "0.5" }
                    prop:value=move || app.coef.get().to_string()
                    on:input=move |ev| if let Ok(c) = event_target_value(&ev).parse() { app.coef.set(c) }/>
            </label>
            <label class="control"><input type="checkbox" prop:checked=normalise on:change=move |ev| normalise.set(event_target_checked(&ev))/>" normalised"</label>
            <Show when=move || app.model.with(ModelStatus::has_chat_template)>
                <label class="control" title="Send the prompt as one user message in the model's chat format; the outputs are the assistant's replies">
                    <input type="checkbox" data-testid="steer-chat" prop:checked=chat on:change=move |ev| chat.set(event_target_checked(&ev))/>" chat format"
                </label>
            </Show>
        </div>
        <textarea rows="2" aria-label="prompt" data-testid="steer-prompt" prop:value=move || app.prompt.get() on:input=move |ev| app.prompt.set(event_target_value(&ev))></textarea>
        <Controls controls=controls/>
        <div class="buttons">
            <button data-testid="steer-generate" class="primary" disabled=no_vector on:click=move |_| compare(studio, app, controls, chatting(), baseline, steered)>"Generate baseline and steered"</button>
            <button data-testid="coef-sweep" disabled=move || no_vector() || studio.progress.with(Option::is_some) on:click=move |_| super::sweep::measure(studio, app)>"Measure across coefficients"</button>
        </div>
        <JobBar progress=studio.progress kind="sweep" testid="coef-progress"/>
        <div class="grid2">
            <StreamView stream=baseline testid="baseline-output" title="Baseline"/>
            <StreamView stream=steered testid="steered-output" title="Steered"/>
        </div>
    }
}
