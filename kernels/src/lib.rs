//! Fused kernels for the hot paths of steering and extraction, with a plain-tensor reference for
//! each.
//!
//! Every function here takes burn tensors on any device. On burn's cube backend (wgpu: WebGPU in
//! browsers, Vulkan/Metal/DX12 natively) it launches one CubeCL kernel, compiled to WGSL or SPIR-V
//! at first use; on every other backend (the CPU) it runs [`reference`], the same arithmetic
//! written with ordinary tensor operations. Tests compare the two on each device that has kernels.
//!
//! - [`steer`]: `x + Σ coefᵢ·vᵢ` at the selected positions, optionally rescaled to `‖x‖`.
//! - [`rms_norm`], [`layer_norm`]: one pass over each row instead of five to seven dispatches.
//! - [`ClassStats`]: per-class running sums of aggregated activations and of their norms, kept on
//!   the device across batches so extraction reads back one small table at the end.
//! - [`QuantMatrix`], [`quant_linear`]: weights resident as the integer codes of a ggml quantised type
//!   (4 or 8 bits with group scales: 5–10 bits a value instead of 32), dequantised where they are used:
//!   inside a matrix-vector product for decoding, into a transient f32 matrix for longer inputs, and row
//!   by row for an embedding lookup.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Device, Int, Tensor, TensorData};

#[cfg(feature = "wgpu")]
mod fused;
mod packed;
pub mod reference;

pub use packed::PackedMatrix;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fused kernels off (`false`) or back on, process-wide, e.g. to measure what they gain.
/// With them off every device runs [`reference`].
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether a matrix of `layout` codes with `storage_cols` values per storage row stays quantised on `device`: on
/// the cube backend (fused kernels), and on burn's CPU backend in host memory ([`PackedMatrix`]) when rows are
/// whole groups. With [`set_enabled`]`(false)` it never does.
pub fn keeps_quantised(device: &Device, layout: QuantLayout, storage_cols: usize) -> bool {
    ENABLED.load(Ordering::Relaxed) && (fused_on(device) || (on_cpu(device) && PackedMatrix::packs(layout, storage_cols)))
}

/// Whether `device` is burn's CPU backend, whose tensors live in host memory.
fn on_cpu(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// Whether [`steer`], the norms and [`ClassStats`] launch a fused kernel on `device`.
pub fn fused_on(device: &Device) -> bool {
    #[cfg(feature = "wgpu")]
    if ENABLED.load(Ordering::Relaxed) {
        return fused::supports(device);
    }
    let _ = device;
    false
}

/// Where a steering edit applies: absolute positions `positions` of a sequence whose first row in
/// `x` sits at absolute position `offset` (later decode steps have `offset > 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub positions: Range<usize>,
}

impl Span {
    /// Every position.
    pub const ALL: Span = Span { offset: 0, positions: 0..usize::MAX };

    /// Whether the row at relative index `t` is selected.
    pub fn selects(&self, t: usize) -> bool {
        self.positions.contains(&(self.offset + t))
    }
}

/// Steering injection: `x + Σₖ coefₖ·vectorsₖ` on the rows `span` selects; with `preserve_norm`
/// each edited row is then rescaled to the norm it had before the edit.
///
/// `coefs` of `None` means every coefficient is 1 (the vectors are already scaled).
///
/// # Shapes
/// `x: [batch, pos, d]`, `vectors: [k, d]`, `coefs: [k]` → `[batch, pos, d]`
pub fn steer(x: Tensor<3>, vectors: Tensor<2>, coefs: Option<Tensor<1>>, span: &Span, preserve_norm: bool) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    if fused_on(&x.device()) {
        return fused::steer(x, vectors, coefs, span, preserve_norm);
    }
    reference::steer(x, vectors, coefs, span, preserve_norm)
}

