//! GGUF files (llama.cpp's format) read from bytes: model files and control vectors alike.
//!
//! Layout: magic `GGUF`, version (2 or 3), tensor count, metadata count, the metadata
//! (key, type, value), the tensor infos (name, dimensions innermost first, ggml type, offset into
//! the data section), then the data section at the next multiple of `general.alignment`.
//!
//! These files come from anywhere, so every count, length and offset is checked against the bytes
//! present before anything is allocated or sliced, and each tensor's bytes are checked to lie
//! inside the file for its type and dimensions.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::ggml::{GgmlType, type_name};

pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// At most this many dimensions per tensor (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are allowed this deep (llama.cpp writes none deeper than one).
const MAX_ARRAY_DEPTH: usize = 2;

/// GGUF metadata value type ids.
mod ty {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Every integer type, widened.
    Int(i128),
    /// `f32` and `f64`, widened.
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

/// One tensor's header: `dims` innermost first, as ggml writes them (`[in, out]` for a linear
/// weight that PyTorch holds as `[out, in]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Where the tensor's bytes lie in the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    /// The shape in PyTorch's order (outermost first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Gguf(reason.into())
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

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items that must fit in what is left of the file, each at least `unit` bytes.
    fn count(&mut self, unit: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(unit.max(1) as u64) > left {
            return Err(bad(format!("byte {}: a count of {n} (at least {} bytes each) exceeds the {left} bytes left in the file", self.pos - 8, unit.max(1))));
        }
        usize::try_from(n).map_err(|_| bad(format!("a count of {n} does not fit in memory")))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.count(1)?;
        let at = self.pos;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad(format!("the string at byte {at} is not UTF-8")))
    }

    /// The smallest size of one value of metadata type `t` (to bound array counts).
    fn min_size(t: u32) -> usize {
        match t {
            ty::U8 | ty::I8 | ty::BOOL => 1,
            ty::U16 | ty::I16 => 2,
            ty::U32 | ty::I32 | ty::F32 => 4,
            ty::ARRAY => 12,
            _ => 8,
        }
    }

    fn value(&mut self, t: u32, depth: usize) -> Result<Value> {
        Ok(match t {
            ty::U8 => Value::Int(self.array::<1>()?[0].into()),
            ty::I8 => Value::Int((self.array::<1>()?[0] as i8).into()),
            ty::U16 => Value::Int(u16::from_le_bytes(self.array()?).into()),
            ty::I16 => Value::Int(i16::from_le_bytes(self.array()?).into()),
            ty::U32 => Value::Int(self.u32()?.into()),
            ty::I32 => Value::Int(i32::from_le_bytes(self.array()?).into()),
            ty::F32 => Value::Float(f32::from_le_bytes(self.array()?).into()),
            ty::BOOL => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(bad(format!("byte {}: a bool is {other}", self.pos - 1))),
            },
            ty::STRING => Value::Str(self.string()?),
            ty::ARRAY if depth < MAX_ARRAY_DEPTH => {
                let inner = self.u32()?;
                let n = self.count(Self::min_size(inner))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            ty::ARRAY => return Err(bad(format!("byte {}: arrays nest deeper than {MAX_ARRAY_DEPTH}", self.pos))),
            ty::U64 => Value::Int(self.u64()?.into()),
            ty::I64 => Value::Int(i64::from_le_bytes(self.array()?).into()),
            ty::F64 => Value::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(bad(format!("byte {}: unknown metadata type {other}", self.pos - 4))),
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor infos, checking every tensor lies in the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4).ok() != Some(&MAGIC[..]) {
            return Err(bad("not a GGUF file (bad magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!("version {version} is not supported (2 or 3)")));
        }
        // A tensor info takes at least 8 (name) + 4 + 8 + 4 + 8 bytes, a metadata entry 8 + 4 + 1.
        let n_tensors = r.count(32)?;
        let n_kvs = r.count(13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kvs {
            let key = r.string()?;
            let t = r.u32()?;
            let value = r.value(t, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(bad(format!("metadata key `{key}` appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::Int(a)) if (1..=1 << 16).contains(a) && (*a as usize).is_power_of_two() => *a as usize,
            Some(other) => return Err(bad(format!("general.alignment is {other:?}; expected a power of two up to 65536"))),
        };
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS})")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<u64>>>()?;
            let type_id = r.u32()?;
            let offset = r.u64()?;
            raw.push((name, dims, type_id, offset));
        }
        let data_start = r.pos.checked_next_multiple_of(alignment).ok_or_else(|| bad("the data section starts past the end of memory"))?;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut seen = std::collections::BTreeSet::new();
        for (name, dims, type_id, offset) in raw {
            if !seen.insert(name.clone()) {
                return Err(bad(format!("tensor `{name}` appears twice")));
            }
            let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnsupportedGgmlType { name: name.clone(), ty: type_name(type_id) })?;
            let numel = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n > 0);
            let Some(numel) = numel else {
                return Err(bad(format!("tensor `{name}` has dimensions {dims:?}: empty or too large")));
            };
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(bad(format!(
                    "tensor `{name}` ({}) has rows of {} values, not a whole number of {}-value blocks",
                    ty.name(),
                    dims[0],
                    ty.block_len()
                )));
            }
            if offset % alignment as u64 != 0 {
                return Err(bad(format!("tensor `{name}` starts at offset {offset}, which is not a multiple of the alignment {alignment}")));
            }
            let len = ty.bytes_for(numel);
            let start = usize::try_from(offset).ok().and_then(|o| o.checked_add(data_start));
            let range = match (start, len.and_then(|l| usize::try_from(l).ok())) {
                (Some(s), Some(l)) if s.checked_add(l).is_some_and(|e| e <= bytes.len()) => (s, l),
                _ => {
                    return Err(bad(format!(
                        "tensor `{name}` ({} {dims:?} at offset {offset}) lies outside the file ({} bytes): the file is truncated or the header is wrong",
                        ty.name(),
                        bytes.len()
                    )));
                }
            };
            let dims = dims.into_iter().map(|d| d as usize).collect();
            tensors.push(TensorInfo { name, dims, ty, start: range.0, len: range.1 });
        }
        Ok(Self { version, metadata, tensors, bytes })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A string value; `None` when absent or of another type.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any width that is non-negative.
    pub fn uint(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// A float value (integers are accepted too).
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An array value.
    pub fn array(&self, key: &str) -> Option<&[Value]> {
        match self.get(key)? {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture").ok_or_else(|| bad("`general.architecture` is missing"))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor (checked at parse time to lie inside the file).
    pub fn data(&self, tensor: &TensorInfo) -> &'a [u8] {
        &self.bytes[tensor.start..tensor.start + tensor.len]
    }

    /// A tensor's values as f32, rejecting non-finite values.
    pub fn values(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(tensor.numel());
        crate::ggml::dequantize(tensor.ty, self.data(tensor), &mut out).map_err(|reason| bad(format!("tensor `{}`: {reason}", tensor.name)))?;
        if out.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFiniteWeights { name: tensor.name.clone() });
        }
        Ok(out)
    }

    /// Bytes the tensors take as stored, and as f32.
    pub fn sizes(&self) -> (u64, u64) {
        self.tensors.iter().fold((0, 0), |(stored, f32s), t| (stored + t.len as u64, f32s + 4 * t.numel() as u64))
    }
}

/// Writes GGUF files (version 3): what [`crate::steering::gguf`] exports and what tests fabricate.
#[derive(Debug, Default)]
pub struct Writer {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (integers are written as u32, or i32 when negative; floats as f32).
    pub fn meta(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor: `dims` innermost first, `data` already in `ty`'s layout.
    pub fn tensor(&mut self, name: impl Into<String>, dims: Vec<usize>, ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.into(), dims, ty, data));
        self
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// The type id a value is written with: integers as u32 (i32 when negative), floats as f32.
    fn type_of(value: &Value) -> u32 {
        match value {
            Value::Int(i) if *i >= 0 => ty::U32,
            Value::Int(_) => ty::I32,
            Value::Float(_) => ty::F32,
            Value::Bool(_) => ty::BOOL,
            Value::Str(_) => ty::STRING,
            Value::Array(_) => ty::ARRAY,
        }
    }

    fn put_value(out: &mut Vec<u8>, value: &Value) {
        match value {
            Value::Int(i) if *i >= 0 => out.extend_from_slice(&(*i as u32).to_le_bytes()),
            Value::Int(i) => out.extend_from_slice(&(*i as i32).to_le_bytes()),
            Value::Float(f) => out.extend_from_slice(&(*f as f32).to_le_bytes()),
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Str(s) => Self::put_str(out, s),
            Value::Array(items) => {
                let inner = items.first().map_or(ty::U32, Self::type_of);
                out.extend_from_slice(&inner.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    Self::put_value(out, item);
                }
            }
        }
    }

    /// The file's bytes.
    pub fn finish(&self) -> Vec<u8> {
        let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT), 0);
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            Self::put_str(&mut out, key);
            out.extend_from_slice(&Self::type_of(value).to_le_bytes());
            Self::put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            Self::put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += data.len().next_multiple_of(DEFAULT_ALIGNMENT) as u64;
        }
        pad(&mut out);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            pad(&mut out);
        }
        out
    }
}

