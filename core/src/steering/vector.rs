//! Steering vectors as data: a direction per layer at one hook site, with where it came from,
//! serialised deterministically, and turned into hook edits to apply.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, Mul, Neg, Sub};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::extract::{Aggregation, Method, PromptFormat};
use crate::error::{Error, Result};
use crate::hooks::{Edit, EditOp, HookPoint, Positions};

/// The `format` tag of vector files.
pub const FORMAT: &str = "analog-steering-vector/v1";

/// Which hook of each block a vector lives at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookSite {
    /// `blocks.{l}.hook_resid_pre`: the residual stream entering the block.
    ResidPre,
    /// `blocks.{l}.hook_attn_out`: the attention output added to the residual stream.
    AttnOut,
    /// `blocks.{l}.hook_resid_mid`: the residual stream between attention and MLP.
    ResidMid,
    /// `blocks.{l}.hook_mlp_out`: the MLP output added to the residual stream.
    MlpOut,
    /// `blocks.{l}.hook_resid_post`: the residual stream leaving the block.
    ResidPost,
}

impl HookSite {
    /// The hook point of this site in block `layer`.
    pub fn at(self, layer: usize) -> HookPoint {
        match self {
            Self::ResidPre => HookPoint::ResidPre(layer),
            Self::AttnOut => HookPoint::AttnOut(layer),
            Self::ResidMid => HookPoint::ResidMid(layer),
            Self::MlpOut => HookPoint::MlpOut(layer),
            Self::ResidPost => HookPoint::ResidPost(layer),
        }
    }
}

impl fmt::Display for HookSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `blocks.0.hook_resid_post` → `resid_post`
        let name = self.at(0).to_string();
        f.write_str(name.trim_start_matches("blocks.0.hook_"))
    }
}

impl FromStr for HookSite {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let name = s.trim_start_matches("hook_");
        [Self::ResidPre, Self::AttnOut, Self::ResidMid, Self::MlpOut, Self::ResidPost]
            .into_iter()
            .find(|site| site.to_string() == name)
            .ok_or_else(|| format!("unknown hook site `{s}`; expected resid_pre, attn_out, resid_mid, mlp_out or resid_post"))
    }
}

/// The model a vector was extracted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorModel {
    pub id: String,
    /// sha256 (hex) of the weight bytes (`model.safetensors`, or the index for sharded models).
    pub weights_sha256: String,
    pub d_model: usize,
}

/// The pairs a vector was extracted from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorPairs {
    /// sha256 of the pair set's canonical JSONL.
    pub sha256: String,
    pub n_pairs: usize,
    /// How the prompts were sent to the model (absent: plain text).
    #[serde(default, skip_serializing_if = "PromptFormat::is_plain")]
    pub prompt_format: PromptFormat,
}

/// One layer's direction, exactly as the method produced it (never silently normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// L2 norm of `direction`.
    pub norm: f32,
    /// Mean L2 norm of the residual activations at this layer over the pair prompts.
    pub mean_resid_norm: f32,
    pub direction: Vec<f32>,
}

/// A steering vector: directions per layer at one hook site, and their provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringVector {
    pub format: String,
    pub model: VectorModel,
    #[serde(rename = "hook")]
    pub site: HookSite,
    pub method: Method,
    pub aggregation: Aggregation,
    pub pairs: VectorPairs,
    /// Layer index (0-based block) → direction; sorted, so files are deterministic.
    pub directions: BTreeMap<usize, Direction>,
}

/// How a vector is applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub coef: f32,
    pub positions: Positions,
    /// Scale each direction to unit length times the layer's mean residual norm first, so `coef`
    /// is a fraction of the typical residual norm.
    pub normalise: bool,
    /// Project the direction out instead of adding it (`coef` is ignored).
    pub ablate: bool,
    /// Rescale each steered activation to the norm it had before (norm-preserving steering).
    #[serde(default)]
    pub preserve_norm: bool,
}

impl Application {
    /// `coef × direction` at every position.
    pub fn add(coef: f32) -> Self {
        Self { coef, positions: Positions::ALL, normalise: false, ablate: false, preserve_norm: false }
    }
}

