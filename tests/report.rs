//! Transfer reports: the published schema matches the types, examples validate and serialise
//! byte-for-byte, every invalid report is rejected at the right JSON path, arbitrary JSON never
//! panics the validator, and the comparison measures what a report claims.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use analog_core::device;
use analog_core::report::{self, FrontierModel, MetricName, Outcome, ReportKind, TransferReport, json_schema, parse};
use analog_core::steering::VectorModel;
use analog_tests::{load_dir, shared_model};
use proptest::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Published reports and the valid fixtures.
fn valid_reports() -> Vec<PathBuf> {
    let mut files = json_files(&repo().join("public/reports"));
    files.extend(json_files(&repo().join("tests/fixtures/reports/valid")));
    assert!(files.len() >= 2, "expected example reports, found {files:?}");
    files
}

fn schema_validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join("public/schema/transfer-report.v1.json")).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the published schema is a valid JSON Schema")
}

#[test]
fn published_schema_is_generated_from_the_types() {
    let published = std::fs::read_to_string(repo().join("public/schema/transfer-report.v1.json")).unwrap();
    assert!(
        published == json_schema(),
        "public/schema/transfer-report.v1.json is stale: run `cargo run --release -p analog-cli -- report schema --out public/schema/transfer-report.v1.json`"
    );
}

#[test]
fn examples_validate_and_serialise_deterministically() {
    let validator = schema_validator();
    for path in valid_reports() {
        let text = std::fs::read_to_string(&path).unwrap();
        let report = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Snapshot: the committed bytes are exactly what serialisation produces, twice over.
        assert_eq!(report.to_json(), text, "{} is not in canonical form", path.display());
        assert_eq!(parse(report.to_json().as_bytes()).unwrap(), report);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} fails the published JSON Schema: {errors:?}", path.display());
    }
}

#[test]
fn example_reports_are_labelled_as_examples() {
    for path in json_files(&repo().join("public/reports/examples")) {
        let report = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(report.kind, ReportKind::Example, "{}", path.display());
        assert!(report.publisher.name.contains("example"), "{}", path.display());
    }
}

#[test]
fn invalid_reports_are_rejected_at_the_right_path() {
    let dir = repo().join("tests/fixtures/reports/invalid");
    let expected: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 20);
    for (name, want) in &expected {
        let bytes = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
        let errors = parse(&bytes).expect_err(name).0;
        assert!(
            errors.iter().any(|e| e.path == want["path"] && e.message.contains(&want["message"])),
            "{name}: expected `{}: …{}…`, got {errors:?}",
            want["path"],
            want["message"]
        );
    }
    // The published schema alone catches the structural ones.
    let validator = schema_validator();
    for name in [
        "wrong-version",
        "missing-provenance",
        "unknown-field",
        "bad-sha256",
        "string-for-number",
        "unknown-method",
        "empty-interventions",
        "similarity-out-of-range",
        "not-an-object",
    ] {
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        assert!(!validator.is_valid(&value), "{name} passes the JSON Schema");
    }
}

#[test]
fn size_and_depth_limits_hold() {
    let big = vec![b' '; report::MAX_REPORT_BYTES + 1];
    assert!(parse(&big).unwrap_err().to_string().contains("10 MB"));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(deep.as_bytes()).is_err());
    let deep_object = format!("{{\"schema_version\":\"1.0\",\"id\":{}{}}}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert!(parse(deep_object.as_bytes()).is_err());
}

fn base_report() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(repo().join("tests/fixtures/reports/valid/fixture-lab.json")).unwrap()).unwrap()
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9 ._-]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("1.0")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,16}", inner, 0..8).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the node reached by `choices` (one index per level) with `replacement`.
fn mutate(value: &mut serde_json::Value, choices: &[usize], replacement: serde_json::Value) {
    let Some((&c, rest)) = choices.split_first() else {
        *value = replacement;
        return;
    };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(c % map.len()).cloned().unwrap();
            mutate(map.get_mut(&key).unwrap(), rest, replacement);
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[c % len], rest, replacement);
        }
        _ => *value = replacement,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        let _ = parse(value.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_reports_are_rejected_or_round_trip(choices in prop::collection::vec(any::<usize>(), 0..7), replacement in arbitrary_json()) {
        let mut value = base_report();
        mutate(&mut value, &choices, replacement);
        if let Ok(report) = parse(value.to_string().as_bytes()) {
            // Whatever is accepted is valid by every rule and survives a round trip.
            prop_assert!(report::validate::check(&report).is_empty());
            prop_assert_eq!(parse(report.to_json().as_bytes()).unwrap(), report);
        }
    }
}

