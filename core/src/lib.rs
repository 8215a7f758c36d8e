//! `analog-core`: load HF-format language models from bytes and run them on burn, on the CPU or
//! on WebGPU, with TransformerLens-named hooks on the residual stream.
//!
//! No I/O happens here: the CLI and the browser app read or fetch files and pass the bytes in.
//!
//! ```no_run
//! # async fn demo(config: &[u8], weights: &[u8], tokenizer: &[u8]) -> analog_core::Result<()> {
//! use analog_core::{GenerateOptions, Hooks, Sampling, TextModel, WeightFiles, device};
//! let model = TextModel::from_bytes(config, &WeightFiles::Single(weights), tokenizer, &device::cpu())?;
//! let ids = model.encode("Once upon a time")?;
//! let options = GenerateOptions { max_new_tokens: 20, sampling: Sampling::default(), stop_at_eos: true };
//! let out = model.generate(&ids, &options, &mut Hooks::new(), &mut |_| true).await?;
//! println!("{}", out.text);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod chat;
pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod ggml;
pub mod gguf;
pub mod hooks;
pub mod lens;
pub mod model;
pub mod progress;
pub mod quant;
pub mod report;
pub mod steering;
pub mod tokenizer;
mod weight_map;
pub mod weights;

pub use burn::tensor::Device;
pub use chat::{ChatMessage, ChatTemplate};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};
pub use generate::{Decoder, GenerateOptions, Generation, LoadStage, Sampler, Sampling, StopReason, TextModel, TokenEvent, read_f32};
pub use hooks::{Edit, EditOp, HookPoint, Hooks, Positions};
pub use model::{KvCache, Model};
pub use progress::Progress;
pub use tokenizer::{TokenText, TokenTexts, Tokenizer};
pub use weights::WeightFiles;
