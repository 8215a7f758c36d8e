//! ggml tensor types and their dequantisation to `f32`.
//!
//! A GGUF tensor is stored in one ggml type: plain floats (`F32`, `F16`, `BF16`), or blocks of
//! small integers that share an `f16` scale (`Q4_0` … `Q8_0`, 32 values a block), or the "K"
//! super-blocks of 256 values whose 16 or 32 sub-blocks carry their own packed scales
//! (`Q2_K` … `Q6_K`). The block layouts are llama.cpp's (`ggml/src/ggml-common.h`); every
//! multi-byte field is little-endian. The test below compares each type with gguf-py's
//! `gguf.quants.dequantize` on the blocks in `tests/fixtures/ggml/blocks.json`.
//!
//! Each block is decoded by a function from a fixed-size byte array to a fixed-size output array,
//! so lengths are settled once per tensor and no input can index out of bounds.

use half::{bf16, f16};

/// Values in one K-quant super-block (llama.cpp's `QK_K`).
const QK_K: usize = 256;

/// A ggml tensor type analog can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    /// From the ggml type id stored in GGUF tensor infos (F32=0, F16=1, Q4_0=2, Q4_1=3, Q5_0=6, Q5_1=7, Q8_0=8, Q2_K=10,
    /// Q3_K=11, Q4_K=12, Q5_K=13, Q6_K=14, BF16=30); `None` for anything else.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// The ggml type id, as stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// llama.cpp's name: "F32", "Q4_K", ...
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for K types).
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes that `n` elements take; `None` when `n` is not a whole number of blocks or on overflow.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let len = self.block_len() as u64;
        if !n.is_multiple_of(len) {
            return None;
        }
        (n / len).checked_mul(self.block_bytes() as u64)
    }

    /// The number of blocks in `bytes` bytes, or why they are not a whole number of blocks.
    fn blocks_in(self, bytes: usize) -> Result<usize, String> {
        let block = self.block_bytes();
        if bytes.is_multiple_of(block) {
            Ok(bytes / block)
        } else {
            Err(format!("{bytes} bytes of {} data are not a whole number of {block}-byte blocks", self.name()))
        }
    }
}

/// Name of any ggml type id, for error messages (known ids that analog does not read too, e.g. 16 → "IQ2_XXS";
/// unknown → "type 99").
pub fn type_name(id: u32) -> String {
    if let Some(ty) = GgmlType::from_id(id) {
        return ty.name().to_owned();
    }
    let name = match id {
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        // 31..=33 and 36..=38 were interleaved CPU layouts, since removed from GGUF files.
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => return format!("type {id}"),
    };
    name.to_owned()
}

/// Dequantises `bytes` (exactly `ty.bytes_for(n)` bytes for n = the number of values) into f32, appending to `out`.
///
/// Returns `Err` with a reason if the length is not a whole number of blocks, leaving `out` as it was.
/// Never panics on any input bytes: a scale that decodes to NaN or infinity just yields such values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    let blocks = ty.blocks_in(bytes.len())?;
    let start = out.len();
    out.resize(start + blocks * ty.block_len(), 0.0);
    let out = &mut out[start..];
    match ty {
        GgmlType::F32 => each_block(bytes, out, |x: &[u8; 4], y: &mut [f32; 1]| y[0] = f32::from_le_bytes(*x)),
        GgmlType::F16 => each_block(bytes, out, |x: &[u8; 2], y: &mut [f32; 1]| y[0] = f16::from_le_bytes(*x).to_f32()),
        GgmlType::BF16 => each_block(bytes, out, |x: &[u8; 2], y: &mut [f32; 1]| y[0] = bf16::from_le_bytes(*x).to_f32()),
        GgmlType::Q4_0 => each_block(bytes, out, q4_0),
        GgmlType::Q4_1 => each_block(bytes, out, q4_1),
        GgmlType::Q5_0 => each_block(bytes, out, q5_0),
        GgmlType::Q5_1 => each_block(bytes, out, q5_1),
        GgmlType::Q8_0 => each_block(bytes, out, q8_0),
        GgmlType::Q2K => each_block(bytes, out, q2_k),
        GgmlType::Q3K => each_block(bytes, out, q3_k),
        GgmlType::Q4K => each_block(bytes, out, q4_k),
        GgmlType::Q5K => each_block(bytes, out, q5_k),
        GgmlType::Q6K => each_block(bytes, out, q6_k),
    }
    Ok(())
}

