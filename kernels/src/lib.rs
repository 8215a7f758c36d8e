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
//! - [`Q8Matrix`], [`q8_linear`]: weights resident in q8_0 (a quarter of the f32 bytes),
//!   dequantised where they are used: inside a matrix-vector product for decoding, into a
//!   transient f32 matrix for longer inputs.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Device, Int, Tensor, TensorData};

#[cfg(feature = "wgpu")]
mod fused;
pub mod reference;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fused kernels off (`false`) or back on, process-wide, e.g. to measure what they gain.
/// With them off every device runs [`reference`].
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
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

/// Values per q8_0 block (one scale each).
pub const Q8_BLOCK: usize = 32;

/// A `[rows, cols]` weight matrix resident on the device in q8_0: `i8` values in blocks of
/// [`Q8_BLOCK`] with one `f32` scale per block, dequantised only where it is used.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    /// The `i8` values in storage order, four to an `i32` word (little-endian): WebGPU has no
    /// 8-bit storage type.
    pub words: Tensor<1, Int>,
    /// One scale per block of [`Q8_BLOCK`] values in storage order.
    pub scales: Tensor<1>,
    pub rows: usize,
    pub cols: usize,
    /// Storage is `[cols, rows]` (as an HF `nn.Linear` weight `[out, in]` is), not `[rows, cols]`.
    pub transposed: bool,
}

impl Q8Matrix {
    /// Uploads q8_0 values and scales; blocks run along the storage order.
    ///
    /// # Errors
    /// If `quants` does not hold `rows · cols` values in whole blocks, or `scales` one per block.
    pub fn new(quants: &[i8], scales: &[f32], [rows, cols]: [usize; 2], transposed: bool, device: &Device) -> Result<Self, String> {
        let numel = rows * cols;
        if quants.len() != numel || numel % Q8_BLOCK != 0 || scales.len() != numel / Q8_BLOCK {
            return Err(format!(
                "a [{rows}, {cols}] q8_0 matrix needs {numel} values in blocks of {Q8_BLOCK} and one scale per block; got {} values and {} scales",
                quants.len(),
                scales.len()
            ));
        }
        let words: Vec<i32> = quants.chunks_exact(4).map(|q| i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])).collect();
        Ok(Self {
            words: Tensor::from_data(TensorData::new(words, [numel / 4]), device),
            scales: Tensor::from_data(TensorData::new(scales.to_vec(), [scales.len()]), device),
            rows,
            cols,
            transposed,
        })
    }

    /// The matrix in f32.
    ///
    /// # Shapes
    /// `[rows, cols]`
    pub fn dequantize(&self) -> Tensor<2> {
        #[cfg(feature = "wgpu")]
        if fused_on(&self.scales.device()) {
            return fused::dequantize(self);
        }
        reference::dequantize(self)
    }
}

/// `x @ weight + bias` with a q8_0 `weight`. On the cube backend a few rows (decoding) go through
/// one matrix-vector kernel that reads the 8-bit values directly; more rows dequantise the matrix
/// into a transient f32 copy for burn's matmul.
///
/// # Shapes
/// `x: [batch, pos, rows]`, `bias: [cols]` → `[batch, pos, cols]`
pub fn q8_linear(x: Tensor<3>, weight: &Q8Matrix, bias: Option<Tensor<1>>) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    if fused_on(&x.device()) {
        let [batch, pos, _] = x.dims();
        if batch * pos <= fused::GEMV_MAX_ROWS && weight.cols <= fused::MAX_CUBES {
            return fused::q8_gemv(x, weight, bias);
        }
        return burn::tensor::module::linear(x, fused::dequantize(weight), bias);
    }
    reference::q8_linear(x, weight, bias)
}