/// RMSNorm: `x / sqrt(mean(x²) + eps) · weight` over the last axis.
///
/// # Shapes
/// `x: [batch, pos, d]`, `weight: [d]` → `[batch, pos, d]`
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    if fused_on(&x.device()) {
        return fused::norm(x, weight, None, eps, fused::NormKind::Rms);
    }
    reference::rms_norm(x, weight, eps)
}

/// LayerNorm: `(x − mean) / sqrt(var + eps) · weight + bias` over the last axis (biased variance,
/// as PyTorch computes it).
///
/// # Shapes
/// `x: [batch, pos, d]`, `weight, bias: [d]` → `[batch, pos, d]`
pub fn layer_norm(x: Tensor<3>, weight: Tensor<1>, bias: Option<Tensor<1>>, eps: f64) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    if fused_on(&x.device()) {
        return fused::norm(x, weight, bias, eps, fused::NormKind::Layer);
    }
    reference::layer_norm(x, weight, bias, eps)
}

/// How a prompt's positions become one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOf {
    /// The prompt's last token.
    Last,
    /// The mean over the prompt's tokens.
    Mean,
}

/// Running per-class statistics of aggregated activations, on the device.
///
/// After any number of [`accumulate`](Self::accumulate) calls, `sums[c]` is the sum of class
/// `c`'s rows and `norm_sums[c]` the sum of their L2 norms: enough for a mean-difference direction
/// and the mean residual norm without reading any row back.
#[derive(Debug, Clone)]
pub struct ClassStats {
    /// `[classes, d]`
    pub sums: Tensor<2>,
    /// `[classes]`
    pub norm_sums: Tensor<1>,
    /// Rows added per class.
    pub counts: Vec<usize>,
}

impl ClassStats {
    pub fn zeros(classes: usize, d: usize, device: &Device) -> Self {
        Self { sums: Tensor::zeros([classes, d], device), norm_sums: Tensor::zeros([classes], device), counts: vec![0; classes] }
    }

    /// Adds one batch: row `b` of `acts` is a prompt of `lengths[b]` tokens (left-aligned, padded
    /// after) belonging to class `classes[b]`.
    ///
    /// # Shapes
    /// `acts: [batch, pos, d]`
    ///
    /// # Panics
    /// If `lengths` or `classes` do not have one entry per batch row, a length is 0 or longer
    /// than `pos`, or a class is out of range: these come from the caller's own bookkeeping.
    pub fn accumulate(mut self, acts: Tensor<3>, lengths: &[usize], classes: &[usize], row_of: RowOf) -> Self {
        let [batch, pos, _] = acts.dims();
        assert!(lengths.len() == batch && classes.len() == batch, "one length and one class per batch row");
        assert!(lengths.iter().all(|&n| n > 0 && n <= pos), "prompt lengths must be in 1..={pos}");
        assert!(classes.iter().all(|&c| c < self.counts.len()), "class out of range");
        for &c in classes {
            self.counts[c] += 1;
        }
        #[cfg(feature = "wgpu")]
        if fused_on(&acts.device()) {
            let (sums, norm_sums) = fused::accumulate(self.sums, self.norm_sums, acts, lengths, classes, row_of);
            return Self { sums, norm_sums, counts: self.counts };
        }
        let (sums, norm_sums) = reference::accumulate(self.sums, self.norm_sums, acts, lengths, classes, row_of);
        Self { sums, norm_sums, counts: self.counts }
    }
}

/// The most bytes of packed codes one buffer holds: WebGPU guarantees 128 MiB per binding (lavapipe and
/// SwiftShader grant no more), so a bigger matrix (a 262 144-token embedding) is split into parts.
pub const MAX_PART_BYTES: u64 = 64 << 20;

/// How a [`QuantMatrix`] rebuilds value `i` (storage order) from its integer code: `scale[i / group] · code[i]`,
/// plus `min[i / group]` when the layout has minimums. This is every ggml quantised type (llama.cpp's Q4_0 … Q8_0
/// and the K types) with its sub-block scales multiplied out, so weights stay as compact as the file keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantLayout {
    /// 4 or 8. Four-bit codes are −8..=7 without minimums and 0..=15 with them; eight-bit codes are any `i8`.
    pub bits: u32,
    /// Values sharing a scale (and minimum); a multiple of 8.
    pub group: usize,
    pub has_min: bool,
}