/// A Q8_0 tensor's blocks split into their int8 values and f32 scales (for keeping weights quantised on the GPU):
/// value `i` is `quants[i] · scales[i / 32]`.
pub fn q8_0_parts(bytes: &[u8]) -> Result<(Vec<i8>, Vec<f32>), String> {
    let blocks = GgmlType::Q8_0.blocks_in(bytes.len())?;
    let mut quants = Vec::with_capacity(blocks * 32);
    let mut scales = Vec::with_capacity(blocks);
    for block in bytes.as_chunks::<34>().0 {
        scales.push(f16_at(block, 0));
        quants.extend(block[2..].iter().map(|q| q.cast_signed()));
    }
    Ok((quants, scales))
}

/// Runs `decode` on every `B`-byte block of `bytes`, writing its `N` values to the matching chunk of `out`.
/// The caller has checked that `bytes` holds a whole number of blocks and `out` the same number of chunks.
fn each_block<const B: usize, const N: usize>(bytes: &[u8], out: &mut [f32], decode: impl Fn(&[u8; B], &mut [f32; N])) {
    for (block, values) in bytes.as_chunks::<B>().0.iter().zip(out.as_chunks_mut::<N>().0) {
        decode(block, values);
    }
}

/// The little-endian f16 at `at`, as f32.
fn f16_at<const B: usize>(block: &[u8; B], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

/// A quant as f32, with `offset` subtracted (8 or 16 for the symmetric 4- and 5-bit types).
fn centred(q: u8, offset: i16) -> f32 {
    f32::from(i16::from(q) - offset)
}

/// Q4_0 (18 bytes): `d: f16`, `qs: [u8; 16]`. Value `i < 16` is the low nibble of `qs[i]`, value `i + 16` its high
/// nibble; `y = d · (q − 8)`.
fn q4_0(x: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(x, 0);
    let (low, high) = y.split_at_mut(16);
    for ((&q, low), high) in x[2..].iter().zip(low).zip(high) {
        *low = d * centred(q & 0xF, 8);
        *high = d * centred(q >> 4, 8);
    }
}

/// Q4_1 (20 bytes): `d: f16`, `m: f16`, `qs: [u8; 16]` as in Q4_0; `y = d · q + m`.
fn q4_1(x: &[u8; 20], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(x, 0), f16_at(x, 2));
    let (low, high) = y.split_at_mut(16);
    for ((&q, low), high) in x[4..].iter().zip(low).zip(high) {
        *low = d * f32::from(q & 0xF) + m;
        *high = d * f32::from(q >> 4) + m;
    }
}

/// The 5-bit quants of a Q5_0/Q5_1 block: `qh` (a little-endian u32) holds bit 4 of value `i` at bit `i`; `qs` the
/// low four bits as in Q4_0. Calls `put(i, q)` for `i < 16` with the quants of values `i` and `i + 16`.
fn five_bit(qh: [u8; 4], qs: &[u8], mut put: impl FnMut(usize, u8, u8)) {
    let qh = u32::from_le_bytes(qh);
    for (i, &q) in qs.iter().enumerate() {
        let low = (q & 0xF) | (((qh >> i) & 1) as u8) << 4;
        let high = (q >> 4) | (((qh >> (i + 16)) & 1) as u8) << 4;
        put(i, low, high);
    }
}

