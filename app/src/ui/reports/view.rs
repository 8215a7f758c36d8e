//! An open transfer report: its summary, and once compared, the verdicts and one section per
//! intervention with its curves.

use analog_core::report::TransferReport;
use analog_core::report::compare::{Comparison, EffectRow, InterventionComparison, Verdict};
use leptos::prelude::*;
use serde::Serialize;

use crate::ui::charts::{LineChart, Series};

/// A number to three decimals, or "—" when absent.
fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

/// A unit enum variant as its JSON name (`measurement`, `not_applicable`).
fn wire_name(value: &impl Serialize) -> String {
    serde_json::to_string(value).map(|s| s.trim_matches('"').to_string()).unwrap_or_default()
}

/// The report (`report-view`): a one-line summary and the geometry's global similarity, then the
/// comparison (weights, verdicts, interventions) or, before it arrives, `note` (`report-progress`).
#[component]
pub fn ReportView(report: TransferReport, comparison: Option<Comparison>, note: Option<String>) -> impl IntoView {
    let frontier = report.frontier.as_ref();
    let summary = format!(
        "{} · {} report by {} · analog {} ({} parameters) · frontier {} ({} parameters) · {} interventions",
        report.id,
        wire_name(&report.kind),
        report.publisher.name,
        report.analog.id,
        report.analog.n_params,
        frontier.map_or("—", |f| f.id.as_str()),
        frontier.and_then(|f| f.n_params).map_or_else(|| "—".into(), |n| n.to_string()),
        report.interventions.len(),
    );
    let similarity = report
        .geometry
        .as_ref()
        .and_then(|g| g.global_similarity.as_ref())
        .map(|s| format!("Global similarity of the embedding geometries (Lee et al.): r = {:.3}", s.pearson_r));
    let body = match comparison {
        None => view! { <p class="note" data-testid="report-progress">{note.unwrap_or_default()}</p> }.into_any(),
        Some(c) => {
            let weights = if c.weights_match {
                "The loaded weights are the ones the report names (sha256 matches)."
            } else {
                "The loaded weights differ from the ones the report names: numbers will differ."
            };
            view! {
                <p>{weights}</p>
                <Verdicts verdicts=c.verdicts/>
                {c.interventions.into_iter().map(|iv| view! { <InterventionView iv=iv/> }).collect_view()}
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

/// The checks against the paper's thresholds as a table (value, threshold, outcome, meaning);
/// nothing when there are none.
#[component]
fn Verdicts(verdicts: Vec<Verdict>) -> impl IntoView {
    (!verdicts.is_empty()).then(|| {
        let rows = verdicts
            .into_iter()
            .map(|v| {
                let outcome = wire_name(&v.outcome);
                view! { <tr class=format!("outcome-{outcome}")><td>{v.check}</td><td>{num(v.value)}</td><td>{v.threshold}</td><td>{outcome.replace('_', " ")}</td><td>{v.meaning}</td></tr> }
            })
            .collect_view();
        view! {
            <table class="verdicts">
                <thead><tr><th>"check"</th><th>"value"</th><th>"threshold"</th><th>"outcome"</th><th>"meaning"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
    })
}

/// One intervention (`report-intervention`): how the re-extracted vector and the local curve
/// compare with the published ones, the five effect curves per coefficient, and its verdicts.
#[component]
fn InterventionView(iv: InterventionComparison) -> impl IntoView {
    let curve = |effect: fn(&EffectRow) -> Option<f32>| {
        iv.rows.iter().filter_map(|r| Some((f64::from(r.coef), f64::from(effect(&r.effect)?)))).filter(|p| p.1.is_finite()).collect::<Vec<_>>()
    };
    let series = vec![
        Series { name: "analog, measured here".into(), class: "s-local", points: curve(|e| e.local), dashed: false },
        Series { name: "analog, reported".into(), class: "s-reported", points: curve(|e| e.reported_analog), dashed: true },
        Series { name: "frontier, native vector".into(), class: "s-native", points: curve(|e| e.frontier_native), dashed: false },
        Series { name: "frontier, mapped analog vector".into(), class: "s-mapped", points: curve(|e| e.frontier_mapped), dashed: false },
        Series { name: "frontier, random vector".into(), class: "s-random", points: curve(|e| e.random_baseline), dashed: true },
    ];
    let title = format!("{} — {}", iv.id, iv.concept);
    let native = iv.local_vs_frontier_native;
    let facts = format!(
        "re-extracted vector vs published: cosine {} · largest |local − reported| {} · transfer ratio (mapped / native slope) {} · local vs frontier native: Pearson {} Spearman {}",
        num(Some(iv.vector_cosine)),
        num(iv.max_abs_diff.map(f64::from)),
        iv.transfer_ratio.map_or_else(|| "—".into(), |r| format!("{:.0}%", r * 100.0)),
        num(native.pearson),
        num(native.spearman),
    );
    let metric = iv.effect_metric.name();
    view! {
        <section class="intervention" data-testid="report-intervention">
            <h3>{title}</h3>
            <p>{facts}</p>
            <LineChart title=format!("{metric} per coefficient") x_label="coefficient" series=Signal::derive(move || series.clone())/>
            <Verdicts verdicts=iv.verdicts/>
        </section>
    }
}
