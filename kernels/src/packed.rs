//! Quantised weights in host memory for burn's CPU backend, and their matrix products as integer dot
//! products.
//!
//! A [`PackedMatrix`] keeps a ggml matrix as compact as the file does (4 or 8 bits a value plus group scales),
//! so decoding reads 4–8× fewer bytes than f32 weights. Activations are quantised per group to 16-bit
//! integers (the error is below 1/65 534 of the group's largest value, so logits stay within the f32
//! path's tolerance), and each group's dot product is `i16 × i16 → i32` in `wide`'s portable SIMD:
//! `pmaddwd` on x86, `i32x4.dot_i16x8_s` in wasm SIMD128. The float arithmetic left is two multiplies per
//! group: `Σ w·x = a·(s·Σ u·q + (min − s·bias)·Σ q)` for weight codes `u` stored unsigned (`code + bias`),
//! group scale `s` and minimum `min`, activation codes `q` and activation scale `a`.
//!
//! Layout: every storage row is cut into blocks of 32 values (the last padded with zeros). A block of 4-bit
//! codes is one `i16x8` whose lane `j` holds code `8k + j` in nibble `k`; a block of 8-bit codes is two,
//! vector `h` lane `j` holding code `16h + j` in its low byte and `16h + 8 + j` in its high byte. Masks and
//! shifts then give the codes as `i16x8`s in storage order, lined up with the activations without shuffles.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::tensor::{Int, Tensor, TensorData};
use wide::{f32x4, i16x8, i32x4, u16x8};

use crate::{QuantLayout, QuantMatrix, RowCodes};

/// Values per block: the unit of the packed layout and of the dot products.
const BLOCK: usize = 32;
/// Activation codes are `−LIMIT..=LIMIT`.
const LIMIT: f32 = 32767.0;

/// A `[rows, cols]` matrix of storage rows, quantised as a [`QuantLayout`] says, in host memory.
#[derive(Clone)]
pub struct PackedMatrix {
    layout: QuantLayout,
    rows: usize,
    cols: usize,
    /// Blocks per row: `cols` rounded up to whole blocks.
    blocks: usize,
    /// One (4-bit) or two (8-bit) vectors per block.
    words: Vec<i16x8>,
    /// One per group, rows × blocks × groups per block (padding groups have scale 0).
    scales: Vec<f32>,
    /// As `scales`, when the layout has minimums.
    mins: Vec<f32>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix").field("layout", &self.layout).field("rows", &self.rows).field("cols", &self.cols).finish_non_exhaustive()
    }
}

/// A [`PackedMatrix`] being packed a run of rows at a time.
pub(crate) struct PackedBuilder {
    matrix: PackedMatrix,
}

impl PackedBuilder {
    /// Packs the next `n` rows: `n · cols` codes with one scale (and minimum) per group of each row. The caller has
    /// checked counts and code ranges.
    pub(crate) fn push_rows(&mut self, run: &RowCodes, n: usize) {
        let m = &mut self.matrix;
        let (layout, cols) = (m.layout, m.cols);
        let per_block = BLOCK / layout.group;
        let bias = PackedMatrix::bias_of(layout);
        let unsigned = |c: i8| -> u16 { (i16::from(c) + bias) as u16 };
        let mut block = [0u16; BLOCK];
        for r in 0..n {
            let row = &run.codes[r * cols..(r + 1) * cols];
            for b in 0..m.blocks {
                let start = b * BLOCK;
                let len = BLOCK.min(cols - start);
                block.fill(0);
                for (slot, &c) in block.iter_mut().zip(&row[start..start + len]) {
                    *slot = unsigned(c);
                }
                if layout.bits == 4 {
                    m.words.push(i16x8::new(std::array::from_fn(|j| (block[j] | block[8 + j] << 4 | block[16 + j] << 8 | block[24 + j] << 12) as i16)));
                } else {
                    for h in 0..2 {
                        m.words.push(i16x8::new(std::array::from_fn(|j| (block[16 * h + j] | block[16 * h + 8 + j] << 8) as i16)));
                    }
                }
                for g in 0..per_block {
                    let at = start + g * layout.group;
                    let group = (r * cols + at) / layout.group;
                    let real = at < cols;
                    m.scales.push(if real { run.scales[group] } else { 0.0 });
                    if layout.has_min {
                        m.mins.push(if real { run.mins[group] } else { 0.0 });
                    }
                }
            }
        }
    }

