//! Step 1 (continued) and 2 of the studio: extracting a vector at every layer (or importing one),
//! the vector's status with save and export, and the layer sweep that says where the concept lives.

use analog_core::steering::{Aggregation, Method, PairFormat, SteeringVector};
use leptos::prelude::*;

use super::{model_ready, studio};
use crate::protocol::{Event, Request};
use crate::ui::bridge::{done, send};
use crate::ui::charts::{Axis, LineChart, Series};
use crate::ui::store::{SavedVector, download};
use crate::ui::widgets::{JobBar, read_picked};
use crate::ui::{ModelStatus, state};

/// A method's short name (in the vector's status and saved names).
fn method_name(m: Method) -> &'static str {
    match m {
        Method::MeanDiff => "mean-diff",
        Method::Pca => "pca",
        Method::PcaCenter => "pca-center",
        Method::Probe => "probe",
        Method::Imported => "imported",
    }
}

/// The method and aggregation pickers, the chat format for instruct models (`extract-chat`), "Extract" (`extract`), vector import (`vector-file`), the
/// job's progress (`steer-progress`) and the vector's status. No props.
#[component]
pub fn Extract() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let method = RwSignal::new(Method::MeanDiff);
    let aggregation = RwSignal::new(Aggregation::Last);
    let chat = RwSignal::new(false);
    let extract = move || {
        let pairs = match studio.pair_set() {
            Ok(set) => set.to_jsonl(),
            Err(e) => return studio.fail(e.to_string()),
        };
        let (method, aggregation) = (method.get_untracked(), aggregation.get_untracked());
        let chat = chat.get_untracked() && app.model.with_untracked(ModelStatus::has_chat_template);
        let job = send(
            |job| Request::Extract { job, pairs, format: PairFormat::Jsonl, method, aggregation, chat },
            &[],
            move |event| {
                if let Some(Event::Extracted { job, vector, sweep }) = studio.progress_or_failure(event) {
                    // Default layer: the best held-out separation.
                    if let Some(best) = sweep.iter().max_by(|a, b| a.cohens_d.abs().total_cmp(&b.cohens_d.abs())) {
                        app.layer.set(best.layer);
                    }
                    studio.vector.set(Some(vector));
                    studio.layer_sweep.set(sweep);
                    studio.progress.set(None);
                    studio.message.set(None);
                    done(job);
                }
            },
        );
        studio.started(job, "extract", "starting");
    };
    let import = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((name, bytes)) = read_picked(&ev).await else { return };
            let parsed = if name.ends_with(".gguf") { analog_core::steering::gguf::import(&bytes) } else { SteeringVector::from_json(&bytes) };
            // A vector from another model is refused now, not at the first generation.
            let fits = |v: SteeringVector| match app.model.get_untracked() {
                ModelStatus::Ready { info, .. } => v.check_fits(info.d_model, info.n_layers).map(|()| v),
                _ => Ok(v),
            };
            match parsed.and_then(fits) {
                Ok(v) => {
                    studio.vector.set(Some(v));
                    studio.layer_sweep.set(Vec::new());
                    studio.message.set(None);
                }
                Err(e) => studio.fail(format!("{name}: {e}")),
            }
        });
    };
    view! {
        <div class="controls">
            <label class="control">"Method"
                <select on:change=move |ev| method.set(match event_target_value(&ev).as_str() { "pca" => Method::Pca, "pca-center" => Method::PcaCenter, "probe" => Method::Probe, _ => Method::MeanDiff })>
                    <option value="mean-diff">"mean difference (CAA)"</option>
                    <option value="pca">"PCA of differences"</option>
                    <option value="pca-center">"PCA of centred pairs"</option>
                    <option value="probe">"logistic probe"</option>
                </select>
            </label>
            <label class="control">"Aggregation"
                <select on:change=move |ev| aggregation.set(if event_target_value(&ev) == "mean" { Aggregation::Mean } else { Aggregation::Last })>
                    <option value="last">"last token"</option>
                    <option value="mean">"mean over tokens"</option>
                </select>
            </label>
            <Show when=move || app.model.with(ModelStatus::has_chat_template)>
                <label class="control" title="Send each prompt as the user's turn in the model's chat format and read the activation where the assistant is about to reply (a CAA A/B item: its question as the user's turn, its answer opening the reply)">
                    <input type="checkbox" data-testid="extract-chat" prop:checked=chat on:change=move |ev| chat.set(event_target_checked(&ev))/>" chat format"
                </label>
            </Show>
        </div>
        <div class="buttons">
            <button data-testid="extract" class="primary" disabled=move || !model_ready(app) || studio.progress.with(Option::is_some) on:click=move |_| extract()>"Extract"</button>
            <label class="file-button">"Import vector (JSON/GGUF)…"<input type="file" data-testid="vector-file" accept=".json,.gguf" on:change=import/></label>
        </div>
        <JobBar progress=studio.progress kind="extract" testid="steer-progress"/>
        <VectorStatus/>
    }
}