/// Q5_0 (22 bytes): `d: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`; `y = d · (q − 16)`.
fn q5_0(x: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(x, 0);
    five_bit([x[2], x[3], x[4], x[5]], &x[6..], |i, low, high| {
        y[i] = d * centred(low, 16);
        y[i + 16] = d * centred(high, 16);
    });
}

/// Q5_1 (24 bytes): `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`; `y = d · q + m`.
fn q5_1(x: &[u8; 24], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(x, 0), f16_at(x, 2));
    five_bit([x[4], x[5], x[6], x[7]], &x[8..], |i, low, high| {
        y[i] = d * f32::from(low) + m;
        y[i + 16] = d * f32::from(high) + m;
    });
}

/// Q8_0 (34 bytes): `d: f16`, `qs: [i8; 32]`; `y = d · q`.
fn q8_0(x: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(x, 0);
    for (y, &q) in y.iter_mut().zip(&x[2..]) {
        *y = d * f32::from(q.cast_signed());
    }
}

/// Where the 2-bit field of value `16g + l` sits in a Q2_K/Q3_K super-block, for group `g` of 16 values: `qs` byte
/// `32 · (g / 8) + 16 · (g % 2) + l` at bit `2 · ((g % 8) / 2)`. Each 32 bytes of `qs` hold 128 values, four
/// 2-bit layers of 32. Returns (the offset of the group's 16 bytes, the layer 0..4).
fn two_bit_group(g: usize) -> (usize, usize) {
    (32 * (g / 8) + 16 * (g % 2), (g % 8) / 2)
}

/// Q2_K (84 bytes): `scales: [u8; 16]` (a 4-bit scale and a 4-bit min per group of 16), `qs: [u8; 64]` (2-bit quants),
/// `d: f16`, `dmin: f16`; `y = d · scale · q − dmin · min`.
fn q2_k(x: &[u8; 84], y: &mut [f32; QK_K]) {
    let (scales, qs) = (&x[..16], &x[16..80]);
    let (d, dmin) = (f16_at(x, 80), f16_at(x, 82));
    for (g, (y, &sc)) in y.as_chunks_mut::<16>().0.iter_mut().zip(scales).enumerate() {
        let (dl, ml) = (d * f32::from(sc & 0xF), dmin * f32::from(sc >> 4));
        let (at, layer) = two_bit_group(g);
        for (y, &q) in y.iter_mut().zip(&qs[at..at + 16]) {
            *y = dl * f32::from((q >> (2 * layer)) & 3) - ml;
        }
    }
}

/// Q3_K's sixteen 6-bit scales, packed in 12 bytes: the low four bits of scale `g` are the low (g < 8) or high
/// nibble of byte `g % 8`; its top two bits sit in byte `8 + g % 4` at bit `2 · (g / 4)`. Stored with an offset of 32.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    std::array::from_fn(|g| {
        let low = if g < 8 { packed[g] & 0xF } else { packed[g - 8] >> 4 };
        let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
        ((low | high << 4) as i8) - 32
    })
}

/// Q3_K (110 bytes): `hmask: [u8; 32]`, `qs: [u8; 64]` (the low two bits, laid out as in Q2_K), `scales: [u8; 12]`
/// (see [`q3_k_scales`]), `d: f16`. Bit `b` of `hmask[l]` belongs to value `32b + l`: when it is clear the quant is
/// lowered by 4. `y = d · scale · q`.
fn q3_k(x: &[u8; 110], y: &mut [f32; QK_K]) {
    let (hmask, qs) = (&x[..32], &x[32..96]);
    let scales = q3_k_scales(&x[96..108]);
    let d = f16_at(x, 108);
    for (g, (y, &sc)) in y.as_chunks_mut::<16>().0.iter_mut().zip(&scales).enumerate() {
        let dl = d * f32::from(sc);
        let (at, layer) = two_bit_group(g);
        let (hm_at, hm_bit) = (16 * (g % 2), g / 2);
        for ((y, &q), &hm) in y.iter_mut().zip(&qs[at..at + 16]).zip(&hmask[hm_at..hm_at + 16]) {
            let low = ((q >> (2 * layer)) & 3) as i8;
            let lowered = if hm & (1 << hm_bit) == 0 { 4 } else { 0 };
            *y = dl * f32::from(low - lowered);
        }
    }
}

