//! `cargo xtask <task>`: the project's entry points.
//!
//! - `test`: every test: the native workspace (CPU and wgpu via Mesa lavapipe), then the
//!   wasm tests in headless Chromium (WebGPU through SwiftShader, and the CPU backend).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.current_dir(root()).status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test() -> Result<()> {
    run(cargo().args(["test", "--release", "--workspace"]))?;
    // wasm-bindgen-test-runner reads core/webdriver.json: Debian's Chromium with WebGPU exposed.
    run(cargo()
        .args(["test", "--release", "-p", "analog-core", "--target", "wasm32-unknown-unknown", "--test", "browser"])
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"))?;
    Ok(())
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "test" => test(),
        _ => bail!("usage: cargo xtask test"),
    }
}