    /// The packed matrix (rows not pushed are missing: the caller pushes all of them).
    pub(crate) fn finish(self) -> PackedMatrix {
        self.matrix
    }
}

/// Activation rows quantised per group: codes in blocks of four `i16x8`, and per group the scale `a` and `a·Σq`.
struct Activations {
    codes: Vec<i16x8>,
    scales: Vec<f32>,
    sums: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `[rows, cols]` codes (signed as [`QuantLayout`] says) with one scale (and minimum) per group of
    /// `layout.group` values along each row. The caller has checked counts and code ranges.
    #[cfg(test)]
    pub(crate) fn pack(layout: QuantLayout, codes: &[i8], scales: &[f32], mins: &[f32], rows: usize, cols: usize) -> Result<Self, String> {
        let mut builder = Self::builder(layout, rows, cols)?;
        builder.push_rows(&RowCodes { codes: codes.to_vec(), scales: scales.to_vec(), mins: mins.to_vec() }, rows);
        Ok(builder.finish())
    }

    /// A matrix of `rows` storage rows of `cols` values, packed as its rows arrive ([`PackedBuilder::push_rows`]).
    pub(crate) fn builder(layout: QuantLayout, rows: usize, cols: usize) -> Result<PackedBuilder, String> {
        if !Self::packs(layout, cols) {
            return Err(format!("rows of {cols} values are not whole groups of {} (a divisor of {BLOCK})", layout.group));
        }
        let blocks = cols.div_ceil(BLOCK);
        let per_block = BLOCK / layout.group;
        let words = Vec::with_capacity(rows * blocks * if layout.bits == 4 { 1 } else { 2 });
        let scales = Vec::with_capacity(rows * blocks * per_block);
        let mins = Vec::with_capacity(if layout.has_min { rows * blocks * per_block } else { 0 });
        Ok(PackedBuilder { matrix: Self { layout, rows, cols, blocks, words, scales, mins } })
    }

    /// Whether rows of `cols` values pack: 4 or 8 bits in whole groups that tile a block.
    pub fn packs(layout: QuantLayout, cols: usize) -> bool {
        matches!(layout.bits, 4 | 8) && matches!(layout.group, 16 | 32) && cols.is_multiple_of(layout.group)
    }

    /// What stored codes are offset by: `u = code + bias` is never negative.
    fn bias_of(layout: QuantLayout) -> i16 {
        if layout.bits == 8 { 128 } else { layout.bias() }
    }

    /// Bytes held: codes, scales and minimums.
    pub fn bytes(&self) -> u64 {
        (self.words.len() * 16 + (self.scales.len() + self.mins.len()) * 4) as u64
    }

