//! `public/catalog.json`: the models and reports the app offers. The lab writes it, the app reads it.

use serde::{Deserialize, Serialize};

use crate::quant::WeightFormat;

/// The value of [`Catalog::format`].
pub const CATALOG_FORMAT: &str = "analog-explorer-catalog/v1";

/// `public/catalog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Catalog {
    /// Always [`CATALOG_FORMAT`].
    #[serde(default)]
    pub format: String,
    pub default: String,
    pub models: Vec<CatalogModel>,
    #[serde(default)]
    pub hub: Vec<HubModel>,
    #[serde(default)]
    pub reports: Vec<CatalogReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogModel {
    pub id: String,
    pub role: String,
    pub note: String,
    pub path: String,
    pub n_params: u64,
    pub bytes: u64,
    pub files: Vec<CatalogFile>,
    /// The HF `model_type` (e.g. `llama`).
    pub architecture: String,
    /// Held-out loss in nats per token.
    pub held_out_loss: f64,
    /// Share of sampled sentences the corpus grammar accepts.
    pub grammatical: f64,
    /// The format of the published `model.safetensors`.
    pub weight_format: WeightFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A released model on the Hugging Face hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubModel {
    pub repo: String,
    pub family: String,
    pub n_params: u64,
    pub note: String,
    /// The large model of the same family this one stands in for, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier: Option<Frontier>,
}

/// The frontier side of an analog → frontier pair, as its developers describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frontier {
    pub name: String,
    pub n_params: u64,
    /// Whether the small model was distilled from the large one (or from the family's teachers).
    pub distilled: bool,
    /// What the developers say, in a few words.
    pub claim: String,
    /// Where they say it (a paper or model card URL).
    pub source: String,
}

/// The analog size band the position paper asks labs to release in: 0.5–5% of the frontier.
pub const ANALOG_BAND: std::ops::RangeInclusive<f64> = 0.005..=0.05;

impl HubModel {
    /// The analog's parameters as a share of its frontier's.
    pub fn size_ratio(&self) -> Option<f64> {
        self.frontier.as_ref().filter(|f| f.n_params > 0).map(|f| self.n_params as f64 / f.n_params as f64)
    }

    /// Whether the size ratio lies in [`ANALOG_BAND`].
    pub fn in_band(&self) -> Option<bool> {
        self.size_ratio().map(|r| ANALOG_BAND.contains(&r))
    }

    /// Bytes the weights take as f32 (how the CPU holds them): what a device must hold.
    pub fn f32_bytes(&self) -> u64 {
        self.n_params.saturating_mul(4)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogReport {
    pub id: String,
    pub path: String,
    pub analog: String,
    pub frontier: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_published_catalog_parses() {
        let catalog: Catalog = serde_json::from_str(include_str!("../../public/catalog.json")).expect("public/catalog.json");
        assert_eq!(catalog.format, CATALOG_FORMAT);
        assert!(catalog.models.iter().any(|m| m.id == catalog.default));
    }
}
