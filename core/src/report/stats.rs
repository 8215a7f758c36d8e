//! Curve statistics for comparisons: correlations and least-squares slopes.

/// Pearson correlation; `None` with fewer than 3 points or a constant series.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n != y.len() || n < 3 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    let denominator = (sxx * syy).sqrt();
    (denominator > 1e-300).then(|| (sxy / denominator).clamp(-1.0, 1.0))
}

/// Spearman rank correlation (ties get their average rank).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Least-squares slope of `y` against `x`; `None` with fewer than 2 distinct `x`.
pub fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        // Positions i..=j tie: each gets the mean of ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn correlations_and_slope() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 4.1, 5.9, 8.2, 9.9];
        assert!(pearson(&x, &y).unwrap() > 0.99);
        assert!((pearson(&x, &y.map(|v| -v)).unwrap() + pearson(&x, &y).unwrap()).abs() < 1e-12);
        // Monotone but non-linear: Spearman is exactly 1, Pearson is not.
        let cubic = x.map(|v: f64| v.powi(5));
        assert!((spearman(&x, &cubic).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&x, &cubic).unwrap() < 0.99);
        assert_eq!(pearson(&x, &[1.0; 5]), None);
        assert_eq!(pearson(&x[..2], &y[..2]), None);
        assert!((slope(&x, &y).unwrap() - 1.99).abs() < 1e-9);
        assert_eq!(slope(&[1.0, 1.0], &[0.0, 1.0]), None);
    }

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    }
}

/// Lee et al.'s global similarity of two embedding geometries: the Pearson r between the token
/// cosine-similarity matrices of `a` and `b` (row `i` of each is the same token), over the upper
/// triangle without the diagonal. The two widths may differ.
pub fn global_similarity(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let unit = |rows: &[Vec<f32>]| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| {
                let n = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt().max(1e-30);
                r.iter().map(|v| f64::from(*v) / n).collect()
            })
            .collect()
    };
    let (ua, ub) = (unit(a), unit(b));
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for i in 0..ua.len() {
        for j in i + 1..ua.len() {
            sa.push(dot(&ua[i], &ua[j]));
            sb.push(dot(&ub[i], &ub[j]));
        }
    }
    pearson(&sa, &sb)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod geometry_tests {
    use super::*;

    #[test]
    fn global_similarity_is_one_under_rotation_and_scale() {
        let a: Vec<Vec<f32>> = (0..6).map(|i| vec![(i as f32).sin(), (i as f32 * 0.7).cos(), i as f32 * 0.1]).collect();
        // An orthogonal map padded into 4 dimensions preserves every cosine.
        let b: Vec<Vec<f32>> = a.iter().map(|r| vec![2.0 * r[1], -2.0 * r[0], 2.0 * r[2], 0.0]).collect();
        assert!((global_similarity(&a, &b).unwrap() - 1.0).abs() < 1e-9);
        let noise: Vec<Vec<f32>> = (0..6).map(|i| vec![((i * 7919) % 13) as f32 - 6.0, ((i * 104729) % 7) as f32 - 3.0, 1.0]).collect();
        assert!(global_similarity(&a, &noise).unwrap() < 0.9);
    }
}

/// Linear CKA (Kornblith et al. 2019) between two sets of activations of the same examples (row `i` of each is the
/// same token; the widths may differ): `‖Yᵀ X‖²_F / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F)` with every column centred. 1 for
/// representations equal up to rotation, isotropic scaling and translation; near 0 for unrelated ones. `None`
/// with fewer than 2 rows, rows of unequal width, or a set with no variance.
pub fn linear_cka(x: &[Vec<f32>], y: &[Vec<f32>]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let centred = |rows: &[Vec<f32>]| -> Option<Vec<Vec<f64>>> {
        let width = rows[0].len();
        if rows.iter().any(|r| r.len() != width) {
            return None;
        }
        let mut mean = vec![0.0f64; width];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.len() as f64);
        Some(rows.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| f64::from(*v) - m).collect()).collect())
    };
    // Σ v² of the raw rows: what "no variance" is judged against (centring a constant leaves rounding dust).
    let energy = |rows: &[Vec<f32>]| rows.iter().flatten().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    let (energy_x, energy_y) = (energy(x), energy(y));
    let (x, y) = (centred(x)?, centred(y)?);
    // ‖Aᵀ B‖²_F, accumulated as the [width_a, width_b] cross-product matrix.
    let cross = |a: &[Vec<f64>], b: &[Vec<f64>]| -> f64 {
        let (wa, wb) = (a[0].len(), b[0].len());
        let mut product = vec![0.0f64; wa * wb];
        for (ra, rb) in a.iter().zip(b) {
            for (i, va) in ra.iter().enumerate() {
                for (p, vb) in product[i * wb..(i + 1) * wb].iter_mut().zip(rb) {
                    *p += va * vb;
                }
            }
        }
        product.iter().map(|p| p * p).sum()
    };
    let (xx, yy) = (cross(&x, &x).sqrt(), cross(&y, &y).sqrt());
    if xx <= 1e-20 * energy_x || yy <= 1e-20 * energy_y || xx * yy <= 1e-300 {
        return None;
    }
    Some((cross(&y, &x) / (xx * yy)).clamp(0.0, 1.0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod cka_tests {
    use super::*;

    /// Deterministic pseudo-random rows.
    fn rows(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..width)
                    .map(|_| {
                        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn cka_is_one_up_to_rotation_scale_and_shift_and_small_for_unrelated_sets() {
        let x = rows(200, 3, 1);
        assert!((linear_cka(&x, &x).unwrap() - 1.0).abs() < 1e-9);
        // A rotation in the first two coordinates, scaled, shifted and padded with a constant column.
        let (c, s) = (0.6f32, 0.8f32);
        let y: Vec<Vec<f32>> = x.iter().map(|r| vec![3.0 * (c * r[0] - s * r[1]) + 5.0, 3.0 * (s * r[0] + c * r[1]) - 1.0, 3.0 * r[2], 7.0]).collect();
        assert!((linear_cka(&x, &y).unwrap() - 1.0).abs() < 1e-9);
        // Unrelated sets: CKA of independent noise is of the order of width / n.
        assert!(linear_cka(&x, &rows(200, 5, 2)).unwrap() < 0.1);
        // Keeping only one of the three directions: between the two.
        let part: Vec<Vec<f32>> = x.iter().map(|r| vec![r[0]]).collect();
        let partial = linear_cka(&x, &part).unwrap();
        assert!(partial > 0.3 && partial < 0.8, "{partial}");
        assert_eq!(linear_cka(&x[..1], &x[..1]), None);
        assert_eq!(linear_cka(&x, &vec![vec![1.0f32]; 200]), None, "no variance");
    }
}
