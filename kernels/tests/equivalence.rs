//! Each fused kernel against its plain-tensor reference, on the same device and the same inputs:
//! natively on wgpu (lavapipe without a GPU) and, built for wasm32, in headless Chromium on
//! WebGPU (`cargo xtask test`). The reference itself is checked against arithmetic by hand on
//! burn's CPU backend.

use analog_kernels::{ClassStats, QuantLayout, QuantMatrix, RowOf, Span, reference};
use burn::tensor::{Device, Int, Tensor, TensorData};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test_configure!(run_in_browser);

/// Deterministic values in [-1, 1) (an LCG: no rand dependency, same numbers everywhere).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values(shape.iter().product(), seed), shape), device)
}

async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    match t.into_data_async().await {
        Ok(data) => data.try_to_vec::<f32>().expect("f32 values"),
        Err(e) => panic!("readback: {e:#?}"),
    }
}

async fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: Tensor<D>, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let (got, want) = (read(got).await, read(want).await);
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: fused and reference differ by {worst} (tolerance {tol})");
}

/// Row widths around the cube width of 256: smaller, not a multiple, several strides.
const WIDTHS: [usize; 4] = [8, 64, 300, 576];

async fn steering_matches(device: &Device) {
    for (i, &d) in WIDTHS.iter().enumerate() {
        let seed = i as u64 * 100;
        let x = tensor([2, 5, d], seed, device);
        for (k, coefs) in [(1, None), (3, Some(tensor([3], seed + 2, device)))] {
            let vectors = tensor([k, d], seed + 1, device);
            let spans = [Span::ALL, Span { offset: 0, positions: 2..4 }, Span { offset: 7, positions: 9..usize::MAX }, Span { offset: 0, positions: 10..12 }];
            for span in spans {
                for preserve_norm in [false, true] {
                    let what = format!("steer d={d} k={k} {span:?} preserve_norm={preserve_norm}");
                    let fused = analog_kernels::steer(x.clone(), vectors.clone(), coefs.clone(), &span, preserve_norm);
                    let want = reference::steer(x.clone(), vectors.clone(), coefs.clone(), &span, preserve_norm);
                    assert_close(&what, fused, want, 1e-5).await;
                }
            }
        }
    }
}

async fn norms_match(device: &Device) {
    for (i, &d) in WIDTHS.iter().enumerate() {
        let seed = 1000 + i as u64 * 10;
        // An offset keeps LayerNorm's mean away from zero, where a one-pass variance would lose digits.
        let x = tensor([3, 4, d], seed, device) * 3.0 + 5.0;
        let (w, b) = (tensor([d], seed + 1, device), tensor([d], seed + 2, device));
        assert_close(&format!("rms_norm d={d}"), analog_kernels::rms_norm(x.clone(), w.clone(), 1e-6), reference::rms_norm(x.clone(), w.clone(), 1e-6), 1e-5)
            .await;
        for bias in [None, Some(b)] {
            let what = format!("layer_norm d={d} bias={}", bias.is_some());
            let fused = analog_kernels::layer_norm(x.clone(), w.clone(), bias.clone(), 1e-5);
            assert_close(&what, fused, reference::layer_norm(x.clone(), w.clone(), bias, 1e-5), 1e-4).await;
        }
    }
}

async fn statistics_match(device: &Device) {
    for (i, &d) in WIDTHS.iter().enumerate() {
        let seed = 2000 + i as u64 * 10;
        for row_of in [RowOf::Last, RowOf::Mean] {
            let (mut fused, mut want) = (ClassStats::zeros(2, d, device), ClassStats::zeros(2, d, device));
            // Two batches, so sums carry over; classes alternate like positive/negative prompts.
            for (batch, lengths) in [(0u64, vec![3, 6, 1, 6]), (1, vec![2, 2, 5])] {
                let acts = tensor([lengths.len(), 6, d], seed + batch, device);
                let classes: Vec<usize> = (0..lengths.len()).map(|r| r % 2).collect();
                fused = fused.accumulate(acts.clone(), &lengths, &classes, row_of);
                let (sums, norm_sums) = reference::accumulate(want.sums, want.norm_sums, acts, &lengths, &classes, row_of);
                want = ClassStats { sums, norm_sums, counts: want.counts };
            }
            assert_eq!(fused.counts, vec![4, 3]);
            assert_close(&format!("class sums d={d} {row_of:?}"), fused.sums, want.sums, 1e-5).await;
            assert_close(&format!("norm sums d={d} {row_of:?}"), fused.norm_sums, want.norm_sums, 1e-5).await;
        }
    }
}