impl QuantLayout {
    /// llama.cpp's Q8_0: 8-bit codes, one scale per 32 values.
    pub const Q8_0: Self = Self { bits: 8, group: 32, has_min: false };

    /// Codes per 32-bit word: WebGPU has no 8- or 4-bit storage type.
    fn per_word(self) -> usize {
        32 / self.bits as usize
    }

    /// What the nibble of a 4-bit code is offset by (codes without minimums are signed).
    fn bias(self) -> i16 {
        if self.bits == 4 && !self.has_min { 8 } else { 0 }
    }

    /// Bytes `numel` values take on the device: packed codes, one f32 scale per group and one minimum where the
    /// layout has them.
    pub fn device_bytes(self, numel: usize) -> u64 {
        let groups = (numel / self.group) as u64;
        (numel / self.per_word()) as u64 * 4 + groups * 4 * (1 + u64::from(self.has_min))
    }

    /// Storage rows of `storage_cols` values per part: as many as fit [`MAX_PART_BYTES`] when a row is whole groups
    /// and words, else every row in one part.
    fn rows_per_part(self, storage_rows: usize, storage_cols: usize, part_bytes: u64) -> usize {
        let whole = storage_cols.is_multiple_of(self.group) && storage_cols.is_multiple_of(self.per_word());
        let row_bytes = (storage_cols as u64 * u64::from(self.bits)).div_ceil(8).max(1);
        if whole { ((part_bytes / row_bytes) as usize).clamp(1, storage_rows.max(1)) } else { storage_rows.max(1) }
    }

    /// The packed codes of the largest part of a matrix stored as `[storage_rows, storage_cols]`, in bytes.
    pub fn largest_part_bytes(self, storage_rows: usize, storage_cols: usize) -> u64 {
        let rows = self.rows_per_part(storage_rows, storage_cols, MAX_PART_BYTES).min(storage_rows);
        (rows * storage_cols / self.per_word()) as u64 * 4
    }
}

/// One buffer of a [`QuantMatrix`]: whole storage rows, as a `[rows, cols]` matrix of its own (stored transposed
/// when the whole is).
#[derive(Debug, Clone)]
pub struct QuantPart {
    /// The codes in storage order, [`QuantLayout::bits`] each, packed little-endian into `i32` words.
    pub words: Tensor<1, Int>,
    /// One scale per group of values in storage order.
    pub scales: Tensor<1>,
    /// One minimum per group, when the layout has them.
    pub mins: Option<Tensor<1>>,
    pub rows: usize,
    pub cols: usize,
}

/// A `[rows, cols]` weight matrix kept as integer codes with per-group scales (and minimums), dequantised only
/// where it is used: see [`QuantLayout`].
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub store: QuantStore,
    pub layout: QuantLayout,
    pub rows: usize,
    pub cols: usize,
    /// Storage is `[cols, rows]` (as an HF `nn.Linear` weight `[out, in]` is), not `[rows, cols]`.
    pub transposed: bool,
}

/// Where a [`QuantMatrix`]'s codes live.
#[derive(Debug, Clone)]
pub enum QuantStore {
    /// On the cube backend, in parts of whole storage rows (rows, or columns when `transposed`), each within
    /// [`MAX_PART_BYTES`].
    Device(Vec<QuantPart>),
    /// In host memory for burn's CPU backend, shared by a matrix and its transpose.
    Host(std::sync::Arc<PackedMatrix>),
}

/// The codes, scales and minimums (empty without them) of a run of storage rows of a [`QuantMatrix`].
#[derive(Debug, Clone, Default)]
pub struct RowCodes {
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    pub mins: Vec<f32>,
}

