//! Smaller weight files: f16, and q8_0 (blocks of 32 values stored as `i8` with one f16 scale each,
//! as in GGML's `Q8_0`), converted from and read back into ordinary HF safetensors.
//!
//! A q8_0 tensor `W` is stored as an `I8` tensor `W` of the original shape plus an `F16` tensor
//! `W.q8_0_scales` of shape `[numel / 32]`; block `b` holds `W.flat[32b..32b + 32] ≈ scale[b] · q`.
//! Only 2-D tensors whose size is a multiple of 32 are quantised; norms and biases stay f32.

use std::collections::BTreeMap;

use half::f16;
use safetensors::{Dtype, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::weights::{TensorTable, WeightFiles};

/// Values per q8_0 block.
pub const Q8_BLOCK: usize = 32;
/// Name suffix of a q8_0 tensor's scales.
pub const Q8_SCALES_SUFFIX: &str = ".q8_0_scales";

/// A weight-file format `analog convert` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    F32,
    F16,
    Q8_0,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            other => Err(format!("unknown weight format `{other}`: expected f32, f16 or q8_0")),
        }
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
        })
    }
}

/// Quantises `values` (length a multiple of [`Q8_BLOCK`]) to q8_0: per block, `scale = max|v| / 127`.
pub fn quantize_q8_0(values: &[f32]) -> (Vec<i8>, Vec<f16>) {
    let mut quants = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / Q8_BLOCK);
    for block in values.chunks(Q8_BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(max / 127.0);
        let inv = if scale.to_f32() > 0.0 { 1.0 / scale.to_f32() } else { 0.0 };
        quants.extend(block.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (quants, scales)
}

/// The inverse of [`quantize_q8_0`]. `scales` must hold one value per block of `quants`.
pub fn dequantize_q8_0(quants: &[i8], scales: &[f16]) -> Vec<f32> {
    quants.chunks(Q8_BLOCK).zip(scales).flat_map(|(block, s)| block.iter().map(move |&q| f32::from(q) * s.to_f32())).collect()
}

/// Reads a q8_0 tensor (its `I8` values and `F16` scales) back to f32, checking dtypes and sizes.
pub(crate) fn q8_0_to_f32(name: &str, quants: &TensorView<'_>, scales: &TensorView<'_>) -> Result<Vec<f32>> {
    let numel = quants.shape().iter().product::<usize>();
    let (q, s) = q8_0_parts(name, quants, scales, 0..numel)?;
    Ok(dequantize_q8_0(&q, &s))
}

/// Values `values` (whole blocks) of a q8_0 tensor and their scales as stored, checking dtypes and sizes.
pub(crate) fn q8_0_parts(name: &str, quants: &TensorView<'_>, scales: &TensorView<'_>, values: std::ops::Range<usize>) -> Result<(Vec<i8>, Vec<f16>)> {
    let numel = quants.shape().iter().product::<usize>();
    let bad = |reason: String| Error::Safetensors { file: "model.safetensors".into(), reason: format!("q8_0 tensor `{name}`: {reason}") };
    if quants.dtype() != Dtype::I8 {
        return Err(bad(format!("values must be I8, found {:?}", quants.dtype())));
    }
    if scales.dtype() != Dtype::F16 {
        return Err(bad(format!("scales must be F16, found {:?}", scales.dtype())));
    }
    if numel % Q8_BLOCK != 0 || scales.shape() != [numel / Q8_BLOCK] {
        return Err(bad(format!("{numel} values need {} scales in blocks of {Q8_BLOCK}, found shape {:?}", numel.div_ceil(Q8_BLOCK), scales.shape())));
    }
    if values.end > numel || !values.start.is_multiple_of(Q8_BLOCK) || !values.end.is_multiple_of(Q8_BLOCK) {
        return Err(bad(format!("values {values:?} are not whole blocks of its {numel}")));
    }
    let q: Vec<i8> = quants.data()[values.clone()].iter().map(|&b| b as i8).collect();
    let s: Vec<f16> = scales.data()[values.start / Q8_BLOCK * 2..values.end / Q8_BLOCK * 2].chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect();
    Ok((q, s))
}

/// Rewrites a checkpoint (single or sharded) as one `model.safetensors` in `format`, keeping HF
/// names and shapes, so every loader of this crate reads it like the original.
pub fn convert(files: &WeightFiles<'_>, format: WeightFormat) -> Result<Vec<u8>> {
    let table = TensorTable::parse(files)?;
    let mut out: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, shape) in table.names() {
        let values = table.values(name)?;
        let shape = shape.0;
        let numel = values.len();
        match format {
            WeightFormat::Q8_0 if shape.len() == 2 && numel % Q8_BLOCK == 0 => {
                let (q, s) = quantize_q8_0(&values);
                out.insert(name.to_string(), (Dtype::I8, shape, q.iter().map(|&v| v as u8).collect()));
                out.insert(format!("{name}{Q8_SCALES_SUFFIX}"), (Dtype::F16, vec![s.len()], s.iter().flat_map(|v| v.to_le_bytes()).collect()));
            }
            WeightFormat::F16 => {
                out.insert(name.to_string(), (Dtype::F16, shape, values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()));
            }
            _ => {
                out.insert(name.to_string(), (Dtype::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
            }
        }
    }
    let views = out
        .iter()
        .map(|(name, (dtype, shape, data))| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Safetensors { file: "model.safetensors".into(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>>>()?;
    // One metadata key (transformers requires it): safetensors writes a map's keys in hash order,
    // and the same weights must always give the same bytes.
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Safetensors { file: "model.safetensors".into(), reason: e.to_string() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_deterministic() {
        let values: Vec<f32> = (0..64 * 32).map(|i| (i as f32).sin()).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = safetensors::serialize([("w", TensorView::new(Dtype::F32, vec![64, 32], &bytes).unwrap())], None).unwrap();
        let first = convert(&WeightFiles::Single(&file), WeightFormat::Q8_0).unwrap();
        for _ in 0..8 {
            assert_eq!(convert(&WeightFiles::Single(&file), WeightFormat::Q8_0).unwrap(), first);
        }
    }

    #[test]
    fn q8_0_round_trip_error_is_within_half_a_step_per_block() {
        let values: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let (q, s) = quantize_q8_0(&values);
        assert_eq!((q.len(), s.len()), (256, 8));
        let back = dequantize_q8_0(&q, &s);
        for (block, (orig, deq)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
            let step = s[block].to_f32();
            let max = orig.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((step - max / 127.0).abs() <= max / 127.0 * 1e-3, "block {block}: scale {step}");
            for (a, b) in orig.iter().zip(deq) {
                assert!((a - b).abs() <= 0.5 * step + max * 1e-3, "block {block}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn an_all_zero_block_stays_zero() {
        let (q, s) = quantize_q8_0(&[0.0; 32]);
        assert_eq!(dequantize_q8_0(&q, &s), vec![0.0; 32]);
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("q8_0".parse::<WeightFormat>(), Ok(WeightFormat::Q8_0));
        assert!("q4".parse::<WeightFormat>().unwrap_err().contains("f32, f16 or q8_0"));
        for format in [WeightFormat::F32, WeightFormat::F16, WeightFormat::Q8_0] {
            assert_eq!(format.to_string().parse::<WeightFormat>(), Ok(format));
            assert_eq!(serde_json::to_value(format).unwrap(), format.to_string());
        }
    }
}
