//! Transfer reports: open the catalog's reports, a URL or a file; schema errors with their JSON
//! paths; the comparison of the local analog with the reported analog and frontier curves, with
//! the paper's verdicts; and the visitor's own measurements exported as a report.

use leptos::prelude::*;
use serde_json::Value;

use super::bridge::{done, send};
use super::charts::{LineChart, Series};
use super::models::load_report_analog;
use super::store::download;
use super::{ModelStatus, base_url, state};
use crate::protocol::{Event, Request, model_url};

/// What the view shows.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Nothing,
    Loading(String),
    Report { report: Value, comparison: Option<Value>, note: Option<String> },
    Errors(Vec<String>),
}

fn f(v: &Value) -> String {
    v.as_f64().map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

#[component]
pub fn Reports() -> impl IntoView {
    let state = state();
    let url = RwSignal::new(String::new());
    let shown = RwSignal::new(Shown::Nothing);
    let export_error = RwSignal::new(None::<String>);

    // The report last opened (its URL, and its text when it came from a file), to open it again
    // once the analog it names is loaded.
    let opened: RwSignal<Option<(String, Option<String>)>> = RwSignal::new(None);
    let reopen_when_loaded = RwSignal::new(false);
    let open = move |target: String, body: Option<String>| {
        opened.set(Some((target.clone(), body.clone())));
        shown.set(Shown::Loading("fetching and validating".into()));
        send(
            |job| Request::Report { job, url: target, text: body },
            &[],
            move |event| match event {
                Event::Progress { what, done, total, .. } => {
                    let what = format!("{what}: {done}/{} coefficients", total.unwrap_or(0));
                    shown.update(|s| match s {
                        Shown::Report { note, comparison: None, .. } => *note = Some(format!("Re-measuring the analog's side here… {what}")),
                        other => *other = Shown::Loading(what),
                    });
                }
                Event::ReportParsed { report, .. } => {
                    shown.set(Shown::Report { report, comparison: None, note: Some("Valid. Re-measuring the analog's side here…".into()) })
                }
                Event::ReportChecked { job, report, comparison, note } => {
                    shown.set(Shown::Report { report, comparison, note });
                    done(job);
                }
                Event::Failed { job, errors } => {
                    shown.set(Shown::Errors(errors));
                    done(job);
                }
                _ => {}
            },
        );
    };
    Effect::new(move |_| match state.model.get() {
        ModelStatus::Ready { .. } if reopen_when_loaded.get_untracked() => {
            reopen_when_loaded.set(false);
            if let Some((target, body)) = opened.get_untracked() {
                open(target, body);
            }
        }
        ModelStatus::Error(_) => reopen_when_loaded.set(false),
        _ => {}
    });
    // The report's own analog, when it names a URL and is not the loaded model: loaded with the
    // weights' sha256 checked against the report.
    let analog_offer = move || {
        let Shown::Report { report, .. } = shown.get() else { return None };
        let analog = &report["analog"];
        let (Some(url), Some(sha)) = (analog["url"].as_str(), analog["weights_sha256"].as_str()) else { return None };
        let loaded = state.model.with(|m| match m {
            ModelStatus::Ready { info, .. } => info.weights_sha256 == sha,
            _ => false,
        });
        if loaded {
            return None;
        }
        let base = opened.get().map(|(target, _)| target).unwrap_or_else(base_url);
        let resolved = web_sys::Url::new_with_base(url, &base).map(|u| u.href()).map_err(|_| format!("the report's analog URL `{url}` is not a URL"));
        let resolved = resolved.and_then(|u| model_url(&u));
        let (id, sha, report_id) = (text(&analog["id"]), sha.to_string(), text(&report["id"]));
        Some(match resolved {
            Ok(base) => view! {
                <p class="offer">
                    <button data-testid="report-load-analog" on:click=move |_| {
                        reopen_when_loaded.set(true);
                        load_report_analog(state, base.clone(), &id, &sha, &report_id);
                    }>{format!("Load the report's analog, {id}")}</button>
                    " — its weights are checked against the sha256 the report records."
                </p>
            }
            .into_any(),
            Err(e) => view! { <p class="error" data-testid="report-analog-error">{e}</p> }.into_any(),
        })
    };
    let open_file = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let input: web_sys::HtmlInputElement = event_target(&ev);
            let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
            if file.size() > analog_core::report::MAX_REPORT_BYTES as f64 {
                shown.set(Shown::Errors(vec![format!(
                    "{} is {} bytes; reports are limited to {} bytes",
                    file.name(),
                    file.size(),
                    analog_core::report::MAX_REPORT_BYTES
                )]));
                return;
            }
            let Ok(body) = wasm_bindgen_futures::JsFuture::from(file.text()).await else { return };
            input.set_value("");
            open(base_url(), Some(body.as_string().unwrap_or_default()));
        });
    };
    let export = move |_| {
        let interventions: Vec<analog_core::report::Intervention> =
            state.saved.get_untracked().results.iter().filter_map(|r| serde_json::from_value(r.data["intervention"].clone()).ok()).collect();
        if interventions.is_empty() {
            export_error.set(Some("measure a vector across coefficients in the steering studio and save the results first".into()));
            return;
        }
        send(
            |job| Request::Export { job, interventions, publisher: "a visitor of Analog Explorer".into() },
            &[],
            move |event| match event {
                Event::Exported { job, json } => {
                    download("my-measurements.report.json", "application/json", json.as_bytes());
                    export_error.set(None);
                    done(job);
                }
                Event::Failed { job, errors } => {
                    export_error.set(Some(errors.join("; ")));
                    done(job);
                }
                _ => {}
            },
        );
    };

    let catalog_reports = move || {
        state
            .catalog
            .get()
            .unwrap_or_default()
            .reports
            .into_iter()
            .map(|r| {
                let target = format!("{}{}", base_url(), r.path);
                let label = format!("{} — analog {}, frontier {}", r.id, r.analog, r.frontier);
                view! { <li><button data-testid="catalog-report" on:click=move |_| open(target.clone(), None)>"Open"</button>" "{label}</li> }
            })
            .collect_view()
    };

    view! {
        <section class="view" aria-labelledby="reports-title">
            <h2 id="reports-title">"Transfer reports"</h2>
            <p class="hint">"A lab that releases an analog publishes how steering vectors found on it behaved on its frontier model. Open a report: the vectors are re-extracted and re-measured here, on the analog you loaded, and compared with what the lab reported."</p>
            <h3>"Published with this site"</h3>
            <ul class="catalog-reports">{catalog_reports}</ul>
            <div class="row">
                <input type="text" data-testid="report-url" placeholder="https://… report URL" prop:value=url on:input=move |ev| url.set(event_target_value(&ev))
                    on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { open(url.get_untracked(), None) }/>
                <button data-testid="report-load" on:click=move |_| open(url.get_untracked(), None)>"Load report"</button>
                <label class="file-button">"Open a file…"<input type="file" accept=".json" on:change=open_file/></label>
            </div>
            {move || match shown.get() {
                Shown::Nothing => view! { <p class="empty">"No report open yet. Try the one published with this site."</p> }.into_any(),
                Shown::Loading(what) => view! { <p class="progress" role="status">{what}</p> }.into_any(),
                Shown::Errors(errors) => view! {
                    <div class="error" role="alert" data-testid="report-error">
                        <p>"This report cannot be used:"</p>
                        <ul>{errors.into_iter().map(|e| view! { <li><code>{e}</code></li> }).collect_view()}</ul>
                    </div>
                }.into_any(),
                Shown::Report { report, comparison, note } => view! { <ReportView report=report comparison=comparison note=note/> }.into_any(),
            }}
            {analog_offer}
            <h3>"Your own measurements"</h3>
            <p class="hint">"Saved coefficient sweeps become a valid v1 measurement report of the loaded analog, ready to send to the lab."</p>
            <button data-testid="export-report" on:click=export>"Export my measurements as a report"</button>
            {move || export_error.get().map(|e| view! { <div class="error" role="alert">{e}</div> })}
        </section>
    }
}