/// The 6-bit (scale, min) of sub-block `k` of a Q4_K/Q5_K super-block, packed in 12 bytes: for `k < 4` the low six
/// bits of bytes `k` and `k + 4`; for `k ≥ 4` the nibbles of byte `k + 4` below the top two bits of bytes `k − 4`
/// and `k`.
fn scale_min_k4(packed: &[u8], k: usize) -> (u8, u8) {
    if k < 4 {
        return (packed[k] & 63, packed[k + 4] & 63);
    }
    let nibbles = packed[k + 4];
    ((nibbles & 0xF) | (packed[k - 4] >> 6) << 4, (nibbles >> 4) | (packed[k] >> 6) << 4)
}

/// Q4_K (144 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (see [`scale_min_k4`]), `qs: [u8; 128]`. Sub-block `k`
/// of 32 values reads the low (even `k`) or high (odd `k`) nibbles of `qs[32 · (k / 2)..][..32]`;
/// `y = d · scale · q − dmin · min`.
fn q4_k(x: &[u8; 144], y: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
    let (scales, qs) = (&x[4..16], &x[16..]);
    for (k, y) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(scales, k);
        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
        let shift = 4 * (k % 2);
        for (y, &q) in y.iter_mut().zip(&qs[32 * (k / 2)..][..32]) {
            *y = dl * f32::from((q >> shift) & 0xF) - ml;
        }
    }
}

/// Q5_K (176 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qh: [u8; 32]`, `qs: [u8; 128]`. As Q4_K, with bit 4
/// of value `l` of sub-block `k` at bit `k` of `qh[l]`.
fn q5_k(x: &[u8; 176], y: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
    let (scales, qh, qs) = (&x[4..16], &x[16..48], &x[48..]);
    for (k, y) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(scales, k);
        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
        let shift = 4 * (k % 2);
        for ((y, &q), &h) in y.iter_mut().zip(&qs[32 * (k / 2)..][..32]).zip(qh) {
            let q = ((q >> shift) & 0xF) | ((h >> k) & 1) << 4;
            *y = dl * f32::from(q) - ml;
        }
    }
}

