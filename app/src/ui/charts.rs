//! SVG charts built from typed data: lines over a numeric x axis (layers or coefficients) and bars
//! per layer. Ticks are round numbers thinned to fit the width (whole numbers on a layer axis),
//! both axes have titles, the legend sits under the plot (so no series crosses it), every point
//! tells its value as text on hover and on keyboard focus, and a chosen x (the steering layer) is
//! marked. Every string is a text node, never markup.
//!
//! Hand-written rather than a charting crate: `plotters` draws SVG into a string (markup, no
//! per-point focus or events) and `charming` renders through ECharts in JavaScript; these charts
//! need reactive DOM nodes, and the whole job is ~300 lines of scales and ticks.

use leptos::prelude::*;

pub use crate::scale::Axis;
use crate::scale::{Scale, extent, tick_label, value_text, x_scale, x_text, y_scale};

/// The drawing, in viewBox units: text is 11 units high and scales with the chart.
const W: f64 = 560.0;
const H: f64 = 230.0;
/// Room for the y axis title and tick labels.
const LEFT: f64 = 58.0;
const RIGHT: f64 = 14.0;
/// Room for the chosen x's label.
const TOP: f64 = 16.0;
/// Room for the x tick labels and the x axis title.
const BOTTOM: f64 = 40.0;
/// One line of a [`LineChart`]; `class` picks its colour in the stylesheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A point with both coordinates finite: the only kind a chart draws.
fn drawable(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// Grid lines, tick labels and both axis titles.
fn axes(x: &Scale, y: &Scale, x_axis: Axis, y_axis: Axis) -> impl IntoView {
    let (bottom, top) = (y.from, y.to);
    let y_ticks = y
        .ticks
        .iter()
        .map(|&t| {
            let class = if t == 0.0 && y.ticks.len() > 1 && y.lo < 0.0 { "zero" } else { "grid" };
            view! {
                <line x1=x.from x2=x.to y1=y.at(t) y2=y.at(t) class=class/>
                <text x=x.from - 5.0 y=y.at(t) + 3.5 class="tick y-tick" text-anchor="end">{tick_label(t, y.decimals)}</text>
            }
        })
        .collect_view();
    let x_ticks = x
        .ticks
        .iter()
        .map(|&t| {
            view! {
                <line x1=x.at(t) x2=x.at(t) y1=bottom y2=bottom + 4.0 class="grid"/>
                <text x=x.at(t) y=bottom + 15.0 class="tick x-tick" text-anchor="middle">{tick_label(t, x.decimals)}</text>
            }
        })
        .collect_view();
    let middle = (bottom + top) / 2.0;
    view! {
        {y_ticks}
        {x_ticks}
        <line x1=x.from x2=x.to y1=bottom y2=bottom class="axis-line"/>
        <text x=(x.from + x.to) / 2.0 y=H - 5.0 class="axis" text-anchor="middle">{x_axis.title}</text>
        <text x="12" y=middle class="axis" text-anchor="middle" transform=format!("rotate(-90 12 {middle})")>{y_axis.title}</text>
    }
}

/// The chosen x (the layer steering uses): a dashed line and its label above the plot.
fn marker(x: &Scale, chosen: Option<(f64, String)>) -> impl IntoView + use<> {
    chosen.filter(|(v, _)| v.is_finite() && *v >= x.lo && *v <= x.hi).map(|(v, label)| {
        let at = x.at(v);
        // Anchored so the label stays inside the drawing at either end.
        let anchor = if at < x.from + 40.0 {
            "start"
        } else if at > x.to - 40.0 {
            "end"
        } else {
            "middle"
        };
        view! {
            <g class="marker" data-testid="chart-marker">
                <line x1=at x2=at y1=TOP y2=H - BOTTOM/>
                <text x=at y=TOP - 4.0 text-anchor=anchor>{label}</text>
            </g>
        }
    })
}

/// The legend, under the plot: a swatch (dashed for dashed series) and the name of each series.
fn legend(series: &[Series]) -> impl IntoView + use<> {
    let items = series
        .iter()
        .map(|s| {
            view! {
                <li>
                    <svg width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" class=format!("line {}", s.class) stroke-dasharray=if s.dashed { "4 3" } else { "" }/></svg>
                    {s.name.clone()}
                </li>
            }
        })
        .collect_view();
    view! { <ul class="legend" data-testid="chart-legend">{items}</ul> }
}

/// The value under the pointer or keyboard focus, as text (`chart-readout`).
fn readout(shown: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <p class="readout" data-testid="chart-readout" aria-live="polite">
            {move || shown.get().unwrap_or_else(|| "Point at or tab to a point to read its value.".into())}
        </p>
    }
}

