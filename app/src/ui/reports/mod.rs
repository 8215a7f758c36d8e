//! Transfer reports: open the catalog's reports, a URL or a file; schema errors with their JSON
//! paths; the comparison of the local analog with the reported analog and frontier curves, with
//! the paper's verdicts; and the visitor's own measurements exported as a report.
//!
//! [`Reports`] provides a [`ReportsState`] context: what is shown, and the report last opened.

mod view;

use analog_core::report::compare::Comparison;
use analog_core::report::{MAX_REPORT_BYTES, TransferReport};
use leptos::prelude::*;

use super::bridge::{cancel, done, send};
use super::models::load_report_analog;
use super::store::download;
use super::widgets::{ErrorLine, JobBar, JobProgress};
use super::{ModelStatus, base_url, state};
use crate::protocol::{Event, HF_HUB, Request, model_location};

/// What the view shows.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Nothing,
    Loading(String),
    Report { report: Box<TransferReport>, comparison: Option<Box<Comparison>>, note: Option<String> },
    Errors(Vec<String>),
}

/// What the reports view's components share (a context provided by [`Reports`]).
#[derive(Debug, Clone, Copy)]
struct ReportsState {
    shown: RwSignal<Shown>,
    /// The report last opened (its URL, and its text when it came from a file), to open it again
    /// once the analog it names is loaded.
    opened: RwSignal<Option<(String, Option<String>)>>,
    /// Open `opened` again when the next model has loaded.
    reopen_when_loaded: RwSignal<bool>,
    /// The comparison under way (`report-job`).
    progress: RwSignal<Option<JobProgress>>,
}

impl ReportsState {
    /// Fetches (unless `body` holds it), validates and compares the report at `target`.
    /// A comparison still running for an earlier report is stopped first.
    fn open(self, target: String, body: Option<String>) {
        let (shown, progress) = (self.shown, self.progress);
        if let Some(earlier) = progress.get_untracked() {
            cancel(earlier.job);
        }
        self.opened.set(Some((target.clone(), body.clone())));
        shown.set(Shown::Loading("fetching and validating".into()));
        // The job's last event: its bar goes (unless a later comparison replaced it), and its handler.
        let finish = move |job| {
            if progress.with_untracked(|p| p.as_ref().is_some_and(|p| p.job == job)) {
                progress.set(None);
            }
            done(job);
        };
        let job = send(
            |job| Request::Report { job, url: target, text: body },
            &[],
            move |event| match event {
                Event::Progress { what, done, total, job, .. } => progress.update(|p| match p {
                    Some(p) if p.job == job => p.update(what, done, total),
                    _ => {}
                }),
                Event::ReportParsed { report, .. } => {
                    shown.set(Shown::Report { report, comparison: None, note: Some("Valid. Re-measuring the analog's side here…".into()) })
                }
                Event::ReportChecked { job, report, comparison, note } => {
                    shown.set(Shown::Report { report, comparison, note });
                    finish(job);
                }
                Event::Failed { job, errors } => {
                    shown.set(Shown::Errors(errors));
                    finish(job);
                }
                Event::Stopped { job } => {
                    shown.update(|s| {
                        if let Shown::Report { note, comparison: None, .. } = s {
                            *note = Some("Stopped: the comparison was not finished. Open the report again to re-measure it.".into());
                        }
                    });
                    finish(job);
                }
                _ => {}
            },
        );
        progress.set(Some(JobProgress::starting(job, "compare", "fetching and validating")));
    }
}

fn reports() -> ReportsState {
    use_context::<ReportsState>().unwrap_or_else(|| ReportsState {
        shown: RwSignal::new(Shown::Nothing),
        opened: RwSignal::new(None),
        reopen_when_loaded: RwSignal::new(false),
        progress: RwSignal::new(None),
    })
}

/// The reports view: the catalog's reports, a URL or a file to open, the open report, the offer
/// to load its analog, and the export of the visitor's measurements. No props.
#[component]
pub fn Reports() -> impl IntoView {
    let app = state();
    let ctx = ReportsState {
        shown: RwSignal::new(Shown::Nothing),
        opened: RwSignal::new(None),
        reopen_when_loaded: RwSignal::new(false),
        progress: RwSignal::new(None),
    };
    provide_context(ctx);
    // The report's analog has loaded: open the report again, now comparable.
    Effect::new(move |_| match app.model.get() {
        ModelStatus::Ready { .. } if ctx.reopen_when_loaded.get_untracked() => {
            ctx.reopen_when_loaded.set(false);
            if let Some((target, body)) = ctx.opened.get_untracked() {
                ctx.open(target, body);
            }
        }
        ModelStatus::Error(_) => ctx.reopen_when_loaded.set(false),
        _ => {}
    });
    let shown = move || match ctx.shown.get() {
        Shown::Nothing => view! { <p class="empty">"No report open yet. Try the one published with this site."</p> }.into_any(),
        Shown::Loading(what) => view! { <p class="progress" role="status">{what}</p> }.into_any(),
        Shown::Errors(errors) => view! {
            <div class="error" role="alert" data-testid="report-error">
                <p>"This report cannot be used:"</p>
                <ul>{errors.into_iter().map(|e| view! { <li><code>{e}</code></li> }).collect_view()}</ul>
            </div>
        }
        .into_any(),
        Shown::Report { report, comparison, note } => view! { <view::ReportView report=*report comparison=comparison.map(|c| *c) note=note/> }.into_any(),
    };
    view! {
        <section class="view" aria-labelledby="reports-title">
            <h2 id="reports-title">"Transfer reports"</h2>
            <p class="hint">"A lab that releases an analog publishes how steering vectors found on it behaved on its frontier model. Open a report: the vectors are re-extracted and re-measured here, on the analog you loaded, and compared with what the lab reported."</p>
            <h3>"Published with this site"</h3>
            <CatalogReports/>
            <OpenReport/>
            <JobBar progress=ctx.progress kind="compare" testid="report-job"/>
            {shown}
            <AnalogOffer/>
            <ExportMeasurements/>
        </section>
    }
}

