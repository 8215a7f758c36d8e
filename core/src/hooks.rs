//! Hook points on the residual stream, named as TransformerLens names them, with capture and edits.
//!
//! A [`Hooks`] value travels through one forward pass (or a whole generation). At each hook point
//! the model hands the activation to [`Hooks::at`], which applies the edits registered for that
//! point, records the (edited) activation when asked to, and returns it to the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use analog_kernels::Span;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// A place in the forward pass where the residual stream can be read or written.
///
/// Every activation has shape `[batch, pos, d_model]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPoint {
    /// `blocks.{l}.hook_resid_pre`: the input of block `l` (embeddings for block 0).
    ResidPre(usize),
    /// `blocks.{l}.hook_attn_out`: the attention output, after the output projection.
    AttnOut(usize),
    /// `blocks.{l}.hook_resid_mid`: `resid_pre + attn_out`. With a parallel residual (GPT-NeoX) the
    /// MLP does not read it, but it is still defined this way.
    ResidMid(usize),
    /// `blocks.{l}.hook_mlp_out`: the MLP output.
    MlpOut(usize),
    /// `blocks.{l}.hook_resid_post`: the output of block `l`, `resid_mid + mlp_out`.
    ResidPost(usize),
    /// `ln_final.hook_normalized`: the final norm's output, which the unembedding reads.
    FinalNormalized,
}

impl HookPoint {
    /// All hook points of a model with `n_layers` blocks, in forward order.
    pub fn all(n_layers: usize) -> Vec<HookPoint> {
        let mut points: Vec<HookPoint> =
            (0..n_layers).flat_map(|l| [Self::ResidPre(l), Self::AttnOut(l), Self::ResidMid(l), Self::MlpOut(l), Self::ResidPost(l)]).collect();
        points.push(Self::FinalNormalized);
        points
    }

    /// The block this point belongs to, if any.
    pub fn layer(self) -> Option<usize> {
        match self {
            Self::ResidPre(l) | Self::AttnOut(l) | Self::ResidMid(l) | Self::MlpOut(l) | Self::ResidPost(l) => Some(l),
            Self::FinalNormalized => None,
        }
    }

    /// Checks the layer index against the model.
    pub fn check(self, n_layers: usize) -> Result<()> {
        match self.layer() {
            Some(layer) if layer >= n_layers => Err(Error::HookLayerOutOfRange { hook: self.to_string(), layer, n_layers }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            Self::AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            Self::ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            Self::MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            Self::ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            Self::FinalNormalized => write!(f, "ln_final.hook_normalized"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "ln_final.hook_normalized" {
            return Ok(Self::FinalNormalized);
        }
        let unknown = || Error::UnknownHook(s.to_string());
        let rest = s.strip_prefix("blocks.").ok_or_else(unknown)?;
        let (layer, name) = rest.split_once('.').ok_or_else(unknown)?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unknown());
        }
        let layer: usize = layer.parse().map_err(|_| unknown())?;
        Ok(match name {
            "hook_resid_pre" => Self::ResidPre(layer),
            "hook_attn_out" => Self::AttnOut(layer),
            "hook_resid_mid" => Self::ResidMid(layer),
            "hook_mlp_out" => Self::MlpOut(layer),
            "hook_resid_post" => Self::ResidPost(layer),
            _ => return Err(unknown()),
        })
    }
}

impl Serialize for HookPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HookPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Absolute token positions `start..end` (open-ended when `end` is `None`) an edit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Positions {
    /// First position (0-based, counting the whole sequence including the prompt).
    pub start: usize,
    /// One past the last position; absent means to the end.
    pub end: Option<usize>,
}

impl Positions {
    /// Every position.
    pub const ALL: Positions = Positions { start: 0, end: None };

    /// Position `start` and every later one (e.g. only generated tokens: `from(prompt_len)`).
    pub fn from(start: usize) -> Self {
        Self { start, end: None }
    }

    /// These positions, for a chunk of the sequence starting at absolute position `offset`.
    pub fn span(self, offset: usize) -> Span {
        Span { offset, positions: self.start..self.end.unwrap_or(usize::MAX) }
    }
}

/// What an edit does to the activation at the selected positions.
#[derive(Debug, Clone, PartialEq)]
pub enum EditOp {
    /// `x + vector` (steering: pass `coef × direction`).
    Add(Vec<f32>),
    /// `x + vector`, then rescaled to the norm `x` had (steering that keeps the residual's size).
    AddPreservingNorm(Vec<f32>),
    /// `x := vector`.
    Replace(Vec<f32>),
    /// `x - (x·u) u` for the unit vector `u` along `direction` (directional ablation).
    Ablate(Vec<f32>),
}

impl EditOp {
    /// For an addition, whether it preserves the norm; `None` for other edits.
    fn is_addition(&self) -> Option<bool> {
        match self {
            Self::Add(_) => Some(false),
            Self::AddPreservingNorm(_) => Some(true),
            Self::Replace(_) | Self::Ablate(_) => None,
        }
    }

    fn vector(&self) -> &[f32] {
        match self {
            Self::Add(v) | Self::AddPreservingNorm(v) | Self::Replace(v) | Self::Ablate(v) => v,
        }
    }
}

/// One intervention at one hook point.
#[derive(Debug, Clone)]
pub struct Edit {
    pub hook: HookPoint,
    pub op: EditOp,
    pub positions: Positions,
    /// The vector on the model's device, made on first use.
    on_device: Option<Tensor<1>>,
}

impl Edit {
    pub fn new(hook: HookPoint, op: EditOp, positions: Positions) -> Self {
        Self { hook, op, positions, on_device: None }
    }

