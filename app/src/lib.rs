//! Analog Explorer's browser app: a Leptos page (`ui`) and a Web Worker (`worker`) that owns the
//! model; they talk through the serde messages in `protocol`.

pub mod protocol;
pub mod saved;
pub mod scale;

#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod worker;
