//! The numbers behind the app's charts: scales from data to drawing units, and round ticks
//! thinned so that their labels fit side by side (whole numbers on a layer axis). Pure
//! arithmetic, tested natively; `ui::charts` draws with it.

/// The width of one character of tick text (11-unit sans-serif digits are about 6.2 wide).
const CHAR_W: f64 = 6.6;
/// Space between two x tick labels.
const TICK_GAP: f64 = 14.0;
/// The x axis is cut into at most this many steps, however much room there is: a 30-layer axis
/// reads 0, 5, … 25.
const MAX_X_STEPS: usize = 6;
const MAX_Y_STEPS: usize = 5;

/// An axis: its title, and whether its values are whole numbers (layers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub title: &'static str,
    pub integer: bool,
}

impl Axis {
    pub const LAYER: Axis = Axis { title: "layer", integer: true };
    pub const COEFFICIENT: Axis = Axis { title: "coefficient", integer: false };

    pub const fn value(title: &'static str) -> Axis {
        Axis { title, integer: false }
    }
}

/// A linear scale from data to viewBox units, with its ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub from: f64,
    pub to: f64,
    pub ticks: Vec<f64>,
    /// Decimals of the tick labels.
    pub decimals: usize,
}

impl Scale {
    pub fn at(&self, v: f64) -> f64 {
        if self.hi > self.lo { self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from) } else { (self.from + self.to) / 2.0 }
    }
}

/// The smallest and largest finite value.
pub fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// A round step (1, 2, 2.5 or 5 times a power of ten; whole numbers when `integer`) that cuts
/// `span` into at most `max` parts.
fn nice_step(span: f64, max: usize, integer: bool) -> f64 {
    let raw = span / max.max(1) as f64;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let multiples: &[f64] = if integer { &[1.0, 2.0, 5.0, 10.0] } else { &[1.0, 2.0, 2.5, 5.0, 10.0] };
    let step = multiples.iter().map(|m| m * magnitude).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * magnitude);
    if integer { step.round().max(1.0) } else { step }
}

/// The multiples of `step` within `[lo, hi]`.
fn ticks_between(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t }).collect()
}

/// The x scale: the data's extent, padded a little, with the most round ticks (up to
/// [`MAX_X_STEPS`]) whose labels fit side by side.
pub fn x_scale(lo: f64, hi: f64, axis: Axis, from: f64, to: f64) -> Scale {
    let pad = if hi > lo { (hi - lo) * 0.03 } else { 0.5 };
    if hi <= lo {
        return Scale { lo: lo - pad, hi: hi + pad, from, to, ticks: vec![lo], decimals: decimals(lo.abs(), axis.integer) };
    }
    let room = to - from;
    let ticks_for = |max: usize| {
        let step = nice_step(hi - lo, max, axis.integer);
        (ticks_between(lo, hi, step), decimals(step, axis.integer))
    };
    let fits = |(ticks, decimals): &(Vec<f64>, usize)| {
        let widest = ticks.iter().map(|t| tick_label(*t, *decimals).chars().count()).max().unwrap_or(1) as f64 * CHAR_W + TICK_GAP;
        ticks.len() as f64 * widest <= room
    };
    // The most steps that fit, else a single step.
    let (ticks, decimals) = (1..=MAX_X_STEPS).rev().map(ticks_for).find(fits).unwrap_or_else(|| ticks_for(1));
    Scale { lo: lo - pad, hi: hi + pad, from, to, ticks, decimals }
}

/// The y scale: widened to round ticks at both ends (so the top and bottom lines are labelled).
pub fn y_scale(lo: f64, hi: f64, from: f64, to: f64) -> Scale {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, hi + 1.0) };
    let step = nice_step(hi - lo, MAX_Y_STEPS, false);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    Scale { lo, hi, from, to, ticks: ticks_between(lo, hi, step), decimals: decimals(step, false) }
}

/// The decimals that write every multiple of `step` exactly (up to 4).
fn decimals(step: f64, integer: bool) -> usize {
    if integer {
        return 0;
    }
    (0..4)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(4)
}

/// A tick's label, without a minus sign on zero.
pub fn tick_label(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// A value as a tooltip or readout shows it.
pub fn value_text(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// An x value as a tooltip shows it: "layer 12", "coefficient 0.25".
pub fn x_text(axis: Axis, x: f64) -> String {
    if axis.integer { format!("{} {x:.0}", axis.title) } else { format!("{} {}", axis.title, value_text(x)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT: f64 = 58.0;
    const RIGHT: f64 = 14.0;
    const W: f64 = 560.0;

    #[test]
    fn thirty_layers_are_ticked_every_fifth_layer() {
        let x = x_scale(0.0, 29.0, Axis::LAYER, LEFT, W - RIGHT);
        assert_eq!(x.ticks, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        let labels: Vec<String> = x.ticks.iter().map(|t| tick_label(*t, x.decimals)).collect();
        assert_eq!(labels, ["0", "5", "10", "15", "20", "25"]);
    }

    #[test]
    fn a_two_layer_model_has_both_layers_ticked() {
        assert_eq!(x_scale(0.0, 1.0, Axis::LAYER, LEFT, W - RIGHT).ticks, vec![0.0, 1.0]);
        assert_eq!(x_scale(3.0, 3.0, Axis::LAYER, LEFT, W - RIGHT).ticks, vec![3.0]);
        let single = x_scale(0.25, 0.25, Axis::COEFFICIENT, LEFT, W - RIGHT);
        assert_eq!(tick_label(single.ticks[0], single.decimals), "0.25", "one coefficient keeps its decimals");
    }

    #[test]
    fn coefficients_get_round_ticks_and_y_ends_on_ticks() {
        let x = x_scale(-1.0, 1.0, Axis::COEFFICIENT, LEFT, W - RIGHT);
        assert_eq!(x.ticks, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        let y = y_scale(0.13, 0.94, 100.0, 0.0);
        assert_eq!((y.lo, y.hi), (0.0, 1.0));
        assert!(y.ticks.len() <= MAX_Y_STEPS + 1 && y.ticks.first() == Some(&0.0) && y.ticks.last() == Some(&1.0), "{:?}", y.ticks);
        assert_eq!(tick_label(-0.0001, 2), "0.00");
        assert_eq!(y_scale(0.0, 0.12, 100.0, 0.0).decimals, 3, "steps of 0.025");
    }

    #[test]
    fn tick_labels_never_need_more_room_than_they_have() {
        for (lo, hi, axis) in [(0.0, 29.0, Axis::LAYER), (0.0, 61.0, Axis::LAYER), (-8.0, 8.0, Axis::COEFFICIENT), (-1.0, 1.0, Axis::COEFFICIENT)] {
            let x = x_scale(lo, hi, axis, LEFT, W - RIGHT);
            for pair in x.ticks.windows(2) {
                let gap = x.at(pair[1]) - x.at(pair[0]);
                let widest = pair.iter().map(|t| tick_label(*t, x.decimals).len()).max().unwrap_or(0) as f64 * CHAR_W;
                assert!(gap > widest, "{lo}..{hi}: ticks {pair:?} are {gap} apart for labels {widest} wide");
            }
        }
    }
}