    fn device_vector(&mut self, device: &Device) -> Tensor<1> {
        let vector = self.op.vector();
        self.on_device
            .get_or_insert_with(|| {
                let data = match &self.op {
                    EditOp::Ablate(v) => {
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
                        v.iter().map(|x| x / norm).collect()
                    }
                    _ => vector.to_vec(),
                };
                let len = data.len();
                Tensor::from_data(TensorData::new(data, [len]), device)
            })
            .clone()
    }
}

/// Captures and edits for one forward pass or one generation.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    capture: BTreeSet<HookPoint>,
    captured: BTreeMap<HookPoint, Vec<Tensor<3>>>,
    edits: Vec<Edit>,
}

impl Hooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the activation at `point` on every forward call.
    pub fn capture(mut self, point: HookPoint) -> Self {
        self.capture.insert(point);
        self
    }

    /// Records every point in `points`.
    pub fn capture_all(mut self, points: impl IntoIterator<Item = HookPoint>) -> Self {
        self.capture.extend(points);
        self
    }

    /// Adds an edit; edits at the same point apply in the order they were added.
    pub fn edit(mut self, edit: Edit) -> Self {
        self.edits.push(edit);
        self
    }

    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Checks hook layers and vector widths against the model.
    pub fn check(&self, config: &ModelConfig) -> Result<()> {
        for point in &self.capture {
            point.check(config.n_layers)?;
        }
        for edit in &self.edits {
            edit.hook.check(config.n_layers)?;
            let found = edit.op.vector().len();
            if found != config.d_model {
                return Err(Error::VectorDimension { hook: edit.hook.to_string(), expected: config.d_model, found });
            }
            if edit.op.vector().iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFiniteVector { hook: edit.hook.to_string() });
            }
        }
        Ok(())
    }

    /// The activation captured at `point`, all forward calls joined along positions: `[batch, pos, d_model]`.
    pub fn take(&mut self, point: HookPoint) -> Option<Tensor<3>> {
        let parts = self.captured.remove(&point)?;
        Some(Tensor::cat(parts, 1))
    }

    /// Forgets captured activations, keeping what to capture and the edits.
    pub fn clear_captures(&mut self) {
        self.captured.clear();
    }

    /// Applies this point's edits to `x` (`[batch, pos, d_model]`, first position at absolute
    /// `offset`) and records the result if asked.
    ///
    /// Additions run as one fused steering kernel per run of consecutive additions that share
    /// their positions and norm handling (`analog_kernels::steer`).
    pub(crate) fn at(&mut self, point: HookPoint, mut x: Tensor<3>, offset: usize) -> Tensor<3> {
        let [_, len, _] = x.dims();
        let device = x.device();
        let here: Vec<usize> = (0..self.edits.len()).filter(|&i| self.edits[i].hook == point).collect();
        let mut next = 0;
        while next < here.len() {
            let edit = &self.edits[here[next]];
            let (op, positions) = (edit.op.clone(), edit.positions);
            let span = positions.span(offset);
            if !(0..len).any(|t| span.selects(t)) {
                next += 1;
                continue;
            }
            if let Some(preserve_norm) = op.is_addition() {
                // The run of additions that can share one launch.
                let run: Vec<usize> = here[next..]
                    .iter()
                    .copied()
                    .take_while(|&i| self.edits[i].positions == positions && self.edits[i].op.is_addition() == Some(preserve_norm))
                    .collect();
                next += run.len();
                let vectors: Vec<Tensor<2>> = run.iter().map(|&i| self.edits[i].device_vector(&device).unsqueeze::<2>()).collect();
                x = analog_kernels::steer(x, Tensor::cat(vectors, 0), None, &span, preserve_norm);
                continue;
            }
            next += 1;
            let selected: Vec<f32> = (0..len).map(|t| f32::from(u8::from(span.selects(t)))).collect();
            let every = selected.iter().all(|&s| s == 1.0);
            let mask = (!every).then(|| Tensor::<1>::from_data(TensorData::new(selected, [len]), &device).reshape([1, len, 1]));
            let v = self.edits[here[next - 1]].device_vector(&device).unsqueeze::<3>();
            x = match (&op, mask) {
                (EditOp::Replace(_), None) => v.expand(x.shape()),
                (EditOp::Replace(_), Some(m)) => x.clone() - m.clone() * x + m * v,
                (EditOp::Ablate(_), mask) => {
                    let along = (x.clone() * v.clone()).sum_dim(2) * v;
                    match mask {
                        None => x - along,
                        Some(m) => x - m * along,
                    }
                }
                (EditOp::Add(_) | EditOp::AddPreservingNorm(_), _) => unreachable!("additions are handled above"),
            };
        }
        if self.capture.contains(&point) {
            self.captured.entry(point).or_default().push(x.clone());
        }
        x
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for point in HookPoint::all(3) {
            assert_eq!(point.to_string().parse::<HookPoint>().unwrap(), point);
        }
        assert_eq!("blocks.12.hook_resid_post".parse::<HookPoint>().unwrap(), HookPoint::ResidPost(12));
        for bad in ["blocks.x.hook_resid_post", "blocks.1.hook_resid", "hook_resid_post", "blocks.-1.hook_mlp_out", "blocks..hook_attn_out"] {
            assert!(bad.parse::<HookPoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn positions_select_ranges() {
        let p = Positions { start: 2, end: Some(4) };
        assert_eq!((0..6).filter(|&i| p.span(0).selects(i)).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!((0..3).filter(|&i| p.span(2).selects(i)).collect::<Vec<_>>(), vec![0, 1]);
        assert!(Positions::from(5).span(0).selects(100));
    }
}
