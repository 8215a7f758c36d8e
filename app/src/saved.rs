//! The visitor's saved work as stored in `localStorage` and exported as one file: pair sets,
//! vectors and results. The stored JSON shape is the one earlier versions wrote
//! (`{"name", "kind", "data"}` per result), so saved work keeps loading; `ui::store` reads and
//! writes it.

use analog_core::steering::SteeringVector;
use serde::{Deserialize, Serialize};

use crate::protocol::CoefficientSweep;

/// The export file's format tag.
pub const FORMAT: &str = "analog-explorer-saved/v1";

/// A pair set the visitor wrote or imported (JSONL text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPairs {
    pub name: String,
    pub jsonl: String,
}

/// A steering vector the visitor kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedVector {
    pub name: String,
    pub vector: SteeringVector,
}

/// A measurement the visitor kept, stored as `{"name", "kind", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResult {
    pub name: String,
    #[serde(flatten)]
    pub result: ResultData,
}

/// What a saved result holds; the variant is stored as `kind`, its content as `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum ResultData {
    /// The studio's metrics across coefficients, with the measured intervention.
    #[serde(rename = "coefficient-sweep")]
    CoefficientSweep(CoefficientSweep),
}

impl ResultData {
    /// The measured intervention a report export takes from this result, if any.
    pub fn intervention(&self) -> Option<&analog_core::report::Intervention> {
        match self {
            Self::CoefficientSweep(sweep) => sweep.intervention.as_ref(),
        }
    }
}

/// Everything saved, as stored and as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub format: String,
    pub pair_sets: Vec<SavedPairs>,
    pub vectors: Vec<SavedVector>,
    pub results: Vec<SavedResult>,
}

impl Default for Saved {
    fn default() -> Self {
        Self { format: FORMAT.into(), pair_sets: Vec::new(), vectors: Vec::new(), results: Vec::new() }
    }
}

impl Saved {
    /// Parses an export file, naming what is wrong with it.
    pub fn from_export(text: &str) -> Result<Self, String> {
        let saved: Saved = serde_json::from_str(text).map_err(|e| format!("not an Analog Explorer export: {e}"))?;
        if saved.format != FORMAT {
            return Err(format!("unknown export format `{}` (expected {FORMAT})", saved.format));
        }
        Ok(saved)
    }

    /// Adds `other`'s items, replacing same-named ones.
    pub fn merge(&mut self, other: Saved) {
        for p in other.pair_sets {
            self.pair_sets.retain(|q| q.name != p.name);
            self.pair_sets.push(p);
        }
        for v in other.vectors {
            self.vectors.retain(|w| w.name != v.name);
            self.vectors.push(v);
        }
        for r in other.results {
            self.results.retain(|s| s.name != r.name);
            self.results.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result as the version before typed results stored it: `data` built with `json!`, so its
    /// keys are sorted, `intervention` may be null and absent metrics are null.
    const EARLIER: &str = r#"{"format":"analog-explorer-saved/v1","pair_sets":[{"name":"my mood","jsonl":"{\"positive\":\"a\",\"negative\":\"b\"}"}],
        "vectors":[],"results":[{"name":"sweep · story-mood · layer 2","kind":"coefficient-sweep","data":{"intervention":null,"rows":[
        {"coef":-1.0,"random":{"kl":0.01,"logit_diff":null,"logit_diff_shift":null,"perplexity":null,"prob_target":null,"trigger_rate":0.0},
         "steered":{"kl":0.5,"logit_diff":1.5,"logit_diff_shift":-0.25,"perplexity":null,"prob_target":0.1,"trigger_rate":0.5}}]}}]}"#;

    #[test]
    fn results_saved_by_earlier_versions_load() {
        let saved: Saved = serde_json::from_str(EARLIER).unwrap();
        let [result] = saved.results.as_slice() else { panic!("{saved:?}") };
        let ResultData::CoefficientSweep(sweep) = &result.result;
        assert_eq!(sweep.rows.len(), 1);
        assert_eq!(sweep.rows[0].steered.logit_diff_shift, Some(-0.25));
        assert!(sweep.intervention.is_none());
    }

    #[test]
    fn results_keep_their_stored_shape_and_round_trip() {
        let saved: Saved = serde_json::from_str(EARLIER).unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        assert!(text.contains(r#""kind":"coefficient-sweep","data":{"rows":["#), "{text}");
        let back: Saved = serde_json::from_str(&text).unwrap();
        assert_eq!(back, saved);
        assert_eq!(serde_json::to_string(&back).unwrap(), text, "saving again changes nothing");
    }

    #[test]
    fn unknown_kinds_are_unreadable_not_dropped() {
        let other = EARLIER.replace("coefficient-sweep", "something-newer");
        assert!(serde_json::from_str::<Saved>(&other).is_err());
        assert!(Saved::from_export(&other).is_err());
    }
}
