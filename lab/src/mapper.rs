//! The ReLU autoencoder mapper of the transfer literature (Oozeer et al.): frontier activations predicted from the
//! analog's as `W2 · ReLU(W1 x + b1) + b2`, with a hidden width of √(d_src · d_tgt), trained with burn's autodiff
//! (AdamW on mean squared error). Beside [`crate::transfer::AffineMap`], which is its linear special case.

use analog_core::read_f32;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::transfer::{FitQuality, fit_quality};

/// How the mapper is trained.
#[derive(Debug, Clone, Copy)]
pub struct MapperTraining {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for MapperTraining {
    fn default() -> Self {
        Self { steps: 2000, batch: 256, lr: 3e-3, seed: 0 }
    }
}

#[derive(Module, Debug)]
struct Net {
    encoder: Linear,
    decoder: Linear,
}

impl Net {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.decoder.forward(relu(self.encoder.forward(x)))
    }
}

/// A trained ReLU mapper, held on the host: `[d_in][hidden]`, `[hidden]`, `[hidden][d_out]`, `[d_out]`.
#[derive(Debug, Clone, Serialize)]
pub struct ReluMapper {
    pub w1: Vec<Vec<f32>>,
    pub b1: Vec<f32>,
    pub w2: Vec<Vec<f32>>,
    pub b2: Vec<f32>,
}

impl ReluMapper {
    /// The hidden width the literature uses: √(d_src · d_tgt), rounded.
    pub fn hidden_width(d_in: usize, d_out: usize) -> usize {
        ((d_in * d_out) as f64).sqrt().round().max(1.0) as usize
    }

    /// Trains on rows `x` (analog) → `y` (frontier); `None` without rows or with rows of unequal width.
    pub fn fit(x: &[Vec<f32>], y: &[Vec<f32>], training: &MapperTraining) -> analog_core::Result<Option<Self>> {
        let n = x.len();
        if n == 0 || y.len() != n {
            return Ok(None);
        }
        let (d_in, d_out) = (x[0].len(), y[0].len());
        if x.iter().any(|r| r.len() != d_in) || y.iter().any(|r| r.len() != d_out) {
            return Ok(None);
        }
        let device = analog_core::device::cpu().autodiff();
        device.seed(training.seed);
        let hidden = Self::hidden_width(d_in, d_out);
        let mut net = Net { encoder: LinearConfig::new(d_in, hidden).init(&device), decoder: LinearConfig::new(hidden, d_out).init(&device) };
        let rows = |rows: &[Vec<f32>], width: usize, device: &Device| {
            Tensor::<2>::from_data(TensorData::new(rows.iter().flatten().copied().collect::<Vec<f32>>(), [rows.len(), width]), device)
        };
        let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
        let batch = training.batch.clamp(1, n);
        for step in 0..training.steps {
            // Consecutive windows over the rows, wrapping around: every row is seen in turn.
            let start = (step * batch) % n;
            let picked: Vec<usize> = (start..start + batch).map(|i| i % n).collect();
            let xb = rows(&picked.iter().map(|&i| x[i].clone()).collect::<Vec<_>>(), d_in, &device);
            let yb = rows(&picked.iter().map(|&i| y[i].clone()).collect::<Vec<_>>(), d_out, &device);
            let loss = (net.forward(xb) - yb).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(training.lr, net, grads);
        }
        let host = |t: Tensor<2>| -> analog_core::Result<Vec<Vec<f32>>> {
            let [r, c] = t.dims();
            Ok(pollster::block_on(read_f32(t))?.chunks_exact(c).take(r).map(<[f32]>::to_vec).collect())
        };
        let vector = |b: Option<burn::module::Param<Tensor<1>>>, width: usize| -> analog_core::Result<Vec<f32>> {
            match b {
                Some(b) => pollster::block_on(read_f32(b.val())),
                None => Ok(vec![0.0; width]),
            }
        };
        Ok(Some(Self {
            w1: host(net.encoder.weight.val())?,
            b1: vector(net.encoder.bias.clone(), hidden)?,
            w2: host(net.decoder.weight.val())?,
            b2: vector(net.decoder.bias.clone(), d_out)?,
        }))
    }

