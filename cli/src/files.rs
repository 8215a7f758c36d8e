//! Reading a model from disk: a directory in the HF layout, or a GGUF file (or a directory
//! holding one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use analog_core::Device;
use analog_core::{ChatTemplate, TextModel, WeightFiles};
use anyhow::{Context, Result, bail};

/// The bytes of every file a model needs.
pub struct ModelFiles {
    pub format: Format,
    /// `tokenizer_config.json` or `chat_template.jinja` beside the model, when present.
    chat_template: Option<ChatTemplate>,
}

pub enum Format {
    /// config.json, tokenizer.json and safetensors weights.
    Hf { config: Vec<u8>, tokenizer: Vec<u8>, weights: Weights },
    /// One `.gguf` file; a `tokenizer.json` beside it replaces the tokenizer it describes.
    Gguf { bytes: Vec<u8>, tokenizer: Option<Vec<u8>> },
}

pub enum Weights {
    Single(Vec<u8>),
    Sharded { index: Vec<u8>, shards: BTreeMap<String, Vec<u8>> },
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    if path.is_file() { read(path).map(Some) } else { Ok(None) }
}

fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The one `.gguf` file of a directory without safetensors weights.
pub fn gguf_in(dir: &Path) -> Result<Option<PathBuf>> {
    if dir.join("model.safetensors").is_file() || dir.join("model.safetensors.index.json").is_file() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_gguf(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{} holds several .gguf files ({}); pass one with --model",
            dir.display(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl ModelFiles {
    /// Reads `path`: an HF model directory, a `.gguf` file, or a directory holding one `.gguf`.
    pub fn read(path: &Path) -> Result<Self> {
        let gguf = if path.is_file() && is_gguf(path) {
            Some(path.to_path_buf())
        } else if path.is_dir() {
            gguf_in(path)?
        } else if path.is_file() {
            bail!("{} is a file but not a .gguf model; pass a .gguf file or an HF model directory", path.display());
        } else {
            bail!("model directory {} does not exist", path.display());
        };
        let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
        let format = match gguf {
            Some(file) => Format::Gguf { bytes: read(&file)?, tokenizer: read_if_present(&dir.join("tokenizer.json"))? },
            None => Format::Hf { weights: Self::read_weights(dir)?, config: read(&dir.join("config.json"))?, tokenizer: read(&dir.join("tokenizer.json"))? },
        };
        let chat_template = match (read_if_present(&dir.join("chat_template.jinja"))?, read_if_present(&dir.join("tokenizer_config.json"))?) {
            (Some(source), config) => {
                let source = String::from_utf8(source).context("chat_template.jinja is not UTF-8")?;
                let token = |key: &str| {
                    config
                        .as_deref()
                        .and_then(|c| serde_json::from_slice::<serde_json::Value>(c).ok())
                        .and_then(|c| c[key].as_str().map(String::from))
                        .unwrap_or_default()
                };
                Some(ChatTemplate::new(&source, &token("bos_token"), &token("eos_token"))?)
            }
            (None, Some(config)) => ChatTemplate::from_tokenizer_config(&config)?,
            (None, None) => None,
        };
        Ok(Self { format, chat_template })
    }

    fn read_weights(dir: &Path) -> Result<Weights> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        Ok(if single.is_file() {
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
            bail!("{} has neither model.safetensors, model.safetensors.index.json nor a .gguf file", dir.display());
        })
    }

    pub fn weight_files(&self) -> WeightFiles<'_> {
        match &self.format {
            Format::Hf { weights: Weights::Single(bytes), .. } => WeightFiles::Single(bytes),
            Format::Hf { weights: Weights::Sharded { index, shards }, .. } => {
                WeightFiles::Sharded { index, shards: shards.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect() }
            }
            Format::Gguf { bytes, .. } => WeightFiles::Gguf(bytes),
        }
    }

    /// Bytes of the weight files (shards included, index excluded; a GGUF file whole).
    pub fn weight_bytes(&self) -> usize {
        match &self.format {
            Format::Hf { weights: Weights::Single(bytes), .. } | Format::Gguf { bytes, .. } => bytes.len(),
            Format::Hf { weights: Weights::Sharded { shards, .. }, .. } => shards.values().map(Vec::len).sum(),
        }
    }

    pub fn load(&self, device: &Device) -> analog_core::Result<TextModel> {
        let model = match &self.format {
            Format::Hf { config, tokenizer, .. } => TextModel::from_bytes(config, &self.weight_files(), tokenizer, device)?,
            Format::Gguf { bytes, tokenizer } => TextModel::from_gguf(bytes, tokenizer.as_deref(), device)?,
        };
        Ok(model.with_chat_template(self.chat_template.clone()))
    }
}

/// sha256 (hex) of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = read(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
