//! Frontier transfer reports: schema v1 ([`schema`]), strict validation ([`validate`]), the
//! analog-vs-frontier comparison ([`compare`]), and building a report from one's own measurements.
//! No I/O: reports, pair files and vector files come in as bytes; fetching them is the caller's job.

pub mod compare;
pub mod schema;
pub mod stats;
pub mod validate;

use sha2::{Digest, Sha256};

pub use compare::{Comparison, InterventionComparison, InterventionInputs, Outcome, Verdict, compare, section_verdicts};
pub use schema::*;
pub use validate::{MAX_REPORT_BYTES, ValidationError, ValidationErrors, check_url, parse};

use crate::error::{Error, Result};
use crate::steering::metrics::{EvalSpec, MetricRow};
use crate::steering::{PairFormat, PairSet, SteeringVector};

/// The JSON Schema (draft 2020-12) of [`TransferReport`], pretty-printed: the content of
/// `public/schema/transfer-report.v1.json`.
pub fn json_schema() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<TransferReport>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

impl TransferReport {
    /// A report of one's own measurements on `analog`: schema v1, kind `measurement`, id
    /// `<analog id>-measurement` (`/` and spaces become `-`), no frontier parts. Change fields with
    /// struct update syntax (a lab study adds `kind`, `frontier` and `geometry`), then call
    /// [`Self::validated`].
    pub fn measured(analog: AnalogModel, publisher: impl Into<String>, interventions: Vec<Intervention>, provenance: Provenance) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.into(),
            id: format!("{}-measurement", analog.id).replace(['/', ' '], "-"),
            kind: ReportKind::Measurement,
            publisher: Publisher { name: publisher.into(), url: None, contact: None },
            analog,
            frontier: None,
            geometry: None,
            interventions,
            mapper_validation: None,
            refusal_fidelity: None,
            extraction_estimate: None,
            provenance,
        }
    }

    /// The report, if it follows every rule of schema v1 ([`validate::check`]).
    pub fn validated(self) -> Result<Self, ValidationErrors> {
        let errors = validate::check(&self);
        if errors.is_empty() { Ok(self) } else { Err(ValidationErrors(errors)) }
    }

    /// Pretty JSON in field order, maps sorted: the same report always gives the same bytes.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// sha256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl AnalogModel {
    /// `model` as a report names it: its sizes, `id`, the sha256 of its weights file and where to download it.
    pub fn of(model: &crate::TextModel, id: impl Into<String>, weights_sha256: impl Into<String>, url: Option<String>) -> Self {
        let config = model.config();
        Self {
            id: id.into(),
            weights_sha256: weights_sha256.into(),
            n_params: model.model.n_params as u64,
            d_model: config.d_model,
            n_layers: config.n_layers,
            url,
        }
    }
}

impl Intervention {
    /// The inline pair set, if the report carries one.
    pub fn inline_pairs(&self) -> Option<Result<PairSet>> {
        self.pairs.inline.clone().map(|pairs| PairSet::new(pairs).map_err(Error::from))
    }

    /// Parses a fetched pair file and checks it is the declared set.
    pub fn pairs_from_bytes(&self, bytes: &[u8], format: PairFormat) -> Result<PairSet> {
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Report(format!("intervention `{}`: the pair file is not UTF-8 text", self.id)))?;
        let set = PairSet::parse(text, format)?;
        if set.sha256() != self.pairs.sha256 {
            return Err(Error::Report(format!(
                "intervention `{}`: the pair file hashes to {}, but the report declares {}; it is not the set the report was measured on",
                self.id,
                set.sha256(),
                self.pairs.sha256
            )));
        }
        Ok(set)
    }

    /// The published direction: inline values, or the `analog_layer` of a fetched vector file whose
    /// sha256 must match the report.
    pub fn vector_from_bytes(&self, file: Option<&[u8]>) -> Result<Vec<f32>> {
        if let Some(values) = &self.vector.values {
            return Ok(values.clone());
        }
        let (Some(bytes), Some(expected)) = (file, &self.vector.sha256) else {
            return Err(Error::Report(format!("intervention `{}`: the vector file is needed", self.id)));
        };
        let actual = sha256_hex(bytes);
        if &actual != expected {
            return Err(Error::Report(format!("intervention `{}`: the vector file hashes to {actual}, but the report declares {expected}", self.id)));
        }
        let vector = SteeringVector::from_json(bytes)?;
        vector
            .directions
            .get(&self.analog_layer)
            .map(|d| d.direction.clone())
            .ok_or_else(|| Error::Report(format!("intervention `{}`: the vector file has no layer {}", self.id, self.analog_layer)))
    }

    /// An intervention holding one's own analog measurements (no frontier parts), with the pairs
    /// and the vector inline.
    #[allow(clippy::too_many_arguments)] // each is one field of the record; a builder would only rename them
    pub fn measured(
        id: &str,
        concept: &str,
        pairs: &PairSet,
        vector: &SteeringVector,
        layer: usize,
        evaluation: EvalSpec,
        effect_metric: MetricName,
        rows: &[MetricRow],
    ) -> Result<Self> {
        let direction = vector.directions.get(&layer).ok_or_else(|| Error::Report(format!("the vector has no layer {layer}")))?;
        Ok(Self {
            id: id.into(),
            concept: concept.into(),
            pairs: PairSetRef {
                n_pairs: pairs.len(),
                sha256: pairs.sha256(),
                inline: Some(pairs.pairs.clone()),
                url: None,
                prompt_format: vector.pairs.prompt_format,
            },
            method: vector.method,
            aggregation: vector.aggregation,
            analog_hook: vector.site,
            analog_layer: layer,
            vector: VectorRef {
                norm: direction.norm,
                mean_resid_norm: direction.mean_resid_norm,
                values: Some(direction.direction.clone()),
                url: None,
                sha256: None,
            },
            frontier_layer: None,
            mapping: None,
            evaluation,
            effect_metric,
            results: rows
                .iter()
                .map(|r| CoefResult {
                    coef: r.coef,
                    analog: Some(r.steered.clone()),
                    analog_random_baseline: Some(r.random.clone()),
                    frontier_native: None,
                    frontier_mapped: None,
                    random_baseline: None,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
