//! The coefficient sweep: what the vector does across coefficients (logit shift, trigger rate,
//! KL), beside a random direction of equal norm, with its metric settings and saving.

use analog_core::steering::metrics::Metrics;
use leptos::prelude::*;

use super::{StudioState, studio};
use crate::protocol::{Event, Request};
use crate::saved::ResultData;
use crate::ui::bridge::{done, send};
use crate::ui::charts::{Axis, LineChart, Series};
use crate::ui::store::SavedResult;
use crate::ui::{AppState, state};

/// Measures the vector at the chosen layer across coefficients, on the built-in set's neutral
/// prompts (or the studio's prompt), with the metric words of the settings.
pub(super) fn measure(studio: StudioState, app: AppState) {
    let Some(steer) = studio.steer(app) else { return studio.fail("extract or load a vector first") };
    let set_id = app.pair_set.get_untracked();
    let dataset = studio.dataset(&set_id);
    let prompts = dataset.as_ref().map(|d| d.neutral_prompts.clone()).unwrap_or_else(|| vec![app.prompt.get_untracked()]);
    let (target, counter) = (studio.target.get_untracked(), studio.counter.get_untracked());
    if target.is_empty() || counter.is_empty() {
        return studio.fail("name a target and a counter word for the logit-difference metric");
    }
    let lexicon: Vec<String> = studio.lexicon.get_untracked().split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
    let pairs = match studio.pair_set() {
        Ok(set) => set.to_jsonl(),
        Err(e) => return studio.fail(e.to_string()),
    };
    let id = set_id.trim_start_matches("saved:").to_string();
    let concept = dataset.map_or_else(|| id.clone(), |d| d.concept);
    let coefs = if steer.normalise { vec![-1.0, -0.5, 0.0, 0.25, 0.5, 1.0] } else { vec![-8.0, -4.0, 0.0, 2.0, 4.0, 8.0] };
    let job = send(
        |job| Request::Sweep { job, steer, coefs, target, counter, prompts, lexicon, pairs, id, concept },
        &[],
        move |event| {
            if let Some(Event::Swept { job, sweep }) = studio.progress_or_failure(event) {
                studio.coef_sweep.set(Some(*sweep));
                studio.progress.set(None);
                done(job);
            }
        },
    );
    studio.started(job, "sweep", "measuring coefficients");
}

/// The metric words, collapsed under "Metric settings": target, counter and the trigger lexicon.
/// No props.
#[component]
pub fn MetricSettings() -> impl IntoView {
    let studio = studio();
    let (target, counter, lexicon) = (studio.target, studio.counter, studio.lexicon);
    view! {
        <details class="metric-setup">
            <summary>"Metric settings"</summary>
            <div class="controls">
                <label class="control">"target word"<input type="text" data-testid="metric-target" prop:value=target on:input=move |ev| target.set(event_target_value(&ev))/></label>
                <label class="control">"counter word"<input type="text" data-testid="metric-counter" prop:value=counter on:input=move |ev| counter.set(event_target_value(&ev))/></label>
                <label class="control wide">"trigger lexicon (comma-separated)"<input type="text" data-testid="metric-lexicon" prop:value=lexicon on:input=move |ev| lexicon.set(event_target_value(&ev))/></label>
            </div>
        </details>
    }
}

/// The last coefficient sweep as three charts (`coef-charts`), steered beside random, and saving
/// it (`save-results`); nothing before the first sweep. No props.
#[component]
pub fn CoefCharts() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let series = move |metric: fn(&Metrics) -> Option<f32>| {
        Signal::derive(move || {
            studio.coef_sweep.with(|sweep| {
                let rows = sweep.as_ref().map_or(&[][..], |s| &s.rows[..]);
                // A metric the evaluation does not define (or that is not finite) has no point.
                let points = |run: fn(&analog_core::steering::metrics::MetricRow) -> &Metrics| {
                    rows.iter().filter_map(|r| Some((f64::from(r.coef), f64::from(metric(run(r))?)))).filter(|p| p.1.is_finite()).collect::<Vec<_>>()
                };
                vec![
                    Series { name: "steered".into(), class: "s-local", points: points(|r| &r.steered), dashed: false },
                    Series { name: "random, equal norm".into(), class: "s-random", points: points(|r| &r.random), dashed: true },
                ]
            })
        })
    };
    // The coefficient the steered generation uses, in the sweep's units.
    let chosen = Signal::derive(move || Some((f64::from(app.coef.get()), format!("coefficient {:.2}", app.coef.get()))));
    let save = move |_| {
        let Some(sweep) = studio.coef_sweep.get_untracked() else { return };
        let name = format!("sweep · {} · layer {}", app.pair_set.get_untracked(), app.layer.get_untracked());
        app.saved.update(|s| {
            s.results.retain(|r| r.name != name);
            s.results.push(SavedResult { name, result: ResultData::CoefficientSweep(sweep) });
        });
    };
    view! {
        <Show when=move || studio.coef_sweep.with(Option::is_some)>
            <div class="charts" data-testid="coef-charts">
                <LineChart title="Logit difference shift (target − counter)".into() series=series(|m| m.logit_diff_shift) testid="coef-logit-chart"
                    x_axis=Axis::COEFFICIENT y_axis=Axis::value("Δ logit diff") chosen=chosen/>
                <LineChart title="Trigger rate (lexicon word in a continuation)".into() series=series(|m| m.trigger_rate)
                    x_axis=Axis::COEFFICIENT y_axis=Axis::value("share of samples") chosen=chosen/>
                <LineChart title="KL from the unsteered model".into() series=series(|m| Some(m.kl))
                    x_axis=Axis::COEFFICIENT y_axis=Axis::value("KL (nats)") chosen=chosen/>
            </div>
            <button data-testid="save-results" on:click=save>"Save these results"</button>
        </Show>
    }
}