    /// Storage row `r` in f32 (`cols` values).
    pub fn row(&self, r: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.blocks * BLOCK];
        self.row_into(r, &mut out);
        out.truncate(self.cols);
        out
    }

    /// Storage row `r` in f32 into `out` (`blocks · 32` values: the row and its padding).
    fn row_into(&self, r: usize, out: &mut [f32]) {
        let per_block = BLOCK / self.layout.group;
        let bias = f32::from(Self::bias_of(self.layout));
        let vectors = if self.layout.bits == 4 { 1 } else { 2 };
        for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
            let at = r * self.blocks + b;
            let codes = self.unpack(&self.words[at * vectors..(at + 1) * vectors]);
            for (g, out) in out.chunks_exact_mut(self.layout.group).enumerate() {
                let group = at * per_block + g;
                let scale = self.scales[group];
                let offset = self.mins.get(group).copied().unwrap_or(0.0) - scale * bias;
                let first = g * self.layout.group / 8;
                for (out, v) in out.chunks_exact_mut(8).zip(&codes[first..]) {
                    for (o, c) in out.iter_mut().zip(v.to_array()) {
                        *o = scale * f32::from(c) + offset;
                    }
                }
            }
        }
    }

    /// Every row in f32, `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let width = self.blocks * BLOCK;
        let mut out = vec![0.0f32; self.rows * width];
        for_each_chunk(&mut out, width, |r, row| self.row_into(r, row));
        if width != self.cols {
            out = out.chunks_exact(width).flat_map(|row| &row[..self.cols]).copied().collect();
        }
        out
    }

    /// The unsigned codes of one block as four `i16x8`s in storage order.
    #[inline(always)]
    fn unpack(&self, block: &[i16x8]) -> [i16x8; 4] {
        if self.layout.bits == 4 { unpack4(block[0]) } else { unpack8(block[0], block[1]) }
    }

    /// `x @ selfᵀ`: each of the `n` rows of `x` (`[n, cols]`) against every storage row, giving `[n, rows]`.
    pub fn matmul_t(&self, x: &[f32], n: usize) -> Vec<f32> {
        let acts = self.quantise(x, n);
        // Output-major so that threads own whole weight rows; transposed at the end when n > 1.
        let mut by_row = vec![0.0f32; self.rows * n];
        let chunk_rows = 16;
        for_each_chunk(&mut by_row, chunk_rows * n, |chunk, out| {
            for (i, out) in out.chunks_mut(n).enumerate() {
                self.row_dots(chunk * chunk_rows + i, &acts, out);
            }
        });
        if n == 1 {
            return by_row;
        }
        let mut out = vec![0.0f32; self.rows * n];
        for (o, values) in by_row.chunks(n).enumerate() {
            for (r, &v) in values.iter().enumerate() {
                out[r * self.rows + o] = v;
            }
        }
        out
    }

    /// Quantises `n` rows of `cols` values per group of the layout.
    fn quantise(&self, x: &[f32], n: usize) -> Activations {
        let group = self.layout.group;
        let groups = self.blocks * BLOCK / group;
        let mut codes = Vec::with_capacity(n * self.blocks * 4);
        let (mut scales, mut sums) = (Vec::with_capacity(n * groups), Vec::with_capacity(n * groups));
        let mut padded = vec![0.0f32; self.blocks * BLOCK];
        let mut q = vec![0i16; self.blocks * BLOCK];
        for row in x.chunks_exact(self.cols).take(n) {
            padded[..self.cols].copy_from_slice(row);
            for (values, q) in padded.chunks_exact(group).zip(q.chunks_exact_mut(group)) {
                let lanes = || values.chunks_exact(4).map(|v| f32x4::new([v[0], v[1], v[2], v[3]]));
                let amax = lanes().fold(f32x4::ZERO, |m, v| m.max(v.abs())).to_array().into_iter().fold(0.0f32, |m, v| if v > m { v } else { m });
                let scale = amax / LIMIT;
                let inv = f32x4::splat(if amax > 0.0 { LIMIT / amax } else { 0.0 });
                // |v · inv| ≤ LIMIT, so the rounded codes fit an i16.
                let mut sum = i32x4::ZERO;
                for (q, v) in q.chunks_exact_mut(4).zip(lanes()) {
                    let codes = (v * inv).round_int();
                    sum += codes;
                    for (q, c) in q.iter_mut().zip(codes.to_array()) {
                        *q = c as i16;
                    }
                }
                scales.push(scale);
                sums.push(scale * sum.to_array().into_iter().sum::<i32>() as f32);
            }
            codes.extend(q.chunks_exact(8).map(|c| i16x8::new(std::array::from_fn(|j| c[j]))));
        }
        Activations { codes, scales, sums }
    }

    /// Storage row `o` against every activation row, into `out` (one value per activation row).
    fn row_dots(&self, o: usize, acts: &Activations, out: &mut [f32]) {
        match (self.layout.bits, self.layout.group) {
            (4, 32) => self.row_dots_with::<4, 1>(o, acts, out),
            (4, _) => self.row_dots_with::<4, 2>(o, acts, out),
            (_, 32) => self.row_dots_with::<8, 1>(o, acts, out),
            _ => self.row_dots_with::<8, 2>(o, acts, out),
        }
    }

    /// Activation rows in tiles of up to four, so each block of weight codes is unpacked once per tile.
    #[inline(always)]
    fn row_dots_with<const BITS: u32, const GROUPS: usize>(&self, o: usize, acts: &Activations, out: &mut [f32]) {
        let mut first = 0;
        while first < out.len() {
            let tile = &mut out[first..];
            match tile.len() {
                1 => tile[0] = self.row_dot::<BITS, GROUPS>(o, acts, first),
                2 => self.tile::<BITS, GROUPS, 2>(o, acts, first, tile),
                3 => self.tile::<BITS, GROUPS, 3>(o, acts, first, tile),
                _ => self.tile::<BITS, GROUPS, 4>(o, acts, first, tile),
            }
            first += tile.len().min(4);
        }
    }

    /// Storage row `o` against activation row `r`: the decoding case, written as one zip of the row's blocks with
    /// the activation's, so the loop carries no bounds checks.
    #[inline(always)]
    fn row_dot<const BITS: u32, const GROUPS: usize>(&self, o: usize, acts: &Activations, r: usize) -> f32 {
        let vectors = if BITS == 4 { 1 } else { 2 };
        let groups_per_row = self.blocks * GROUPS;
        let words = &self.words[o * self.blocks * vectors..(o + 1) * self.blocks * vectors];
        let scales = &self.scales[o * groups_per_row..(o + 1) * groups_per_row];
        let x = &acts.codes[r * self.blocks * 4..(r + 1) * self.blocks * 4];
        let a = &acts.scales[r * groups_per_row..(r + 1) * groups_per_row];
        let mut acc = f32x4::ZERO;
        for (((w, x), s), a) in words.chunks_exact(vectors).zip(x.chunks_exact(4)).zip(scales.chunks_exact(GROUPS)).zip(a.chunks_exact(GROUPS)) {
            let w = if BITS == 4 { unpack4(w[0]) } else { unpack8(w[0], w[1]) };
            acc = block_product::<GROUPS>(acc, &w, x, s, a);
        }
        acc.reduce_add() + self.offset(o, acts, r)
    }

    /// What row `o`'s groups add against activation row `r` per unit of its Σx: each group's minimum, less the bias
    /// its codes carry.
    #[inline(always)]
    fn offset(&self, o: usize, acts: &Activations, r: usize) -> f32 {
        let groups_per_row = self.blocks * BLOCK / self.layout.group;
        let scales = &self.scales[o * groups_per_row..(o + 1) * groups_per_row];
        let sums = &acts.sums[r * groups_per_row..(r + 1) * groups_per_row];
        let bias = f32::from(Self::bias_of(self.layout));
        if self.layout.has_min {
            let mins = &self.mins[o * groups_per_row..(o + 1) * groups_per_row];
            mins.iter().zip(scales).zip(sums).map(|((&m, &s), &sum)| (m - s * bias) * sum).sum()
        } else {
            scales.iter().zip(sums).map(|(&s, &sum)| -s * bias * sum).sum()
        }
    }

    /// Storage row `o` against activation rows `first..first + R`, into `out[..R]`.
    #[inline(always)]
    fn tile<const BITS: u32, const GROUPS: usize, const R: usize>(&self, o: usize, acts: &Activations, first: usize, out: &mut [f32]) {
        let vectors = if BITS == 4 { 1 } else { 2 };
        let words = &self.words[o * self.blocks * vectors..(o + 1) * self.blocks * vectors];
        let groups_per_row = self.blocks * GROUPS;
        let scales = &self.scales[o * groups_per_row..(o + 1) * groups_per_row];
        let x: [&[i16x8]; R] = std::array::from_fn(|r| &acts.codes[(first + r) * self.blocks * 4..(first + r + 1) * self.blocks * 4]);
        let a: [&[f32]; R] = std::array::from_fn(|r| &acts.scales[(first + r) * groups_per_row..(first + r + 1) * groups_per_row]);
        let mut acc = [f32x4::ZERO; R];
        for b in 0..self.blocks {
            let w = if BITS == 4 { unpack4(words[b]) } else { unpack8(words[2 * b], words[2 * b + 1]) };
            let groups = GROUPS * b..GROUPS * (b + 1);
            for r in 0..R {
                acc[r] = block_product::<GROUPS>(acc[r], &w, &x[r][4 * b..4 * b + 4], &scales[groups.clone()], &a[r][groups.clone()]);
            }
        }
        for (r, out) in out.iter_mut().take(R).enumerate() {
            *out = acc[r].reduce_add() + self.offset(o, acts, first + r);
        }
    }
}