/// Hands out the [`RowCodes`] of a range of storage rows (see [`QuantMatrix::from_rows`]).
pub type RowSource<'a> = dyn FnMut(std::ops::Range<usize>) -> Result<RowCodes, String> + 'a;

fn check_layout(layout: QuantLayout) -> Result<(), String> {
    if !matches!(layout.bits, 4 | 8) || layout.group == 0 || !layout.group.is_multiple_of(8) {
        return Err(format!("unsupported quantised layout {layout:?}: codes are 4 or 8 bits in groups of a multiple of 8"));
    }
    Ok(())
}

/// `numel` values in `layout` need whole groups and one scale (and minimum) per group; `[codes, scales, mins]` are
/// the counts given. `what` starts the error ("a [8, 8] matrix needs").
fn check_counts(layout: QuantLayout, what: &str, numel: usize, [codes, scales, mins]: [usize; 3]) -> Result<(), String> {
    let groups = numel / layout.group;
    let want_mins = if layout.has_min { groups } else { 0 };
    if codes != numel || !numel.is_multiple_of(layout.group) || scales != groups || mins != want_mins {
        return Err(format!(
            "{what} {numel} codes in groups of {} with one scale{} per group; got {codes} codes, {scales} scales and {mins} minimums",
            layout.group,
            if layout.has_min { " and one minimum" } else { "" },
        ));
    }
    Ok(())
}

/// Storage rows a host matrix is packed from at a time: about 4 MiB of codes.
const ROWS_AT_A_TIME_BYTES: usize = 4 << 20;

impl QuantMatrix {
    /// Packs and uploads codes, scales and minimums (empty without them); groups run along the storage order. On
    /// burn's CPU backend the codes stay in host memory ([`PackedMatrix`]).
    ///
    /// # Errors
    /// If the layout is not 4 or 8 bits in groups of a multiple of 8, `codes` does not hold `rows · cols` values in
    /// whole groups, a 4-bit code is out of its range, or there is not one scale (and minimum) per group; on the
    /// CPU, also if storage rows are not whole groups.
    pub fn new(layout: QuantLayout, codes: &[i8], scales: &[f32], mins: &[f32], shape: [usize; 2], transposed: bool, device: &Device) -> Result<Self, String> {
        Self::with_part_bytes(layout, codes, scales, mins, shape, transposed, MAX_PART_BYTES, device)
    }

    /// [`QuantMatrix::new`] with parts of at most `part_bytes` of codes (where rows are whole groups and words).
    #[allow(clippy::too_many_arguments)]
    pub fn with_part_bytes(
        layout: QuantLayout,
        codes: &[i8],
        scales: &[f32],
        mins: &[f32],
        [rows, cols]: [usize; 2],
        transposed: bool,
        part_bytes: u64,
        device: &Device,
    ) -> Result<Self, String> {
        check_layout(layout)?;
        check_counts(layout, &format!("a [{rows}, {cols}] matrix needs"), rows * cols, [codes.len(), scales.len(), mins.len()])?;
        let storage_cols = if transposed { rows } else { cols };
        let mut slice = |range: std::ops::Range<usize>| {
            let (values, groups) =
                (range.start * storage_cols..range.end * storage_cols, range.start * storage_cols / layout.group..range.end * storage_cols / layout.group);
            Ok(RowCodes {
                codes: codes[values].to_vec(),
                scales: scales[groups.clone()].to_vec(),
                mins: if layout.has_min { mins[groups].to_vec() } else { vec![] },
            })
        };
        Self::build(layout, [rows, cols], transposed, part_bytes, device, &mut slice)
    }

    /// Packs and uploads a matrix whose codes `source` hands out a run of storage rows at a time, so that a caller
    /// decoding a file never holds a whole matrix's codes. Rows that are not whole groups are asked for all at once.
    ///
    /// # Errors
    /// As [`QuantMatrix::new`], for each run; and whatever `source` returns.
    pub fn from_rows(layout: QuantLayout, shape: [usize; 2], transposed: bool, device: &Device, source: &mut RowSource<'_>) -> Result<Self, String> {
        check_layout(layout)?;
        Self::build(layout, shape, transposed, MAX_PART_BYTES, device, source)
    }