/// The layouts of the ggml types: Q8_0/Q5_0, Q6_K, Q4_1/Q4_K, Q4_0, Q2_K, Q3_K and Q5_1/Q5_K.
const LAYOUTS: [QuantLayout; 7] = [
    QuantLayout::Q8_0,
    QuantLayout { bits: 8, group: 16, has_min: false },
    QuantLayout { bits: 4, group: 32, has_min: true },
    QuantLayout { bits: 4, group: 32, has_min: false },
    QuantLayout { bits: 4, group: 16, has_min: true },
    QuantLayout { bits: 4, group: 16, has_min: false },
    QuantLayout { bits: 8, group: 32, has_min: true },
];

/// A quantised matrix with every code of its range represented and varied scales and minimums; also returns
/// its values in storage order, computed on the host.
fn quant_matrix(layout: QuantLayout, rows: usize, cols: usize, transposed: bool, part_bytes: u64, seed: u64, device: &Device) -> (QuantMatrix, Vec<f32>) {
    let (codes, scales, mins) = quant_parts(layout, rows * cols, seed);
    let host = codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let g = i / layout.group;
            let scaled = scales[g] * f32::from(c);
            if layout.has_min { scaled + mins[g] } else { scaled }
        })
        .collect();
    let matrix =
        QuantMatrix::with_part_bytes(layout, &codes, &scales, &mins, [rows, cols], transposed, part_bytes, device).expect("a well-formed quantised matrix");
    (matrix, host)
}

/// `numel` codes covering their layout's range, with varied scales and minimums.
fn quant_parts(layout: QuantLayout, numel: usize, seed: u64) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
    let (low, span) = match (layout.bits, layout.has_min) {
        (8, _) => (-128.0, 256.0),
        (_, false) => (-8.0, 16.0),
        _ => (0.0, 16.0),
    };
    let codes: Vec<i8> = values(numel, seed).iter().map(|v| (low + (v + 1.0) / 2.0 * span).floor().clamp(low, low + span - 1.0) as i8).collect();
    let groups = numel / layout.group;
    let scales: Vec<f32> = values(groups, seed + 1).iter().map(|v| v.abs() * 0.05 + 0.001).collect();
    let mins: Vec<f32> = if layout.has_min { values(groups, seed + 5).iter().map(|v| v * 0.1).collect() } else { vec![] };
    (codes, scales, mins)
}