/// Q6_K (210 bytes): `ql: [u8; 128]` (low four bits), `qh: [u8; 64]` (top two bits), `scales: [i8; 16]`, `d: f16`.
/// Each half of 128 values reads 64 bytes of `ql` and 32 of `qh`: value `32t + l` (t < 4) takes the low (t < 2) or
/// high nibble of `ql[32 · (t % 2) + l]` and bits `2t..2t + 2` of `qh[l]`, and scale `8 · half + 2t + l / 16`.
/// `y = d · scale · (q − 32)`.
fn q6_k(x: &[u8; 210], y: &mut [f32; QK_K]) {
    let (ql, qh, scales) = (&x[..128], &x[128..192], &x[192..208]);
    let d = f16_at(x, 208);
    for (g, (y, &sc)) in y.as_chunks_mut::<16>().0.iter_mut().zip(scales).enumerate() {
        let dl = d * f32::from(sc.cast_signed());
        let (half, t) = (g / 8, (g % 8) / 2);
        let l = 16 * (g % 2);
        let low = &ql[64 * half + 32 * (t % 2) + l..][..16];
        let high = &qh[32 * half + l..][..16];
        let (low_shift, high_shift) = (4 * (t / 2), 2 * t);
        for ((y, &lo), &hi) in y.iter_mut().zip(low).zip(high) {
            let q = ((lo >> low_shift) & 0xF) | ((hi >> high_shift) & 3) << 4;
            *y = dl * centred(q, 32);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// gguf-py's dequantisation of a few random blocks per type (`tests/fixtures/ggml/generate.py`).
    const REFERENCE: &str = include_str!("../../tests/fixtures/ggml/blocks.json");

    fn reference(ty: GgmlType) -> (Vec<u8>, Vec<f32>) {
        let all: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let entry = &all[ty.name()];
        let hex = entry["bytes_hex"].as_str().unwrap();
        let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let values = entry["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        (bytes, values)
    }

    /// Deterministic noise for the robustness test (xorshift64).
    fn noise(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn every_type_matches_gguf_py_bit_for_bit() {
        for ty in ALL {
            let (bytes, want) = reference(ty);
            assert_eq!(ty.bytes_for(want.len() as u64), Some(bytes.len() as u64), "{}", ty.name());
            let mut got = vec![];
            dequantize(ty, &bytes, &mut got).unwrap();
            assert_eq!(got.len(), want.len(), "{}", ty.name());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{} value {i}: {g} vs gguf-py {w}", ty.name());
            }
        }
    }

    #[test]
    fn dequantize_appends_after_existing_values() {
        let (bytes, want) = reference(GgmlType::Q4K);
        let mut out = vec![7.0];
        dequantize(GgmlType::Q4K, &bytes, &mut out).unwrap();
        assert_eq!(out[0], 7.0);
        assert_eq!(out[1..], want[..]);
    }

    #[test]
    fn partial_blocks_are_errors() {
        for ty in ALL {
            let bytes = vec![0; 2 * ty.block_bytes() + 1];
            let mut out = vec![1.0];
            let err = dequantize(ty, &bytes, &mut out).unwrap_err();
            assert!(err.contains(ty.name()) && err.contains(&bytes.len().to_string()), "{err}");
            assert_eq!(out, [1.0], "{} left output behind", ty.name());
        }
        assert!(q8_0_parts(&[0; 35]).is_err());
        let mut out = vec![];
        dequantize(GgmlType::Q6K, &[], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn any_bytes_dequantize_without_panicking() {
        for (seed, ty) in (1..).zip(ALL) {
            for blocks in 0..4 {
                let bytes = noise(blocks * ty.block_bytes(), seed);
                let mut out = vec![];
                dequantize(ty, &bytes, &mut out).unwrap();
                assert_eq!(out.len(), blocks * ty.block_len());
            }
        }
    }

    #[test]
    fn bytes_for_counts_whole_blocks() {
        assert_eq!(GgmlType::F32.bytes_for(3), Some(12));
        assert_eq!(GgmlType::BF16.bytes_for(3), Some(6));
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(GgmlType::Q4K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q6K.bytes_for(0), Some(0));
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType::Q4K.bytes_for(255), None);
        assert_eq!(GgmlType::Q2K.bytes_for(300), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(u64::MAX / 32 * 32), None);
    }

    #[test]
    fn ids_round_trip_and_name_every_type() {
        for ty in ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(type_name(ty.id()), ty.name());
        }
        let readable = (0..64).filter(|&id| GgmlType::from_id(id).is_some()).count();
        assert_eq!(readable, ALL.len());
        assert_eq!(GgmlType::from_id(12), Some(GgmlType::Q4K));
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
        assert_eq!(GgmlType::from_id(16), None);
        assert_eq!(type_name(16), "IQ2_XXS");
        assert_eq!(type_name(15), "Q8_K");
        assert_eq!(type_name(99), "type 99");
    }

    #[test]
    fn q8_0_parts_agree_with_dequantize() {
        let (bytes, want) = reference(GgmlType::Q8_0);
        let (quants, scales) = q8_0_parts(&bytes).unwrap();
        assert_eq!((quants.len(), scales.len()), (want.len(), want.len() / 32));
        for (i, w) in want.iter().enumerate() {
            assert_eq!(scales[i / 32] * f32::from(quants[i]), *w, "value {i}");
        }
        assert_eq!(q8_0_parts(&[]).unwrap(), (vec![], vec![]));
    }
}
