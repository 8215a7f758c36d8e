//! Steering-vector extraction from contrastive pairs: one forward pass per prompt captures every
//! layer, then mean difference, PCA of differences, PCA of centred pairs or a logistic probe.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use analog_kernels::{ClassStats, RowOf};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::linalg::{cosine, dot, first_principal_component, logistic_regression, mean_rows, norm};
use super::pairs::PairSet;
use super::vector::{Direction, HookSite, SteeringVector, VectorModel, VectorPairs};
use crate::chat::ChatMessage;
use crate::error::{Error, Result};
use crate::generate::{TextModel, read_f32};
use crate::hooks::Hooks;
use crate::model::Model;
use crate::progress::Progress;

/// How a direction is computed from paired activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Mean of `positive − negative` (CAA, ActAdd).
    MeanDiff,
    /// First principal component of the paired differences (repeng `pca_diff`), unit length.
    Pca,
    /// First principal component of activations centred on each pair's mean (repeng `pca_center`).
    PcaCenter,
    /// Weights of a logistic-regression probe separating positives from negatives.
    Probe,
    /// Read from a file that does not say how it was made (e.g. a foreign GGUF control vector).
    Imported,
}

impl Method {
    pub const ALL: [Method; 4] = [Self::MeanDiff, Self::Pca, Self::PcaCenter, Self::Probe];
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MeanDiff => "mean-diff",
            Self::Pca => "pca",
            Self::PcaCenter => "pca-center",
            Self::Probe => "probe",
            Self::Imported => "imported",
        })
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|m| m.to_string() == s).ok_or_else(|| format!("unknown method `{s}`; expected mean-diff, pca, pca-center or probe"))
    }
}

/// Which token positions of a prompt represent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The last token (CAA).
    Last,
    /// The mean over all positions.
    Mean,
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Last => "last",
            Self::Mean => "mean",
        })
    }
}

impl FromStr for Aggregation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "last" => Ok(Self::Last),
            "mean" => Ok(Self::Mean),
            other => Err(format!("unknown aggregation `{other}`; expected last or mean")),
        }
    }
}

/// Per layer, one aggregated activation per positive and per negative prompt (pair order).
#[derive(Debug, Clone)]
pub struct PairActivations {
    pub site: HookSite,
    pub aggregation: Aggregation,
    /// `[layer][pair][d_model]`
    pub positive: Vec<Vec<Vec<f32>>>,
    pub negative: Vec<Vec<Vec<f32>>>,
}

/// Prompts per forward pass during extraction.
const BATCH: usize = 16;

/// Runs every prompt once, capturing `site` at every layer. `progress(done, total)` is called after
/// each batch of prompts.
pub async fn collect(model: &TextModel, pairs: &PairSet, site: HookSite, aggregation: Aggregation, progress: &mut impl Progress) -> Result<PairActivations> {
    collect_ids(&model.model, &encode_pairs(model, pairs, PromptFormat::Plain)?, site, aggregation, progress).await
}

/// How a pair's prompts become token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// The text as it is, after the tokenizer's BOS.
    #[default]
    Plain,
    /// In the model's chat template: the prompt (a CAA item's question) as the user's turn, then the
    /// assistant's turn opened, with a CAA item's answer after it. Read at the last token, the
    /// activation is where an instruct model is about to reply (Arditi et al.'s post-instruction
    /// position), or at its answer letter (Rimsky et al.'s CAA).
    Chat,
}

impl PromptFormat {
    /// Plain text, the format files leave out.
    pub fn is_plain(&self) -> bool {
        *self == Self::Plain
    }
}

/// Every pair's positive then negative prompt as token ids, in `format`.
pub fn encode_pairs(model: &TextModel, pairs: &PairSet, format: PromptFormat) -> Result<Vec<Vec<u32>>> {
    let mut encoded = Vec::with_capacity(2 * pairs.len());
    for pair in &pairs.pairs {
        for prompt in [&pair.positive, &pair.negative] {
            encoded.push(match format {
                PromptFormat::Plain => model.encode(prompt)?,
                PromptFormat::Chat => {
                    let (user, answer) = pair.chat_turns(prompt);
                    let mut ids = model.chat_ids(&[ChatMessage::user(user)])?;
                    ids.extend(model.tokenizer.encode_plain(answer)?);
                    ids
                }
            });
        }
    }
    Ok(encoded)
}

/// Refuses prompts longer than the context or with no tokens before any forward pass.
fn check_prompts(model: &Model, encoded: &[Vec<u32>]) -> Result<()> {
    let limit = model.config.context_length;
    if let Some(long) = encoded.iter().find(|ids| ids.len() > limit) {
        return Err(Error::ContextTooLong { prompt: long.len(), new: 0, needed: long.len(), limit });
    }
    if encoded.iter().any(Vec::is_empty) {
        return Err(Error::EmptyPrompt);
    }
    Ok(())
}