/// Runs `work(index, chunk)` on each `len`-value chunk of `out`: across rayon's threads natively, in turn in wasm.
fn for_each_chunk(out: &mut [f32], len: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len).enumerate().for_each(|(i, chunk)| work(i, chunk));
    }
    #[cfg(target_family = "wasm")]
    out.chunks_mut(len).enumerate().for_each(|(i, chunk)| work(i, chunk));
}

/// The values of a tensor on burn's CPU backend, whose reads complete at once (`None` elsewhere, or on failure).
fn host_values<const D: usize, K>(tensor: Tensor<D, K>) -> Option<TensorData>
where
    K: burn::tensor::kind::Basic,
{
    let mut read = pin!(tensor.into_data_async());
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(data)) => Some(data),
        _ => None,
    }
}

/// [`QuantMatrix::dequantize`] of a matrix held in host memory.
pub(crate) fn dequantize(matrix: &QuantMatrix, packed: &PackedMatrix) -> Tensor<2> {
    let device = burn::tensor::Device::flex();
    let values = Tensor::<2>::from_data(TensorData::new(packed.dequantize(), [packed.rows, packed.cols]), &device);
    if matrix.transposed { values.transpose() } else { values }
}

/// [`QuantMatrix::rows_of`] for storage rows in host memory.
pub(crate) fn rows_of(packed: &PackedMatrix, ids: Tensor<1, Int>) -> Tensor<2> {
    let device = ids.device();
    let ids: Vec<i64> = host_values(ids).map(|d| d.iter::<i64>().collect()).unwrap_or_default();
    let values: Vec<f32> = ids.iter().flat_map(|&id| packed.row(usize::try_from(id).unwrap_or(0).min(packed.rows.saturating_sub(1)))).collect();
    Tensor::from_data(TensorData::new(values, [ids.len(), packed.cols]), &device)
}