/// f32 values as little-endian bytes (a `GgmlType::F32` tensor's data).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        let mut w = Writer::new();
        w.meta("general.architecture", Value::Str("llama".into()))
            .meta("llama.block_count", Value::Int(2))
            .meta("llama.rope.freq_base", Value::Float(10000.0))
            .meta("tokenizer.ggml.tokens", Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]))
            .tensor("t", vec![3, 2], GgmlType::F32, f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        w.finish()
    }

    #[test]
    fn writes_and_reads_back() {
        let bytes = file();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.architecture().unwrap(), "llama");
        assert_eq!(g.uint("llama.block_count"), Some(2));
        assert_eq!(g.float("llama.rope.freq_base"), Some(10000.0));
        assert_eq!(g.array("tokenizer.ggml.tokens").unwrap().len(), 2);
        let t = g.tensor("t").unwrap();
        assert_eq!(t.shape(), vec![2, 3]);
        assert_eq!(g.values(t).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn hostile_headers_are_refused_not_panicked_on() {
        let bytes = file();
        // Every cut before the end of the tensor data (the padding after it may go).
        let end = Gguf::parse(&bytes).map(|g| g.tensors[0].start + g.tensors[0].len).unwrap();
        for cut in 0..end {
            assert!(Gguf::parse(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Gguf::parse(&huge).unwrap_err().to_string().contains("bytes left in the file"));
        // The tensor info: name length 1, "t", 2 dimensions, dims 3 and 2, then type and offset.
        let info = bytes.windows(9).position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b't']).unwrap();
        let type_at = info + 9 + 4 + 16;
        let mut unknown = bytes.clone();
        unknown[type_at..type_at + 4].copy_from_slice(&16u32.to_le_bytes());
        let err = Gguf::parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("`t`") && err.contains("IQ2_XXS"), "{err}");
        let mut offset = bytes.clone();
        offset[type_at + 4..type_at + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(Gguf::parse(&offset).unwrap_err().to_string().contains("lies outside the file"));
        let mut misaligned = bytes;
        misaligned[type_at + 4..type_at + 12].copy_from_slice(&4u64.to_le_bytes());
        assert!(Gguf::parse(&misaligned).unwrap_err().to_string().contains("not a multiple of the alignment"));
    }
}
