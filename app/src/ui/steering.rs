//! Steering studio: pick or write contrastive pairs, extract a vector at every layer, read the
//! layer sweep, then steer: baseline and steered generations side by side (same seed) and the
//! metrics across coefficients. Vectors are saved, exported (JSON, GGUF) and imported.

use analog_core::steering::{Aggregation, Method, Pair, PairSet, SteeringVector, SweepRow};
use leptos::prelude::*;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::bridge::{done, send};
use super::charts::{LineChart, Series};
use super::playground::{Controls, SamplingControls, Stream, StreamView, event_job};
use super::store::{SavedPairs, SavedResult, SavedVector, download};
use super::{ModelStatus, state};
use crate::protocol::{Event, Request, Steer};

/// A built-in pair set's entry in `datasets/index.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub file: String,
    pub concept: String,
    pub target_tokens: Vec<String>,
    pub counter_tokens: Vec<String>,
    pub lexicon: Vec<String>,
    pub neutral_prompts: Vec<String>,
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("{e:?}"))?.unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    Ok(text.as_string().unwrap_or_default())
}

async fn read_picked(ev: &leptos::ev::Event) -> Option<(String, Vec<u8>)> {
    let input: web_sys::HtmlInputElement = event_target(ev);
    let file = input.files()?.get(0)?;
    let buffer = JsFuture::from(file.array_buffer()).await.ok()?;
    input.set_value("");
    Some((file.name(), js_sys::Uint8Array::new(&buffer).to_vec()))
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::MeanDiff => "mean-diff",
        Method::Pca => "pca",
        Method::PcaCenter => "pca-center",
        Method::Probe => "probe",
        Method::Imported => "imported",
    }
}