#[component]
fn ReportView(report: Value, comparison: Option<Value>, note: Option<String>) -> impl IntoView {
    let frontier = &report["frontier"];
    let summary = format!(
        "{} · {} report by {} · analog {} ({} parameters) · frontier {} ({} parameters) · {} interventions",
        text(&report["id"]),
        text(&report["kind"]),
        text(&report["publisher"]["name"]),
        text(&report["analog"]["id"]),
        text(&report["analog"]["n_params"]),
        text(&frontier["id"]),
        text(&frontier["n_params"]),
        report["interventions"].as_array().map_or(0, Vec::len),
    );
    let similarity = report["geometry"]["global_similarity"]["pearson_r"]
        .as_f64()
        .map(|r| format!("Global similarity of the embedding geometries (Lee et al.): r = {r:.3}"));
    let body = match comparison {
        None => view! { <p class="note" data-testid="report-progress">{note.unwrap_or_default()}</p> }.into_any(),
        Some(c) => {
            let weights = if c["weights_match"].as_bool() == Some(true) {
                "The loaded weights are the ones the report names (sha256 matches)."
            } else {
                "The loaded weights differ from the ones the report names: numbers will differ."
            };
            let ivs = c["interventions"].as_array().cloned().unwrap_or_default();
            view! {
                <p>{weights}</p>
                <Verdicts verdicts=c["verdicts"].clone()/>
                {ivs.into_iter().map(|iv| view! { <InterventionView iv=iv/> }).collect_view()}
            }
            .into_any()
        }
    };
    view! {
        <article class="report" data-testid="report-view">
            <p class="summary">{summary}</p>
            {similarity.map(|s| view! { <p>{s}</p> })}
            {body}
        </article>
    }
}

