//! An open transfer report: its summary, and once compared, the verdicts and one section per
//! intervention with its curves.

use analog_core::report::compare::{Comparison, EffectRow, InterventionComparison, Verdict};
use analog_core::report::{TransferReport, section_verdicts};
use leptos::prelude::*;
use serde::Serialize;

use crate::ui::charts::{Axis, LineChart, Series};

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
    let study = report.clone();
    view! {
        <article class="report" data-testid="report-view">
            <p class="summary">{summary}</p>
            {similarity.map(|s| view! { <p>{s}</p> })}
            <StudySections report=study/>
            {body}
        </article>
    }
}

/// A report's optional study sections (`report-study`), judged as they are: mapper validation by
/// activation patching, per-layer CKA, refusal fidelity and the extraction estimate, with their
/// verdicts. Nothing when the report has none.
#[component]
fn StudySections(report: TransferReport) -> impl IntoView {
    let verdicts = section_verdicts(&report);
    let cka = report.geometry.as_ref().and_then(|g| g.layer_cka.clone()).unwrap_or_default();
    if verdicts.is_empty() && cka.is_empty() {
        return None;
    }
    let maps = report.mapper_validation.clone().unwrap_or_default();
    let map_rows = maps
        .into_iter()
        .map(|m| {
            view! {
                <tr>
                    <td>{wire_name(&m.kind)}</td><td>{format!("{} → {}", m.analog_layer, m.frontier_layer)}</td>
                    <td>{num(Some(m.fvu))}</td><td>{num(Some(m.cosine))}</td>
                    <td>{num(Some(m.kl_patched))}</td><td>{num(Some(m.kl_mean_ablation))}</td>
                    <td>{format!("{:.0}% / {:.0}%", 100.0 * m.agreement_patched, 100.0 * m.agreement_mean_ablation)}</td>
                    <td>{m.n_tokens}</td>
                </tr>
            }
        })
        .collect_view();
    let frontier_layers = cka.iter().map(|l| l.frontier_layer + 1).max().unwrap_or(0);
    let analog_layers = cka.iter().map(|l| l.analog_layer + 1).max().unwrap_or(0);
    let cka_table = (!cka.is_empty()).then(|| {
        let head = (0..frontier_layers).map(|f| view! { <th>{format!("frontier {f}")}</th> }).collect_view();
        let body = (0..analog_layers)
            .map(|a| {
                let cells = (0..frontier_layers)
                    .map(|f| view! { <td>{num(cka.iter().find(|l| l.analog_layer == a && l.frontier_layer == f).map(|l| l.cka))}</td> })
                    .collect_view();
                view! { <tr><th>{format!("analog {a}")}</th>{cells}</tr> }
            })
            .collect_view();
        view! {
            <h4>"Residual-stream similarity per layer (linear CKA)"</h4>
            <table class="cka"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>
        }
    });
    let refusal = report.refusal_fidelity.as_ref().map(|r| {
        format!(
            "Refusal on {} held-out requests: analog {:.0}%, frontier {:.0}%{}. Steered at coefficient {}: the frontier's own refusal direction gives {:.0}%, the analog's mapped {:.0}%, a random one {:.0}%.",
            r.n_requests,
            100.0 * r.analog_refusal_rate,
            100.0 * r.frontier_refusal_rate,
            r.data_refusal_rate.map_or(String::new(), |d| format!(" (the data: {:.0}%)", 100.0 * d)),
            r.coef,
            100.0 * r.frontier_native_rate,
            100.0 * r.frontier_mapped_rate,
            100.0 * r.frontier_random_rate,
        )
    });
    let extraction = report.extraction_estimate.as_ref().map(|e| {
        format!(
            "Extraction: a student of {} parameters trained on {} tokens ({}; the frontier trained on {}) reaches a held-out loss of {:.3}, against the analog's {:.3} and the frontier's {:.3}: {:.0}% of the gap closed.",
            e.student_n_params,
            e.student_tokens,
            e.data,
            e.frontier_tokens,
            e.student_loss,
            e.analog_loss,
            e.frontier_loss,
            100.0 * e.gap_closed,
        )
    });
    Some(view! {
        <section class="study" data-testid="report-study">
            <h3>"The lab's study"</h3>
            <Verdicts verdicts=verdicts/>
            {(!map_rows_empty(&report)).then(|| view! {
                <h4>"Maps from analog to frontier, checked by activation patching"</h4>
                <table class="mappers">
                    <thead><tr><th>"map"</th><th>"layers"</th><th>"FVU"</th><th>"cosine"</th><th>"KL patched"</th><th>"KL mean-ablated"</th><th>"top token kept: patched / mean-ablated"</th><th>"tokens"</th></tr></thead>
                    <tbody>{map_rows}</tbody>
                </table>
            })}
            {cka_table}
            {refusal.map(|t| view! { <p data-testid="report-refusal">{t}</p> })}
            {extraction.map(|t| view! { <p data-testid="report-extraction">{t}</p> })}
        </section>
    })
}

fn map_rows_empty(report: &TransferReport) -> bool {
    report.mapper_validation.as_ref().is_none_or(Vec::is_empty)
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
            <LineChart title=format!("{metric} per coefficient") series=Signal::derive(move || series.clone()) testid="report-chart"
                x_axis=Axis::COEFFICIENT y_axis=Axis::value(metric)/>
            <Verdicts verdicts=iv.verdicts/>
        </section>
    }
}