async fn quant_matches(device: &Device) {
    // Shapes of linear layers (576 → 1536 is SmolLM2-135M's MLP), in both storage orders, for every layout, in one
    // buffer and split into parts of a few KiB; and a matrix wider than one launch axis holds cubes (a large
    // vocabulary's unembedding).
    let mut cases: Vec<(QuantLayout, [usize; 2], bool, u64)> = vec![];
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        let shape = [[64, 96], [576, 300], [96, 1536]][i % 3];
        let part_bytes = if i % 2 == 0 { analog_kernels::MAX_PART_BYTES } else { 4096 };
        cases.extend([(layout, shape, false, part_bytes), (layout, shape, true, part_bytes)]);
    }
    cases.push((LAYOUTS[2], [16, 70_000], true, analog_kernels::MAX_PART_BYTES));
    for (i, (layout, [rows, cols], transposed, part_bytes)) in cases.into_iter().enumerate() {
        let seed = 3000 + i as u64 * 10;
        let (w, _) = quant_matrix(layout, rows, cols, transposed, part_bytes, seed, device);
        let what = format!("{layout:?} [{rows}, {cols}] transposed={transposed} in {} parts", w.parts().len());
        assert_close(&format!("dequantize {what}"), w.dequantize(), reference::dequantize(&w), 0.0).await;
        let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![0i32, (rows - 1) as i32, (rows / 2) as i32, 0], [4]), device);
        assert_close(&format!("rows_of {what}"), w.rows_of(ids.clone()), reference::dequantize(&w).select(0, ids), 0.0).await;
        let bias = tensor([cols], seed + 2, device);
        // 1 and 3 rows take the matrix-vector kernel, 9 the dequantise-then-matmul path.
        for (batch, pos) in [(1, 1), (1, 3), (3, 3)] {
            let x = tensor([batch, pos, rows], seed + 3, device);
            for bias in [None, Some(bias.clone())] {
                let case = format!("quant_linear {what} x=[{batch}, {pos}] bias={}", bias.is_some());
                let fused = analog_kernels::quant_linear(x.clone(), &w, bias.clone());
                // Sums of hundreds of products in another order: f32 rounding, relative to the output.
                assert_close(&case, fused, reference::quant_linear(x.clone(), &w, bias), 1e-4).await;
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn wgpu() -> Device {
    static WGPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    let device = WGPU.get_or_init(|| Device::wgpu_options().init().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)"));
    assert!(analog_kernels::fused_on(device), "the fused kernels run on {device:?}");
    device.clone()
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn fused_steering_matches_the_reference_on_wgpu() {
    pollster::block_on(steering_matches(&wgpu()));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn fused_norms_match_the_reference_on_wgpu() {
    pollster::block_on(norms_match(&wgpu()));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn fused_statistics_match_the_reference_on_wgpu() {
    pollster::block_on(statistics_match(&wgpu()));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn quantised_kernels_match_the_reference_on_wgpu() {
    pollster::block_on(quant_matches(&wgpu()));
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test]
async fn fused_kernels_match_the_reference_on_webgpu() {
    let device = Device::wgpu_options().init_async().await.expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    assert!(analog_kernels::fused_on(&device), "the fused kernels run on {device:?}");
    steering_matches(&device).await;
    norms_match(&device).await;
    statistics_match(&device).await;
    quant_matches(&device).await;
}

/// The reference against hand arithmetic, on burn's CPU backend (where it is what runs).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn reference_does_the_arithmetic() {
    let device = Device::flex();
    assert!(!analog_kernels::fused_on(&device));
    let x = Tensor::<3>::from_data(TensorData::new(vec![3.0f32, 4.0, 1.0, 0.0, 0.0, 2.0], [1, 3, 2]), &device);
    let v = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]), &device);
    let coefs = Tensor::<1>::from_data(TensorData::new(vec![2.0f32, -1.0], [2]), &device);
    // Positions 1.. only: row 0 untouched, rows 1 and 2 get (2, -1).
    let span = Span { offset: 0, positions: 1..usize::MAX };
    let added = pollster::block_on(read(reference::steer(x.clone(), v.clone(), Some(coefs.clone()), &span, false)));
    assert_eq!(added, vec![3.0, 4.0, 3.0, -1.0, 2.0, 1.0]);
    let kept = pollster::block_on(read(reference::steer(x, v, Some(coefs), &span, true)));
    // Row 1 was (1, 0), norm 1: (3, -1) rescaled to norm 1. Row 2 was (0, 2): (2, 1) rescaled to norm 2.
    let expect = [3.0, 4.0, 3.0 / 10f32.sqrt(), -1.0 / 10f32.sqrt(), 4.0 / 5f32.sqrt(), 2.0 / 5f32.sqrt()];
    assert!(kept.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-6), "{kept:?}");

    let acts = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 0.0, 3.0, 4.0, 0.0, 2.0, 9.0, 9.0], [2, 2, 2]), &device);
    let last = ClassStats::zeros(2, 2, &device).accumulate(acts.clone(), &[2, 1], &[1, 0], RowOf::Last);
    assert_eq!(pollster::block_on(read(last.sums)), vec![0.0, 2.0, 3.0, 4.0]);
    assert_eq!(pollster::block_on(read(last.norm_sums)), vec![2.0, 5.0]);
    let mean = ClassStats::zeros(1, 2, &device).accumulate(acts, &[2, 1], &[0, 0], RowOf::Mean);
    assert_eq!(pollster::block_on(read(mean.sums)), vec![2.0, 4.0]);
}