#[component]
pub fn Studio() -> impl IntoView {
    let state = state();
    let datasets: RwSignal<Vec<Dataset>> = RwSignal::new(Vec::new());
    let rows: RwSignal<Vec<Pair>> = RwSignal::new(Vec::new());
    let message: RwSignal<Option<String>> = RwSignal::new(None);
    let method = RwSignal::new(Method::MeanDiff);
    let aggregation = RwSignal::new(Aggregation::Last);
    let vector: RwSignal<Option<SteeringVector>> = RwSignal::new(None);
    let sweep: RwSignal<Vec<SweepRow>> = RwSignal::new(Vec::new());
    let progress: RwSignal<Option<String>> = RwSignal::new(None);
    let normalise = RwSignal::new(true);
    let controls = SamplingControls::new();
    let baseline = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let steered = RwSignal::new(Stream { state: "idle", ..Stream::default() });
    let metric_rows: RwSignal<Option<serde_json::Value>> = RwSignal::new(None);
    let target = RwSignal::new(String::new());
    let counter = RwSignal::new(String::new());
    let lexicon = RwSignal::new(String::new());
    let save_name = RwSignal::new(String::new());
    let ready = move || matches!(state.model.get(), ModelStatus::Ready { .. });

    // Load the chosen set: a built-in one from datasets/, or a saved one.
    let select_set = move |id: String| {
        state.pair_set.set(id.clone());
        if let Some(saved) = state.saved.get_untracked().pair_sets.into_iter().find(|p| format!("saved:{}", p.name) == id) {
            match PairSet::from_jsonl(&saved.jsonl) {
                Ok(set) => rows.set(set.pairs),
                Err(e) => message.set(Some(e.to_string())),
            }
            return;
        }
        if id == "custom" {
            rows.set(vec![Pair { positive: String::new(), negative: String::new(), label: None }]);
            return;
        }
        // A set the URL names but this browser no longer has (deleted, another browser): the first
        // built-in one instead of an empty table.
        let list = datasets.get_untracked();
        let Some(d) = list.iter().find(|d| d.id == id).or(list.first()).cloned() else { return };
        state.pair_set.set(d.id.clone());
        target.set(d.target_tokens.first().cloned().unwrap_or_default());
        counter.set(d.counter_tokens.first().cloned().unwrap_or_default());
        lexicon.set(d.lexicon.join(", "));
        leptos::task::spawn_local(async move {
            match fetch_text(&format!("datasets/{}", d.file)).await.and_then(|t| PairSet::from_jsonl(&t).map_err(|e| e.to_string())) {
                Ok(set) => {
                    rows.set(set.pairs);
                    message.set(None);
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    leptos::task::spawn_local(async move {
        match fetch_text("datasets/index.json").await.and_then(|t| serde_json::from_str::<Vec<Dataset>>(&t).map_err(|e| e.to_string())) {
            Ok(list) => {
                datasets.set(list);
                select_set(state.pair_set.get_untracked());
            }
            Err(e) => message.set(Some(format!("cannot read the built-in pair sets: {e}"))),
        }
    });

    let pair_set = move || PairSet::new(rows.get_untracked().into_iter().filter(|p| !p.positive.trim().is_empty() && !p.negative.trim().is_empty()).collect());

    let extract = move || {
        let set = match pair_set() {
            Ok(set) => set,
            Err(e) => return message.set(Some(e.to_string())),
        };
        let pairs = set.to_jsonl();
        let (m, a) = (method.get_untracked(), aggregation.get_untracked());
        progress.set(Some("starting".into()));
        send(
            |job| Request::Extract { job, pairs, csv: false, method: m, aggregation: a },
            &[],
            move |event| match event {
                Event::Progress { done, total, what, .. } => progress.set(Some(format!("{what}: {done}/{}", total.unwrap_or(0)))),
                Event::Extracted { job, vector: v, sweep: s } => {
                    // Default layer: the best held-out separation.
                    if let Some(best) = s.iter().max_by(|a, b| a.cohens_d.abs().total_cmp(&b.cohens_d.abs())) {
                        state.layer.set(best.layer);
                    }
                    vector.set(Some(v));
                    sweep.set(s);
                    progress.set(None);
                    message.set(None);
                    done(job);
                }
                Event::Failed { job, errors } => {
                    progress.set(None);
                    message.set(Some(errors.join("; ")));
                    done(job);
                }
                _ => {}
            },
        );
    };

    let steer = move || -> Option<Steer> {
        let v = vector.get_untracked()?;
        Some(Steer { vector: v, layer: state.layer.get_untracked(), coef: state.coef.get_untracked(), normalise: normalise.get_untracked() })
    };

    let compare = move || {
        let Some(s) = steer() else { return message.set(Some("extract or load a vector first".into())) };
        let prompt = state.prompt.get_untracked();
        baseline.set(Stream { state: "running", prompt_text: prompt.clone(), ..Stream::default() });
        steered.set(Stream { state: "running", prompt_text: prompt.clone(), ..Stream::default() });
        let options = controls.options();
        send(
            |job| Request::Compare { job, prompt, options, steer: s },
            &[],
            move |event| {
                let stream = match &event {
                    Event::Prompt { stream, .. } | Event::Token { stream, .. } | Event::Generated { stream, .. } => *stream,
                    _ => 0,
                };
                let last = matches!(event, Event::Generated { stream: 1, .. });
                let failed = matches!(event, Event::Failed { .. });
                let job = event_job(&event);
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
    };

    let sweep_coefs = move || {
        let Some(s) = steer() else { return message.set(Some("extract or load a vector first".into())) };
        let set_id = state.pair_set.get_untracked();
        let prompts =
            datasets.get_untracked().into_iter().find(|d| d.id == set_id).map(|d| d.neutral_prompts).unwrap_or_else(|| vec![state.prompt.get_untracked()]);
        let (t, c) = (target.get_untracked(), counter.get_untracked());
        if t.is_empty() || c.is_empty() {
            return message.set(Some("name a target and a counter word for the logit-difference metric".into()));
        }
        let lexicon: Vec<String> = lexicon.get_untracked().split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
        let pairs = match pair_set() {
            Ok(set) => set.to_jsonl(),
            Err(e) => return message.set(Some(e.to_string())),
        };
        let id = set_id.trim_start_matches("saved:").to_string();
        let concept = datasets.get_untracked().into_iter().find(|d| d.id == set_id).map_or_else(|| id.clone(), |d| d.concept);
        let coefs = if s.normalise { vec![-1.0, -0.5, 0.0, 0.25, 0.5, 1.0] } else { vec![-8.0, -4.0, 0.0, 2.0, 4.0, 8.0] };
        progress.set(Some("measuring coefficients".into()));
        send(
            |job| Request::Sweep { job, steer: s, coefs, target: t, counter: c, prompts, lexicon, pairs, id, concept },
            &[],
            move |event| match event {
                Event::Progress { done, total, what, .. } => progress.set(Some(format!("{what}: {done}/{}", total.unwrap_or(0)))),
                Event::Swept { job, rows, intervention } => {
                    metric_rows.set(Some(serde_json::json!({ "rows": rows, "intervention": intervention })));
                    progress.set(None);
                    done(job);
                }
                Event::Failed { job, errors } => {
                    progress.set(None);
                    message.set(Some(errors.join("; ")));
                    done(job);
                }
                _ => {}
            },
        );
    };

    let metric_series = move |metric: &'static str| {
        let rows = metric_rows.get().unwrap_or_default();
        let rows = rows["rows"].as_array().cloned().unwrap_or_default();
        let points = |which: &str| rows.iter().filter_map(|r| Some((r["coef"].as_f64()?, r[which][metric].as_f64()?))).collect::<Vec<_>>();
        vec![
            Series { name: "steered".into(), class: "s-local", points: points("steered"), dashed: false },
            Series { name: "random, equal norm".into(), class: "s-random", points: points("random"), dashed: true },
        ]
    };

    let options = move || {
        let built_in = datasets.get().into_iter().map(|d| {
            let label = format!("{} — {}", d.id, d.concept);
            view! { <option value=d.id.clone()>{label}</option> }
        });
        let saved =
            state.saved.get().pair_sets.into_iter().map(|p| view! { <option value=format!("saved:{}", p.name)>{format!("saved: {}", p.name)}</option> });
        (built_in.collect_view(), saved.collect_view(), view! { <option value="custom">"write your own…"</option> })
    };

    let table = move || {
        rows.get()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                view! {
                    <tr>
                        <td><input type="text" aria-label=format!("positive {}", i + 1) prop:value=p.positive.clone()
                            on:change=move |ev| rows.update(|r| if let Some(row) = r.get_mut(i) { row.positive = event_target_value(&ev) })/></td>
                        <td><input type="text" aria-label=format!("negative {}", i + 1) prop:value=p.negative.clone()
                            on:change=move |ev| rows.update(|r| if let Some(row) = r.get_mut(i) { row.negative = event_target_value(&ev) })/></td>
                        <td><button class="icon" aria-label=format!("remove pair {}", i + 1) on:click=move |_| rows.update(|r| { if i < r.len() { r.remove(i); } })>"×"</button></td>
                    </tr>
                }
            })
            .collect_view()
    };

    let import_pairs = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((name, bytes)) = read_picked(&ev).await else { return };
            let text = String::from_utf8_lossy(&bytes);
            let parsed = if name.ends_with(".csv") { PairSet::from_csv(&text) } else { PairSet::from_jsonl(&text) };
            match parsed {
                Ok(set) => {
                    rows.set(set.pairs);
                    state.pair_set.set("custom".into());
                    save_name.set(name.trim_end_matches(".jsonl").trim_end_matches(".csv").to_string());
                    message.set(None);
                }
                Err(e) => message.set(Some(format!("{name}: {e}"))),
            }
        });
    };
    let import_vector = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((name, bytes)) = read_picked(&ev).await else { return };
            let parsed = if name.ends_with(".gguf") { analog_core::steering::gguf::import(&bytes) } else { SteeringVector::from_json(&bytes) };
            // A vector from another model is refused now, not at the first generation.
            let fits = |v: SteeringVector| match state.model.get_untracked() {
                ModelStatus::Ready { info, .. } => v.check_fits(info.d_model, info.n_layers).map(|()| v),
                _ => Ok(v),
            };
            match parsed.and_then(fits) {
                Ok(v) => {
                    vector.set(Some(v));
                    sweep.set(Vec::new());
                    message.set(None);
                }
                Err(e) => message.set(Some(format!("{name}: {e}"))),
            }
        });
    };
    let save_pairs = move |_| {
        let name = save_name.get_untracked().trim().to_string();
        if name.is_empty() {
            return message.set(Some("name the pair set first".into()));
        }
        match pair_set() {
            Ok(set) => {
                state.saved.update(|s| {
                    s.pair_sets.retain(|p| p.name != name);
                    s.pair_sets.push(SavedPairs { name: name.clone(), jsonl: set.to_jsonl() });
                });
                state.pair_set.set(format!("saved:{name}"));
            }
            Err(e) => message.set(Some(e.to_string())),
        }
    };
    let save_vector = move |_| {
        let Some(v) = vector.get_untracked() else { return };
        let name = format!("{} · {} · {}", state.pair_set.get_untracked().trim_start_matches("saved:"), method_name(v.method), v.model.id);
        state.saved.update(|s| {
            s.vectors.retain(|x| x.name != name);
            s.vectors.push(SavedVector { name, vector: v });
        });
    };
    let save_results = move |_| {
        let Some(rows) = metric_rows.get_untracked() else { return };
        let name = format!("sweep · {} · layer {}", state.pair_set.get_untracked(), state.layer.get_untracked());
        state.saved.update(|s| {
            s.results.retain(|r| r.name != name);
            s.results.push(SavedResult { name, kind: "coefficient-sweep".into(), data: rows });
        });
    };

    view! {
        <section class="view" aria-labelledby="steer-title">
            <h2 id="steer-title">"Steering studio"</h2>
            <p class="hint">"A steering vector is the difference between the model's activations on contrastive prompts. Extract one, pick a layer, and add it while the model writes."</p>
            {move || message.get().map(|m| view! { <div class="error" role="alert" data-testid="steer-error">{m}</div> })}
            <div class="grid2">
                <div>
                    <h3>"1 · Pairs"</h3>
                    <label>"Pair set "
                        <select data-testid="pairs-select" prop:value=move || state.pair_set.get() on:change=move |ev| select_set(event_target_value(&ev))>{options}</select>
                    </label>
                    <details class="pairs">
                        <summary>{move || format!("{} pairs (edit)", rows.with(Vec::len))}</summary>
                        <table class="pair-table">
                            <thead><tr><th>"positive"</th><th>"negative"</th><th></th></tr></thead>
                            <tbody>{table}</tbody>
                        </table>
                        <div class="buttons">
                            <button on:click=move |_| rows.update(|r| r.push(Pair { positive: String::new(), negative: String::new(), label: None }))>"Add a pair"</button>
                            <label class="file-button">"Import JSONL/CSV…"<input type="file" data-testid="pairs-file" accept=".jsonl,.json,.csv,.txt" on:change=import_pairs/></label>
                            <input type="text" placeholder="name" aria-label="pair set name" data-testid="pairs-name" prop:value=save_name on:input=move |ev| save_name.set(event_target_value(&ev))/>
                            <button data-testid="save-pairs" on:click=save_pairs>"Save pair set"</button>
                        </div>
                    </details>
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
                    </div>
                    <div class="buttons">
                        <button data-testid="extract" class="primary" disabled=move || !ready() || progress.get().is_some() on:click=move |_| extract()>"Extract"</button>
                        <label class="file-button">"Import vector (JSON/GGUF)…"<input type="file" data-testid="vector-file" accept=".json,.gguf" on:change=import_vector/></label>
                    </div>
                    {move || progress.get().map(|p| view! { <div class="progress" data-testid="steer-progress" role="status">{p}</div> })}
                    <div data-testid="vector-status" data-state=move || if vector.with(Option::is_some) { "ready" } else { "none" }>
                        {move || vector.get().map(|v| {
                            let json = v.to_json();
                            let gguf_vector = v.clone();
                            view! {
                                <p>{format!("Vector: {} layers × d_model {} · {} · {} pairs", v.directions.len(), v.model.d_model, method_name(v.method), v.pairs.n_pairs)}</p>
                                <div class="buttons">
                                    <button data-testid="save-vector" on:click=save_vector>"Save vector"</button>
                                    <button on:click=move |_| download("steering-vector.json", "application/json", json.as_bytes())>"Export JSON"</button>
                                    <button on:click=move |_| download("steering-vector.gguf", "application/octet-stream", &analog_core::steering::gguf::export(&gguf_vector, "analog-explorer"))>"Export GGUF"</button>
                                </div>
                            }
                        })}
                    </div>
                </div>
                <div>
                    <h3>"2 · Where the concept lives"</h3>
                    <LineChart testid="sweep-chart" title="Layer sweep (held-out)".into() x_label="layer"
                        series=Signal::derive(move || {
                            let s = sweep.get();
                            vec![
                                Series { name: "probe accuracy".into(), class: "s-local", points: s.iter().map(|r| (r.layer as f64, f64::from(r.probe_accuracy))).collect(), dashed: false },
                                Series { name: "cos(mean-diff, probe)".into(), class: "s-native", points: s.iter().map(|r| (r.layer as f64, f64::from(r.cos_mean_diff_probe))).collect(), dashed: false },
                                Series { name: "cos(mean-diff, PCA)".into(), class: "s-mapped", points: s.iter().map(|r| (r.layer as f64, f64::from(r.cos_mean_diff_pca.abs()))).collect(), dashed: true },
                            ]
                        })/>
                    <table class="sweep">
                        <thead><tr><th>"layer"</th><th>"probe acc."</th><th>"Cohen's d"</th><th>"‖mean diff‖"</th><th>"mean ‖resid‖"</th></tr></thead>
                        <tbody>{move || sweep.get().into_iter().map(|r| view! {
                            <tr class:chosen=move || state.layer.get() == r.layer><td>{r.layer}</td><td>{format!("{:.2}", r.probe_accuracy)}</td><td>{format!("{:.2}", r.cohens_d)}</td><td>{format!("{:.2}", r.mean_diff_norm)}</td><td>{format!("{:.2}", r.mean_resid_norm)}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                </div>
            </div>
            <h3>"3 · Steer"</h3>
            <div class="controls">
                <label class="control">"Layer"
                    <input type="number" min="0" data-testid="layer" prop:value=move || state.layer.get().to_string()
                        on:change=move |ev| if let Ok(l) = event_target_value(&ev).parse() { state.layer.set(l) }/>
                </label>
                <label class="control wide">{move || if normalise.get() { format!("Coefficient: {:.2} × the layer's mean residual norm", state.coef.get()) } else { format!("Coefficient: {:.2} × the raw vector", state.coef.get()) }}
                    <input type="range" data-testid="coef" min=move || if normalise.get() { "-2" } else { "-16" } max=move || if normalise.get() { "2" } else { "16" }
                        step=move || if normalise.get() { "0.05" } else { "0.5" }
                        prop:value=move || state.coef.get().to_string()
                        on:input=move |ev| if let Ok(c) = event_target_value(&ev).parse() { state.coef.set(c) }/>
                </label>
                <label class="control"><input type="checkbox" prop:checked=normalise on:change=move |ev| normalise.set(event_target_checked(&ev))/>" normalised"</label>
            </div>
            <textarea rows="2" aria-label="prompt" data-testid="steer-prompt" prop:value=move || state.prompt.get() on:input=move |ev| state.prompt.set(event_target_value(&ev))></textarea>
            <Controls controls=controls/>
            <div class="buttons">
                <button data-testid="steer-generate" class="primary" disabled=move || !ready() || vector.with(Option::is_none) on:click=move |_| compare()>"Generate baseline and steered"</button>
                <button data-testid="coef-sweep" disabled=move || !ready() || vector.with(Option::is_none) || progress.get().is_some() on:click=move |_| sweep_coefs()>"Measure across coefficients"</button>
            </div>
            <div class="grid2">
                <StreamView stream=baseline testid="baseline-output" title="Baseline"/>
                <StreamView stream=steered testid="steered-output" title="Steered"/>
            </div>
            <details class="metric-setup">
                <summary>"Metric settings"</summary>
                <div class="controls">
                    <label class="control">"target word"<input type="text" prop:value=target on:input=move |ev| target.set(event_target_value(&ev))/></label>
                    <label class="control">"counter word"<input type="text" prop:value=counter on:input=move |ev| counter.set(event_target_value(&ev))/></label>
                    <label class="control wide">"trigger lexicon (comma-separated)"<input type="text" prop:value=lexicon on:input=move |ev| lexicon.set(event_target_value(&ev))/></label>
                </div>
            </details>
            <Show when=move || metric_rows.with(Option::is_some)>
                <div class="grid2" data-testid="coef-charts">
                    <LineChart title="Logit difference shift (target − counter)".into() x_label="coefficient" series=Signal::derive(move || metric_series("logit_diff_shift"))/>
                    <LineChart title="Trigger rate (lexicon word in a continuation)".into() x_label="coefficient" series=Signal::derive(move || metric_series("trigger_rate"))/>
                    <LineChart title="KL from the unsteered model (nats)".into() x_label="coefficient" series=Signal::derive(move || metric_series("kl"))/>
                </div>
                <button data-testid="save-results" on:click=save_results>"Save these results"</button>
            </Show>
            <Saved vector=vector/>
        </section>
    }
}

/// The visitor's saved work, with export and import of everything as one file.
#[component]
fn Saved(vector: RwSignal<Option<SteeringVector>>) -> impl IntoView {
    let state = state();
    let error = RwSignal::new(None::<String>);
    let import_all = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((_, bytes)) = read_picked(&ev).await else { return };
            match super::store::Saved::from_export(&String::from_utf8_lossy(&bytes)) {
                Ok(other) => {
                    state.saved.update(|s| s.merge(other));
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="saved" data-testid="saved">
            <h3>"Saved in this browser"</h3>
            {move || error.get().map(|e| view! { <div class="error" role="alert">{e}</div> })}
            <ul>
                {move || state.saved.get().pair_sets.into_iter().map(|p| {
                    let name = p.name.clone();
                    view! { <li data-testid="saved-pairs">{format!("pair set: {} ({} lines)", p.name, p.jsonl.lines().count())}
                        <button class="icon" aria-label="delete" on:click=move |_| state.saved.update(|s| s.pair_sets.retain(|x| x.name != name))>"×"</button></li> }
                }).collect_view()}
                {move || state.saved.get().vectors.into_iter().map(|v| {
                    let name = v.name.clone();
                    let chosen = v.vector.clone();
                    view! { <li data-testid="saved-vector">{format!("vector: {}", v.name)}
                        <button on:click=move |_| vector.set(Some(chosen.clone()))>"Use"</button>
                        <button class="icon" aria-label="delete" on:click=move |_| state.saved.update(|s| s.vectors.retain(|x| x.name != name))>"×"</button></li> }
                }).collect_view()}
                {move || state.saved.get().results.into_iter().map(|r| {
                    let name = r.name.clone();
                    view! { <li data-testid="saved-result">{format!("result: {}", r.name)}
                        <button class="icon" aria-label="delete" on:click=move |_| state.saved.update(|s| s.results.retain(|x| x.name != name))>"×"</button></li> }
                }).collect_view()}
            </ul>
            <div class="buttons">
                <button on:click=move |_| super::store::export_all(state)>"Export everything"</button>
                <label class="file-button">"Import…"<input type="file" data-testid="saved-import" accept=".json" on:change=import_all/></label>
            </div>
        </section>
    }
}
