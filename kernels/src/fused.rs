//! CubeCL kernels for burn's cube backend, and their launchers.
//!
//! Every kernel gives one cube (workgroup) of [`WIDTH`] units to one row of `d` values: units
//! stride over the row, and a row total (for norms) is a tree sum in shared memory.

use burn::backend::DispatchDevice;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_backend::TensorMetadata;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use self::cube_kernels::{class_stats_kernel, dequantize_kernel, gemv_kernel, norm_kernel, rows_of_kernel, steer_kernel};
use crate::{QuantLayout, QuantMatrix, QuantPart, RowOf, Span};

/// Units per cube: a power of two (the tree sum halves it), within WebGPU's guaranteed 256.
const WIDTH: usize = 256;

/// Cubes WebGPU guarantees along one axis of a launch.
pub(crate) const MAX_CUBES: usize = 65_535;
/// Rows (tokens) up to which [`gemv`] beats dequantising the matrix for a matmul.
pub(crate) const GEMV_MAX_ROWS: usize = 4;
/// The largest transient f32 matrix [`crate::quant_linear`] dequantises (WebGPU guarantees 128 MiB per binding);
/// bigger ones (a 262 144-token unembedding) always take [`gemv`].
pub(crate) const DEQUANTIZE_MAX_BYTES: usize = 64 << 20;
/// Units per cube of the matrix-vector kernel: one cube sums one output over a few hundred inputs.
const GEMV_WIDTH: usize = 64;

pub(crate) fn supports(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(_))
}

/// The cube primitive of a float tensor known to live on the cube backend, made contiguous.
fn primitive<const D: usize>(tensor: Tensor<D>) -> CubeTensor {
    match tensor.try_into_primitive::<CubeBackend>() {
        Ok(cube) => into_contiguous(cube),
        // Callers check `supports` first; reaching this is a bug in this crate.
        Err(e) => unreachable!("fused kernel called off the cube backend: {e:?}"),
    }
}

fn int_primitive(values: &[usize], device: &Device) -> CubeTensor {
    let data: Vec<i32> = values.iter().map(|&v| i32::try_from(v).unwrap_or(i32::MAX)).collect();
    int_tensor_primitive(Tensor::<1, Int>::from_data(TensorData::new(data, [values.len()]), device))
}

fn int_tensor_primitive(tensor: Tensor<1, Int>) -> CubeTensor {
    match tensor.try_into_primitive::<CubeBackend>() {
        Ok(cube) => into_contiguous(cube),
        Err(e) => unreachable!("fused kernel called off the cube backend: {e:?}"),
    }
}

fn wrap<const D: usize>(tensor: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<CubeBackend>(tensor)
}

fn empty_like(tensor: &CubeTensor) -> CubeTensor {
    empty_device_dtype(tensor.client.clone(), tensor.device.clone(), tensor.shape(), tensor.dtype)
}

/// Launches `steer_kernel`: one cube per row of `x`.
pub(crate) fn steer(x: Tensor<3>, vectors: Tensor<2>, coefs: Option<Tensor<1>>, span: &Span, preserve_norm: bool) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let x = primitive(x.reshape([batch * seq, d]));
    let vectors = primitive(vectors);
    let has_coefs = coefs.is_some();
    // Without coefficients the kernel never reads them; any float tensor fills the slot.
    let coefs = coefs.map(primitive).unwrap_or_else(|| vectors.clone());
    let out = empty_like(&x);
    let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let dtype = dtype_to_storage_type(x.dtype);
    steer_kernel::launch(
        &x.client,
        CubeCount::Static(clamp(batch * seq), 1, 1),
        CubeDim::new_1d(WIDTH as u32),
        x.clone().into_tensor_arg(),
        vectors.into_tensor_arg(),
        coefs.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        clamp(seq.max(1)),
        clamp(span.offset),
        clamp(span.positions.start),
        clamp(span.positions.end),
        has_coefs,
        preserve_norm,
        WIDTH,
        dtype,
    );
    wrap::<2>(out).reshape([batch, seq, d])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormKind {
    Rms,
    Layer,
}