impl SteeringVector {
    /// Parses a vector file, checking its format tag and that every direction has one width.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let v: Self = serde_json::from_slice(bytes).map_err(|e| Error::InvalidVector(format!("not a steering-vector JSON file: {e}")))?;
        if v.format != FORMAT {
            return Err(Error::InvalidVector(format!("format is `{}`, expected `{FORMAT}`", v.format)));
        }
        for (layer, d) in &v.directions {
            if d.direction.len() != v.model.d_model {
                return Err(Error::InvalidVector(format!("layer {layer} has {} dimensions, but d_model is {}", d.direction.len(), v.model.d_model)));
            }
            if d.direction.iter().any(|x| !x.is_finite()) {
                return Err(Error::InvalidVector(format!("layer {layer} has non-finite values")));
            }
        }
        if v.directions.is_empty() {
            return Err(Error::InvalidVector("the vector has no layers".into()));
        }
        Ok(v)
    }

    /// Checks that the vector can steer a model of this width and depth: a vector from another
    /// model is refused with both sizes named, before any hook is built.
    pub fn check_fits(&self, d_model: usize, n_layers: usize) -> Result<()> {
        if self.model.d_model != d_model {
            return Err(Error::VectorMismatch(format!("it was extracted on a model with d_model {}, this one has {d_model}", self.model.d_model)));
        }
        if let Some(layer) = self.directions.keys().find(|&&l| l >= n_layers) {
            return Err(Error::VectorMismatch(format!("it names layer {layer}, but the model has {n_layers} layers")));
        }
        Ok(())
    }

    /// Checks that the vector has a direction at `layer` (the one chosen to steer at).
    pub fn check_layer(&self, layer: usize) -> Result<()> {
        if self.directions.contains_key(&layer) {
            return Ok(());
        }
        let layers: Vec<String> = self.directions.keys().map(ToString::to_string).collect();
        Err(Error::VectorMismatch(format!("it has no direction at layer {layer} (it has layers {})", layers.join(", "))))
    }

    /// Pretty JSON with sorted keys; the same vector always gives the same bytes.
    pub fn to_json(&self) -> String {
        // Every field is a plain number, string or sorted map: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The directions as a safetensors file: one f32 tensor `direction.<layer>` each, and the
    /// provenance in the header's `__metadata__` (as `vector_json` minus the directions).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Vec<u8>)> =
            self.directions.iter().map(|(layer, d)| (format!("direction.{layer}"), d.direction.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
        let views = bytes
            .iter()
            .map(|(name, data)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![data.len() / 4], data)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| Error::InvalidVector(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut header = self.clone();
        header.directions.values_mut().for_each(|d| d.direction.clear());
        let metadata = std::collections::HashMap::from([("vector_json".to_string(), serde_json::to_string(&header).unwrap_or_default())]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::InvalidVector(e.to_string()))
    }

    /// Keeps only `layers`.
    pub fn select_layers(&self, layers: &[usize]) -> Self {
        let mut v = self.clone();
        v.directions.retain(|l, _| layers.contains(l));
        v
    }

    /// The hook edits that apply this vector.
    pub fn edits(&self, how: &Application) -> Vec<Edit> {
        self.directions
            .iter()
            .map(|(&layer, d)| {
                let op = if how.ablate {
                    EditOp::Ablate(d.direction.clone())
                } else {
                    let scale = if how.normalise && d.norm > 0.0 { how.coef * d.mean_resid_norm / d.norm } else { how.coef };
                    let scaled = d.direction.iter().map(|x| x * scale).collect();
                    if how.preserve_norm { EditOp::AddPreservingNorm(scaled) } else { EditOp::Add(scaled) }
                };
                Edit::new(self.site.at(layer), op, how.positions)
            })
            .collect()
    }

    fn zip_with(self, other: &Self, f: impl Fn(f32, f32) -> f32) -> Self {
        let mut out = self;
        for (layer, d) in out.directions.iter_mut() {
            if let Some(o) = other.directions.get(layer) {
                d.direction = d.direction.iter().zip(&o.direction).map(|(&a, &b)| f(a, b)).collect();
            }
            d.norm = super::linalg::norm(&d.direction);
        }
        out
    }
}

/// Layer-wise sum (layers only in the right operand are dropped).
impl Add<&SteeringVector> for SteeringVector {
    type Output = SteeringVector;
    fn add(self, rhs: &SteeringVector) -> SteeringVector {
        self.zip_with(rhs, |a, b| a + b)
    }
}

impl Sub<&SteeringVector> for SteeringVector {
    type Output = SteeringVector;
    fn sub(self, rhs: &SteeringVector) -> SteeringVector {
        self.zip_with(rhs, |a, b| a - b)
    }
}

impl Mul<f32> for SteeringVector {
    type Output = SteeringVector;
    fn mul(mut self, k: f32) -> SteeringVector {
        for d in self.directions.values_mut() {
            d.direction.iter_mut().for_each(|x| *x *= k);
            d.norm *= k.abs();
        }
        self
    }
}

impl Neg for SteeringVector {
    type Output = SteeringVector;
    fn neg(self) -> SteeringVector {
        self * -1.0
    }
}
