//! Validating an analog-to-frontier map by activation patching, as Oozeer et al. do: replace the
//! frontier's residual stream at one layer by the mapped analog activations of the same tokens and
//! see how far the frontier's next-token predictions move (KL from the clean run, and whether the top
//! token survives), against replacing it by its mean (mean-ablation), which keeps nothing
//! token-specific.

use analog_core::{Edit, EditOp, HookPoint, Hooks, Model, Positions, read_f32};
use serde::Serialize;

/// How far patching moved the frontier's predictions, averaged over every position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PatchScores {
    /// Mean KL(clean ‖ patched) in nats.
    pub kl: f64,
    /// Share of positions whose top next token is unchanged.
    pub agreement: f64,
    pub n_tokens: u64,
}

/// Next-token log-probabilities `[position][vocab]` of one window with `hooks` applied.
fn log_probs(model: &Model, window: &[u32], hooks: &mut Hooks) -> analog_core::Result<Vec<Vec<f64>>> {
    let logits = model.unembed(model.prefill(&[window.to_vec()], hooks)?);
    let vocab = model.config.vocab_size;
    let flat = pollster::block_on(read_f32(logits))?;
    Ok(flat
        .chunks_exact(vocab)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_z = f64::from(max) + row.iter().map(|&x| f64::from(x - max).exp()).sum::<f64>().ln();
            row.iter().map(|&x| f64::from(x) - log_z).collect()
        })
        .collect())
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Runs each window clean and with `resid_post(layer)` replaced, position by position, by
/// `replacement(window, position)`; returns the mean KL and top-token agreement over all positions.
pub fn patch_scores(frontier: &Model, layer: usize, windows: &[Vec<u32>], replacement: &dyn Fn(usize, usize) -> Vec<f32>) -> analog_core::Result<PatchScores> {
    let (mut kl, mut agree, mut n) = (0.0, 0usize, 0usize);
    for (w, window) in windows.iter().enumerate() {
        let clean = log_probs(frontier, window, &mut Hooks::new())?;
        let mut hooks = (0..window.len()).fold(Hooks::new(), |hooks, t| {
            hooks.edit(Edit::new(HookPoint::ResidPost(layer), EditOp::Replace(replacement(w, t)), Positions { start: t, end: Some(t + 1) }))
        });
        let patched = log_probs(frontier, window, &mut hooks)?;
        for (c, p) in clean.iter().zip(&patched) {
            kl += c.iter().zip(p).map(|(lc, lp)| lc.exp() * (lc - lp)).sum::<f64>().max(0.0);
            agree += usize::from(argmax(c) == argmax(p));
            n += 1;
        }
    }
    let n_tokens = n.max(1) as f64;
    Ok(PatchScores { kl: kl / n_tokens, agreement: agree as f64 / n_tokens, n_tokens: n as u64 })
}

/// The mean of `rows` (the mean-ablation value).
pub fn mean_row(rows: &[Vec<f32>]) -> Vec<f32> {
    let width = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; width];
    for row in rows {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    mean.iter().map(|m| (m / rows.len().max(1) as f64) as f32).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::train::Shape;

    fn model(seed: u64) -> Model {
        let shape = Shape { vocab_size: 32, d_model: 16, n_layers: 2, n_heads: 2, n_kv_heads: 1, d_mlp: 24, context_length: 32 };
        crate::train::load(&shape.config_json(0).unwrap(), &shape.init_safetensors(seed).unwrap(), &analog_core::device::cpu()).unwrap()
    }

    /// Patching in the frontier's own activations changes nothing; its mean changes the
    /// predictions; a planted copy passed through an exactly inverted map changes nothing either.
    #[test]
    fn patching_with_the_true_activations_is_exact_and_the_mean_is_not() {
        let frontier = model(1);
        let windows: Vec<Vec<u32>> = (0..3u32).map(|w| (0..12).map(|t| (w * 7 + t * 5) % 32).collect()).collect();
        let own = crate::transfer::activations(&frontier, &windows, HookPoint::ResidPost(0)).unwrap();
        let exact = patch_scores(&frontier, 0, &windows, &|w, t| own[w * 12 + t].clone()).unwrap();
        assert_eq!(exact.n_tokens, 36);
        assert!(exact.kl < 1e-9 && exact.agreement == 1.0, "{exact:?}");
        let mean = mean_row(&own);
        let ablated = patch_scores(&frontier, 0, &windows, &|_, _| mean.clone()).unwrap();
        assert!(ablated.kl > 1e-4 && ablated.kl > exact.kl, "{ablated:?}");
        // A doubled copy undone by its inverse: the map, not the source, decides the result.
        let doubled: Vec<Vec<f32>> = own.iter().map(|r| r.iter().map(|v| 2.0 * v).collect()).collect();
        let mapped = patch_scores(&frontier, 0, &windows, &|w, t| doubled[w * 12 + t].iter().map(|v| v / 2.0).collect()).unwrap();
        assert!(mapped.kl < 1e-9);
    }
}
