//! Transfer report v1: what a lab publishes about interventions found on its analog and how they
//! behaved on its frontier model. These types are the schema; `public/schema/transfer-report.v1.json`
//! is generated from them ([`super::json_schema`]) and their doc comments are its descriptions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steering::metrics::{EvalSpec, Metrics};
use crate::steering::{Aggregation, HookSite, Method, Pair, PromptFormat};

/// The `schema_version` of every v1 report.
pub const SCHEMA_VERSION: &str = "1.0";

/// A transfer report: an analog model, optionally the frontier model it stands in for, and
/// steering interventions measured on one or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Analog transfer report v1")]
pub struct TransferReport {
    /// Always `"1.0"` for this schema.
    #[schemars(extend("const" = "1.0"))]
    pub schema_version: String,
    /// Identifier of this report: 1–128 letters, digits, `.`, `_` or `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub id: String,
    /// Who made the report and why: a lab's transfer study, a visitor's own analog measurements, or
    /// an illustrative example.
    pub kind: ReportKind,
    /// Who publishes the report.
    pub publisher: Publisher,
    /// The released analog model every intervention was found on.
    pub analog: AnalogModel,
    /// The frontier model the interventions were transferred to; absent in `measurement` reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier: Option<FrontierModel>,
    /// How alike the two models' representations are, independent of any intervention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<Geometry>,
    /// The steering interventions (1–1,000, unique ids).
    #[schemars(length(min = 1, max = 1000))]
    pub interventions: Vec<Intervention>,
    /// How well each analog-to-frontier map stands in for the frontier's own activations, checked
    /// by activation patching (Oozeer et al. 2025); at most 16 maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub mapper_validation: Option<Vec<MapperValidation>>,
    /// Safety-relevant fidelity: how often analog and frontier refuse held-out requests, and whether
    /// the analog's refusal direction, mapped, moves the frontier's refusals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_fidelity: Option<RefusalFidelity>,
    /// Extraction risk: how much of the frontier's advantage over the analog a frontier-sized
    /// student recovers from the analog's outputs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_estimate: Option<ExtractionEstimate>,
    /// How the numbers were produced.
    pub provenance: Provenance,
}

/// What kind of report this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A lab's transfer study: analog and frontier results (requires `frontier`).
    Lab,
    /// Someone's own measurements on the analog alone, ready to submit to a lab (no frontier parts).
    Measurement,
    /// Built only to illustrate the format; its numbers are real measurements but of no claim.
    Example,
}

/// The organisation or person publishing the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// Display name (1–200 characters).
    pub name: String,
    /// Home page (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where to send questions or submissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// The released analog model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalogModel {
    /// Model id, e.g. an HF repo id (`org/name`) or a catalog id.
    pub id: String,
    /// sha256 (64 lowercase hex digits) of `model.safetensors` (or of the index for sharded weights).
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub weights_sha256: String,
    /// Number of parameters (tied embeddings counted once).
    #[schemars(range(min = 1))]
    pub n_params: u64,
    /// Residual-stream width; every vector in the report has this many values.
    #[schemars(range(min = 1, max = 65536))]
    pub d_model: usize,
    /// Number of transformer blocks.
    #[schemars(range(min = 1, max = 1024))]
    pub n_layers: usize,
    /// Where to download the model in HF layout (`config.json`, `model.safetensors`,
    /// `tokenizer.json` under this base URL), or an HF repo URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The frontier model (may be anonymous).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontierModel {
    /// Model id, or `"redacted"` when the lab does not name it.
    pub id: String,
    /// Number of parameters, when disclosed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub n_params: Option<u64>,
    /// Number of transformer blocks; every `frontier_layer` is below it.
    #[schemars(range(min = 1, max = 1024))]
    pub n_layers: usize,
    /// Residual-stream width, when disclosed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub d_model: Option<usize>,
}

/// Representation similarity between analog and frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    /// Global similarity of the token-embedding geometries (Lee et al. 2025).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_similarity: Option<GlobalSimilarity>,
    /// Linear CKA between analog and frontier residual streams (`resid_post`) on the same tokens,
    /// for pairs of layers (at most 4,096 pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub layer_cka: Option<Vec<LayerCka>>,
}

/// Linear CKA (Kornblith et al. 2019) of one analog layer against one frontier layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerCka {
    pub analog_layer: usize,
    pub frontier_layer: usize,
    /// CKA in [0, 1]; 1 means the same geometry up to rotation and isotropic scale.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub cka: f64,
    /// Token positions compared (at least 2).
    #[schemars(range(min = 2))]
    pub n_tokens: u64,
}