pub(crate) fn norm(x: Tensor<3>, weight: Tensor<1>, bias: Option<Tensor<1>>, eps: f64, kind: NormKind) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let x = primitive(x.reshape([batch * seq, d]));
    let weight = primitive(weight);
    let has_bias = bias.is_some();
    let bias = bias.map(primitive).unwrap_or_else(|| weight.clone());
    let out = empty_like(&x);
    let dtype = dtype_to_storage_type(x.dtype);
    norm_kernel::launch(
        &x.client,
        CubeCount::Static(u32::try_from(batch * seq).unwrap_or(u32::MAX), 1, 1),
        CubeDim::new_1d(WIDTH as u32),
        x.clone().into_tensor_arg(),
        weight.into_tensor_arg(),
        bias.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        eps as f32,
        kind == NormKind::Layer,
        has_bias,
        WIDTH,
        dtype,
    );
    wrap::<2>(out).reshape([batch, seq, d])
}

pub(crate) fn accumulate(
    sums: Tensor<2>,
    norm_sums: Tensor<1>,
    acts: Tensor<3>,
    lengths: &[usize],
    classes: &[usize],
    row_of: RowOf,
) -> (Tensor<2>, Tensor<1>) {
    let device = acts.device();
    let acts = primitive(acts);
    let sums = primitive(sums);
    let norm_sums = primitive(norm_sums);
    let lengths = int_primitive(lengths, &device);
    let classes = int_primitive(classes, &device);
    let dtypes = [dtype_to_storage_type(acts.dtype), dtype_to_storage_type(lengths.dtype)];
    class_stats_kernel::launch(
        &acts.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(WIDTH as u32),
        acts.clone().into_tensor_arg(),
        lengths.into_tensor_arg(),
        classes.into_tensor_arg(),
        sums.clone().into_tensor_arg(),
        norm_sums.clone().into_tensor_arg(),
        row_of == RowOf::Mean,
        WIDTH,
        dtypes,
    );
    (wrap(sums), wrap(norm_sums))
}

/// The cube primitives of a quantised matrix: words, scales, and minimums (the scales again when the layout has
/// none: the kernels never read them then).
fn quant_parts(weight: &QuantPart) -> (CubeTensor, CubeTensor, CubeTensor) {
    let scales = primitive(weight.scales.clone());
    let mins = weight.mins.clone().map(primitive).unwrap_or_else(|| scales.clone());
    (int_tensor_primitive(weight.words.clone()), scales, mins)
}

/// A 1-D launch of `units` units of [`WIDTH`], on a 2-D grid when one axis is not enough.
fn grid(units: usize) -> CubeCount {
    let cubes = units.div_ceil(WIDTH);
    CubeCount::Static(cubes.clamp(1, MAX_CUBES) as u32, cubes.div_ceil(MAX_CUBES).max(1) as u32, 1)
}

/// Launches `dequantize_kernel`: one unit per value.
pub(crate) fn dequantize(weight: &QuantPart, layout: QuantLayout, transposed: bool) -> Tensor<2> {
    let (words, scales, mins) = quant_parts(weight);
    let out = empty_device_dtype(scales.client.clone(), scales.device.clone(), [weight.rows, weight.cols].into(), scales.dtype);
    let dtypes = [dtype_to_storage_type(scales.dtype), dtype_to_storage_type(words.dtype)];
    dequantize_kernel::launch(
        &out.client,
        grid(weight.rows * weight.cols),
        CubeDim::new_1d(WIDTH as u32),
        words.into_tensor_arg(),
        scales.into_tensor_arg(),
        mins.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        weight.rows as u32,
        weight.cols as u32,
        transposed,
        layout.bits,
        layout.group,
        layout.has_min,
        dtypes,
    );
    wrap(out)
}

/// Launches `rows_of_kernel` once per part of a matrix stored as it is (parts of whole rows): one unit per value
/// of the rows looked up, written by the part that holds the row.
pub(crate) fn rows_of(weight: &QuantMatrix, ids: Tensor<1, Int>) -> Tensor<2> {
    let [n] = ids.dims();
    let ids = int_tensor_primitive(ids);
    let out = empty_device_dtype(ids.client.clone(), ids.device.clone(), [n, weight.cols].into(), burn::tensor::DType::F32);
    let layout = weight.layout;
    let mut first = 0;
    for part in weight.parts() {
        let (words, scales, mins) = quant_parts(part);
        let dtypes = [dtype_to_storage_type(scales.dtype), dtype_to_storage_type(words.dtype)];
        rows_of_kernel::launch(
            &out.client,
            grid(n * weight.cols),
            CubeDim::new_1d(WIDTH as u32),
            words.into_tensor_arg(),
            scales.into_tensor_arg(),
            mins.into_tensor_arg(),
            ids.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            first as u32,
            part.rows as u32,
            weight.cols as u32,
            layout.bits,
            layout.group,
            layout.has_min,
            dtypes,
        );
        first += part.rows;
    }
    wrap(out)
}