/// [`collect`] on token ids: `encoded` alternates positive and negative prompts.
pub async fn collect_ids(
    model: &Model,
    encoded: &[Vec<u32>],
    site: HookSite,
    aggregation: Aggregation,
    progress: &mut impl Progress,
) -> Result<PairActivations> {
    let n_layers = model.config.n_layers;
    check_prompts(model, encoded)?;
    let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(encoded.len()); n_layers];
    for (b, batch) in encoded.chunks(BATCH).enumerate() {
        let mut hooks = Hooks::new().capture_all((0..n_layers).map(|l| site.at(l)));
        model.prefill(batch, &mut hooks)?;
        // [layer, batch, d]: one readback per batch.
        let per_layer: Vec<Tensor<2>> = (0..n_layers)
            .map(|l| {
                let acts = hooks.take(site.at(l)).ok_or_else(|| Error::UnknownHook(site.at(l).to_string()))?;
                let per_row: Vec<Tensor<2>> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| {
                        let row = acts.clone().slice([i..i + 1, 0..ids.len()]);
                        match aggregation {
                            Aggregation::Last => row.slice_dim(1, ids.len() - 1..ids.len()).squeeze_dim::<2>(1),
                            Aggregation::Mean => row.mean_dim(1).squeeze_dim::<2>(1),
                        }
                    })
                    .collect();
                Ok(Tensor::cat(per_row, 0))
            })
            .collect::<Result<_>>()?;
        let values = read_f32(Tensor::stack::<3>(per_layer, 0)).await?;
        let d = model.config.d_model;
        for (l, layer) in values.chunks_exact(batch.len() * d).enumerate() {
            rows[l].extend(layer.chunks_exact(d).map(<[f32]>::to_vec));
        }
        progress.step("running the pairs", ((b + 1) * BATCH).min(encoded.len()), encoded.len()).await?;
    }
    let (positive, negative) = rows
        .into_iter()
        .map(|layer| {
            let (pos, neg): (Vec<_>, Vec<_>) = layer.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
            (pos.into_iter().map(|(_, r)| r).collect(), neg.into_iter().map(|(_, r)| r).collect())
        })
        .unzip();
    Ok(PairActivations { site, aggregation, positive, negative })
}

/// Per layer, what a mean-difference vector needs, accumulated on the device
/// ([`analog_kernels::ClassStats`]): read back once, not per prompt or per batch.
#[derive(Debug, Clone)]
pub struct PairStats {
    pub site: HookSite,
    pub aggregation: Aggregation,
    /// Pairs counted.
    pub n_pairs: usize,
    /// `[layer][d_model]`: mean positive minus mean negative activation.
    pub mean_diff: Vec<Vec<f32>>,
    /// `[layer]`: mean L2 norm over all positive and negative activations.
    pub mean_norm: Vec<f32>,
}

/// [`collect`] reduced to [`PairStats`] on the device (see [`collect_stats_ids`]).
pub async fn collect_stats(model: &TextModel, pairs: &PairSet, site: HookSite, aggregation: Aggregation, progress: &mut impl Progress) -> Result<PairStats> {
    collect_stats_ids(&model.model, &encode_pairs(model, pairs, PromptFormat::Plain)?, site, aggregation, progress).await
}

/// [`collect_ids`] reduced to [`PairStats`] on the device: the fast path for mean-difference
/// vectors (no per-prompt rows, so no PCA, probe or sweep).
pub async fn collect_stats_ids(
    model: &Model,
    encoded: &[Vec<u32>],
    site: HookSite,
    aggregation: Aggregation,
    progress: &mut impl Progress,
) -> Result<PairStats> {
    let (n_layers, d) = (model.config.n_layers, model.config.d_model);
    check_prompts(model, encoded)?;
    let row_of = match aggregation {
        Aggregation::Last => RowOf::Last,
        Aggregation::Mean => RowOf::Mean,
    };
    let device = model.device();
    let mut stats: Vec<ClassStats> = (0..n_layers).map(|_| ClassStats::zeros(2, d, &device)).collect();
    for (b, batch) in encoded.chunks(BATCH).enumerate() {
        let mut hooks = Hooks::new().capture_all((0..n_layers).map(|l| site.at(l)));
        model.prefill(batch, &mut hooks)?;
        let lengths: Vec<usize> = batch.iter().map(Vec::len).collect();
        // Prompts alternate positive (class 0) and negative (class 1); batches hold an even count.
        let classes: Vec<usize> = (0..batch.len()).map(|i| (b * BATCH + i) % 2).collect();
        stats = stats
            .into_iter()
            .enumerate()
            .map(|(l, layer)| {
                let acts = hooks.take(site.at(l)).ok_or_else(|| Error::UnknownHook(site.at(l).to_string()))?;
                Ok(layer.accumulate(acts, &lengths, &classes, row_of))
            })
            .collect::<Result<_>>()?;
        progress.step("running the pairs", ((b + 1) * BATCH).min(encoded.len()), encoded.len()).await?;
    }
    let n_pairs = encoded.len() / 2;
    let counts = stats.first().map(|s| s.counts.clone()).unwrap_or_default();
    let sums = read_f32(Tensor::stack::<3>(stats.iter().map(|s| s.sums.clone()).collect(), 0)).await?;
    let norm_sums = read_f32(Tensor::stack::<2>(stats.iter().map(|s| s.norm_sums.clone()).collect(), 0)).await?;
    let per_class = |c: usize| counts.get(c).copied().unwrap_or(0).max(1) as f32;
    let mean_diff =
        sums.chunks_exact(2 * d).map(|layer| layer[..d].iter().zip(&layer[d..]).map(|(p, n)| p / per_class(0) - n / per_class(1)).collect()).collect();
    let all = counts.iter().sum::<usize>().max(1) as f32;
    let mean_norm = norm_sums.chunks_exact(2).map(|c| (c[0] + c[1]) / all).collect();
    Ok(PairStats { site, aggregation, n_pairs, mean_diff, mean_norm })
}