/// On burn's CPU backend a quantised matrix stays packed in host memory: it dequantises like the host, and its
/// products (integer dot products against 16-bit activations) match the dense product, for every layout.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn reference_dequantizes_like_the_host() {
    let device = Device::flex();
    for layout in LAYOUTS {
        for transposed in [false, true] {
            let (w, host) = quant_matrix(layout, 32, 32, transposed, 64, 7, &device);
            assert!(matches!(w.store, analog_kernels::QuantStore::Host(_)), "{layout:?}: host memory on the CPU");
            let got = pollster::block_on(read(reference::dequantize(&w)));
            for r in 0..32 {
                for c in 0..32 {
                    let stored = if transposed { c * 32 + r } else { r * 32 + c };
                    let want = host[stored];
                    assert!((got[r * 32 + c] - want).abs() <= 1e-6 * want.abs().max(1.0), "{layout:?} ({r}, {c}) transposed={transposed}");
                }
            }
            let x =
                Tensor::<3>::from_data(TensorData::new((0..3 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect::<Vec<f32>>(), [1, 3, 32]), &device);
            let dense = pollster::block_on(read(burn::tensor::module::linear(x.clone(), reference::dequantize(&w), None)));
            let packed = pollster::block_on(read(analog_kernels::quant_linear(x, &w, None)));
            let scale = dense.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let worst = dense.iter().zip(&packed).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-4 * scale, "{layout:?} transposed={transposed}: products differ by {worst} (scale {scale})");
            let tied = pollster::block_on(read(w.transpose().dequantize()));
            let direct = pollster::block_on(read(reference::dequantize(&w).transpose()));
            assert_eq!(tied, direct, "{layout:?} transpose shares storage");
            let rows = pollster::block_on(read(w.rows_of(Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 0], [2]), &device))));
            assert_eq!(&rows[..32], &got[3 * 32..4 * 32], "{layout:?} transposed={transposed}: rows_of");
        }
    }
    let err =
        |layout, codes: &[i8], scales: &[f32], mins: &[f32]| QuantMatrix::new(layout, codes, scales, mins, [8, 8], false, &device).expect_err("malformed");
    assert!(err(QuantLayout::Q8_0, &[0; 64], &[1.0], &[]).contains("one scale per group"));
    assert!(err(LAYOUTS[2], &[0; 64], &[1.0; 2], &[]).contains("one minimum"));
    assert!(err(LAYOUTS[2], &[16; 64], &[1.0; 2], &[0.0; 2]).contains("outside"));
    assert!(err(LAYOUTS[3], &[-9; 64], &[1.0; 2], &[]).contains("outside"));
    assert!(err(QuantLayout { bits: 5, group: 32, has_min: false }, &[0; 64], &[1.0; 2], &[]).contains("4 or 8 bits"));
}

/// A matrix built from runs of rows ([`QuantMatrix::from_rows`], as a model file is decoded) equals the one built
/// from all its codes at once, on the CPU (runs of about 4 MiB of codes); what the source refuses, or a run of the
/// wrong size, is an error.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn matrices_built_from_runs_of_rows_equal_those_built_at_once() {
    let device = Device::flex();
    let layout = LAYOUTS[2];
    // 8 Mi values: two runs and a bit on the CPU.
    let (rows, cols) = (4608, 2048);
    let (codes, scales, mins) = quant_parts(layout, rows * cols, 3);
    let whole = QuantMatrix::new(layout, &codes, &scales, &mins, [rows, cols], true, &device).expect("built at once");
    let mut calls = Vec::new();
    let mut source = |range: std::ops::Range<usize>| {
        calls.push(range.clone());
        let (values, groups) = (range.start * rows..range.end * rows, range.start * rows / layout.group..range.end * rows / layout.group);
        Ok(analog_kernels::RowCodes { codes: codes[values].to_vec(), scales: scales[groups.clone()].to_vec(), mins: mins[groups].to_vec() })
    };
    let runs = QuantMatrix::from_rows(layout, [rows, cols], true, &device, &mut source).expect("built from runs");
    assert!(calls.len() > 1, "one run: {calls:?}");
    assert_eq!(pollster::block_on(read(reference::dequantize(&runs))), pollster::block_on(read(reference::dequantize(&whole))));
    let refused = QuantMatrix::from_rows(layout, [rows, cols], true, &device, &mut |_| Err("block 3 is broken".to_string()));
    assert_eq!(refused.expect_err("refused").as_str(), "block 3 is broken");
    let short = QuantMatrix::from_rows(layout, [rows, cols], true, &device, &mut |_| Ok(analog_kernels::RowCodes::default()));
    assert!(short.expect_err("short").contains("need"), "a run without codes");
}