/// The reports the catalog lists, each with "Open" (`catalog-report`). No props.
#[component]
fn CatalogReports() -> impl IntoView {
    let (app, ctx) = (state(), reports());
    let items = move || {
        app.catalog
            .get()
            .unwrap_or_default()
            .reports
            .into_iter()
            .map(|r| {
                let target = format!("{}{}", base_url(), r.path);
                let label = format!("{} — analog {}, frontier {}", r.id, r.analog, r.frontier);
                view! { <li><button data-testid="catalog-report" on:click=move |_| ctx.open(target.clone(), None)>"Open"</button>" "{label}</li> }
            })
            .collect_view()
    };
    view! { <ul class="catalog-reports">{items}</ul> }
}

/// A report URL (`report-url`, Enter or `report-load`) or a file (`report-file`) to open. No props.
#[component]
fn OpenReport() -> impl IntoView {
    let ctx = reports();
    let url = RwSignal::new(String::new());
    let open_file = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let input: web_sys::HtmlInputElement = event_target(&ev);
            let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
            if file.size() > MAX_REPORT_BYTES as f64 {
                let error = format!("{} is {} bytes; reports are limited to {} bytes", file.name(), file.size(), MAX_REPORT_BYTES);
                ctx.shown.set(Shown::Errors(vec![error]));
                return;
            }
            let Ok(body) = wasm_bindgen_futures::JsFuture::from(file.text()).await else { return };
            input.set_value("");
            ctx.open(base_url(), Some(body.as_string().unwrap_or_default()));
        });
    };
    view! {
        <div class="row">
            <input type="text" data-testid="report-url" placeholder="https://… report URL" prop:value=url on:input=move |ev| url.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { ctx.open(url.get_untracked(), None) }/>
            <button data-testid="report-load" on:click=move |_| ctx.open(url.get_untracked(), None)>"Load report"</button>
            <label class="file-button">"Open a file…"<input type="file" data-testid="report-file" accept=".json" on:change=open_file/></label>
        </div>
    }
}

/// The open report's own analog, when it names a URL and is not the loaded model: a button
/// (`report-load-analog`) that loads it with the weights' sha256 checked against the report, or
/// why its URL cannot be used (`report-analog-error`). No props.
#[component]
fn AnalogOffer() -> impl IntoView {
    let (app, ctx) = (state(), reports());
    move || {
        let (url, sha, id, report_id) = ctx.shown.with(|shown| match shown {
            Shown::Report { report, .. } => {
                let analog = &report.analog;
                analog.url.clone().map(|url| (url, analog.weights_sha256.clone(), analog.id.clone(), report.id.clone()))
            }
            _ => None,
        })?;
        let loaded = app.model.with(|m| match m {
            ModelStatus::Ready { info, .. } => info.weights_sha256 == sha,
            _ => false,
        });
        if loaded {
            return None;
        }
        let base = ctx.opened.get().map(|(target, _)| target).unwrap_or_else(base_url);
        let resolved = web_sys::Url::new_with_base(&url, &base).map(|u| u.href()).map_err(|_| format!("the report's analog URL `{url}` is not a URL"));
        Some(match resolved.and_then(|u| model_location(&u, HF_HUB)) {
            Ok(location) => view! {
                <p class="offer">
                    <button data-testid="report-load-analog" on:click=move |_| {
                        ctx.reopen_when_loaded.set(true);
                        load_report_analog(app, location.clone(), &id, &sha, &report_id);
                    }>{format!("Load the report's analog, {id}")}</button>
                    " — its weights are checked against the sha256 the report records."
                </p>
            }
            .into_any(),
            Err(e) => view! { <p class="error" data-testid="report-analog-error">{e}</p> }.into_any(),
        })
    }
}

/// "Your own measurements": the saved coefficient sweeps exported as a v1 measurement report of
/// the loaded analog (`export-report`), or why not. No props.
#[component]
fn ExportMeasurements() -> impl IntoView {
    let app = state();
    let error = RwSignal::new(None::<String>);
    let export = move |_| {
        let interventions: Vec<_> = app.saved.with_untracked(|s| s.results.iter().filter_map(|r| r.result.intervention().cloned()).collect());
        if interventions.is_empty() {
            error.set(Some("measure a vector across coefficients in the steering studio and save the results first".into()));
            return;
        }
        send(
            |job| Request::Export { job, interventions, publisher: "a visitor of Analog Explorer".into() },
            &[],
            move |event| match event {
                Event::Exported { job, json } => {
                    download("my-measurements.report.json", "application/json", json.as_bytes());
                    error.set(None);
                    done(job);
                }
                Event::Failed { job, errors } => {
                    error.set(Some(errors.join("; ")));
                    done(job);
                }
                _ => {}
            },
        );
    };
    view! {
        <h3>"Your own measurements"</h3>
        <p class="hint">"Saved coefficient sweeps become a valid v1 measurement report of the loaded analog, ready to send to the lab."</p>
        <button data-testid="export-report" on:click=export>"Export my measurements as a report"</button>
        <ErrorLine message=error/>
    }
}
