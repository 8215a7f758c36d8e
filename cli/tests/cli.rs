//! The `analog` command's contract: JSON shapes, and errors as `error:` lines with exit code 2.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn analog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_analog")).args(args).output().expect("run analog")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = analog(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn reference(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(name).join("reference.json")).unwrap()).unwrap()
}

#[test]
fn info_reports_the_architecture() {
    let dir = fixture("gpt_neox");
    let info = json(&["info", "--model", dir.to_str().unwrap(), "--json"]);
    assert_eq!(info["architecture"], "gpt_neox");
    assert_eq!(info["n_layers"], 2);
    assert_eq!(info["d_model"], 32);
    assert_eq!(info["vocab_size"], 320);
    assert_eq!(info["n_params"], reference("gpt_neox")["n_params"]);
}

#[test]
fn logits_generate_and_activations_match_the_reference() {
    let dir = fixture("qwen2");
    let dir = dir.to_str().unwrap();
    let r = reference("qwen2");
    let prompt = r["prompt"].as_str().unwrap();
    let logits = json(&["logits", "--model", dir, "--prompt", prompt, "--json"]);
    assert_eq!(logits["input_ids"], r["input_ids"]);
    let got: Vec<f64> = serde_json::from_value(logits["logits"].clone()).unwrap();
    let want: Vec<f64> = serde_json::from_value(r["logits"].clone()).unwrap();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3));

    let n = r["greedy_ids"].as_array().unwrap().len().to_string();
    let generated = json(&["generate", "--model", dir, "--prompt", prompt, "--max-tokens", &n, "--temperature", "0", "--no-stop", "--json"]);
    assert_eq!(generated["ids"], r["greedy_ids"]);
    assert_eq!(generated["input_ids"], r["input_ids"]);
    assert!(generated["text"].is_string());

    let acts = json(&["activations", "--model", dir, "--prompt", prompt, "--hook", "blocks.1.hook_resid_post", "--json"]);
    assert_eq!(acts["hook"], "blocks.1.hook_resid_post");
    let pos = r["input_ids"].as_array().unwrap().len();
    assert_eq!(acts["shape"], serde_json::json!([pos, 32]));
    assert_eq!(acts["values"].as_array().unwrap().len(), pos);
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let dir = fixture("gpt2");
    let args = [
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "The cat",
        "--max-tokens",
        "12",
        "--temperature",
        "1.0",
        "--seed",
        "5",
        "--no-stop",
        "--json",
    ];
    assert_eq!(json(&args)["ids"], json(&args)["ids"]);
}