/// From this many rows on, natively, [`linear`] dequantises the matrix for burn's f32 matmul: its AVX2/FMA kernels
/// outrun SSE2 integer dot products once the dequantisation is shared by enough rows. wasm has one 128-bit SIMD, in
/// which the integer products do twice the multiply-adds per instruction, so there they always run.
const DENSE_ROWS: Option<usize> = if cfg!(target_family = "wasm") { None } else { Some(32) };

/// [`crate::quant_linear`] for `[out, in]` storage in host memory.
pub(crate) fn linear(x: Tensor<3>, packed: &PackedMatrix, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, pos, d_in] = x.dims();
    let device = x.device();
    let dense = |x: Tensor<3>| {
        let weight = Tensor::<2>::from_data(TensorData::new(packed.dequantize(), [packed.rows, packed.cols]), &device).transpose();
        burn::tensor::module::linear(x, weight, bias.clone())
    };
    if DENSE_ROWS.is_some_and(|rows| batch * pos >= rows) {
        return dense(x);
    }
    // The read always completes on the CPU backend; elsewhere the dense product gives the same answer.
    let Some(values) = host_values(x.clone()).and_then(|d| d.try_into_vec::<f32>().ok()) else { return dense(x) };
    debug_assert_eq!(d_in, packed.cols);
    let out = packed.matmul_t(&values, batch * pos);
    let out = Tensor::<3>::from_data(TensorData::new(out, [batch, pos, packed.rows]), &device);
    match bias {
        Some(b) => out + b.unsqueeze::<3>(),
        None => out,
    }
}

/// `acc` plus one block's product: weight codes `w` against activation codes `x` (four vectors each), each group's
/// integer sum scaled by its weight scale `s[g]` times its activation scale `a[g]` (`GROUPS` groups a block).
#[inline(always)]
fn block_product<const GROUPS: usize>(acc: f32x4, w: &[i16x8; 4], x: &[i16x8], s: &[f32], a: &[f32]) -> f32x4 {
    let low: i32x4 = w[0].dot(x[0]) + w[1].dot(x[1]);
    let high: i32x4 = w[2].dot(x[2]) + w[3].dot(x[3]);
    if GROUPS == 1 {
        (low + high).round_float().mul_add(f32x4::splat(s[0] * a[0]), acc)
    } else {
        let acc = low.round_float().mul_add(f32x4::splat(s[0] * a[0]), acc);
        high.round_float().mul_add(f32x4::splat(s[1] * a[1]), acc)
    }
}