/// The mean-difference steering vector for `layers` from [`PairStats`] (equal to
/// [`steering_vector`] with [`Method::MeanDiff`] on the same prompts).
pub fn mean_diff_vector(stats: &PairStats, layers: &[usize], model: VectorModel, pairs: &PairSet) -> Result<SteeringVector> {
    let mut directions = BTreeMap::new();
    for &layer in layers {
        let (Some(direction), Some(&mean_resid_norm)) = (stats.mean_diff.get(layer), stats.mean_norm.get(layer)) else {
            return Err(Error::HookLayerOutOfRange { hook: stats.site.at(layer).to_string(), layer, n_layers: stats.mean_diff.len() });
        };
        directions.insert(layer, Direction { norm: norm(direction), mean_resid_norm, direction: direction.clone() });
    }
    Ok(SteeringVector {
        format: super::vector::FORMAT.into(),
        model,
        site: stats.site,
        method: Method::MeanDiff,
        aggregation: stats.aggregation,
        pairs: VectorPairs { sha256: pairs.sha256(), n_pairs: pairs.len(), prompt_format: PromptFormat::Plain },
        directions,
    })
}

/// The direction `method` finds in one layer's paired activations.
pub fn direction(method: Method, positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Vec<f32> {
    let diffs: Vec<Vec<f32>> = positive.iter().zip(negative).map(|(p, n)| p.iter().zip(n).map(|(a, b)| a - b).collect()).collect();
    let mean_diff = mean_rows(&diffs);
    let orient = |v: Vec<f32>| if dot(&v, &mean_diff) < 0.0 { v.into_iter().map(|x| -x).collect() } else { v };
    match method {
        Method::MeanDiff => mean_diff,
        Method::Pca => orient(first_principal_component(&diffs)),
        Method::PcaCenter => {
            let centred: Vec<Vec<f32>> = positive
                .iter()
                .zip(negative)
                .flat_map(|(p, n)| {
                    let half: Vec<f32> = p.iter().zip(n).map(|(a, b)| (a - b) / 2.0).collect();
                    let neg_half = half.iter().map(|x| -x).collect();
                    [half, neg_half]
                })
                .collect();
            orient(first_principal_component(&centred))
        }
        Method::Probe => {
            let (rows, labels) = labelled(positive, negative);
            orient(logistic_regression(&rows, &labels, 1e-3, 300).0)
        }
        // Nothing to compute from: the mean difference is the neutral choice.
        Method::Imported => mean_diff,
    }
}

fn labelled(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> (Vec<Vec<f32>>, Vec<bool>) {
    let rows: Vec<Vec<f32>> = positive.iter().chain(negative).cloned().collect();
    let labels = (0..rows.len()).map(|i| i < positive.len()).collect();
    (rows, labels)
}

/// Mean L2 norm of all activations of a layer (positives and negatives).
fn mean_norm(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> f32 {
    let all: Vec<f32> = positive.iter().chain(negative).map(|r| norm(r)).collect();
    all.iter().sum::<f32>() / all.len().max(1) as f32
}

/// Builds a steering vector for `layers` from collected activations.
pub fn steering_vector(acts: &PairActivations, method: Method, layers: &[usize], model: VectorModel, pairs: &PairSet) -> Result<SteeringVector> {
    let mut directions = BTreeMap::new();
    for &layer in layers {
        let (Some(pos), Some(neg)) = (acts.positive.get(layer), acts.negative.get(layer)) else {
            return Err(Error::HookLayerOutOfRange { hook: acts.site.at(layer).to_string(), layer, n_layers: acts.positive.len() });
        };
        let direction = direction(method, pos, neg);
        directions.insert(layer, Direction { norm: norm(&direction), mean_resid_norm: mean_norm(pos, neg), direction });
    }
    Ok(SteeringVector {
        format: super::vector::FORMAT.into(),
        model,
        site: acts.site,
        method,
        aggregation: acts.aggregation,
        pairs: VectorPairs { sha256: pairs.sha256(), n_pairs: pairs.len(), prompt_format: PromptFormat::Plain },
        directions,
    })
}

/// One row of the layer sweep: how well the concept separates at a layer, and whether the methods agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub layer: usize,
    /// Accuracy of a probe trained on the other pairs, on held-out pairs (every 4th pair).
    pub probe_accuracy: f32,
    /// Cohen's d of held-out projections onto the training mean difference.
    pub cohens_d: f32,
    pub mean_diff_norm: f32,
    pub mean_resid_norm: f32,
    /// Cosine of each method's direction with the mean difference.
    pub cos_mean_diff_pca: f32,
    pub cos_mean_diff_pca_center: f32,
    pub cos_mean_diff_probe: f32,
    pub cos_pca_probe: f32,
}

/// Held-out separation and agreement between methods at every layer.
pub fn sweep(acts: &PairActivations) -> Vec<SweepRow> {
    (0..n_layers(acts)).map(|layer| sweep_layer(acts, layer)).collect()
}

/// [`sweep`], telling `progress` after each layer (a model of 30 layers takes seconds in a browser).
pub async fn sweep_with(acts: &PairActivations, progress: &mut impl Progress) -> Result<Vec<SweepRow>> {
    let n_layers = n_layers(acts);
    let mut rows = Vec::with_capacity(n_layers);
    for layer in 0..n_layers {
        rows.push(sweep_layer(acts, layer));
        progress.step("sweeping the layers", layer + 1, n_layers).await?;
    }
    Ok(rows)
}

fn n_layers(acts: &PairActivations) -> usize {
    acts.positive.len().min(acts.negative.len())
}

/// One layer's row of [`sweep`]: every fourth pair is held out.
fn sweep_layer(acts: &PairActivations, layer: usize) -> SweepRow {
    let (pos, neg) = (&acts.positive[layer], &acts.negative[layer]);
    let held_out = |i: &usize| i % 4 == 3;
    let split =
        |rows: &[Vec<f32>], test: bool| -> Vec<Vec<f32>> { rows.iter().enumerate().filter(|(i, _)| held_out(i) == test).map(|(_, r)| r.clone()).collect() };
    let (train_pos, train_neg, test_pos, test_neg) = (split(pos, false), split(neg, false), split(pos, true), split(neg, true));
    let (rows, labels) = labelled(&train_pos, &train_neg);
    let (w, b) = logistic_regression(&rows, &labels, 1e-3, 300);
    let (test_rows, test_labels) = labelled(&test_pos, &test_neg);
    let correct = test_rows.iter().zip(&test_labels).filter(|(r, y)| (dot(r, &w) + b > 0.0) == **y).count();
    let mean_diff = direction(Method::MeanDiff, &train_pos, &train_neg);
    let project = |rows: &[Vec<f32>]| rows.iter().map(|r| dot(r, &mean_diff)).collect::<Vec<f32>>();
    let all_md = direction(Method::MeanDiff, pos, neg);
    let pca = direction(Method::Pca, pos, neg);
    let probe = direction(Method::Probe, pos, neg);
    SweepRow {
        layer,
        probe_accuracy: correct as f32 / test_rows.len().max(1) as f32,
        cohens_d: cohens_d(&project(&test_pos), &project(&test_neg)),
        mean_diff_norm: norm(&all_md),
        mean_resid_norm: mean_norm(pos, neg),
        cos_mean_diff_pca: cosine(&all_md, &pca),
        cos_mean_diff_pca_center: cosine(&all_md, &direction(Method::PcaCenter, pos, neg)),
        cos_mean_diff_probe: cosine(&all_md, &probe),
        cos_pca_probe: cosine(&pca, &probe),
    }
}

/// `(mean(a) − mean(b)) / pooled standard deviation`.
pub fn cohens_d(a: &[f32], b: &[f32]) -> f32 {
    let stats = |x: &[f32]| {
        let n = x.len().max(1) as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (n - 1.0).max(1.0);
        (mean, var, n)
    };
    let ((ma, va, na), (mb, vb, nb)) = (stats(a), stats(b));
    let pooled = (((na - 1.0) * va + (nb - 1.0) * vb) / (na + nb - 2.0).max(1.0)).sqrt();
    if pooled > 0.0 { (ma - mb) / pooled } else { 0.0 }
}