/// Launches `gemv_kernel`: one cube per (output, row of `x`); outputs beyond [`MAX_CUBES`] wrap onto the third
/// grid axis. Callers keep the rows of `x` within [`MAX_CUBES`].
pub(crate) fn gemv(x: Tensor<3>, weight: &QuantPart, layout: QuantLayout, transposed: bool, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, seq, d_in] = x.dims();
    let x = primitive(x.reshape([batch * seq, d_in]));
    let (words, scales, mins) = quant_parts(weight);
    let has_bias = bias.is_some();
    let bias = bias.map(primitive).unwrap_or_else(|| scales.clone());
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), [batch * seq, weight.cols].into(), x.dtype);
    let dtypes = [dtype_to_storage_type(x.dtype), dtype_to_storage_type(words.dtype)];
    let across = weight.cols.clamp(1, MAX_CUBES);
    gemv_kernel::launch(
        &x.client,
        CubeCount::Static(across as u32, (batch * seq) as u32, weight.cols.div_ceil(across) as u32),
        CubeDim::new_1d(GEMV_WIDTH as u32),
        x.clone().into_tensor_arg(),
        words.into_tensor_arg(),
        scales.into_tensor_arg(),
        mins.into_tensor_arg(),
        bias.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        transposed,
        layout.bits,
        layout.group,
        layout.has_min,
        has_bias,
        // Transposed storage with rows of whole words and groups: read a word at a time.
        transposed && d_in % layout.group == 0 && d_in % (32 / layout.bits as usize) == 0,
        GEMV_WIDTH,
        dtypes,
    );
    wrap::<2>(out).reshape([batch, seq, weight.cols])
}

mod cube_kernels {
    use burn_cubecl::cubecl;
    use cubecl::prelude::*;

