//! Reading weights from bytes: HF safetensors (single files and sharded checkpoints, F32/F16/BF16,
//! and this project's q8_0 layout, see [`crate::quant`]) and GGUF model files (llama.cpp's names
//! and block types, see [`crate::gguf`]), both presented under HF names and shapes.
//!
//! No I/O happens here: callers hand over the bytes of `model.safetensors`, of
//! `model.safetensors.index.json` plus every shard it names, or of a `.gguf` file.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::Deserialize;

use crate::config::ModelConfig;
use crate::error::{Error, Result, Shape};
use crate::ggml::{CodeLayout, Codes};
use crate::gguf::{Gguf, TensorInfo};
use crate::quant::{Q8_SCALES_SUFFIX, q8_0_parts, q8_0_to_f32};
use crate::weight_map::{Fixup, GGUF_CONFIG_TENSORS, hf_name_of_gguf, stored_row, unpermute_rows};

/// The weight files of a checkpoint, as bytes.
pub enum WeightFiles<'a> {
    /// One `model.safetensors`.
    Single(&'a [u8]),
    /// `model.safetensors.index.json` and its shards, keyed by the file names the index uses.
    Sharded { index: &'a [u8], shards: BTreeMap<String, &'a [u8]> },
    /// A GGUF model file: configuration, tokenizer and weights in one.
    Gguf(&'a [u8]),
}

/// One tensor as a file stores it.
enum Stored<'a> {
    Safetensors(TensorView<'a>),
    /// A GGUF tensor with its HF shape and what its values need to read like HF's.
    Ggml {
        info: TensorInfo,
        shape: Vec<usize>,
        bytes: &'a [u8],
        fixup: Fixup,
    },
}

impl Stored<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            Self::Safetensors(view) => view.shape(),
            Self::Ggml { shape, .. } => shape,
        }
    }
}

/// Every tensor of a checkpoint, by HF name, borrowed from the file bytes.
pub(crate) struct TensorTable<'a> {
    tensors: BTreeMap<String, Stored<'a>>,
    /// q8_0 scales, by the name of the tensor they scale.
    q8_scales: BTreeMap<String, TensorView<'a>>,
}

/// What a checkpoint's tensors take once they are f32 (as the CPU holds them, and as the largest
/// GPU buffer must): read from the headers alone, before any tensor is converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The largest tensor's name and its f32 bytes.
    pub largest: String,
    pub largest_bytes: u64,
    /// All tensors together, as f32 (q8_0 scales excluded: they vanish when dequantised).
    pub total_bytes: u64,
    /// All tensors together as the file stores them.
    pub stored_bytes: u64,
    /// On a device that keeps quantised matrices quantised (wgpu): all tensors together, and the
    /// largest single buffer (a quantised matrix's packed codes, or an f32 tensor).
    pub device_bytes: u64,
    pub device_largest_bytes: u64,
}

/// The checkpoint's [`Footprint`]; fails like loading would on a malformed file.
pub fn footprint(files: &WeightFiles<'_>) -> Result<Footprint> {
    let table = TensorTable::parse(files)?;
    let mut out =
        Footprint { largest: String::new(), largest_bytes: 0, total_bytes: 0, stored_bytes: table.stored_bytes(), device_bytes: 0, device_largest_bytes: 0 };
    for (name, shape) in table.names() {
        let bytes = shape.0.iter().fold(4u64, |acc, &d| acc.saturating_mul(d as u64));
        out.total_bytes = out.total_bytes.saturating_add(bytes);
        let (buffer, all) = table.device_bytes(name).unwrap_or((bytes, bytes));
        out.device_bytes = out.device_bytes.saturating_add(all);
        out.device_largest_bytes = out.device_largest_bytes.max(buffer);
        if bytes > out.largest_bytes {
            out = Footprint { largest: name.to_string(), largest_bytes: bytes, ..out };
        }
    }
    Ok(out)
}

/// The [`Footprint`] a model of this configuration takes as f32, from `config.json` alone: what can be
/// said before its weights are downloaded (the file's own header, read once it is in, may show less
/// on a device that keeps quantised weights).
pub fn footprint_of_config(config: &ModelConfig) -> Footprint {
    let mut out = Footprint { largest: String::new(), largest_bytes: 0, total_bytes: 0, stored_bytes: 0, device_bytes: 0, device_largest_bytes: 0 };
    for (name, shape) in crate::weight_map::expected_tensors(config) {
        let bytes = shape.iter().fold(4u64, |acc, &d| acc.saturating_mul(d as u64));
        out.total_bytes = out.total_bytes.saturating_add(bytes);
        if bytes > out.largest_bytes {
            (out.largest, out.largest_bytes) = (name, bytes);
        }
    }
    Footprint { device_bytes: out.total_bytes, device_largest_bytes: out.largest_bytes, ..out }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn parse_file<'a>(file: &str, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors { file: file.to_string(), reason: e.to_string() })
}