/// The stories260k example turned into a lab-style report whose frontier curves are exactly
/// `ratio ×` the reported analog effect: the comparison must recover the ratio.
fn with_frontier_curves(mut report: TransferReport, ratio: f32) -> TransferReport {
    report.kind = ReportKind::Lab;
    report.frontier = Some(FrontierModel { id: "redacted".into(), n_params: None, n_layers: report.analog.n_layers, d_model: None });
    for iv in &mut report.interventions {
        iv.frontier_layer = Some(iv.analog_layer);
        for row in &mut iv.results {
            let analog = row.analog.clone().unwrap();
            let mut mapped = analog.clone();
            mapped.logit_diff_shift = analog.logit_diff_shift.map(|v| v * ratio);
            row.frontier_native = Some(analog);
            row.frontier_mapped = Some(mapped);
        }
    }
    report
}

#[test]
fn comparison_reproduces_the_example_and_recovers_a_transfer_ratio() {
    let Some(dir) = shared_model("stories260k") else {
        eprintln!("skipped: ../shared/models/stories260k is not on this machine");
        return;
    };
    let model = load_dir(&dir, &device::cpu()).unwrap();
    let example = parse(&std::fs::read(repo().join("public/reports/examples/stories260k-sentiment.example.json")).unwrap()).unwrap();
    let local = VectorModel { id: "stories260k".into(), weights_sha256: example.analog.weights_sha256.clone(), d_model: 64 };
    let report = with_frontier_curves(example, 0.6);
    assert!(report::validate::check(&report).is_empty());
    let inputs: Vec<_> = report
        .interventions
        .iter()
        .map(|iv| report::InterventionInputs { pairs: iv.inline_pairs().unwrap().unwrap(), vector: iv.vector_from_bytes(None).unwrap() })
        .collect();
    let cmp = pollster::block_on(report::compare(&model, &local, &report, &inputs, &mut analog_core::progress::Silent)).unwrap();
    assert!(cmp.weights_match);
    let iv = &cmp.interventions[0];
    assert_eq!(iv.effect_metric, MetricName::LogitDiffShift);
    assert!(iv.vector_cosine > 0.9999, "re-extraction gives the published vector: {}", iv.vector_cosine);
    assert!(iv.max_abs_diff.unwrap() < 1e-4, "same weights, same code: {:?}", iv.max_abs_diff);
    assert!((iv.transfer_ratio.unwrap() - 0.6).abs() < 1e-4, "{:?}", iv.transfer_ratio);
    assert!(iv.local_vs_frontier_mapped.pearson.unwrap() > 0.999);
    let outcome = |check: &str| iv.verdicts.iter().find(|v| v.check == check).unwrap().outcome;
    assert_eq!(outcome("failure_signature"), Outcome::Fail, "60% of the native effect is the failure signature");
    assert_eq!(outcome("transfer_degradation"), Outcome::Fail);
    assert_eq!(outcome("vector_reproduced"), Outcome::Pass);

    // A published vector that is not what the pairs give is caught.
    let mut tampered = inputs.clone();
    tampered[0].vector.iter_mut().for_each(|x| *x = -*x);
    let cmp = pollster::block_on(report::compare(&model, &local, &report, &tampered, &mut analog_core::progress::Silent)).unwrap();
    assert!(cmp.interventions[0].vector_cosine < -0.999);
    assert_eq!(cmp.interventions[0].verdicts[0].outcome, Outcome::Fail);

    // The wrong model is refused with a clear message.
    let gpt2 = load_dir(&analog_tests::fixture_dir("gpt2"), &device::cpu()).unwrap();
    let err = pollster::block_on(report::compare(&gpt2, &local, &report, &inputs, &mut analog_core::progress::Silent)).unwrap_err();
    assert!(err.to_string().contains("load `stories260k`"), "{err}");
}

/// The study sections' verdicts on the fixture: the mappers beat mean-ablation, the analog refuses
/// as often as the frontier, the mapped refusal direction moves the frontier 67% as far as its own
/// (below the paper's 70% bar), and the student closes a quarter of the gap.
#[test]
fn study_sections_are_judged_against_the_thresholds() {
    let report = parse(&std::fs::read(repo().join("tests/fixtures/reports/valid/fixture-lab-study.json")).unwrap()).unwrap();
    let verdicts = report::section_verdicts(&report);
    let outcome = |prefix: &str| verdicts.iter().filter(|v| v.check.starts_with(prefix)).map(|v| v.outcome).collect::<Vec<_>>();
    assert_eq!(outcome("mapper_beats_mean_ablation"), vec![Outcome::Pass, Outcome::Pass]);
    assert_eq!(outcome("refusal_present_in_analog"), vec![Outcome::Pass]);
    assert_eq!(outcome("refusal_native_beats_random"), vec![Outcome::Pass]);
    assert_eq!(outcome("refusal_direction_transfers"), vec![Outcome::Fail]);
    let transfer = verdicts.iter().find(|v| v.check == "refusal_direction_transfers").unwrap();
    assert!((transfer.value.unwrap() - 0.25 / 0.375).abs() < 1e-9);
    assert_eq!(outcome("frontier_reconstruction"), vec![Outcome::Pass]);
    // A report without the sections has no such verdicts.
    let plain = parse(&std::fs::read(repo().join("tests/fixtures/reports/valid/fixture-lab.json")).unwrap()).unwrap();
    assert!(report::section_verdicts(&plain).is_empty());
}