/// The four nibbles of each lane as four vectors of codes.
#[inline(always)]
fn unpack4(v: i16x8) -> [i16x8; 4] {
    let mask = i16x8::splat(0xF);
    // The top nibble by a logical shift needs no mask.
    let top: u16x8 = bytemuck::cast(v);
    [v & mask, (v >> 4) & mask, (v >> 8) & mask, bytemuck::cast(top >> 12)]
}

/// The low and high bytes of each lane of two vectors as four vectors of codes.
#[inline(always)]
fn unpack8(v0: i16x8, v1: i16x8) -> [i16x8; 4] {
    let mask = i16x8::splat(0xFF);
    let (high0, high1): (u16x8, u16x8) = (bytemuck::cast(v0), bytemuck::cast(v1));
    [v0 & mask, bytemuck::cast(high0 >> 8), v1 & mask, bytemuck::cast(high1 >> 8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layouts() -> [QuantLayout; 4] {
        [
            QuantLayout { bits: 4, group: 32, has_min: false },
            QuantLayout { bits: 4, group: 16, has_min: true },
            QuantLayout::Q8_0,
            QuantLayout { bits: 8, group: 16, has_min: false },
        ]
    }

    /// Deterministic codes in the layout's range, scales and minimums.
    fn matrix(layout: QuantLayout, rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let codes = (0..rows * cols)
            .map(|i| {
                let h = (i * 2_654_435_761) % 251;
                match (layout.bits, layout.has_min) {
                    (8, _) => (h as i16 - 125) as i8,
                    (_, true) => (h % 16) as i8,
                    _ => (h % 16) as i8 - 8,
                }
            })
            .collect();
        let groups = rows * cols / layout.group;
        let scales = (0..groups).map(|g| 0.01 + (g % 7) as f32 * 0.003).collect();
        let mins = if layout.has_min { (0..groups).map(|g| -0.05 + (g % 5) as f32 * 0.02).collect() } else { vec![] };
        (codes, scales, mins)
    }

    fn dequantised(layout: QuantLayout, codes: &[i8], scales: &[f32], mins: &[f32]) -> Vec<f32> {
        codes.iter().enumerate().map(|(i, &c)| scales[i / layout.group] * f32::from(c) + mins.get(i / layout.group).copied().unwrap_or(0.0)).collect()
    }

    #[test]
    fn rows_and_products_match_the_dequantised_matrix() {
        for layout in layouts() {
            for (rows, cols) in [(3, 32), (5, 96), (17, 48usize)] {
                if !cols.is_multiple_of(layout.group) {
                    continue;
                }
                let (codes, scales, mins) = matrix(layout, rows, cols);
                let packed = PackedMatrix::pack(layout, &codes, &scales, &mins, rows, cols).expect("packs");
                let dense = dequantised(layout, &codes, &scales, &mins);
                let back = packed.dequantize();
                for (a, b) in back.iter().zip(&dense) {
                    assert!((a - b).abs() < 1e-6, "{layout:?} [{rows}, {cols}]: {a} vs {b}");
                }
                for n in [1, 3, 6] {
                    let x: Vec<f32> = (0..n * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
                    let y = packed.matmul_t(&x, n);
                    for r in 0..n {
                        for o in 0..rows {
                            let want: f32 = (0..cols).map(|k| x[r * cols + k] * dense[o * cols + k]).sum();
                            let got = y[r * rows + o];
                            assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "{layout:?} [{rows}, {cols}] n={n} row {r} out {o}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rows_that_are_not_whole_groups_are_refused() {
        let layout = QuantLayout::Q8_0;
        assert!(PackedMatrix::pack(layout, &[0; 48], &[1.0; 2], &[], 2, 24).is_err());
    }
}
