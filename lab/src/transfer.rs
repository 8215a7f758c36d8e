//! The transfer study: per pair set, extract on the analog and on the frontier, fit an affine map
//! from analog to frontier residual streams on corpus activations, apply the native, the mapped
//! and an equal-norm random vector on the frontier across coefficients, and write it all as a v1
//! transfer report. Also Lee et al.'s global similarity of the two embedding matrices.

use analog_core::report::stats::global_similarity;
use analog_core::steering::linalg::{cosine, norm};
use analog_core::steering::metrics::{EvalSpec, MetricRow, evaluate};
use analog_core::steering::{Aggregation, HookSite, Method, PairSet, SteeringVector, VectorModel, collect, steering_vector};
use analog_core::{HookPoint, Hooks, Model, TextModel, read_f32};
use serde::Serialize;

/// An affine map `y ≈ x W + b` from analog to frontier activations.
#[derive(Debug, Clone, Serialize)]
pub struct AffineMap {
    /// `[d_in][d_out]`
    pub weight: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

/// Fit quality on held-out rows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FitQuality {
    /// Fraction of variance unexplained: Σ‖y − ŷ‖² / Σ‖y − ȳ‖².
    pub fvu: f64,
    /// Mean cosine between ŷ and y.
    pub cosine: f64,
}

impl AffineMap {
    /// Ridge-regularised least squares (`ridge` × the mean diagonal of XᵀX) via the normal equations.
    pub fn fit(x: &[Vec<f32>], y: &[Vec<f32>], ridge: f64) -> Option<Self> {
        let (n, d_in, d_out) = (x.len(), x.first()?.len(), y.first()?.len());
        let k = d_in + 1;
        // Augmented [x, 1].
        let mut xtx = vec![vec![0.0f64; k]; k];
        let mut xty = vec![vec![0.0f64; d_out]; k];
        for (xi, yi) in x.iter().zip(y) {
            let row: Vec<f64> = xi.iter().map(|&v| f64::from(v)).chain(std::iter::once(1.0)).collect();
            for a in 0..k {
                for b in 0..k {
                    xtx[a][b] += row[a] * row[b];
                }
                for (o, &yv) in yi.iter().enumerate() {
                    xty[a][o] += row[a] * f64::from(yv);
                }
            }
        }
        let scale = (0..d_in).map(|i| xtx[i][i]).sum::<f64>() / d_in.max(1) as f64;
        for (i, row) in xtx.iter_mut().enumerate().take(d_in) {
            row[i] += ridge * scale;
        }
        let solution = solve(xtx, xty)?;
        let _ = n;
        Some(Self { weight: solution[..d_in].to_vec(), bias: solution[d_in].clone() })
    }

    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = self.bias.clone();
        for (xi, row) in x.iter().zip(&self.weight) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += f64::from(*xi) * w;
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    /// The linear part only: how a direction (a difference of activations) maps.
    pub fn apply_direction(&self, v: &[f32]) -> Vec<f32> {
        let d_out = self.bias.len();
        let mut out = vec![0.0f64; d_out];
        for (xi, row) in v.iter().zip(&self.weight) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += f64::from(*xi) * w;
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    pub fn quality(&self, x: &[Vec<f32>], y: &[Vec<f32>]) -> FitQuality {
        fit_quality(x, y, |row| self.apply(row))
    }
}

/// How well `predict` gives `y` from `x`, on held-out rows.
pub fn fit_quality(x: &[Vec<f32>], y: &[Vec<f32>], predict: impl Fn(&[f32]) -> Vec<f32>) -> FitQuality {
    let d_out = y.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; d_out];
    for yi in y {
        for (m, v) in mean.iter_mut().zip(yi) {
            *m += f64::from(*v) / y.len() as f64;
        }
    }
    let (mut residual, mut total, mut cos) = (0.0, 0.0, 0.0);
    for (xi, yi) in x.iter().zip(y) {
        let pred = predict(xi);
        residual += pred.iter().zip(yi).map(|(p, t)| f64::from(p - t).powi(2)).sum::<f64>();
        total += yi.iter().zip(&mean).map(|(t, m)| (f64::from(*t) - m).powi(2)).sum::<f64>();
        cos += f64::from(cosine(&pred, yi));
    }
    FitQuality { fvu: residual / total.max(1e-30), cosine: cos / y.len().max(1) as f64 }
}