/// Lines over a shared numeric x axis (`testid` on the figure). Each point is focusable and tells
/// its value; `chosen` marks an x with a label; `on_pick` makes a point's x selectable by click or
/// Enter (the layer sweep picks the steering layer).
#[component]
pub fn LineChart(
    #[prop(into)] series: Signal<Vec<Series>>,
    title: String,
    x_axis: Axis,
    y_axis: Axis,
    #[prop(optional)] testid: &'static str,
    #[prop(optional, into)] chosen: Option<Signal<Option<(f64, String)>>>,
    #[prop(optional)] on_pick: Option<Callback<f64>>,
) -> impl IntoView {
    let shown = RwSignal::new(None::<String>);
    // A series with no point to draw (a metric a report leaves out) has no line and no legend entry.
    let series = Signal::derive(move || series.get().into_iter().filter(|s| s.points.iter().any(drawable)).collect::<Vec<_>>());
    let body = move || {
        let series = series.get();
        let all = || series.iter().flat_map(|s| s.points.iter().copied()).filter(drawable);
        let (Some((x0, x1)), Some((y0, y1))) = (extent(all().map(|p| p.0)), extent(all().map(|p| p.1))) else {
            return view! { <text x=LEFT y=H / 2.0 class="empty">"no data yet"</text> }.into_any();
        };
        let x = x_scale(x0, x1, x_axis, LEFT, W - RIGHT);
        let y = y_scale(y0, y1, H - BOTTOM, TOP);
        let lines = series
            .iter()
            .map(|s| {
                let finite: Vec<(f64, f64)> = s.points.iter().copied().filter(drawable).collect();
                let d: String =
                    finite.iter().enumerate().map(|(j, p)| format!("{}{:.1},{:.1}", if j == 0 { "M" } else { "L" }, x.at(p.0), y.at(p.1))).collect();
                let dots = finite
                    .iter()
                    .map(|&(px, py)| {
                        let text = format!("{} · {}: {}", x_text(x_axis, px), s.name, value_text(py));
                        let (hover, focus, label) = (text.clone(), text.clone(), text.clone());
                        let pick = move || {
                            if let Some(pick) = on_pick {
                                pick.run(px);
                            }
                        };
                        view! {
                            <circle cx=x.at(px) cy=y.at(py) r="3" class=format!("point {}", s.class) tabindex="0" role="img" aria-label=label
                                data-x=px data-y=py
                                on:mouseenter=move |_| shown.set(Some(hover.clone()))
                                on:focus=move |_| shown.set(Some(focus.clone()))
                                on:click=move |_| pick()
                                on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { pick() }>
                                <title>{text}</title>
                            </circle>
                        }
                    })
                    .collect_view();
                view! {
                    <path d=d class=format!("line {}", s.class) stroke-dasharray=if s.dashed { "5 3" } else { "" }/>
                    {dots}
                }
            })
            .collect_view();
        let chosen = chosen.and_then(|c| c.get());
        view! { {axes(&x, &y, x_axis, y_axis)}{marker(&x, chosen)}<g class="series">{lines}</g> }.into_any()
    };
    view! {
        <figure class="chart" data-testid=testid class:pickable=on_pick.is_some()>
            <figcaption class="title">{title.clone()}</figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="group" aria-label=title>
                {body}
            </svg>
            {move || legend(&series.get())}
            {readout(shown)}
        </figure>
    }
}

/// One bar per whole-number x (a value per layer), with its value on hover and focus and the
/// chosen x marked.
#[component]
pub fn BarChart(
    #[prop(into)] values: Signal<Vec<(f64, f64)>>,
    title: &'static str,
    x_axis: Axis,
    y_axis: Axis,
    #[prop(optional)] testid: &'static str,
    #[prop(optional, into)] chosen: Option<Signal<Option<(f64, String)>>>,
) -> impl IntoView {
    let shown = RwSignal::new(None::<String>);
    let body = move || {
        let values = values.get();
        let (Some((x0, x1)), Some((_, top))) = (extent(values.iter().map(|v| v.0)), extent(values.iter().map(|v| v.1))) else {
            return view! { <text x=LEFT y=H / 2.0 class="empty">"no data yet"</text> }.into_any();
        };
        // Bars are a slot wide: the scale runs half a slot beyond the first and last x.
        let mut x = x_scale(x0, x1, x_axis, LEFT, W - RIGHT);
        (x.lo, x.hi) = (x0 - 0.5, x1 + 0.5);
        let y = y_scale(0.0, top.max(0.0), H - BOTTOM, TOP);
        let slot = (x.to - x.from) / (x1 - x0 + 1.0);
        let bars = values
            .into_iter()
            .filter(|v| v.1.is_finite())
            .map(|(bx, v)| {
                let text = format!("{}: {}", x_text(x_axis, bx), value_text(v));
                let (hover, focus, label) = (text.clone(), text.clone(), text.clone());
                view! {
                    <rect x=x.at(bx) - slot * 0.35 y=y.at(v) width=slot * 0.7 height=y.at(0.0) - y.at(v) class="bar" tabindex="0" role="img" aria-label=label
                        on:mouseenter=move |_| shown.set(Some(hover.clone()))
                        on:focus=move |_| shown.set(Some(focus.clone()))>
                        <title>{text}</title>
                    </rect>
                }
            })
            .collect_view();
        let chosen = chosen.and_then(|c| c.get());
        view! { {axes(&x, &y, x_axis, y_axis)}{marker(&x, chosen)}<g class="series">{bars}</g> }.into_any()
    };
    view! {
        <figure class="chart" data-testid=testid>
            <figcaption class="title">{title}</figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="group" aria-label=title>
                {body}
            </svg>
            {readout(shown)}
        </figure>
    }
}
