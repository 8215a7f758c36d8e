//! The small dense linear algebra extraction needs, on host `f32` rows (`n × d`, row-major).

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let n = norm(a) * norm(b);
    if n > 0.0 { dot(a, b) / n } else { 0.0 }
}

/// Mean of the rows.
pub fn mean_rows(rows: &[Vec<f32>]) -> Vec<f32> {
    let d = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; d];
    for row in rows {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += f64::from(x);
        }
    }
    mean.into_iter().map(|m| (m / rows.len().max(1) as f64) as f32).collect()
}

/// First principal component of the rows after centring them (as sklearn's PCA), by power
/// iteration on `Xᵀ X`; unit length, sign arbitrary.
pub fn first_principal_component(rows: &[Vec<f32>]) -> Vec<f32> {
    let mean = mean_rows(rows);
    let centred: Vec<Vec<f32>> = rows.iter().map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect()).collect();
    let d = mean.len();
    // Start from the largest-norm row: never orthogonal to the top component unless it is degenerate.
    let mut v = centred.iter().max_by(|a, b| norm(a).total_cmp(&norm(b))).cloned().unwrap_or_else(|| vec![1.0; d]);
    if norm(&v) == 0.0 {
        v = vec![1.0; d];
    }
    for _ in 0..500 {
        let mut next = vec![0.0f32; d];
        for row in &centred {
            let p = dot(row, &v);
            for (n, &x) in next.iter_mut().zip(row) {
                *n += p * x;
            }
        }
        let len = norm(&next);
        if len == 0.0 {
            break;
        }
        next.iter_mut().for_each(|x| *x /= len);
        let converged = 1.0 - dot(&next, &v).abs() / norm(&v).max(f32::MIN_POSITIVE) < 1e-9;
        v = next;
        if converged {
            break;
        }
    }
    let len = norm(&v);
    v.into_iter().map(|x| x / len.max(f32::MIN_POSITIVE)).collect()
}

/// L2-regularised logistic regression by full-batch gradient descent on features scaled by their
/// mean row norm; returns the weight vector in the original feature space and the bias.
pub fn logistic_regression(rows: &[Vec<f32>], labels: &[bool], l2: f32, steps: usize) -> (Vec<f32>, f32) {
    let d = rows.first().map_or(0, Vec::len);
    let scale = (rows.iter().map(|r| norm(r)).sum::<f32>() / rows.len().max(1) as f32).max(f32::MIN_POSITIVE);
    let mean = mean_rows(rows);
    let x: Vec<Vec<f32>> = rows.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| (v - m) / scale * (d as f32).sqrt()).collect()).collect();
    let mut w = vec![0.0f32; d];
    let mut b = 0.0f32;
    let n = x.len().max(1) as f32;
    let lr = 0.5;
    for _ in 0..steps {
        let mut grad = vec![0.0f32; d];
        let mut grad_b = 0.0;
        for (row, &y) in x.iter().zip(labels) {
            let p = 1.0 / (1.0 + (-(dot(row, &w) + b)).exp());
            let err = p - f32::from(u8::from(y));
            for (g, &v) in grad.iter_mut().zip(row) {
                *g += err * v;
            }
            grad_b += err;
        }
        for (wi, g) in w.iter_mut().zip(&grad) {
            *wi -= lr * (g / n + l2 * *wi);
        }
        b -= lr * grad_b / n;
    }
    // Undo the scaling: w·((v - m) s') = (w s')·v - (w s')·m.
    let s = (d as f32).sqrt() / scale;
    let w_orig: Vec<f32> = w.iter().map(|x| x * s).collect();
    let b_orig = b - dot(&w_orig, &mean);
    (w_orig, b_orig)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [-1, 1).
    fn noise(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    #[test]
    fn pca_recovers_a_planted_direction() {
        let d = 16;
        let mut rng = noise(3);
        let planted: Vec<f32> = (0..d).map(|i| if i % 3 == 0 { 1.0 } else { -0.5 }).collect();
        let unit: Vec<f32> = planted.iter().map(|x| x / norm(&planted)).collect();
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|_| {
                let t = 5.0 * rng();
                unit.iter().map(|u| t * u + 0.3 * rng()).collect()
            })
            .collect();
        let pc = first_principal_component(&rows);
        assert!(cosine(&pc, &unit).abs() > 0.99, "cos {}", cosine(&pc, &unit));
    }

    #[test]
    fn probe_separates_separable_data() {
        let d = 8;
        let mut rng = noise(11);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            let y = i % 2 == 0;
            let mut row: Vec<f32> = (0..d).map(|_| rng()).collect();
            row[2] += if y { 2.0 } else { -2.0 };
            rows.push(row);
            labels.push(y);
        }
        let (w, b) = logistic_regression(&rows, &labels, 1e-3, 300);
        let correct = rows.iter().zip(&labels).filter(|(r, y)| (dot(r, &w) + b > 0.0) == **y).count();
        assert_eq!(correct, 100);
        assert!(w[2].abs() > w.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, x)| x.abs()).fold(0.0, f32::max) * 2.0);
    }
}
