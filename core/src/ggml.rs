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

/// How a quantised type rebuilds its values from small integer codes: value `i` of a tensor is
/// `scale[i / group] · code[i]`, plus `min[i / group]` for the types with minimums. Every quantised
/// type is exactly this (the K types' packed sub-block scales are multiplied out), so one GPU kernel
/// per layout reads them all as stored.
pub use analog_kernels::QuantLayout as CodeLayout;

/// A quantised tensor as codes with their group scales (and minimums, empty without them).
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    pub layout: CodeLayout,
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    pub mins: Vec<f32>,
}

impl GgmlType {
    /// The code layout of a quantised type; `None` for F32, F16 and BF16.
    pub fn code_layout(self) -> Option<CodeLayout> {
        let (bits, group, has_min) = match self {
            Self::F32 | Self::F16 | Self::BF16 => return None,
            Self::Q4_0 => (4, 32, false),
            Self::Q4_1 | Self::Q4K => (4, 32, true),
            Self::Q2K => (4, 16, true),
            Self::Q3K => (4, 16, false),
            Self::Q5_0 | Self::Q8_0 => return Some(CodeLayout::Q8_0),
            Self::Q5_1 | Self::Q5K => (8, 32, true),
            Self::Q6K => (8, 16, false),
        };
        Some(CodeLayout { bits, group, has_min })
    }
}

/// Dequantises `bytes` (exactly `ty.bytes_for(n)` bytes for n = the number of values) into f32, appending to `out`.
///
/// Returns `Err` with a reason if the length is not a whole number of blocks, leaving `out` as it was.
/// Never panics on any input bytes: a scale that decodes to NaN or infinity just yields such values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    let blocks = ty.blocks_in(bytes.len())?;
    let start = out.len();
    let floats = |out: &mut Vec<f32>, decode: fn(&[u8]) -> f32, width: usize| {
        out.extend(bytes.chunks_exact(width).map(decode));
    };
    match ty {
        GgmlType::F32 => floats(out, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]), 4),
        GgmlType::F16 => floats(out, |b| f16::from_le_bytes([b[0], b[1]]).to_f32(), 2),
        GgmlType::BF16 => floats(out, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32(), 2),
        _ => {
            let Some(codes) = codes(ty, bytes)? else { return Ok(()) };
            let group = codes.layout.group;
            out.reserve(blocks * ty.block_len());
            for (g, (chunk, &scale)) in codes.codes.chunks_exact(group).zip(&codes.scales).enumerate() {
                match codes.mins.get(g) {
                    Some(&min) => out.extend(chunk.iter().map(|&c| scale * f32::from(c) + min)),
                    None => out.extend(chunk.iter().map(|&c| scale * f32::from(c))),
                }
            }
        }
    }
    debug_assert_eq!(out.len() - start, blocks * ty.block_len());
    Ok(())
}

/// A quantised tensor's codes, scales and minimums as stored (see [`CodeLayout`]); `None` for the float types.
///
/// Returns `Err` with a reason if the length is not a whole number of blocks.
pub fn codes(ty: GgmlType, bytes: &[u8]) -> Result<Option<Codes>, String> {
    let blocks = ty.blocks_in(bytes.len())?;
    let Some(layout) = ty.code_layout() else { return Ok(None) };
    let values = blocks * ty.block_len();
    let groups = values / layout.group;
    let mut out = Codes { layout, codes: vec![0; values], scales: vec![0.0; groups], mins: vec![0.0; groups] };
    let (c, s, m) = (&mut out.codes[..], &mut out.scales[..], &mut out.mins[..]);
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => return Ok(None),
        GgmlType::Q4_0 => each_block(bytes, c, s, m, q4_0),
        GgmlType::Q4_1 => each_block(bytes, c, s, m, q4_1),
        GgmlType::Q5_0 => each_block(bytes, c, s, m, q5_0),
        GgmlType::Q5_1 => each_block(bytes, c, s, m, q5_1),
        GgmlType::Q8_0 => each_block(bytes, c, s, m, q8_0),
        GgmlType::Q2K => each_block(bytes, c, s, m, q2_k),
        GgmlType::Q3K => each_block(bytes, c, s, m, q3_k),
        GgmlType::Q4K => each_block(bytes, c, s, m, q4_k),
        GgmlType::Q5K => each_block(bytes, c, s, m, q5_k),
        GgmlType::Q6K => each_block(bytes, c, s, m, q6_k),
    }
    if !layout.has_min {
        out.mins = Vec::new();
    }
    Ok(Some(out))
}

