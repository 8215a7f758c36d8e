//! Reading a model directory in the HF layout.

use std::collections::BTreeMap;
use std::path::Path;

use analog_core::Device;
use analog_core::{TextModel, WeightFiles};
use anyhow::{Context, Result, bail};

/// The bytes of every file a model directory holds.
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub tokenizer: Vec<u8>,
    pub weights: Weights,
}

pub enum Weights {
    Single(Vec<u8>),
    Sharded { index: Vec<u8>, shards: BTreeMap<String, Vec<u8>> },
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

impl ModelFiles {
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("model directory {} does not exist", dir.display());
        }
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let weights = if single.is_file() {
            Weights::Single(read(&single)?)
        } else if index_path.is_file() {
            let index = read(&index_path)?;
            let names: serde_json::Value = serde_json::from_slice(&index).context("model.safetensors.index.json is not JSON")?;
            let mut shards = BTreeMap::new();
            for file in names["weight_map"].as_object().context("model.safetensors.index.json has no weight_map")?.values() {
                let file = file.as_str().context("weight_map values must be file names")?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    bail!("shard name `{file}` must be a plain file name");
                }
                if !shards.contains_key(file) {
                    shards.insert(file.to_string(), read(&dir.join(file))?);
                }
            }
            Weights::Sharded { index, shards }
        } else {
            bail!("{} has neither model.safetensors nor model.safetensors.index.json", dir.display());
        };
        Ok(Self { config: read(&dir.join("config.json"))?, tokenizer: read(&dir.join("tokenizer.json"))?, weights })
    }

    pub fn weight_files(&self) -> WeightFiles<'_> {
        match &self.weights {
            Weights::Single(bytes) => WeightFiles::Single(bytes),
            Weights::Sharded { index, shards } => WeightFiles::Sharded { index, shards: shards.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect() },
        }
    }

    /// Bytes of the weight files (shards included, index excluded).
    pub fn weight_bytes(&self) -> usize {
        match &self.weights {
            Weights::Single(bytes) => bytes.len(),
            Weights::Sharded { shards, .. } => shards.values().map(Vec::len).sum(),
        }
    }

    pub fn load(&self, device: &Device) -> analog_core::Result<TextModel> {
        TextModel::from_bytes(&self.config, &self.weight_files(), &self.tokenizer, device)
    }
}

/// sha256 (hex) of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = read(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
