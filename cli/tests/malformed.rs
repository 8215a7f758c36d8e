//! The malformed-input corpus (`tests/fixtures/malformed`, written by its `generate.py`): every case
//! makes `analog` fail with exit code 2 and an `error:` line naming the problem (the phrase in
//! `expected.json`), within 5 s, without a panic, and under a 2 GiB address-space limit, so no
//! allocation may follow a size a file declares before it is checked against the bytes.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A model directory: the qwen2 fixture with the case's files laid over it.
fn model_dir(case: &Path, scratch: &Path) -> PathBuf {
    let dir = scratch.join(case.file_name().expect("case name"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("qwen2").join(name), dir.join(name)).expect("copy the base model");
    }
    for entry in std::fs::read_dir(case).expect("case dir") {
        let path = entry.expect("case file").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("file name"))).expect("overlay");
    }
    dir
}

/// The `analog` arguments that read `case`.
fn command(case: &str, path: &Path, scratch: &Path) -> Vec<String> {
    let qwen2 = fixtures().join("qwen2").display().to_string();
    let path_s = path.display().to_string();
    let out = scratch.join("out.json").display().to_string();
    let args: Vec<&str> = match case.split('/').next() {
        Some("model") => {
            return ["logits", "--model", &model_dir(path, scratch).display().to_string(), "--prompt", "Once upon a time"].map(String::from).to_vec();
        }
        Some("report") => vec!["report", "validate", &path_s],
        Some("pairs") => vec!["extract", "--model", &qwen2, "--pairs", &path_s, "--layer", "1", "--out", &out],
        Some("vector") => return ["logits", "--model", &qwen2, "--prompt", "Once upon a time", "--steer", &format!("{path_s}:4")].map(String::from).to_vec(),
        Some("gguf") => vec!["vector", "import", "--gguf", &path_s, "--out", &out],
        Some("gguf-model") => vec!["generate", "--model", &path_s, "--chat", "Hi", "--max-tokens", "2"],
        other => panic!("unknown corpus folder {other:?}"),
    };
    args.into_iter().map(String::from).collect()
}

#[test]
fn every_malformed_input_is_refused_clearly_quickly_and_without_a_panic() {
    let corpus = fixtures().join("malformed");
    let expected: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(corpus.join("expected.json")).expect("expected.json")).expect("expected.json is JSON");
    let scratch = std::env::temp_dir().join(format!("analog-malformed-{}", std::process::id()));
    let mut failures = Vec::new();
    for (case, phrase) in &expected {
        let path = corpus.join(case);
        assert!(path.exists(), "{case}: not in the corpus (run tests/fixtures/malformed/generate.py)");
        let args = command(case, &path, &scratch);
        // `ulimit -v` bounds the address space: a declared size trusted before it is checked aborts.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_analog"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run analog");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
        let problem = match status {
            None => Some("took longer than 5 s".to_string()),
            Some(s) if s.code() != Some(2) => Some(format!("exit status {s}")),
            Some(_) if stderr.contains("internal error") || stderr.contains("panicked") => Some("panicked".into()),
            Some(_) if !stderr.lines().any(|l| l.starts_with("error:")) => Some("no `error:` line".into()),
            Some(_) if !stderr.contains(phrase.as_str()) => Some(format!("the error does not say {phrase:?}")),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            failures.push(format!("{case}: {problem}\n  stderr: {}", stderr.trim()));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), expected.len(), failures.join("\n"));
}

/// Every file in the corpus has an expectation, so a new case cannot be forgotten.
#[test]
fn the_corpus_and_its_expectations_agree() {
    let corpus = fixtures().join("malformed");
    let expected: BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(corpus.join("expected.json")).expect("expected.json")).expect("JSON");
    for folder in ["model", "report", "pairs", "vector", "gguf", "gguf-model"] {
        for entry in std::fs::read_dir(corpus.join(folder)).expect("corpus folder") {
            let name = format!("{folder}/{}", entry.expect("entry").file_name().to_string_lossy());
            assert!(expected.contains_key(&name), "{name} has no entry in expected.json");
        }
    }
}
