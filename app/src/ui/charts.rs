//! Small SVG charts: bars per layer and lines per coefficient. Scales are computed here; text is
//! rendered as text nodes, never as markup.

use leptos::prelude::*;

const W: f64 = 520.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 30.0;

/// One line of a [`LineChart`]; `class` picks its colour in the stylesheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { 1.0 };
    Some((lo - pad, hi + pad))
}

fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    (0..=4).map(|i| lo + (hi - lo) * f64::from(i) / 4.0).collect()
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Lines over a shared x axis, with a legend.
#[component]
pub fn LineChart(#[prop(into)] series: Signal<Vec<Series>>, title: String, x_label: &'static str, #[prop(optional)] testid: &'static str) -> impl IntoView {
    let body = move || {
        let series = series.get();
        let all = || series.iter().flat_map(|s| s.points.iter().copied());
        let (Some((x0, x1)), Some((y0, y1))) = (extent(all().map(|p| p.0)), extent(all().map(|p| p.1))) else {
            return view! { <text x=LEFT y=H / 2.0 class="empty">"no data yet"</text> }.into_any();
        };
        let sx = move |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
        let sy = move |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
        let grid = ticks(y0, y1)
            .into_iter()
            .map(|t| view! { <line x1=LEFT x2=W - RIGHT y1=sy(t) y2=sy(t) class="grid"/><text x=LEFT - 4.0 y=sy(t) + 4.0 class="tick" text-anchor="end">{label(t)}</text> })
            .collect_view();
        let xs: Vec<f64> = {
            let mut xs: Vec<f64> = all().map(|p| p.0).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            xs
        };
        let xticks = xs.into_iter().map(|t| view! { <text x=sx(t) y=H - BOTTOM + 14.0 class="tick" text-anchor="middle">{label(t)}</text> }).collect_view();
        let zero = (y0 < 0.0 && y1 > 0.0).then(|| view! { <line x1=LEFT x2=W - RIGHT y1=sy(0.0) y2=sy(0.0) class="zero"/> });
        let lines = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let d = s
                    .points
                    .iter()
                    .filter(|p| p.1.is_finite())
                    .enumerate()
                    .map(|(j, p)| format!("{}{:.1},{:.1}", if j == 0 { "M" } else { "L" }, sx(p.0), sy(p.1)))
                    .collect::<String>();
                let dots = s.points.iter().filter(|p| p.1.is_finite()).map(|p| view! { <circle cx=sx(p.0) cy=sy(p.1) r="2.5" class=s.class/> }).collect_view();
                let legend_y = TOP + 4.0 + 14.0 * i as f64;
                view! {
                    <path d=d class=format!("line {}", s.class) stroke-dasharray=if s.dashed { "5 3" } else { "" }/>
                    {dots}
                    <rect x=W - RIGHT - 190.0 y=legend_y - 8.0 width="10" height="10" class=s.class/>
                    <text x=W - RIGHT - 176.0 y=legend_y + 1.0 class="legend">{s.name.clone()}</text>
                }
            })
            .collect_view();
        view! { {grid}{zero}{xticks}{lines} }.into_any()
    };
    view! {
        <figure class="chart" data-testid=testid>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title.clone()>
                <text x=LEFT y="14" class="title">{title.clone()}</text>
                {body}
                <text x=(W + LEFT) / 2.0 y=H - 4.0 class="axis" text-anchor="middle">{x_label}</text>
            </svg>
        </figure>
    }
}

/// Bars with labels (e.g. a norm per layer).
#[component]
pub fn BarChart(#[prop(into)] values: Signal<Vec<(String, f64)>>, title: &'static str) -> impl IntoView {
    let body = move || {
        let values = values.get();
        let max = values.iter().map(|v| v.1).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-12);
        let n = values.len().max(1) as f64;
        let slot = (W - LEFT - RIGHT) / n;
        values
            .into_iter()
            .enumerate()
            .map(|(i, (name, v))| {
                let h = if v.is_finite() { v / max * (H - TOP - BOTTOM) } else { 0.0 };
                let x = LEFT + slot * i as f64 + slot * 0.15;
                view! {
                    <rect x=x y=H - BOTTOM - h width=slot * 0.7 height=h class="bar"><title>{format!("{name}: {v:.3}")}</title></rect>
                    <text x=x + slot * 0.35 y=H - BOTTOM + 14.0 class="tick" text-anchor="middle">{name}</text>
                    <text x=x + slot * 0.35 y=H - BOTTOM - h - 3.0 class="tick" text-anchor="middle">{label(v)}</text>
                }
            })
            .collect_view()
    };
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title>
                <text x=LEFT y="14" class="title">{title}</text>
                {body}
            </svg>
        </figure>
    }
}