    fn build(
        layout: QuantLayout,
        [rows, cols]: [usize; 2],
        transposed: bool,
        part_bytes: u64,
        device: &Device,
        source: &mut RowSource<'_>,
    ) -> Result<Self, String> {
        let (storage_rows, storage_cols) = if transposed { (cols, rows) } else { (rows, cols) };
        let (bits, bias) = (layout.bits, layout.bias());
        let range = if layout.bits == 8 { -128..=127 } else { -bias..=15 - bias };
        // One run of rows from `source`, its counts and code range checked.
        let mut run = |first: usize, n: usize| -> Result<RowCodes, String> {
            let run = source(first..first + n)?;
            check_counts(layout, &format!("{n} rows of {storage_cols} values need"), n * storage_cols, [run.codes.len(), run.scales.len(), run.mins.len()])?;
            if let Some(code) = run.codes.iter().find(|&&c| !range.contains(&i16::from(c))) {
                return Err(format!("code {code} is outside {range:?} for {layout:?}"));
            }
            Ok(run)
        };
        if on_cpu(device) {
            if !PackedMatrix::packs(layout, storage_cols) {
                // Malformed codes are reported as such before the packer refuses rows that are not whole groups.
                run(0, storage_rows)?;
            }
            let mut packed = PackedMatrix::builder(layout, storage_rows, storage_cols)?;
            let at_a_time = (ROWS_AT_A_TIME_BYTES / storage_cols.max(1)).max(1);
            for first in (0..storage_rows).step_by(at_a_time) {
                let n = at_a_time.min(storage_rows - first);
                packed.push_rows(&run(first, n)?, n);
            }
            return Ok(Self { store: QuantStore::Host(std::sync::Arc::new(packed.finish())), layout, rows, cols, transposed });
        }
        let mask = (1u32 << bits) - 1;
        let pack = |codes: &[i8]| -> Vec<i32> {
            codes
                .chunks(layout.per_word())
                .map(|chunk| {
                    chunk.iter().enumerate().fold(0u32, |word, (j, &c)| word | (((i16::from(c) + bias) as u32 & mask) << (j as u32 * bits))).cast_signed()
                })
                .collect()
        };
        let upload = |values: &[f32]| Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device);
        let per_part = layout.rows_per_part(storage_rows, storage_cols, part_bytes);
        let mut parts = Vec::new();
        for first in (0..storage_rows).step_by(per_part) {
            let n = per_part.min(storage_rows - first);
            let codes = run(first, n)?;
            let words = pack(&codes.codes);
            let len = words.len();
            parts.push(QuantPart {
                words: Tensor::from_data(TensorData::new(words, [len]), device),
                scales: upload(&codes.scales),
                mins: layout.has_min.then(|| upload(&codes.mins)),
                rows: if transposed { rows } else { n },
                cols: if transposed { n } else { cols },
            });
        }
        Ok(Self { store: QuantStore::Device(parts), layout, rows, cols, transposed })
    }

    /// The device parts (none when the codes live in host memory).
    pub fn parts(&self) -> &[QuantPart] {
        match &self.store {
            QuantStore::Device(parts) => parts,
            QuantStore::Host(_) => &[],
        }
    }

    /// The same storage read as the `[cols, rows]` transpose (a tied embedding as its unembedding).
    pub fn transpose(&self) -> Self {
        let store = match &self.store {
            QuantStore::Device(parts) => QuantStore::Device(parts.iter().map(|p| QuantPart { rows: p.cols, cols: p.rows, ..p.clone() }).collect()),
            QuantStore::Host(packed) => QuantStore::Host(packed.clone()),
        };
        Self { store, rows: self.cols, cols: self.rows, transposed: !self.transposed, layout: self.layout }
    }

    /// Bytes the matrix holds on its device.
    pub fn device_bytes(&self) -> u64 {
        match &self.store {
            QuantStore::Device(_) => self.layout.device_bytes(self.rows * self.cols),
            QuantStore::Host(packed) => packed.bytes(),
        }
    }

    /// The axis along which the parts follow each other: rows, or columns when stored transposed.
    pub(crate) fn part_axis(&self) -> usize {
        usize::from(self.transposed)
    }

    /// The matrix in f32.
    ///
    /// # Shapes
    /// `[rows, cols]`
    pub fn dequantize(&self) -> Tensor<2> {
        let parts = match &self.store {
            QuantStore::Device(parts) => parts,
            QuantStore::Host(packed) => return packed::dequantize(self, packed),
        };
        let parts = parts.iter().map(|part| {
            #[cfg(feature = "wgpu")]
            if fused_on(&part.scales.device()) {
                return fused::dequantize(part, self.layout, self.transposed);
            }
            reference::dequantize_part(part, self.layout, self.transposed)
        });
        Tensor::cat(parts.collect(), self.part_axis())
    }

    /// Rows `ids` of the matrix in f32 (an embedding lookup).
    ///
    /// # Shapes
    /// `ids: [n]` → `[n, cols]`
    pub fn rows_of(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        if let QuantStore::Host(packed) = &self.store
            && !self.transposed
        {
            return packed::rows_of(packed, ids);
        }
        #[cfg(feature = "wgpu")]
        if fused_on(&ids.device()) && !self.transposed {
            return fused::rows_of(self, ids);
        }
        self.dequantize().select(0, ids)
    }
}

