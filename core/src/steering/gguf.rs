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
//! The parser is written here, in safe Rust with every length checked against the bytes present,
//! because these files come from anywhere.

use std::collections::BTreeMap;

use super::extract::{Aggregation, Method};
use super::linalg::norm;
use super::vector::{Direction, FORMAT, HookSite, SteeringVector, VectorModel, VectorPairs};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
const ALIGNMENT: usize = 32;
const TYPE_U32: u32 = 4;
const TYPE_F32: u32 = 6;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const GGML_F32: u32 = 0;
const GGML_F16: u32 = 1;

enum Value {
    U32(u32),
    F32(f32),
    Str(String),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_kv(out: &mut Vec<u8>, key: &str, value: &Value) {
    put_str(out, key);
    match value {
        Value::U32(v) => {
            out.extend_from_slice(&TYPE_U32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::F32(v) => {
            out.extend_from_slice(&TYPE_F32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Str(s) => {
            out.extend_from_slice(&TYPE_STRING.to_le_bytes());
            put_str(out, s);
        }
    }
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(ALIGNMENT) {
        out.push(0);
    }
}

/// Writes `vector` as a GGUF control vector; `model_hint` is the HF `model_type` (e.g. `llama`).
pub fn export(vector: &SteeringVector, model_hint: &str) -> Vec<u8> {
    let mut kvs: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str("controlvector".into())),
        ("controlvector.model_hint".into(), Value::Str(model_hint.into())),
        ("controlvector.layer_count".into(), Value::U32(vector.directions.len() as u32)),
        ("analog.model_id".into(), Value::Str(vector.model.id.clone())),
        ("analog.weights_sha256".into(), Value::Str(vector.model.weights_sha256.clone())),
        ("analog.hook".into(), Value::Str(vector.site.to_string())),
        ("analog.method".into(), Value::Str(vector.method.to_string())),
        ("analog.aggregation".into(), Value::Str(serde_json::to_value(vector.aggregation).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())),
        ("analog.pairs_sha256".into(), Value::Str(vector.pairs.sha256.clone())),
        ("analog.n_pairs".into(), Value::U32(vector.pairs.n_pairs as u32)),
    ];
    for (layer, d) in &vector.directions {
        kvs.push((format!("analog.mean_resid_norm.{layer}"), Value::F32(d.mean_resid_norm)));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(vector.directions.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in &kvs {
        put_kv(&mut out, key, value);
    }
    let mut offset = 0u64;
    for (layer, d) in &vector.directions {
        put_str(&mut out, &format!("direction.{layer}"));
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(d.direction.len() as u64).to_le_bytes());
        out.extend_from_slice(&GGML_F32.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (d.direction.len() * 4).next_multiple_of(ALIGNMENT) as u64;
    }
    pad(&mut out);
    for d in vector.directions.values() {
        for x in &d.direction {
            out.extend_from_slice(&x.to_le_bytes());
        }
        pad(&mut out);
    }
    out
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| bad(format!("truncated at byte {}", self.pos)))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    /// A length that must fit in what is left of the file (each item at least `unit` bytes).
    fn len(&mut self, unit: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(unit.max(1) as u64) > left {
            return Err(bad(format!("byte {}: a count of {n} (at least {} bytes each) exceeds the {left} bytes left in the file", self.pos - 8, unit.max(1))));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad("a string is not UTF-8".into()))
    }
    /// Reads a value of GGUF type `ty`, keeping the kinds control vectors use.
    fn value(&mut self, ty: u32, depth: usize) -> Result<Option<Value>> {
        Ok(match ty {
            0 | 1 | 7 => {
                self.take(1)?;
                None
            }
            2 | 3 => {
                self.take(2)?;
                None
            }
            TYPE_U32 => Some(Value::U32(self.u32()?)),
            5 => {
                self.take(4)?;
                None
            }
            TYPE_F32 => Some(Value::F32(f32::from_bits(self.u32()?))),
            TYPE_STRING => Some(Value::Str(self.string()?)),
            TYPE_ARRAY if depth < 4 => {
                let inner = self.u32()?;
                let n = self.len(1)?;
                for _ in 0..n {
                    self.value(inner, depth + 1)?;
                }
                None
            }
            10..=12 => {
                self.take(8)?;
                None
            }
            other => return Err(bad(format!("unknown metadata type {other}"))),
        })
    }
}

fn bad(reason: String) -> Error {
    Error::InvalidVector(format!("GGUF: {reason}"))
}

/// Reads a GGUF control vector (ours, repeng's or llama.cpp's).
pub fn import(bytes: &[u8]) -> Result<SteeringVector> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(bad("not a GGUF file (bad magic)".into()));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(bad(format!("version {version} is not supported (2 or 3)")));
    }
    let n_tensors = r.len(24)?;
    let n_kvs = r.len(12)?;
    let mut meta = BTreeMap::new();
    for _ in 0..n_kvs {
        let key = r.string()?;
        let ty = r.u32()?;
        if let Some(v) = r.value(ty, 0)? {
            meta.insert(key, v);
        }
    }
    let text = |k: &str| match meta.get(k) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    if text("general.architecture").as_deref() != Some("controlvector") {
        return Err(bad("general.architecture is not `controlvector`".into()));
    }
    let alignment = match meta.get("general.alignment") {
        Some(Value::U32(a)) if *a > 0 && *a <= 1 << 16 => *a as usize,
        _ => ALIGNMENT,
    };
    let mut infos = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims == 0 || n_dims > 4 {
            return Err(bad(format!("tensor `{name}` has {n_dims} dimensions")));
        }
        let dims: Vec<u64> = (0..n_dims).map(|_| r.u64()).collect::<Result<_>>()?;
        let ty = r.u32()?;
        let offset = r.u64()?;
        infos.push((name, dims, ty, offset));
    }
    let data_start = r.pos.next_multiple_of(alignment);
    let mut directions = BTreeMap::new();
    let mut width = None;
    for (name, dims, ty, offset) in infos {
        let Some(layer) = name.strip_prefix("direction.").and_then(|l| l.parse::<usize>().ok()) else { continue };
        let n: u64 = dims.iter().product();
        let elem = match ty {
            GGML_F32 => 4,
            GGML_F16 => 2,
            other => return Err(bad(format!("tensor `{name}` has ggml type {other}; only F32 and F16 are supported"))),
        };
        let start = usize::try_from(offset).ok().and_then(|o| o.checked_add(data_start));
        let len = usize::try_from(n).ok().and_then(|n| n.checked_mul(elem));
        let raw = match (start, len) {
            (Some(s), Some(l)) if s.checked_add(l).is_some_and(|e| e <= bytes.len()) => &bytes[s..s + l],
            _ => return Err(bad(format!("tensor `{name}` lies outside the file"))),
        };
        let direction: Vec<f32> = match ty {
            GGML_F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            _ => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        };
        if direction.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!("tensor `{name}` has non-finite values")));
        }
        if *width.get_or_insert(direction.len()) != direction.len() {
            return Err(bad(format!("tensor `{name}` has {} values, other layers {}", direction.len(), width.unwrap_or(0))));
        }
        let mean_resid_norm = match meta.get(&format!("analog.mean_resid_norm.{layer}")) {
            Some(Value::F32(v)) => *v,
            _ => 0.0,
        };
        directions.insert(layer, Direction { norm: norm(&direction), mean_resid_norm, direction });
    }
    if directions.is_empty() {
        return Err(bad("no `direction.<layer>` tensors".into()));
    }
    let n_pairs = match meta.get("analog.n_pairs") {
        Some(Value::U32(n)) => *n as usize,
        _ => 0,
    };
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
        pairs: VectorPairs { sha256: text("analog.pairs_sha256").unwrap_or_default(), n_pairs },
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
            pairs: VectorPairs { sha256: "cd".repeat(32), n_pairs: 40 },
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