/// The vector in use (`vector-status`, `data-state` ready/none): its shape and method, with save
/// (`save-vector`) and export as JSON or GGUF. No props.
#[component]
fn VectorStatus() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let save = move |_| {
        let Some(v) = studio.vector.get_untracked() else { return };
        let name = format!("{} · {} · {}", app.pair_set.get_untracked().trim_start_matches("saved:"), method_name(v.method), v.model.id);
        app.saved.update(|s| {
            s.vectors.retain(|x| x.name != name);
            s.vectors.push(SavedVector { name, vector: v });
        });
    };
    let shown = move || {
        studio.vector.get().map(|v| {
            let json = v.to_json();
            let gguf_vector = v.clone();
            view! {
                <p>{format!("Vector: {} layers × d_model {} · {} · {} pairs", v.directions.len(), v.model.d_model, method_name(v.method), v.pairs.n_pairs)}</p>
                <div class="buttons">
                    <button data-testid="save-vector" on:click=save>"Save vector"</button>
                    <button data-testid="export-json" on:click=move |_| download("steering-vector.json", "application/json", json.as_bytes())>"Export JSON"</button>
                    <button data-testid="export-gguf" on:click=move |_| download("steering-vector.gguf", "application/octet-stream", &analog_core::steering::gguf::export(&gguf_vector, "analog-explorer"))>"Export GGUF"</button>
                </div>
            }
        })
    };
    view! {
        <div data-testid="vector-status" data-state=move || if studio.vector.with(Option::is_some) { "ready" } else { "none" }>
            {shown}
        </div>
    }
}

/// "2 · Where the concept lives": the held-out layer sweep as a chart (`sweep-chart`) and a table,
/// the chosen layer highlighted. No props.
#[component]
pub fn LayerSweep() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let series = Signal::derive(move || {
        studio.layer_sweep.with(|s| {
            let line = |name: &str, class, dashed, value: &dyn Fn(&analog_core::steering::SweepRow) -> f32| Series {
                name: name.into(),
                class,
                points: s.iter().map(|r| (r.layer as f64, f64::from(value(r)))).collect(),
                dashed,
            };
            vec![
                line("probe accuracy", "s-local", false, &|r| r.probe_accuracy),
                line("cos(mean-diff, probe)", "s-native", false, &|r| r.cos_mean_diff_probe),
                line("cos(mean-diff, PCA)", "s-mapped", true, &|r| r.cos_mean_diff_pca.abs()),
            ]
        })
    });
    let rows = move || {
        studio
            .layer_sweep
            .get()
            .into_iter()
            .map(|r| view! {
                <tr class:chosen=move || app.layer.get() == r.layer><td>{r.layer}</td><td>{format!("{:.2}", r.probe_accuracy)}</td><td>{format!("{:.2}", r.cohens_d)}</td><td>{format!("{:.2}", r.mean_diff_norm)}</td><td>{format!("{:.2}", r.mean_resid_norm)}</td></tr>
            })
            .collect_view()
    };
    view! {
        <h3>"2 · Where the concept lives"</h3>
        <LineChart testid="sweep-chart" title="Layer sweep on held-out pairs (click a point to steer at its layer)".into() series=series
            x_axis=Axis::LAYER y_axis=Axis::value("accuracy / cosine")
            chosen=Signal::derive(move || Some((app.layer.get() as f64, format!("steering layer {}", app.layer.get()))))
            on_pick=Callback::new(move |x: f64| app.layer.set(x.round().max(0.0) as usize))/>
        <table class="sweep">
            <thead><tr><th>"layer"</th><th>"probe acc."</th><th>"Cohen's d"</th><th>"‖mean diff‖"</th><th>"mean ‖resid‖"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
