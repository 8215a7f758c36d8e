//! Helpers shared by the cross-crate tests: fixture loading and backends.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use analog_core::{Device, TextModel, WeightFiles, device};
use serde::Deserialize;

/// The fixture directory `tests/fixtures/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// `../shared/models/<name>` beside the repository, when this machine has it.
pub fn shared_model(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/models").join(name);
    dir.join("config.json").is_file().then_some(dir)
}

/// What `tests/fixtures/generate.py` recorded from transformers.
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub architecture: String,
    pub n_params: usize,
    pub prompt: String,
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub greedy_ids: Vec<u32>,
    pub activations: BTreeMap<String, Vec<Vec<f32>>>,
    pub batch: Vec<BatchReference>,
}

#[derive(Debug, Deserialize)]
pub struct BatchReference {
    pub prompt: String,
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
}

pub fn reference(name: &str) -> Reference {
    let text = std::fs::read(fixture_dir(name).join("reference.json")).expect("reference.json");
    serde_json::from_slice(&text).expect("reference.json parses")
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
}

/// The weight files of a model directory, as bytes: `model.safetensors`, or the index and its shards.
pub enum DirWeights {
    Single(Vec<u8>),
    Sharded { index: Vec<u8>, shards: BTreeMap<String, Vec<u8>> },
}

impl DirWeights {
    pub fn read(dir: &Path) -> Self {
        if dir.join("model.safetensors").is_file() {
            return Self::Single(read(dir, "model.safetensors"));
        }
        let index = read(dir, "model.safetensors.index.json");
        let names: serde_json::Value = serde_json::from_slice(&index).expect("index json");
        let shards = names["weight_map"]
            .as_object()
            .expect("weight_map")
            .values()
            .map(|f| {
                let f = f.as_str().expect("file name");
                (f.to_string(), read(dir, f))
            })
            .collect();
        Self::Sharded { index, shards }
    }

    pub fn files(&self) -> WeightFiles<'_> {
        match self {
            Self::Single(bytes) => WeightFiles::Single(bytes),
            Self::Sharded { index, shards } => WeightFiles::Sharded { index, shards: shards.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect() },
        }
    }

    /// Bytes of the weight files (shards included, index excluded).
    pub fn byte_len(&self) -> usize {
        match self {
            Self::Single(bytes) => bytes.len(),
            Self::Sharded { shards, .. } => shards.values().map(Vec::len).sum(),
        }
    }
}

/// Loads a model directory (single file or shards) on `device`.
pub fn load_dir(dir: &Path, device: &Device) -> analog_core::Result<TextModel> {
    TextModel::from_bytes(&read(dir, "config.json"), &DirWeights::read(dir).files(), &read(dir, "tokenizer.json"), device)
}

/// The backends every reference test runs on.
pub fn backends() -> Vec<(&'static str, Device)> {
    static WGPU: OnceLock<Device> = OnceLock::new();
    let wgpu = WGPU.get_or_init(|| device::wgpu().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)"));
    vec![("cpu", device::cpu()), ("wgpu", wgpu.clone())]
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