/// Activation patching of one map: the frontier's activations at `frontier_layer` replaced by the
/// mapped analog activations at `analog_layer`, on held-out text the map was not fitted on, against
/// replacing them by their mean (mean-ablation). A useful map keeps the frontier's next-token
/// distribution far closer than mean-ablation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapperValidation {
    pub kind: MappingKind,
    pub analog_layer: usize,
    pub frontier_layer: usize,
    /// Fraction of variance of held-out frontier activations left unexplained.
    #[schemars(range(min = 0.0))]
    pub fvu: f64,
    /// Mean cosine between mapped and true held-out frontier activations.
    #[schemars(range(min = -1.0, max = 1.0))]
    pub cosine: f64,
    /// Mean KL(clean ‖ patched) of the frontier's next-token distributions, in nats.
    #[schemars(range(min = 0.0))]
    pub kl_patched: f64,
    /// Mean KL(clean ‖ mean-ablated), in nats.
    #[schemars(range(min = 0.0))]
    pub kl_mean_ablation: f64,
    /// Share of positions whose top next token is unchanged by patching.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub agreement_patched: f64,
    /// Share of positions whose top next token is unchanged by mean-ablation.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub agreement_mean_ablation: f64,
    /// Token positions the patching was measured on (at least 1).
    #[schemars(range(min = 1))]
    pub n_tokens: u64,
}

/// Refusal on held-out requests, sampled, by analog and frontier, and the frontier's refusal rate
/// under the analog's refusal direction (mapped), its own (native) and an equal-norm random one.
/// A model's refusal rate is the share of refusals among its replies that are recognisably a
/// refusal or a compliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusalFidelity {
    /// Held-out requests sampled (at least 1).
    #[schemars(range(min = 1))]
    pub n_requests: u64,
    /// Share of the requests the data itself refuses, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub data_refusal_rate: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub analog_refusal_rate: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub frontier_refusal_rate: f64,
    /// The steering coefficient of the three steered rates (as in `evaluation.normalise`).
    pub coef: f32,
    /// The frontier steered with its own refusal direction.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub frontier_native_rate: f64,
    /// The frontier steered with the analog's refusal direction, mapped.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub frontier_mapped_rate: f64,
    /// The frontier steered with an equal-norm random direction.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub frontier_random_rate: f64,
}

/// A frontier-sized student trained on the analog's outputs only, with a training budget stated
/// beside the frontier's, and the held-out losses of all three. `gap_closed` is
/// `(analog − student) / (analog − frontier)`: 0 means nothing beyond the analog was extracted, 1
/// means the frontier was reconstructed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractionEstimate {
    /// What the student saw, in words (e.g. "text sampled from the analog, with its logits").
    pub data: String,
    pub student_n_params: u64,
    /// Tokens the student trained on.
    pub student_tokens: u64,
    /// Tokens the frontier trained on.
    pub frontier_tokens: u64,
    /// Held-out loss (nats per token) of the analog, the frontier and the student on the same text.
    #[schemars(range(min = 0.0))]
    pub analog_loss: f64,
    #[schemars(range(min = 0.0))]
    pub frontier_loss: f64,
    #[schemars(range(min = 0.0))]
    pub student_loss: f64,
    /// `(analog_loss − student_loss) / (analog_loss − frontier_loss)`.
    pub gap_closed: f64,
}

/// Pearson correlation between the two models' token cosine-similarity matrices over a sample of
/// shared tokens (upper triangles, diagonal excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalSimilarity {
    /// Pearson r in [-1, 1]; the paper calls representations aligned above 0.9.
    #[schemars(range(min = -1.0, max = 1.0))]
    pub pearson_r: f64,
    /// Number of tokens sampled (at least 2).
    #[schemars(range(min = 2))]
    pub n_tokens: u64,
    /// Seed of the token sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One steering intervention: a concept's pair set, the vector extracted on the analog, how it was
/// mapped to the frontier, and the measured effects per coefficient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// Identifier, unique within the report: 1–128 letters, digits, `.`, `_` or `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub id: String,
    /// The concept in words, e.g. "mood: happy vs sad".
    pub concept: String,
    /// The contrastive pairs the vector was extracted from.
    pub pairs: PairSetRef,
    /// Extraction method.
    pub method: Method,
    /// Which token positions represent a prompt.
    pub aggregation: Aggregation,
    /// Hook site of the analog's block the vector was read at and is added to.
    pub analog_hook: HookSite,
    /// The analog's block (0-based).
    pub analog_layer: usize,
    /// The analog steering vector (raw direction, not normalised).
    pub vector: VectorRef,
    /// The frontier block the vector is applied at (0-based); required when there are frontier results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_layer: Option<usize>,
    /// How analog activations were mapped into the frontier's residual stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Mapping>,
    /// How the metrics were measured; a visitor re-measures the analog with exactly these settings.
    pub evaluation: EvalSpec,
    /// The metric whose curve over coefficients is compared (correlations, transfer ratio).
    pub effect_metric: MetricName,
    /// Results per coefficient, coefficients strictly increasing (1–1,000 rows).
    #[schemars(length(min = 1, max = 1000))]
    pub results: Vec<CoefResult>,
}

