//! The arithmetic of each fused kernel written with plain burn tensor operations. This is what
//! runs on the CPU backend, and what the fused kernels are tested against.

use burn::tensor::module::layer_norm as burn_layer_norm;
use burn::tensor::module::linear;
use burn::tensor::{Int, Tensor, TensorData};

use crate::{QuantLayout, QuantMatrix, QuantPart, RowOf, Span};

/// See [`crate::steer`].
pub fn steer(x: Tensor<3>, vectors: Tensor<2>, coefs: Option<Tensor<1>>, span: &Span, preserve_norm: bool) -> Tensor<3> {
    let [_, len, d] = x.dims();
    let device = x.device();
    let selected: Vec<f32> = (0..len).map(|t| f32::from(u8::from(span.selects(t)))).collect();
    if selected.iter().all(|&s| s == 0.0) {
        return x;
    }
    let [k, _] = vectors.dims();
    let coefs = coefs.unwrap_or_else(|| Tensor::ones([k], &device));
    // Σₖ coefₖ·vₖ as a [1, d] row.
    let shift = coefs.reshape([1, k]).matmul(vectors).reshape([1, 1, d]);
    let mask = Tensor::<1>::from_data(TensorData::new(selected, [len]), &device).reshape([1, len, 1]);
    let steered = x.clone() + mask.clone() * shift;
    if !preserve_norm {
        return steered;
    }
    let before = x.square().sum_dim(2).sqrt();
    let after = steered.clone().square().sum_dim(2).sqrt();
    // Rows the edit left alone keep scale 1; an edited row that became zero stays zero.
    let ratio = before / after.clone().clamp_min(f32::MIN_POSITIVE) * after.greater_elem(0.0).float();
    let scale = (mask.clone().neg() + 1.0) + mask * ratio;
    steered * scale
}

/// See [`crate::rms_norm`].
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    let rms = (x.clone().square().mean_dim(2) + eps).sqrt();
    x / rms * weight.unsqueeze::<3>()
}

/// See [`crate::layer_norm`].
pub fn layer_norm(x: Tensor<3>, weight: Tensor<1>, bias: Option<Tensor<1>>, eps: f64) -> Tensor<3> {
    burn_layer_norm(x, weight, bias, eps)
}

/// See [`crate::ClassStats::accumulate`]: returns the new `(sums, norm_sums)`.
pub fn accumulate(sums: Tensor<2>, norm_sums: Tensor<1>, acts: Tensor<3>, lengths: &[usize], classes: &[usize], row_of: RowOf) -> (Tensor<2>, Tensor<1>) {
    let device = acts.device();
    let [batch, pos, d] = acts.dims();
    let [n_classes, _] = sums.dims();
    // Aggregate each prompt to one row with a [batch, pos] weight matrix: one-hot on the last token,
    // or 1/len over the prompt's tokens.
    let weights: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| {
            (0..pos).map(move |t| match row_of {
                RowOf::Last => f32::from(u8::from(t + 1 == n)),
                RowOf::Mean => {
                    if t < n {
                        1.0 / n as f32
                    } else {
                        0.0
                    }
                }
            })
        })
        .collect();
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [batch, pos]), &device);
    let rows = (weights.reshape([batch, 1, pos]).matmul(acts)).reshape([batch, d]);
    let norms = rows.clone().square().sum_dim(1).sqrt(); // [batch, 1]
    let mut one_hot = vec![0.0f32; n_classes * batch];
    for (b, &c) in classes.iter().enumerate() {
        one_hot[c * batch + b] = 1.0;
    }
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [n_classes, batch]), &device);
    (sums + one_hot.clone().matmul(rows), norm_sums + one_hot.matmul(norms).reshape([n_classes]))
}

/// See [`QuantMatrix::dequantize`].
pub fn dequantize(weight: &QuantMatrix) -> Tensor<2> {
    if let crate::QuantStore::Host(packed) = &weight.store {
        return crate::packed::dequantize(weight, packed);
    }
    let parts = weight.parts().iter().map(|part| dequantize_part(part, weight.layout, weight.transposed));
    Tensor::cat(parts.collect(), weight.part_axis())
}

/// One part of [`dequantize`].
pub fn dequantize_part(weight: &QuantPart, layout: QuantLayout, transposed: bool) -> Tensor<2> {
    let numel = weight.rows * weight.cols;
    let (bits, per_word) = (layout.bits as usize, 32 / layout.bits as usize);
    let mask = (1i64 << bits) - 1;
    // Code k of each word, as unsigned, then made signed as the layout says.
    let codes: Vec<Tensor<1, Int>> =
        (0..per_word).map(|k| weight.words.clone().bitwise_right_shift_scalar((bits * k) as i64).bitwise_and_scalar(mask)).collect();
    let codes = Tensor::stack::<2>(codes, 1).reshape([numel]);
    let codes = match (layout.bits, layout.has_min) {
        (8, _) => codes.clone() - codes.greater_equal_elem(128).int() * 256,
        (_, false) => codes - 8,
        _ => codes,
    };
    let groups = [numel / layout.group, layout.group];
    let mut values = codes.float().reshape(groups) * weight.scales.clone().reshape([groups[0], 1]);
    if let Some(mins) = &weight.mins {
        values = values + mins.clone().reshape([groups[0], 1]);
    }
    if transposed { values.reshape([weight.cols, weight.rows]).transpose() } else { values.reshape([weight.rows, weight.cols]) }
}

/// See [`crate::quant_linear`].
pub fn quant_linear(x: Tensor<3>, weight: &QuantMatrix, bias: Option<Tensor<1>>) -> Tensor<3> {
    linear(x, dequantize(weight), bias)
}