fn assert_error(args: &[&str], needle: &str) {
    let out = analog(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
}

#[test]
fn bad_input_is_an_error_line_and_exit_code_2() {
    let good = fixture("llama");
    let good = good.to_str().unwrap();
    assert_error(&["info", "--model", "/nonexistent/model", "--json"], "does not exist");
    assert_error(&["activations", "--model", good, "--prompt", "hi", "--hook", "blocks.9.hook_resid_post", "--json"], "layer 9");
    assert_error(&["activations", "--model", good, "--prompt", "hi", "--hook", "blocks.0.resid", "--json"], "unknown hook point");
    assert_error(&["generate", "--model", good, "--prompt", "hi", "--max-tokens", "100000", "--json"], "context is 128");
    assert_error(&["logits", "--model", good, "--device", "tpu", "--prompt", "x"], "unknown device");

    // A checkpoint with a tensor of the wrong shape names the tensor and both shapes.
    let tmp = std::env::temp_dir().join(format!("analog-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("gpt2").join(f), tmp.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(fixture("gpt2").join("config.json")).unwrap().replace("\"n_inner\": null", "\"n_inner\": 64");
    std::fs::write(tmp.join("config.json"), config).unwrap();
    assert_error(&["info", "--model", tmp.to_str().unwrap()], "transformer.h.0.mlp.c_fc.weight` has shape [32, 128], but the config implies [32, 64]");
    std::fs::write(tmp.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    assert_error(&["info", "--model", tmp.to_str().unwrap()], "not a valid safetensors file");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn extract_sweep_steer_and_export_round_trip() {
    let dir = fixture("gpt2");
    let dir = dir.to_str().unwrap();
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/datasets/sentiment.jsonl");
    let pairs = pairs.to_str().unwrap();
    let tmp = std::env::temp_dir().join(format!("analog-cli-steer-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let vector = tmp.join("v.json");
    let vector = vector.to_str().unwrap();
    let out = analog(&["extract", "--model", dir, "--pairs", pairs, "--layer", "all", "--method", "pca", "--out", vector]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let sweep = json(&["sweep", "--model", dir, "--pairs", pairs, "--json"]);
    assert_eq!(sweep["rows"].as_array().unwrap().len(), 2);
    assert_eq!(sweep["n_pairs"], 46);

    let logits = |steer: &[&str]| -> Vec<f64> {
        let mut args = vec!["logits", "--model", dir, "--prompt", "The cat sat", "--json"];
        args.extend_from_slice(steer);
        serde_json::from_value(json(&args)["logits"].clone()).unwrap()
    };
    let base = logits(&[]);
    let zero = format!("{vector}:0");
    let two = format!("{vector}:2");
    assert_eq!(logits(&["--steer", &zero]), base, "coefficient 0 changes nothing");
    assert_ne!(logits(&["--steer", &two]), base, "coefficient 2 changes the logits");

    let eval = json(&[
        "steer-eval",
        "--model",
        dir,
        "--vector",
        vector,
        "--coefs=-2,0,2",
        "--target",
        " cat",
        "--counter",
        " dog",
        "--lexicon",
        "cat",
        "--samples",
        "1",
        "--sample-tokens",
        "4",
        "--json",
    ]);
    let rows = eval["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["steered"]["kl"], 0.0);

    let gguf = tmp.join("v.gguf");
    let back = tmp.join("back.json");
    assert!(analog(&["vector", "export", "--vector", vector, "--format", "gguf", "--out", gguf.to_str().unwrap()]).status.success());
    assert!(analog(&["vector", "import", "--gguf", gguf.to_str().unwrap(), "--out", back.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(vector).unwrap(), std::fs::read(&back).unwrap(), "GGUF round trip is exact");

    std::fs::write(tmp.join("bad.jsonl"), "{\"positive\": \"a\", \"negative\": \"b\"}\n{\"positive\": 3}\n").unwrap();
    assert_error(&["extract", "--model", dir, "--pairs", tmp.join("bad.jsonl").to_str().unwrap(), "--layer", "0", "--out", vector], "line 2");
    assert_error(&["logits", "--model", dir, "--prompt", "x", "--steer", "nofile.json:abc"], "is not a number");
    std::fs::remove_dir_all(&tmp).ok();
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A local stand-in for a lab's web server: serves files under `root` on 127.0.0.1 for `requests`
/// requests, then stops. Returns the base URL.
fn serve(root: PathBuf, requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let (status, body) = match std::fs::read(root.join(&path)) {
                Ok(body) => ("200 OK", body),
                Err(_) => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    base
}

#[test]
fn report_validate_exit_codes_name_the_path() {
    let valid = repo_file("tests/fixtures/reports/valid/fixture-lab.json");
    let out = analog(&["report", "validate", valid.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid: fixture-lab"));
    let invalid = repo_file("tests/fixtures/reports/invalid/vector-dimension.json");
    assert_error(&["report", "validate", invalid.to_str().unwrap()], "$.interventions[0].vector.values: expected 4 values");
    assert_error(&["report", "validate", "no-such-report.json"], "cannot read");
    let schema = analog(&["report", "schema"]);
    assert_eq!(schema.stdout, std::fs::read(repo_file("public/schema/transfer-report.v1.json")).unwrap());
}

#[test]
fn report_export_then_compare_through_a_local_server() {
    let dir = fixture("gpt2");
    let dir = dir.to_str().unwrap();
    let tmp = std::env::temp_dir().join(format!("analog-cli-report-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("datasets")).unwrap();
    let pairs = repo_file("public/datasets/sentiment.jsonl");
    let report_path = tmp.join("measured.json");
    let out = analog(&[
        "report",
        "export",
        "--model",
        dir,
        "--pairs",
        pairs.to_str().unwrap(),
        "--layer",
        "1",
        "--coefs=-2,0,2",
        "--samples",
        "1",
        "--sample-tokens",
        "4",
        "--id",
        "gpt2-fixture",
        "--out",
        report_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(analog(&["report", "validate", report_path.to_str().unwrap()]).status.success());
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["kind"], "measurement");
    assert!(report.get("frontier").is_none());
    assert_eq!(report["interventions"][0]["results"].as_array().unwrap().len(), 3);

    // Move the pairs and the vector out of the report, onto the stand-in server.
    std::fs::copy(&pairs, tmp.join("datasets/sentiment.jsonl")).unwrap();
    let values = report["interventions"][0]["vector"]["values"].take();
    let vector_file = serde_json::json!({
        "format": "analog-steering-vector/v1",
        "model": { "id": "gpt2", "weights_sha256": report["analog"]["weights_sha256"], "d_model": report["analog"]["d_model"] },
        "hook": "resid_post", "method": "mean-diff", "aggregation": "last",
        "pairs": { "sha256": report["interventions"][0]["pairs"]["sha256"], "n_pairs": 46 },
        "directions": { "1": { "norm": report["interventions"][0]["vector"]["norm"], "mean_resid_norm": 1.0, "direction": values } }
    });
    let vector_bytes = serde_json::to_vec(&vector_file).unwrap();
    std::fs::write(tmp.join("vector.json"), &vector_bytes).unwrap();
    let base = serve(tmp.clone(), 3);
    let iv = &mut report["interventions"][0];
    iv["pairs"].as_object_mut().unwrap().remove("inline");
    iv["pairs"]["url"] = "datasets/sentiment.jsonl".into();
    iv["vector"].as_object_mut().unwrap().remove("values");
    iv["vector"]["url"] = format!("{base}/vector.json").into();
    iv["vector"]["sha256"] = sha256_hex(&vector_bytes).into();
    std::fs::write(tmp.join("remote.json"), serde_json::to_vec_pretty(&report).unwrap()).unwrap();

    // The report itself is fetched too; `datasets/...` resolves against its URL.
    let cmp = json(&["report", "compare", "--model", dir, "--report", &format!("{base}/remote.json"), "--json"]);
    let iv = &cmp["interventions"][0];
    assert!(iv["vector_cosine"].as_f64().unwrap() > 0.9999, "{iv}");
    assert!(iv["max_abs_diff"].as_f64().unwrap() < 1e-4, "{iv}");
    assert_eq!(cmp["weights_match"], true);
    assert_eq!(iv["verdicts"][2]["outcome"], "not_applicable");

    // A pair file that is not the declared one is refused.
    std::fs::write(tmp.join("datasets/sentiment.jsonl"), "{\"positive\": \"a\", \"negative\": \"b\"}\n{\"positive\": \"c\", \"negative\": \"d\"}\n").unwrap();
    assert_error(&["report", "compare", "--model", dir, "--report", tmp.join("remote.json").to_str().unwrap()], "not the set the report was measured on");
    std::fs::remove_dir_all(&tmp).ok();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