/// `x @ weight + bias` with a quantised `weight`. On the CPU, integer dot products against the codes in host memory
/// ([`PackedMatrix`]) when storage is `[out, in]`. On the cube backend a few rows (decoding), or any number when
/// the f32 matrix would be too big a buffer, go through one matrix-vector kernel per part that reads the codes
/// directly; more rows dequantise the matrix into a transient f32 copy for burn's matmul.
///
/// # Shapes
/// `x: [batch, pos, rows]`, `bias: [cols]` → `[batch, pos, cols]`
pub fn quant_linear(x: Tensor<3>, weight: &QuantMatrix, bias: Option<Tensor<1>>) -> Tensor<3> {
    if let QuantStore::Host(packed) = &weight.store
        && weight.transposed
    {
        return packed::linear(x, packed, bias);
    }
    #[cfg(feature = "wgpu")]
    if fused_on(&x.device()) {
        let [batch, pos, _] = x.dims();
        if batch * pos > fused::GEMV_MAX_ROWS && weight.rows * weight.cols * 4 <= fused::DEQUANTIZE_MAX_BYTES {
            return burn::tensor::module::linear(x, weight.dequantize(), bias);
        }
        let (layout, transposed) = (weight.layout, weight.transposed);
        if let [part] = weight.parts() {
            return fused::gemv(x, part, layout, transposed, bias);
        }
        let mut start = 0;
        if transposed {
            // Parts hold output columns: each computes its own.
            let outs = weight.parts().iter().map(|part| {
                let cols = start..start + part.cols;
                start = cols.end;
                fused::gemv(x.clone(), part, layout, transposed, bias.clone().map(|b| b.slice(cols)))
            });
            return Tensor::cat(outs.collect(), 2);
        }
        // Parts hold input rows: each sums its share.
        let mut out: Option<Tensor<3>> = None;
        for part in weight.parts() {
            let rows = start..start + part.rows;
            start = rows.end;
            let share = fused::gemv(x.clone().slice_dim(2, rows), part, layout, transposed, None);
            out = Some(match out {
                Some(sum) => sum + share,
                None => share,
            });
        }
        let out = out.unwrap_or_else(|| Tensor::zeros([batch, pos, weight.cols], &x.device()));
        return match bias {
            Some(b) => out + b.unsqueeze::<3>(),
            None => out,
        };
    }
    reference::quant_linear(x, weight, bias)
}