/// Runs `decode` on every `B`-byte block of `bytes`, writing its `N` codes and `G` group scales and minimums to
/// the matching chunks. The caller has checked that `bytes` holds a whole number of blocks and sized the outputs.
fn each_block<const B: usize, const N: usize, const G: usize>(
    bytes: &[u8],
    codes: &mut [i8],
    scales: &mut [f32],
    mins: &mut [f32],
    decode: impl Fn(&[u8; B], &mut [i8; N], &mut [f32; G], &mut [f32; G]),
) {
    let blocks = bytes.as_chunks::<B>().0.iter().zip(codes.as_chunks_mut::<N>().0);
    for ((block, codes), (scales, mins)) in blocks.zip(scales.as_chunks_mut::<G>().0.iter_mut().zip(mins.as_chunks_mut::<G>().0)) {
        decode(block, codes, scales, mins);
    }
}

/// The little-endian f16 at `at`, as f32.
fn f16_at<const B: usize>(block: &[u8; B], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

/// A quant with `offset` subtracted (8 or 16 for the symmetric 4- and 5-bit types), as a code.
fn centred(q: u8, offset: u8) -> i8 {
    q.cast_signed().wrapping_sub(offset.cast_signed())
}

/// Q4_0 (18 bytes): `d: f16`, `qs: [u8; 16]`. Value `i < 16` is the low nibble of `qs[i]`, value `i + 16` its high
/// nibble; `y = d · (q − 8)`.
fn q4_0(x: &[u8; 18], c: &mut [i8; 32], s: &mut [f32; 1], _: &mut [f32; 1]) {
    s[0] = f16_at(x, 0);
    let (low, high) = c.split_at_mut(16);
    for ((&q, low), high) in x[2..].iter().zip(low).zip(high) {
        *low = centred(q & 0xF, 8);
        *high = centred(q >> 4, 8);
    }
}

/// Q4_1 (20 bytes): `d: f16`, `m: f16`, `qs: [u8; 16]` as in Q4_0; `y = d · q + m`.
fn q4_1(x: &[u8; 20], c: &mut [i8; 32], s: &mut [f32; 1], m: &mut [f32; 1]) {
    (s[0], m[0]) = (f16_at(x, 0), f16_at(x, 2));
    let (low, high) = c.split_at_mut(16);
    for ((&q, low), high) in x[4..].iter().zip(low).zip(high) {
        *low = (q & 0xF).cast_signed();
        *high = (q >> 4).cast_signed();
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
fn q5_0(x: &[u8; 22], c: &mut [i8; 32], s: &mut [f32; 1], _: &mut [f32; 1]) {
    s[0] = f16_at(x, 0);
    five_bit([x[2], x[3], x[4], x[5]], &x[6..], |i, low, high| {
        c[i] = centred(low, 16);
        c[i + 16] = centred(high, 16);
    });
}

/// Q5_1 (24 bytes): `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`; `y = d · q + m`.
fn q5_1(x: &[u8; 24], c: &mut [i8; 32], s: &mut [f32; 1], m: &mut [f32; 1]) {
    (s[0], m[0]) = (f16_at(x, 0), f16_at(x, 2));
    five_bit([x[4], x[5], x[6], x[7]], &x[8..], |i, low, high| {
        c[i] = low.cast_signed();
        c[i + 16] = high.cast_signed();
    });
}

/// Q8_0 (34 bytes): `d: f16`, `qs: [i8; 32]`; `y = d · q`.
fn q8_0(x: &[u8; 34], c: &mut [i8; 32], s: &mut [f32; 1], _: &mut [f32; 1]) {
    s[0] = f16_at(x, 0);
    for (c, &q) in c.iter_mut().zip(&x[2..]) {
        *c = q.cast_signed();
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
fn q2_k(x: &[u8; 84], c: &mut [i8; QK_K], s: &mut [f32; 16], m: &mut [f32; 16]) {
    let (scales, qs) = (&x[..16], &x[16..80]);
    let (d, dmin) = (f16_at(x, 80), f16_at(x, 82));
    for (g, (c, &sc)) in c.as_chunks_mut::<16>().0.iter_mut().zip(scales).enumerate() {
        (s[g], m[g]) = (d * f32::from(sc & 0xF), -(dmin * f32::from(sc >> 4)));
        let (at, layer) = two_bit_group(g);
        for (c, &q) in c.iter_mut().zip(&qs[at..at + 16]) {
            *c = ((q >> (2 * layer)) & 3).cast_signed();
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
fn q3_k(x: &[u8; 110], c: &mut [i8; QK_K], s: &mut [f32; 16], _: &mut [f32; 16]) {
    let (hmask, qs) = (&x[..32], &x[32..96]);
    let scales = q3_k_scales(&x[96..108]);
    let d = f16_at(x, 108);
    for (g, (c, &sc)) in c.as_chunks_mut::<16>().0.iter_mut().zip(&scales).enumerate() {
        s[g] = d * f32::from(sc);
        let (at, layer) = two_bit_group(g);
        let (hm_at, hm_bit) = (16 * (g % 2), g / 2);
        for ((c, &q), &hm) in c.iter_mut().zip(&qs[at..at + 16]).zip(&hmask[hm_at..hm_at + 16]) {
            let low = ((q >> (2 * layer)) & 3) as i8;
            let lowered = if hm & (1 << hm_bit) == 0 { 4 } else { 0 };
            *c = low - lowered;
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
fn q4_k(x: &[u8; 144], c: &mut [i8; QK_K], s: &mut [f32; 8], m: &mut [f32; 8]) {
    let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
    let (scales, qs) = (&x[4..16], &x[16..]);
    for (k, c) in c.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (sc, mn) = scale_min_k4(scales, k);
        (s[k], m[k]) = (d * f32::from(sc), -(dmin * f32::from(mn)));
        let shift = 4 * (k % 2);
        for (c, &q) in c.iter_mut().zip(&qs[32 * (k / 2)..][..32]) {
            *c = ((q >> shift) & 0xF).cast_signed();
        }
    }
}

/// Q5_K (176 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qh: [u8; 32]`, `qs: [u8; 128]`. As Q4_K, with bit 4
/// of value `l` of sub-block `k` at bit `k` of `qh[l]`.
fn q5_k(x: &[u8; 176], c: &mut [i8; QK_K], s: &mut [f32; 8], m: &mut [f32; 8]) {
    let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
    let (scales, qh, qs) = (&x[4..16], &x[16..48], &x[48..]);
    for (k, c) in c.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (sc, mn) = scale_min_k4(scales, k);
        (s[k], m[k]) = (d * f32::from(sc), -(dmin * f32::from(mn)));
        let shift = 4 * (k % 2);
        for ((c, &q), &h) in c.iter_mut().zip(&qs[32 * (k / 2)..][..32]).zip(qh) {
            *c = (((q >> shift) & 0xF) | ((h >> k) & 1) << 4).cast_signed();
        }
    }
}

/// Q6_K (210 bytes): `ql: [u8; 128]` (low four bits), `qh: [u8; 64]` (top two bits), `scales: [i8; 16]`, `d: f16`.
/// Each half of 128 values reads 64 bytes of `ql` and 32 of `qh`: value `32t + l` (t < 4) takes the low (t < 2) or
/// high nibble of `ql[32 · (t % 2) + l]` and bits `2t..2t + 2` of `qh[l]`, and scale `8 · half + 2t + l / 16`.
/// `y = d · scale · (q − 32)`.
fn q6_k(x: &[u8; 210], c: &mut [i8; QK_K], s: &mut [f32; 16], _: &mut [f32; 16]) {
    let (ql, qh, scales) = (&x[..128], &x[128..192], &x[192..208]);
    let d = f16_at(x, 208);
    for (g, (c, &sc)) in c.as_chunks_mut::<16>().0.iter_mut().zip(scales).enumerate() {
        s[g] = d * f32::from(sc.cast_signed());
        let (half, t) = (g / 8, (g % 8) / 2);
        let l = 16 * (g % 2);
        let low = &ql[64 * half + 32 * (t % 2) + l..][..16];
        let high = &qh[32 * half + l..][..16];
        let (low_shift, high_shift) = (4 * (t / 2), 2 * t);
        for ((c, &lo), &hi) in c.iter_mut().zip(low).zip(high) {
            *c = centred(((lo >> low_shift) & 0xF) | ((hi >> high_shift) & 3) << 4, 32);
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
        assert!(codes(GgmlType::Q8_0, &[0; 35]).is_err());
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
    fn codes_fit_their_layout_on_any_bytes() {
        for (seed, ty) in (7..).zip(ALL) {
            let bytes = noise(3 * ty.block_bytes(), seed);
            let Some(codes) = codes(ty, &bytes).unwrap() else {
                assert!(ty.code_layout().is_none(), "{}", ty.name());
                continue;
            };
            let layout = codes.layout;
            assert_eq!(codes.codes.len(), 3 * ty.block_len());
            assert_eq!(codes.scales.len(), codes.codes.len() / layout.group);
            assert_eq!(codes.mins.len(), if layout.has_min { codes.scales.len() } else { 0 }, "{}", ty.name());
            let range = match (layout.bits, layout.has_min) {
                (4, false) => -8..=7,
                (4, true) => 0..=15,
                _ => -128..=127,
            };
            assert!(codes.codes.iter().all(|c| range.contains(c)), "{} codes outside {range:?}", ty.name());
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
}