    /// Sum of `value` over the cube's units, returned to every unit.
    #[cube]
    fn cube_sum<F: Float>(value: F, #[comptime] width: usize) -> F {
        let mut partial = Shared::<[F]>::new_slice(width);
        let unit = UNIT_POS_X as usize;
        partial[unit] = value;
        sync_cube();
        // A runtime value (uniform across the cube): `width / 2` would be a compile-time constant.
        let mut stride = (CUBE_DIM_X / 2) as usize;
        while stride > 0 {
            if unit < stride {
                let other = partial[unit + stride];
                partial[unit] += other;
            }
            sync_cube();
            stride /= 2;
        }
        let total = partial[0];
        // Nobody may overwrite the slot before every unit has read it (the caller may loop).
        sync_cube();
        total
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn steer_kernel<F: Float>(
        x: &Tensor<F>,       // [rows, d]
        vectors: &Tensor<F>, // [k, d]
        coefs: &Tensor<F>,   // [k]
        out: &mut Tensor<F>, // [rows, d]
        seq: u32,
        offset: u32,
        start: u32,
        end: u32,
        #[comptime] has_coefs: bool,
        #[comptime] preserve_norm: bool,
        #[comptime] width: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = CUBE_POS;
        let d = x.shape(1);
        let k = vectors.shape(0);
        let pos = offset + (row as u32) % seq;
        let active = pos >= start && pos < end;
        let base = row * d;
        let mut before = F::new(0.0);
        let mut after = F::new(0.0);
        let mut i = UNIT_POS_X as usize;
        while i < d {
            let value = x[base + i];
            let mut steered = value;
            if active {
                for j in 0..k {
                    let mut coef = F::new(1.0);
                    if has_coefs {
                        coef = coefs[j];
                    }
                    steered += coef * vectors[j * d + i];
                }
            }
            out[base + i] = steered;
            before += value * value;
            after += steered * steered;
            i += CUBE_DIM_X as usize;
        }
        if preserve_norm {
            let before = cube_sum::<F>(before, width);
            let after = cube_sum::<F>(after, width);
            if active && after > F::new(0.0) {
                let scale = F::sqrt(before / after);
                let mut i = UNIT_POS_X as usize;
                while i < d {
                    out[base + i] *= scale;
                    i += CUBE_DIM_X as usize;
                }
            }
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn norm_kernel<F: Float>(
        x: &Tensor<F>,      // [rows, d]
        weight: &Tensor<F>, // [d]
        bias: &Tensor<F>,   // [d], read only with has_bias
        out: &mut Tensor<F>,
        eps: f32,
        #[comptime] layer: bool,
        #[comptime] has_bias: bool,
        #[comptime] width: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = CUBE_POS;
        let d = x.shape(1);
        let base = row * d;
        let n = F::cast_from(d as u32);
        let mut mean = F::new(0.0);
        if layer {
            let mut sum = F::new(0.0);
            let mut i = UNIT_POS_X as usize;
            while i < d {
                sum += x[base + i];
                i += CUBE_DIM_X as usize;
            }
            mean = cube_sum::<F>(sum, width) / n;
        }
        // Second pass over the centred values: the variance of LayerNorm, the mean square of RMSNorm.
        let mut squares = F::new(0.0);
        let mut i = UNIT_POS_X as usize;
        while i < d {
            let centred = x[base + i] - mean;
            squares += centred * centred;
            i += CUBE_DIM_X as usize;
        }
        let inv = F::new(1.0) / F::sqrt(cube_sum::<F>(squares, width) / n + F::cast_from(eps));
        let mut i = UNIT_POS_X as usize;
        while i < d {
            let mut y = (x[base + i] - mean) * inv * weight[i];
            if has_bias {
                y += bias[i];
            }
            out[base + i] = y;
            i += CUBE_DIM_X as usize;
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn class_stats_kernel<F: Float, I: Int>(
        acts: &Tensor<F>,          // [batch, pos, d]
        lengths: &Tensor<I>,       // [batch]
        classes: &Tensor<I>,       // [batch]
        sums: &mut Tensor<F>,      // [classes, d]
        norm_sums: &mut Tensor<F>, // [classes]
        #[comptime] mean: bool,
        #[comptime] width: usize,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let batch = acts.shape(0);
        let pos = acts.shape(1);
        let d = acts.shape(2);
        // One cube walks the batch in order, so rows of the same class never race on a sum.
        for b in 0..batch {
            let len = u32::cast_from(lengths[b]) as usize;
            let class = u32::cast_from(classes[b]) as usize;
            let mut squares = F::new(0.0);
            let mut i = UNIT_POS_X as usize;
            while i < d {
                let mut row = F::new(0.0);
                if mean {
                    for t in 0..len {
                        row += acts[(b * pos + t) * d + i];
                    }
                    row /= F::cast_from(len as u32);
                } else {
                    row = acts[(b * pos + len - 1) * d + i];
                }
                let index = class * d + i;
                sums[index] += row;
                squares += row * row;
                i += CUBE_DIM_X as usize;
            }
            let norm = F::sqrt(cube_sum::<F>(squares, width));
            if UNIT_POS_X == 0 {
                norm_sums[class] += norm;
            }
        }
    }

    /// The code in the low `bits` of `shifted`, made signed as the layout says (see `QuantLayout`): 8-bit codes
    /// are two's complement, 4-bit codes without minimums are offset by 8. Masking reads the code whether the
    /// shift before was arithmetic or logical.
    #[cube]
    fn signed_code<I: Int>(shifted: I, #[comptime] bits: u32, #[comptime] has_min: bool) -> I {
        let mut code = shifted & I::new(comptime!(((1u32 << bits) - 1) as i64));
        if comptime!(bits == 8) {
            if code >= I::new(128) {
                code -= I::new(256);
            }
        } else if comptime!(!has_min) {
            code -= I::new(8);
        }
        code
    }

    /// Value `flat` (storage order) of a quantised matrix: code `flat % (32 / bits)` of its word, made signed as
    /// the layout says (`signed_code`), times its group's scale, plus the group's minimum when it has them.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn quant_value<F: Float, I: Int>(
        words: &Tensor<I>,
        scales: &Tensor<F>,
        mins: &Tensor<F>,
        flat: usize,
        #[comptime] bits: u32,
        #[comptime] group: usize,
        #[comptime] has_min: bool,
    ) -> F {
        let per_word = comptime!((32 / bits) as usize);
        let shift = I::cast_from(((flat % per_word) as u32) * bits);
        let code = signed_code::<I>(words[flat / per_word] >> shift, bits, has_min);
        let mut value = F::cast_from(code) * scales[flat / group];
        if has_min {
            value += mins[flat / group];
        }
        value
    }

    /// Storage index of value `(r, c)` of a `[rows, cols]` matrix stored as `[cols, rows]` when
    /// `transposed`.
    #[cube]
    fn storage_index(r: usize, c: usize, rows: usize, cols: usize, #[comptime] transposed: bool) -> usize {
        if transposed { c * rows + r } else { r * cols + c }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn dequantize_kernel<F: Float, I: Int>(
        words: &Tensor<I>,
        scales: &Tensor<F>,
        mins: &Tensor<F>,
        out: &mut Tensor<F>, // [rows, cols]
        rows: u32,
        cols: u32,
        #[comptime] transposed: bool,
        #[comptime] bits: u32,
        #[comptime] group: usize,
        #[comptime] has_min: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let (rows, cols) = (rows as usize, cols as usize);
        let i = ABSOLUTE_POS;
        if i < rows * cols {
            let (r, c) = (i / cols, i % cols);
            out[i] = quant_value::<F, I>(words, scales, mins, storage_index(r, c, rows, cols, transposed), bits, group, has_min);
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn rows_of_kernel<F: Float, I: Int>(
        words: &Tensor<I>,
        scales: &Tensor<F>,
        mins: &Tensor<F>,
        ids: &Tensor<I>,     // [n]
        out: &mut Tensor<F>, // [n, cols]
        first: u32,
        rows: u32,
        cols: u32,
        #[comptime] bits: u32,
        #[comptime] group: usize,
        #[comptime] has_min: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let cols = cols as usize;
        let i = ABSOLUTE_POS;
        if i < ids.len() * cols {
            let (t, c) = (i / cols, i % cols);
            let id = u32::cast_from(ids[t]);
            // Rows first..first + rows are this part's; others are another part's to write.
            if id >= first && id - first < rows {
                out[i] = quant_value::<F, I>(words, scales, mins, ((id - first) as usize) * cols + c, bits, group, has_min);
            }
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn gemv_kernel<F: Float, I: Int>(
        x: &Tensor<F>, // [n, rows]
        words: &Tensor<I>,
        scales: &Tensor<F>,
        mins: &Tensor<F>,
        bias: &Tensor<F>,    // [cols], read only with has_bias
        out: &mut Tensor<F>, // [n, cols]
        #[comptime] transposed: bool,
        #[comptime] bits: u32,
        #[comptime] group: usize,
        #[comptime] has_min: bool,
        #[comptime] has_bias: bool,
        #[comptime] by_word: bool,
        #[comptime] width: usize,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let c = (CUBE_POS_X + CUBE_POS_Z * CUBE_COUNT_X) as usize;
        let n = CUBE_POS_Y as usize;
        let rows = x.shape(1);
        let cols = out.shape(1);
        let mut partial = F::new(0.0);
        if by_word {
            // Output c is storage row c, its codes consecutive: each unit takes whole words, one scale (and minimum)
            // per word, and applies them once to the word's dot product.
            let per_word = comptime!((32 / bits) as usize);
            let words_per_row = rows / per_word;
            let mut w = if c < cols { UNIT_POS_X as usize } else { words_per_row };
            while w < words_per_row {
                let word = words[c * words_per_row + w];
                let r = w * per_word;
                let group_at = (c * rows + r) / group;
                let mut dot = F::new(0.0);
                let mut sum = F::new(0.0);
                #[unroll]
                for j in 0..per_word {
                    let code = signed_code::<I>(word >> I::cast_from(comptime!((j as u32) * bits)), bits, has_min);
                    let xv = x[n * rows + r + j];
                    dot += xv * F::cast_from(code);
                    if has_min {
                        sum += xv;
                    }
                }
                partial += dot * scales[group_at];
                if has_min {
                    partial += sum * mins[group_at];
                }
                w += CUBE_DIM_X as usize;
            }
        } else {
            // Cubes past the last output (the third axis rounds up) sum nothing; every unit still takes part in the sum.
            let mut r = if c < cols { UNIT_POS_X as usize } else { rows };
            while r < rows {
                partial += x[n * rows + r] * quant_value::<F, I>(words, scales, mins, storage_index(r, c, rows, cols, transposed), bits, group, has_min);
                r += CUBE_DIM_X as usize;
            }
        }
        let mut total = cube_sum::<F>(partial, width);
        if UNIT_POS_X == 0 && c < cols {
            if has_bias {
                total += bias[c];
            }
            out[n * cols + c] = total;
        }
    }
}
