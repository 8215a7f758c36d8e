//! The residual stream at a glance: per-layer norms and the logit lens (each layer's residual read
//! through the final norm and the unembedding) at one position.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::generate::{TextModel, read_f32};
use crate::hooks::{HookPoint, Hooks};

/// One layer's residual at the inspected position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensRow {
    pub layer: usize,
    /// L2 norm of `resid_post`.
    pub resid_norm: f32,
    /// The `top` most likely next tokens under the logit lens, with their probabilities.
    pub top: Vec<(u32, f32)>,
}

/// Runs `ids` once and reads every layer's `resid_post` at the last position.
pub async fn logit_lens(model: &TextModel, ids: &[u32], top: usize) -> Result<Vec<LensRow>> {
    let n_layers = model.config().n_layers;
    let mut hooks = Hooks::new().capture_all((0..n_layers).map(HookPoint::ResidPost));
    model.prefill(&[ids.to_vec()], &mut hooks)?;
    let last = ids.len() - 1;
    let mut rows = Vec::with_capacity(n_layers);
    for layer in 0..n_layers {
        let Some(resid) = hooks.take(HookPoint::ResidPost(layer)) else { continue };
        let resid = resid.slice_dim(1, last..last + 1);
        let values = read_f32(resid.clone()).await?;
        let resid_norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        let logits = read_f32(model.model.unembed(model.model.ln_final.forward(resid))).await?;
        rows.push(LensRow { layer, resid_norm, top: top_probabilities(&logits, top) });
    }
    Ok(rows)
}

/// The `k` largest softmax probabilities of `logits`, most likely first.
pub fn top_probabilities(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    order.into_iter().take(k).map(|i| (i, (logits[i as usize] - max).exp() / total)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn top_probabilities_are_sorted_and_normalised() {
        let top = top_probabilities(&[0.0, 2.0, 1.0], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        let sum: f32 = top.iter().map(|t| t.1).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
}
