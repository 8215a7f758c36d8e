//! `analog-lab`: the lab's side of the story. A seeded story corpus and its grammar validator, a BPE
//! tokenizer trained on it, a `llama`-family frontier model trained with burn's autodiff on the CPU,
//! its analog distilled at a few percent of the size, and the transfer study whose measurements
//! become the published reports.

pub mod corpus;
pub mod error;
pub mod formats;
pub mod mapper;
pub mod patching;
pub mod pipeline;
pub mod publish;
pub mod study;
pub mod sweep;
pub mod tokenizer;
pub mod train;
pub mod transfer;

pub use error::{Error, Result};
