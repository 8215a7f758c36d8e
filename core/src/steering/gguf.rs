//! Control vectors in GGUF, the layout llama.cpp (`--control-vector`) and repeng
//! (`export_gguf`/`import_gguf`) read: `general.architecture = "controlvector"`,
//! `controlvector.model_hint`, `controlvector.layer_count`, and one f32 tensor `direction.<layer>`
//! of `n_embd` values per layer.
//!
//! Layer mapping: `direction.<l>` is added to the output of block `l` (0-based), i.e. at
//! `blocks.<l>.hook_resid_post`, as repeng indexes `model.layers`; llama.cpp skips
//! `direction.0`. Files we write also carry `analog.*` keys (method, pair-set hash, norms) so that
//! export then import gives back the same vector bit for bit.
//!
//! The file itself is read and written by [`crate::gguf`], the one GGUF parser (model files too).

use std::collections::BTreeMap;

use super::extract::{Aggregation, Method, PromptFormat};
use super::linalg::norm;
use super::vector::{Direction, FORMAT, HookSite, SteeringVector, VectorModel, VectorPairs};
use crate::error::{Error, Result};
use crate::ggml::GgmlType;
use crate::gguf::{Gguf, Value, Writer, f32_bytes};

/// Writes `vector` as a GGUF control vector; `model_hint` is the HF `model_type` (e.g. `llama`).
pub fn export(vector: &SteeringVector, model_hint: &str) -> Vec<u8> {
    let text = |s: &str| Value::Str(s.to_string());
    let mut w = Writer::new();
    w.meta("general.architecture", text("controlvector"))
        .meta("controlvector.model_hint", text(model_hint))
        .meta("controlvector.layer_count", Value::Int(vector.directions.len() as i128))
        .meta("analog.model_id", text(&vector.model.id))
        .meta("analog.weights_sha256", text(&vector.model.weights_sha256))
        .meta("analog.hook", text(&vector.site.to_string()))
        .meta("analog.method", text(&vector.method.to_string()))
        .meta("analog.aggregation", text(&serde_json::to_value(vector.aggregation).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()))
        .meta("analog.pairs_sha256", text(&vector.pairs.sha256))
        .meta("analog.n_pairs", Value::Int(vector.pairs.n_pairs as i128));
    for (layer, d) in &vector.directions {
        w.meta(format!("analog.mean_resid_norm.{layer}"), Value::Float(d.mean_resid_norm.into()));
    }
    for (layer, d) in &vector.directions {
        w.tensor(format!("direction.{layer}"), vec![d.direction.len()], GgmlType::F32, f32_bytes(&d.direction));
    }
    w.finish()
}

fn bad(reason: String) -> Error {
    Error::InvalidVector(format!("GGUF: {reason}"))
}

/// Reads a GGUF control vector (ours, repeng's or llama.cpp's).
pub fn import(bytes: &[u8]) -> Result<SteeringVector> {
    let file = Gguf::parse(bytes).map_err(|e| match e {
        Error::Gguf(reason) => bad(reason),
        other => Error::InvalidVector(other.to_string()),
    })?;
    let text = |k: &str| file.str(k).map(String::from);
    if file.str("general.architecture") != Some("controlvector") {
        return Err(bad("general.architecture is not `controlvector`".into()));
    }
    let mut directions = BTreeMap::new();
    let mut width = None;
    for tensor in &file.tensors {
        let Some(layer) = tensor.name.strip_prefix("direction.").and_then(|l| l.parse::<usize>().ok()) else { continue };
        if !matches!(tensor.ty, GgmlType::F32 | GgmlType::F16) {
            return Err(bad(format!("tensor `{}` has ggml type {}; only F32 and F16 are supported", tensor.name, tensor.ty.name())));
        }
        let direction = file.values(tensor).map_err(|_| bad(format!("tensor `{}` has non-finite values", tensor.name)))?;
        if *width.get_or_insert(direction.len()) != direction.len() {
            return Err(bad(format!("tensor `{}` has {} values, other layers {}", tensor.name, direction.len(), width.unwrap_or(0))));
        }
        let mean_resid_norm = file.float(&format!("analog.mean_resid_norm.{layer}")).unwrap_or(0.0) as f32;
        directions.insert(layer, Direction { norm: norm(&direction), mean_resid_norm, direction });
    }
    if directions.is_empty() {
        return Err(bad("no `direction.<layer>` tensors".into()));
    }
    Ok(SteeringVector {
        format: FORMAT.into(),
        model: VectorModel {
            id: text("analog.model_id").or_else(|| text("controlvector.model_hint")).unwrap_or_default(),
            weights_sha256: text("analog.weights_sha256").unwrap_or_default(),
            d_model: width.unwrap_or(0),
        },
        site: text("analog.hook").and_then(|h| h.parse().ok()).unwrap_or(HookSite::ResidPost),
        method: text("analog.method").and_then(|m| m.parse().ok()).unwrap_or(Method::Imported),
        aggregation: text("analog.aggregation").and_then(|a| a.parse().ok()).unwrap_or(Aggregation::Last),
        pairs: VectorPairs {
            sha256: text("analog.pairs_sha256").unwrap_or_default(),
            n_pairs: file.uint("analog.n_pairs").unwrap_or(0) as usize,
            prompt_format: PromptFormat::Plain,
        },
        directions,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vector() -> SteeringVector {
        let directions = [0usize, 3, 11]
            .into_iter()
            .map(|l| {
                let direction: Vec<f32> = (0..7).map(|i| ((l * 7 + i) as f32 * 0.731).sin() * 1e-3 + f32::EPSILON * i as f32).collect();
                (l, Direction { norm: norm(&direction), mean_resid_norm: 3.25 + l as f32, direction })
            })
            .collect();
        SteeringVector {
            format: FORMAT.into(),
            model: VectorModel { id: "tiny".into(), weights_sha256: "ab".repeat(32), d_model: 7 },
            site: HookSite::ResidPost,
            method: Method::PcaCenter,
            aggregation: Aggregation::Mean,
            pairs: VectorPairs { sha256: "cd".repeat(32), n_pairs: 40, prompt_format: PromptFormat::Plain },
            directions,
        }
    }

    #[test]
    fn export_import_round_trips_bit_exactly() {
        let v = vector();
        let bytes = export(&v, "llama");
        let back = import(&bytes).unwrap();
        assert_eq!(back, v);
        for (a, b) in v.directions.values().zip(back.directions.values()) {
            assert!(a.direction.iter().zip(&b.direction).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        assert_eq!(export(&back, "llama"), bytes, "export is deterministic");
    }

    #[test]
    fn hostile_files_are_refused_not_panicked_on() {
        let bytes = export(&vector(), "llama");
        for cut in [0, 3, 10, 30, 100, bytes.len() - 5] {
            assert!(import(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
        assert!(import(&huge).unwrap_err().to_string().contains("bytes left in the file"));
        let mut wrong = bytes;
        wrong[0] = b'X';
        assert!(import(&wrong).unwrap_err().to_string().contains("bad magic"));
    }
}