/// A pair set, inline or by reference. Exactly one of `inline` and `url` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairSetRef {
    /// Number of pairs (2–10,000).
    #[schemars(range(min = 2, max = 10000))]
    pub n_pairs: usize,
    /// sha256 of the pair set's canonical JSONL (one `{"positive","negative","label"?}` object per
    /// line, in order), whatever format the file itself is in.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// The pairs themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Vec<Pair>>,
    /// A JSONL or CSV pair file: https, http on localhost, or relative to the report's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How the prompts were sent to the analog: `plain` text (the default, left out) or `chat`,
    /// each prompt as the user's turn in the analog's chat template (a CAA item's answer opening
    /// the reply), read where the reply begins. Re-extraction uses the same format.
    #[serde(default, skip_serializing_if = "PromptFormat::is_plain")]
    pub prompt_format: PromptFormat,
}

/// The analog vector, inline or by reference. Exactly one of `values` and `url` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorRef {
    /// L2 norm of the direction.
    #[schemars(range(min = 0.0))]
    pub norm: f32,
    /// Mean L2 norm of the residual stream at the hook over the pair prompts (the scale of
    /// `evaluation.normalise`).
    #[schemars(range(min = 0.0))]
    pub mean_resid_norm: f32,
    /// The direction: `analog.d_model` finite values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f32>>,
    /// A steering-vector JSON file (`analog-steering-vector/v1`) holding `analog_layer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// sha256 of the file at `url` (required with `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// A map from analog to frontier residual streams, fitted on paired activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub kind: MappingKind,
    /// Fraction of variance of held-out frontier activations left unexplained (0 is perfect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub fvu: Option<f64>,
    /// Mean cosine between mapped and true held-out frontier activations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1.0, max = 1.0))]
    pub cosine: Option<f64>,
    /// Number of activation vectors the map was fitted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_samples: Option<u64>,
}

/// The family of map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    /// No map: the analog vector is used as is (only when the widths match).
    None,
    /// Least-squares affine map `W x + b`.
    Affine,
    /// A ReLU autoencoder from analog to frontier activations (Oozeer et al. 2025).
    Autoencoder,
}

/// The measurements at one coefficient. Every part is optional; `measurement` reports carry only the
/// analog ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoefResult {
    /// The steering coefficient (the direction is multiplied by it, or by it times
    /// `mean_resid_norm / norm` when `evaluation.normalise`).
    pub coef: f32,
    /// The analog vector on the analog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analog: Option<Metrics>,
    /// An equal-norm random direction on the analog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analog_random_baseline: Option<Metrics>,
    /// A vector extracted natively on the frontier from the same pairs, at `frontier_layer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_native: Option<Metrics>,
    /// The analog vector mapped through `mapping`, on the frontier at `frontier_layer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_mapped: Option<Metrics>,
    /// An equal-norm random direction on the frontier (same norm as the mapped vector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_baseline: Option<Metrics>,
}

/// A metric of the steering engine, by its field name in [`Metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    LogitDiff,
    LogitDiffShift,
    ProbTarget,
    Kl,
    TriggerRate,
    Perplexity,
}

impl MetricName {
    pub fn of(self, m: &Metrics) -> Option<f32> {
        match self {
            Self::LogitDiff => m.logit_diff,
            Self::LogitDiffShift => m.logit_diff_shift,
            Self::ProbTarget => m.prob_target,
            Self::Kl => Some(m.kl),
            Self::TriggerRate => m.trigger_rate,
            Self::Perplexity => m.perplexity,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LogitDiff => "logit_diff",
            Self::LogitDiffShift => "logit_diff_shift",
            Self::ProbTarget => "prob_target",
            Self::Kl => "kl",
            Self::TriggerRate => "trigger_rate",
            Self::Perplexity => "perplexity",
        }
    }
}

/// How the numbers were produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Revision of the code that measured (e.g. a git commit).
    pub code_revision: String,
    /// Every seed used, by purpose (e.g. `"evaluation": 0`).
    pub seeds: std::collections::BTreeMap<String, u64>,
    /// When it was measured: `YYYY-MM-DD` or an RFC 3339 timestamp.
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}"))]
    pub date: String,
    /// The machine: CPU/GPU and backend.
    pub hardware: String,
    /// Software and versions, e.g. `analog-explorer 0.1.0 (burn 0.22.1, flex CPU)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
}