#[component]
fn Verdicts(verdicts: Value) -> impl IntoView {
    let rows = verdicts.as_array().cloned().unwrap_or_default();
    (!rows.is_empty()).then(|| {
        view! {
            <table class="verdicts">
                <thead><tr><th>"check"</th><th>"value"</th><th>"threshold"</th><th>"outcome"</th><th>"meaning"</th></tr></thead>
                <tbody>{rows.into_iter().map(|v| {
                    let outcome = text(&v["outcome"]);
                    view! { <tr class=format!("outcome-{outcome}")><td>{text(&v["check"])}</td><td>{f(&v["value"])}</td><td>{text(&v["threshold"])}</td><td>{outcome.replace('_', " ")}</td><td>{text(&v["meaning"])}</td></tr> }
                }).collect_view()}</tbody>
            </table>
        }
    })
}

#[component]
fn InterventionView(iv: Value) -> impl IntoView {
    let rows = iv["rows"].as_array().cloned().unwrap_or_default();
    let curve = |key: &str| rows.iter().filter_map(|r| Some((r["coef"].as_f64()?, r["effect"][key].as_f64()?))).collect::<Vec<_>>();
    let series = vec![
        Series { name: "analog, measured here".into(), class: "s-local", points: curve("local"), dashed: false },
        Series { name: "analog, reported".into(), class: "s-reported", points: curve("reported_analog"), dashed: true },
        Series { name: "frontier, native vector".into(), class: "s-native", points: curve("frontier_native"), dashed: false },
        Series { name: "frontier, mapped analog vector".into(), class: "s-mapped", points: curve("frontier_mapped"), dashed: false },
        Series { name: "frontier, random vector".into(), class: "s-random", points: curve("random_baseline"), dashed: true },
    ];
    let title = format!("{} — {}", text(&iv["id"]), text(&iv["concept"]));
    let facts = format!(
        "re-extracted vector vs published: cosine {} · largest |local − reported| {} · transfer ratio (mapped / native slope) {} · local vs frontier native: Pearson {} Spearman {}",
        f(&iv["vector_cosine"]),
        f(&iv["max_abs_diff"]),
        iv["transfer_ratio"].as_f64().map_or_else(|| "—".into(), |r| format!("{:.0}%", r * 100.0)),
        f(&iv["local_vs_frontier_native"]["pearson"]),
        f(&iv["local_vs_frontier_native"]["spearman"]),
    );
    let metric = text(&iv["effect_metric"]);
    view! {
        <section class="intervention" data-testid="report-intervention">
            <h3>{title}</h3>
            <p>{facts}</p>
            <LineChart title=format!("{metric} per coefficient") x_label="coefficient" series=Signal::derive(move || series.clone())/>
            <Verdicts verdicts=iv["verdicts"].clone()/>
        </section>
    }
}