    /// The predicted frontier activation for analog activation `x`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut hidden = self.b1.clone();
        for (xi, row) in x.iter().zip(&self.w1) {
            for (h, w) in hidden.iter_mut().zip(row) {
                *h += xi * w;
            }
        }
        let mut out = self.b2.clone();
        for (h, row) in hidden.iter().zip(&self.w2) {
            let h = h.max(0.0);
            for (o, w) in out.iter_mut().zip(row) {
                *o += h * w;
            }
        }
        out
    }

    pub fn quality(&self, x: &[Vec<f32>], y: &[Vec<f32>]) -> FitQuality {
        fit_quality(x, y, |row| self.apply(row))
    }

    /// A steering vector `v` (a difference of analog activations) carried through the map: the mean
    /// over analog activations `at` of `f(x + v) − f(x)`. The map is not linear, so a difference maps
    /// to what it does to the activations it is added to; for an affine map this is exactly `vW`.
    pub fn apply_direction(&self, v: &[f32], at: &[Vec<f32>]) -> Vec<f32> {
        let mut sum = vec![0.0f64; self.b2.len()];
        for x in at {
            let shifted: Vec<f32> = x.iter().zip(v).map(|(a, b)| a + b).collect();
            for ((s, moved), base) in sum.iter_mut().zip(self.apply(&shifted)).zip(self.apply(x)) {
                *s += f64::from(moved - base);
            }
        }
        sum.iter().map(|s| (s / at.len().max(1) as f64) as f32).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::transfer::AffineMap;

    fn noise(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..width)
                    .map(|_| {
                        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_planted_relu_map_is_recovered_and_beats_the_affine_map() {
        let (d_in, d_out) = (8, 6);
        let hidden = ReluMapper::hidden_width(d_in, d_out);
        assert_eq!(hidden, 7);
        // The planted map: the same architecture with fixed weights.
        let planted =
            ReluMapper { w1: noise(d_in, hidden, 11), b1: noise(1, hidden, 12).remove(0), w2: noise(hidden, d_out, 13), b2: noise(1, d_out, 14).remove(0) };
        let x = noise(1024, d_in, 1);
        let y: Vec<Vec<f32>> = x.iter().map(|r| planted.apply(r)).collect();
        let (held_x, held_y) = (noise(256, d_in, 2), noise(256, d_in, 2).iter().map(|r| planted.apply(r)).collect::<Vec<_>>());
        let mapper = ReluMapper::fit(&x, &y, &MapperTraining { steps: 1500, batch: 128, lr: 1e-2, seed: 3 }).unwrap().unwrap();
        let relu = mapper.quality(&held_x, &held_y);
        let affine = AffineMap::fit(&x, &y, 1e-6).unwrap().quality(&held_x, &held_y);
        assert!(relu.fvu < 0.05, "ReLU mapper FVU {}", relu.fvu);
        assert!(relu.fvu < affine.fvu * 0.5, "ReLU {} vs affine {}", relu.fvu, affine.fvu);
        assert_eq!(ReluMapper::fit(&x[..0], &y[..0], &MapperTraining::default()).unwrap().map(|_| ()), None);
    }

    /// Where every hidden unit stays active the map is affine, and a direction maps through its
    /// linear part `W1 W2`, whatever it is added to; where units switch off, less of it gets through.
    #[test]
    fn directions_map_through_the_active_units() {
        let mapper = ReluMapper { w1: vec![vec![1.0, 0.0], vec![0.0, 2.0]], b1: vec![10.0, 10.0], w2: vec![vec![1.0], vec![1.0]], b2: vec![0.5] };
        let at = noise(16, 2, 5);
        let mapped = mapper.apply_direction(&[0.5, 0.25], &at);
        assert!((mapped[0] - 1.0).abs() < 1e-5, "{mapped:?}");
        let off = ReluMapper { b1: vec![-10.0, 10.0], ..mapper };
        assert!((off.apply_direction(&[0.5, 0.25], &at)[0] - 0.5).abs() < 1e-5);
    }
}