/// Solves `A X = B` (A square) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                if f != 0.0 {
                    let pivot_a = std::mem::take(&mut a[col]);
                    for (t, p) in a[row][col..n].iter_mut().zip(&pivot_a[col..n]) {
                        *t -= f * p;
                    }
                    a[col] = pivot_a;
                    let pivot_row = std::mem::take(&mut b[col]);
                    for (t, p) in b[row].iter_mut().zip(&pivot_row) {
                        *t -= f * p;
                    }
                    b[col] = pivot_row;
                }
            }
        }
    }
    Some((0..n).map(|i| b[i].iter().map(|v| v / a[i][i]).collect()).collect())
}

/// Residual-stream activations at `point` for every position of `windows` (one row per token).
pub fn activations(model: &Model, windows: &[Vec<u32>], point: HookPoint) -> analog_core::Result<Vec<Vec<f32>>> {
    let d = model.config.d_model;
    let mut rows = Vec::new();
    for chunk in windows.chunks(16) {
        let mut hooks = Hooks::new().capture(point);
        model.prefill(chunk, &mut hooks)?;
        let acts = hooks.take(point).ok_or_else(|| analog_core::Error::UnknownHook(point.to_string()))?;
        rows.extend(pollster::block_on(read_f32(acts))?.chunks_exact(d).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// The embedding matrix rows (one per token id).
pub fn embedding_rows(model: &Model) -> analog_core::Result<Vec<Vec<f32>>> {
    let d = model.config.d_model;
    Ok(pollster::block_on(read_f32(model.embed.val()))?.chunks_exact(d).map(<[f32]>::to_vec).collect())
}

/// Lee et al.'s global similarity over the first `n_tokens` token ids shared by both vocabularies.
pub fn embedding_similarity(analog: &Model, frontier: &Model, n_tokens: usize) -> analog_core::Result<f64> {
    let (a, f) = (embedding_rows(analog)?, embedding_rows(frontier)?);
    let n = n_tokens.min(a.len()).min(f.len());
    Ok(global_similarity(&a[..n], &f[..n]).unwrap_or(0.0))
}

/// Everything measured for one pair set.
pub struct Study {
    pub pairs: PairSet,
    pub analog_vector: SteeringVector,
    pub native_vector: SteeringVector,
    pub mapped_vector: SteeringVector,
    pub analog_rows: Vec<MetricRow>,
    pub native_rows: Vec<MetricRow>,
    pub mapped_rows: Vec<MetricRow>,
    pub cos_mapped_native: f32,
}

/// Extracts on both models, maps, and measures.
#[allow(clippy::too_many_arguments)]
pub async fn study(
    analog: &TextModel,
    frontier: &TextModel,
    ids: (&VectorModel, &VectorModel),
    pairs: PairSet,
    layers: (usize, usize),
    map: &AffineMap,
    coefs: &[f32],
    spec: &EvalSpec,
) -> analog_core::Result<Study> {
    let site = HookSite::ResidPost;
    let (la, lf) = layers;
    let acts_a = collect(analog, &pairs, site, Aggregation::Last, &mut analog_core::progress::Silent).await?;
    let analog_vector = steering_vector(&acts_a, Method::MeanDiff, &[la], ids.0.clone(), &pairs)?;
    let acts_f = collect(frontier, &pairs, site, Aggregation::Last, &mut analog_core::progress::Silent).await?;
    let native_vector = steering_vector(&acts_f, Method::MeanDiff, &[lf], ids.1.clone(), &pairs)?;
    let mut mapped_vector = native_vector.clone();
    mapped_vector.method = Method::Imported;
    let (Some(a_dir), Some(n_dir)) = (analog_vector.directions.get(&la), native_vector.directions.get(&lf)) else {
        return Err(analog_core::Error::Report("extraction produced no direction".into()));
    };
    let mapped = map.apply_direction(&a_dir.direction);
    let cos_mapped_native = cosine(&mapped, &n_dir.direction);
    if let Some(d) = mapped_vector.directions.get_mut(&lf) {
        // The frontier's own residual scale, so `normalise` gives both vectors the same magnitude.
        d.norm = norm(&mapped);
        d.direction = mapped;
    }
    let analog_rows = evaluate(analog, &analog_vector, coefs, spec, &mut analog_core::progress::Silent).await?;
    let native_rows = evaluate(frontier, &native_vector, coefs, spec, &mut analog_core::progress::Silent).await?;
    let mapped_rows = evaluate(frontier, &mapped_vector, coefs, spec, &mut analog_core::progress::Silent).await?;
    Ok(Study { pairs, analog_vector, native_vector, mapped_vector, analog_rows, native_rows, mapped_rows, cos_mapped_native })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_mapper_recovers_a_planted_affine_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (d_in, d_out) = (5, 7);
        let w: Vec<Vec<f32>> = (0..d_in).map(|_| (0..d_out).map(|_| crate::train::normal(&mut rng)).collect()).collect();
        let b: Vec<f32> = (0..d_out).map(|_| crate::train::normal(&mut rng)).collect();
        let x: Vec<Vec<f32>> = (0..400).map(|_| (0..d_in).map(|_| crate::train::normal(&mut rng)).collect()).collect();
        let y: Vec<Vec<f32>> = x
            .iter()
            .map(|xi| (0..d_out).map(|o| b[o] + (0..d_in).map(|i| xi[i] * w[i][o]).sum::<f32>() + 0.01 * crate::train::normal(&mut rng)).collect())
            .collect();
        let map = AffineMap::fit(&x[..300], &y[..300], 0.0).unwrap();
        assert_eq!(map.weight.len(), d_in);
        for (i, (fitted, truth)) in map.weight.iter().zip(&w).enumerate() {
            for (o, (m, t)) in fitted.iter().zip(truth).enumerate() {
                assert!((m - f64::from(*t)).abs() < 0.01, "w[{i}][{o}]");
            }
        }
        let q = map.quality(&x[300..], &y[300..]);
        assert!(q.fvu < 1e-3 && q.cosine > 0.999, "{q:?}");
        // A map of unrelated targets explains nothing.
        let noise: Vec<Vec<f32>> = (0..400).map(|_| (0..d_out).map(|_| crate::train::normal(&mut rng)).collect()).collect();
        let bad = AffineMap::fit(&x[..300], &noise[..300], 0.0).unwrap();
        assert!(bad.quality(&x[300..], &noise[300..]).fvu > 0.9);
    }

    #[test]
    fn global_similarity_matches_a_plain_computation() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let a: Vec<Vec<f32>> = (0..20).map(|_| (0..6).map(|_| crate::train::normal(&mut rng)).collect()).collect();
        let b: Vec<Vec<f32>> = (0..20).map(|_| (0..9).map(|_| crate::train::normal(&mut rng)).collect()).collect();
        // Plain: full cosine matrices, upper triangles, textbook Pearson.
        let cos_matrix = |m: &[Vec<f32>]| -> Vec<f64> {
            let mut out = Vec::new();
            for i in 0..m.len() {
                for j in i + 1..m.len() {
                    out.push(f64::from(cosine(&m[i], &m[j])));
                }
            }
            out
        };
        let (x, y) = (cos_matrix(&a), cos_matrix(&b));
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cov: f64 = x.iter().zip(&y).map(|(p, q)| (p - mx) * (q - my)).sum();
        let r = cov / (x.iter().map(|p| (p - mx).powi(2)).sum::<f64>().sqrt() * y.iter().map(|q| (q - my).powi(2)).sum::<f64>().sqrt());
        assert!((global_similarity(&a, &b).unwrap() - r).abs() < 1e-6);
    }
}