impl<'a> TensorTable<'a> {
    pub(crate) fn parse(files: &WeightFiles<'a>) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        match files {
            WeightFiles::Gguf(bytes) => {
                let file = Gguf::parse(bytes)?;
                return Self::from_gguf(&file, &ModelConfig::from_gguf(&file)?);
            }
            WeightFiles::Single(bytes) => {
                for (name, view) in parse_file("model.safetensors", bytes)?.tensors() {
                    tensors.insert(name, view);
                }
            }
            WeightFiles::Sharded { index, shards } => {
                let index: ShardIndex = serde_json::from_slice(index).map_err(|e| Error::ShardIndex(e.to_string()))?;
                let mut parsed = BTreeMap::new();
                for file in index.weight_map.values() {
                    if parsed.contains_key(file.as_str()) {
                        continue;
                    }
                    let bytes = shards.get(file).ok_or_else(|| Error::ShardIndex(format!("shard `{file}` is named in the index but was not provided")))?;
                    parsed.insert(file.as_str(), parse_file(file, bytes)?);
                }
                for (file, shard) in &parsed {
                    for (name, view) in shard.tensors() {
                        if index.weight_map.get(&name).map(String::as_str) != Some(*file) {
                            return Err(Error::ShardIndex(format!("tensor `{name}` is in `{file}` but the index does not place it there")));
                        }
                        tensors.insert(name, view);
                    }
                }
                if let Some(name) = index.weight_map.keys().find(|name| !tensors.contains_key(*name)) {
                    return Err(Error::ShardIndex(format!("tensor `{name}` is listed in the index but missing from its shard")));
                }
            }
        }
        let scale_names: Vec<String> = tensors.keys().filter(|n| n.ends_with(Q8_SCALES_SUFFIX)).cloned().collect();
        let mut q8_scales = BTreeMap::new();
        for name in scale_names {
            let base = name.trim_end_matches(Q8_SCALES_SUFFIX).to_string();
            if !tensors.contains_key(&base) {
                return Err(Error::Safetensors {
                    file: "model.safetensors".into(),
                    reason: format!("`{name}` scales a tensor `{base}` that is not in the file"),
                });
            }
            if let Some(view) = tensors.remove(&name) {
                q8_scales.insert(base, view);
            }
        }
        let tensors = tensors.into_iter().map(|(name, view)| (name, Stored::Safetensors(view))).collect();
        Ok(Self { tensors, q8_scales })
    }

    /// A parsed GGUF file's tensors under their HF names (unknown names are kept as they are, for
    /// the loader to report); `config` is the file's own.
    pub(crate) fn from_gguf(file: &Gguf<'a>, config: &ModelConfig) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for info in &file.tensors {
            if GGUF_CONFIG_TENSORS.contains(&info.name.as_str()) {
                continue;
            }
            let (name, fixup) = hf_name_of_gguf(config, &info.name).unwrap_or_else(|| (info.name.clone(), Fixup::None));
            let stored = Stored::Ggml { shape: info.shape(), bytes: file.data(info), info: info.clone(), fixup };
            if tensors.insert(name.clone(), stored).is_some() {
                return Err(Error::Gguf(format!("two tensors map to `{name}`")));
            }
        }
        Ok(Self { tensors, q8_scales: BTreeMap::new() })
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = (&str, Shape)> {
        self.tensors.iter().map(|(name, stored)| (name.as_str(), Shape(stored.shape().to_vec())))
    }

    pub(crate) fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(Stored::shape)
    }

    /// How to name a tensor to the user: as the file names it (GGUF tensors by llama.cpp's name).
    pub(crate) fn display_name(&self, name: &str) -> String {
        match self.tensors.get(name) {
            Some(Stored::Ggml { info, .. }) => info.name.clone(),
            _ => name.to_string(),
        }
    }

    /// A matrix that can stay quantised on the device: the bytes of its largest buffer of packed codes and of
    /// everything it holds there (codes, scales and minimums); `None` for tensors held as f32.
    fn device_bytes(&self, name: &str) -> Option<(u64, u64)> {
        let (shape, layout) = match self.tensors.get(name)? {
            Stored::Ggml { info, shape, .. } => (shape.as_slice(), info.ty.code_layout()?),
            Stored::Safetensors(view) if self.q8_scales.contains_key(name) => (view.shape(), CodeLayout::Q8_0),
            _ => return None,
        };
        let &[rows, cols] = shape else { return None };
        Some((layout.largest_part_bytes(rows, cols), layout.device_bytes(rows.saturating_mul(cols))))
    }

    /// Bytes of every tensor as stored (scales included).
    fn stored_bytes(&self) -> u64 {
        let stored = self.tensors.values().map(|s| match s {
            Stored::Safetensors(view) => view.data().len() as u64,
            Stored::Ggml { bytes, .. } => bytes.len() as u64,
        });
        stored.chain(self.q8_scales.values().map(|v| v.data().len() as u64)).sum()
    }

    /// The tensor's values as `f32` (dequantised when it is q8_0), rejecting unsupported dtypes and
    /// non-finite values.
    pub(crate) fn values(&self, name: &str) -> Result<Vec<f32>> {
        let stored = self.tensors.get(name).ok_or_else(|| Error::MissingTensor { name: name.to_string(), expected: Shape(vec![]) })?;
        let values = match (stored, self.q8_scales.get(name)) {
            (Stored::Safetensors(view), Some(scales)) => q8_0_to_f32(name, view, scales)?,
            (Stored::Safetensors(view), None) => to_f32(name, view)?,
            (Stored::Ggml { info, shape, bytes, fixup }, _) => {
                let mut values = Vec::with_capacity(info.numel());
                crate::ggml::dequantize(info.ty, bytes, &mut values).map_err(|reason| Error::Gguf(format!("tensor `{}`: {reason}", info.name)))?;
                match fixup {
                    Fixup::None => values,
                    Fixup::MinusOne => values.into_iter().map(|w| w - 1.0).collect(),
                    Fixup::Unpermute { heads } => unpermute_rows(&values, shape[0], *heads).ok_or_else(|| Error::ShapeMismatch {
                        name: info.name.clone(),
                        expected: Shape(vec![*heads, 2, shape[0] / heads.max(&1) / 2]),
                        found: Shape(shape.clone()),
                    })?,
                }
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFiniteWeights { name: name.to_string() });
        }
        Ok(values)
    }

    /// The code layout `name` stays quantised in, or `None` where it cannot ([`Self::quantised_rows`] then refuses
    /// it), read from the header alone: loading decides what stays quantised before decoding anything.
    pub(crate) fn code_layout(&self, name: &str) -> Option<CodeLayout> {
        match self.tensors.get(name)? {
            Stored::Ggml { info, shape, fixup, .. } => {
                let layout = info.ty.code_layout()?;
                match fixup {
                    Fixup::None => Some(layout),
                    Fixup::MinusOne => None,
                    Fixup::Unpermute { heads } => {
                        let rows = shape[0];
                        let reorders = *heads > 0 && rows.is_multiple_of(*heads) && (rows / heads).is_multiple_of(2);
                        (reorders && (info.numel() / rows).is_multiple_of(layout.group)).then_some(layout)
                    }
                }
            }
            Stored::Safetensors(_) => self.q8_scales.contains_key(name).then_some(CodeLayout::Q8_0),
        }
    }

    /// The codes, scales and minimums of HF rows `rows` of a tensor that [`Self::code_layout`] keeps quantised, decoded
    /// from the file without dequantising (llama.cpp's reordered rows put back). Rejects non-finite scales and minimums.
    pub(crate) fn quantised_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Codes> {
        let missing = || Error::Gguf(format!("tensor `{name}` has no codes to keep"));
        let (Some(layout), Some(stored)) = (self.code_layout(name), self.tensors.get(name)) else { return Err(missing()) };
        let n_rows = stored.shape().first().copied().unwrap_or(1).max(1);
        let cols = stored.shape().iter().product::<usize>() / n_rows;
        if rows.end > n_rows || !(rows.start * cols).is_multiple_of(layout.group) || !(rows.end * cols).is_multiple_of(layout.group) {
            return Err(Error::Gguf(format!("rows {rows:?} of tensor `{name}` are not whole groups of {}", layout.group)));
        }
        let codes = match stored {
            Stored::Ggml { info, bytes, fixup, .. } => {
                let gguf_error = |reason: String| Error::Gguf(format!("tensor `{}`: {reason}", info.name));
                let row_bytes = info.ty.bytes_for(cols as u64).map_or(0, |b| b as usize);
                if row_bytes == 0 || bytes.len() != n_rows * row_bytes {
                    return Err(gguf_error(format!("{} bytes are not {n_rows} rows of {cols} values", bytes.len())));
                }
                let decode = |r: std::ops::Range<usize>| -> Result<Codes> {
                    crate::ggml::codes(info.ty, &bytes[r.start * row_bytes..r.end * row_bytes]).map_err(gguf_error)?.ok_or_else(missing)
                };
                match fixup {
                    Fixup::Unpermute { heads } => {
                        let mut out = Codes { layout, codes: Vec::with_capacity(rows.len() * cols), scales: Vec::new(), mins: Vec::new() };
                        for j in rows {
                            let stored = stored_row(j, n_rows / heads);
                            let row = decode(stored..stored + 1)?;
                            out.codes.extend(row.codes);
                            out.scales.extend(row.scales);
                            out.mins.extend(row.mins);
                        }
                        out
                    }
                    Fixup::None | Fixup::MinusOne => decode(rows)?,
                }
            }
            Stored::Safetensors(view) => {
                let scales = self.q8_scales.get(name).ok_or_else(missing)?;
                let (codes, scales) = q8_0_parts(name, view, scales, rows.start * cols..rows.end * cols)?;
                Codes { layout: CodeLayout::Q8_0, codes, scales: scales.iter().map(|s| s.to_f32()).collect(), mins: vec![] }
            }
        };
        if codes.scales.iter().chain(&codes.mins).any(|s| !s.is_finite()) {
            return Err(Error::NonFiniteWeights { name: name.to_string() });
        }
        Ok(codes)
    }
}

/// Converts a tensor's bytes to `f32`, rejecting unsupported dtypes.
fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
    })
}
