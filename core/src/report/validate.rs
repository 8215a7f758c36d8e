//! Strict validation of transfer reports: structure (serde, with the JSON path of the first
//! mismatch), then every semantic rule, collecting all violations.

use std::collections::HashSet;
use std::fmt;

use super::schema::{CoefResult, ExtractionEstimate, Geometry, Intervention, MapperValidation, RefusalFidelity, ReportKind, SCHEMA_VERSION, TransferReport};
use crate::steering::metrics::Metrics;
use crate::steering::pairs::{MAX_PAIRS, MAX_PROMPT_CHARS};
use crate::steering::{Pair, PairSet};

/// Largest report accepted, in bytes.
pub const MAX_REPORT_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_INTERVENTIONS: usize = 1000;
pub const MAX_COEFFICIENTS: usize = 1000;
/// Longest free-text field (names, concepts, descriptions).
const MAX_TEXT_CHARS: usize = 2000;
const MAX_URL_CHARS: usize = 2048;
const MAX_EVAL_PROMPTS: usize = 256;
const MAX_SAMPLES: usize = 1000;
const MAX_SAMPLE_TOKENS: usize = 4096;

/// One violation: where (a JSON path like `$.interventions[0].results[2].coef`) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every violation found in a report (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Parses and validates a report. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<TransferReport, ValidationErrors> {
    let fail = |path: &str, message: String| ValidationErrors(vec![ValidationError { path: path.into(), message }]);
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(fail("$", format!("the report is {} bytes; at most {MAX_REPORT_BYTES} (10 MB) are accepted", bytes.len())));
    }
    // Streaming deserialisation tracks the JSON path even for syntax errors and out-of-range numbers;
    // serde_json refuses nesting deeper than 128 levels, so hostile depth is an error, not a crash.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let report = match serde_path_to_error::deserialize::<_, TransferReport>(&mut de) {
        Ok(report) => {
            de.end().map_err(|e| fail("$", format!("not valid JSON after the report: {e}")))?;
            report
        }
        Err(e) => {
            // A report of another version or shape gets that message rather than a field-level one.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
                let Some(object) = value.as_object() else {
                    return Err(fail("$", "expected a JSON object (a transfer report)".into()));
                };
                if let Some(version) = object.get("schema_version").filter(|v| v.as_str() != Some(SCHEMA_VERSION)) {
                    return Err(fail("$.schema_version", format!("expected \"{SCHEMA_VERSION}\", found {version}")));
                }
            }
            let message = e.inner().to_string();
            let message = if message.starts_with("number out of range") { format!("expected a finite number: {message}") } else { message };
            return Err(fail(&json_path(e.path()), message));
        }
    };
    let errors = check(&report);
    if errors.is_empty() { Ok(report) } else { Err(ValidationErrors(errors)) }
}

fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out.push_str(&format!(".{key}")),
            Segment::Enum { variant } => out.push_str(&format!(".{variant}")),
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// Collects violations with their paths.
struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError { path: path.into(), message: message.into() });
    }

    fn text(&mut self, path: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.error(path, "expected a non-empty string");
        } else if value.chars().count() > max {
            self.error(path, format!("expected at most {max} characters, found {}", value.chars().count()));
        }
    }

    fn id(&mut self, path: &str, value: &str) {
        let ok = (1..=128).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.error(path, format!("expected 1–128 letters, digits, `.`, `_` or `-`, found {value:?}"));
        }
    }

    fn sha256(&mut self, path: &str, value: &str) {
        if value.len() != 64 || !value.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            self.error(path, format!("expected a sha256: 64 lowercase hex digits, found {:?}", truncate(value)));
        }
    }

    fn url(&mut self, path: &str, value: &str) {
        if let Err(reason) = check_url(value) {
            self.error(path, reason);
        }
    }

    fn finite(&mut self, path: &str, value: f64) -> bool {
        let ok = value.is_finite();
        if !ok {
            self.error(path, format!("expected a finite number, found {value}"));
        }
        ok
    }

    fn range(&mut self, path: &str, value: f64, min: f64, max: f64) {
        if self.finite(path, value) && !(min..=max).contains(&value) {
            self.error(path, format!("expected a number in [{min}, {max}], found {value}"));
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Accepts https URLs, http on localhost (a local stand-in or dev server) and relative paths; refuses
/// every other scheme (`javascript:`, `data:`, `file:`, plain http to other hosts).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.len() > MAX_URL_CHARS {
        return Err(format!("expected a URL of 1–{MAX_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("expected a URL without spaces or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    // Credentials in a URL (`user@host`) only serve to disguise the host: refused everywhere.
    let authority = |rest: &str| rest.split(['/', '?', '#']).next().unwrap_or_default().to_string();
    if let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) {
        let host = authority(rest);
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if host.contains('@') {
            return Err(format!("URLs with credentials (`user@host`) are refused (found {:?})", truncate(url)));
        }
    }
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let host = authority(rest);
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        return if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            Ok(())
        } else {
            Err(format!("plain http is accepted only on localhost; use https (found {:?})", truncate(url)))
        };
    }
    let scheme_end = url.find(':');
    let path_start = url.find('/').unwrap_or(url.len());
    if url.starts_with("//") || scheme_end.is_some_and(|c| c < path_start) {
        return Err(format!("expected an https URL or a relative path, found {:?}", truncate(url)));
    }
    Ok(())
}

/// Every semantic rule the structure alone does not express.
pub fn check(report: &TransferReport) -> Vec<ValidationError> {
    let mut c = Checker { errors: Vec::new() };
    if report.schema_version != SCHEMA_VERSION {
        c.error("$.schema_version", format!("expected \"{SCHEMA_VERSION}\", found {:?}", truncate(&report.schema_version)));
    }
    c.id("$.id", &report.id);
    c.text("$.publisher.name", &report.publisher.name, 200);
    if let Some(url) = &report.publisher.url {
        c.url("$.publisher.url", url);
    }
    if let Some(contact) = &report.publisher.contact {
        c.text("$.publisher.contact", contact, MAX_TEXT_CHARS);
    }

    let analog = &report.analog;
    c.text("$.analog.id", &analog.id, 200);
    c.sha256("$.analog.weights_sha256", &analog.weights_sha256);
    if analog.n_params == 0 {
        c.error("$.analog.n_params", "expected a positive parameter count");
    }
    if !(1..=65536).contains(&analog.d_model) {
        c.error("$.analog.d_model", format!("expected 1..=65536, found {}", analog.d_model));
    }
    if !(1..=1024).contains(&analog.n_layers) {
        c.error("$.analog.n_layers", format!("expected 1..=1024, found {}", analog.n_layers));
    }
    if let Some(url) = &analog.url {
        c.url("$.analog.url", url);
    }

    match (&report.frontier, report.kind) {
        (None, ReportKind::Lab) => c.error("$.frontier", "a `lab` report must describe its frontier model"),
        (Some(_), ReportKind::Measurement) => c.error("$.frontier", "a `measurement` report has no frontier part"),
        (Some(f), _) => {
            c.text("$.frontier.id", &f.id, 200);
            if f.n_params == Some(0) {
                c.error("$.frontier.n_params", "expected a positive parameter count");
            }
            if !(1..=1024).contains(&f.n_layers) {
                c.error("$.frontier.n_layers", format!("expected 1..=1024, found {}", f.n_layers));
            }
            if f.d_model.is_some_and(|d| !(1..=65536).contains(&d)) {
                c.error("$.frontier.d_model", "expected 1..=65536");
            }
        }
        (None, _) => {}
    }
    if let Some(geometry) = &report.geometry {
        check_geometry(&mut c, geometry, report);
    }
    if let Some(maps) = &report.mapper_validation {
        if maps.is_empty() || maps.len() > 16 {
            c.error("$.mapper_validation", format!("expected 1 to 16 maps, found {}", maps.len()));
        }
        for (i, map) in maps.iter().take(16).enumerate() {
            check_mapper_validation(&mut c, &format!("$.mapper_validation[{i}]"), map, report);
        }
    }
    if let Some(refusal) = &report.refusal_fidelity {
        check_refusal(&mut c, refusal);
    }
    if let Some(extraction) = &report.extraction_estimate {
        check_extraction(&mut c, extraction);
    }
    if report.kind == ReportKind::Measurement
        && (report.mapper_validation.is_some() || report.refusal_fidelity.is_some() || report.extraction_estimate.is_some())
    {
        c.error("$", "a `measurement` report has no frontier part: no mapper validation, refusal fidelity or extraction estimate");
    }

    if report.interventions.is_empty() {
        c.error("$.interventions", "expected at least one intervention");
    }
    if report.interventions.len() > MAX_INTERVENTIONS {
        c.error("$.interventions", format!("expected at most {MAX_INTERVENTIONS} interventions, found {}", report.interventions.len()));
    } else {
        let mut ids = HashSet::new();
        for (i, intervention) in report.interventions.iter().enumerate() {
            let path = format!("$.interventions[{i}]");
            if !ids.insert(intervention.id.as_str()) {
                c.error(format!("{path}.id"), format!("duplicate intervention id {:?}", intervention.id));
            }
            check_intervention(&mut c, &path, intervention, report);
        }
    }

    let p = &report.provenance;
    c.text("$.provenance.code_revision", &p.code_revision, 200);
    c.text("$.provenance.hardware", &p.hardware, MAX_TEXT_CHARS);
    let date_ok = p.date.len() >= 10
        && p.date.len() <= 40
        && p.date.char_indices().take(10).all(|(i, ch)| if i == 4 || i == 7 { ch == '-' } else { ch.is_ascii_digit() });
    if !date_ok {
        c.error("$.provenance.date", format!("expected YYYY-MM-DD or an RFC 3339 timestamp, found {:?}", truncate(&p.date)));
    }
    if let Some(software) = &p.software {
        c.text("$.provenance.software", software, MAX_TEXT_CHARS);
    }
    c.errors
}

/// Layer indices must exist in the model they name (the frontier's only when the report describes it).
fn check_layers(c: &mut Checker, path: &str, analog_layer: usize, frontier_layer: usize, report: &TransferReport) {
    if analog_layer >= report.analog.n_layers {
        c.error(format!("{path}.analog_layer"), format!("the analog has {} layers, found layer {analog_layer}", report.analog.n_layers));
    }
    if let Some(f) = &report.frontier
        && frontier_layer >= f.n_layers
    {
        c.error(format!("{path}.frontier_layer"), format!("the frontier has {} layers, found layer {frontier_layer}", f.n_layers));
    }
}

fn check_geometry(c: &mut Checker, geometry: &Geometry, report: &TransferReport) {
    if let Some(similarity) = &geometry.global_similarity {
        c.range("$.geometry.global_similarity.pearson_r", similarity.pearson_r, -1.0, 1.0);
        if similarity.n_tokens < 2 {
            c.error("$.geometry.global_similarity.n_tokens", "expected at least 2 tokens");
        }
    }
    if let Some(layers) = &geometry.layer_cka {
        if layers.is_empty() || layers.len() > 4096 {
            c.error("$.geometry.layer_cka", format!("expected 1 to 4096 layer pairs, found {}", layers.len()));
        }
        for (i, l) in layers.iter().take(4096).enumerate() {
            let path = format!("$.geometry.layer_cka[{i}]");
            c.range(&format!("{path}.cka"), l.cka, 0.0, 1.0);
            if l.n_tokens < 2 {
                c.error(format!("{path}.n_tokens"), "expected at least 2 tokens");
            }
            check_layers(c, &path, l.analog_layer, l.frontier_layer, report);
        }
    }
}

fn check_mapper_validation(c: &mut Checker, path: &str, m: &MapperValidation, report: &TransferReport) {
    check_layers(c, path, m.analog_layer, m.frontier_layer, report);
    c.range(&format!("{path}.fvu"), m.fvu, 0.0, f64::MAX);
    c.range(&format!("{path}.cosine"), m.cosine, -1.0, 1.0);
    c.range(&format!("{path}.kl_patched"), m.kl_patched, 0.0, f64::MAX);
    c.range(&format!("{path}.kl_mean_ablation"), m.kl_mean_ablation, 0.0, f64::MAX);
    c.range(&format!("{path}.agreement_patched"), m.agreement_patched, 0.0, 1.0);
    c.range(&format!("{path}.agreement_mean_ablation"), m.agreement_mean_ablation, 0.0, 1.0);
    if m.n_tokens == 0 {
        c.error(format!("{path}.n_tokens"), "expected at least 1 token");
    }
}

fn check_refusal(c: &mut Checker, r: &RefusalFidelity) {
    let path = "$.refusal_fidelity";
    if r.n_requests == 0 {
        c.error(format!("{path}.n_requests"), "expected at least 1 request");
    }
    if let Some(rate) = r.data_refusal_rate {
        c.range(&format!("{path}.data_refusal_rate"), rate, 0.0, 1.0);
    }
    for (name, rate) in [
        ("analog_refusal_rate", r.analog_refusal_rate),
        ("frontier_refusal_rate", r.frontier_refusal_rate),
        ("frontier_native_rate", r.frontier_native_rate),
        ("frontier_mapped_rate", r.frontier_mapped_rate),
        ("frontier_random_rate", r.frontier_random_rate),
    ] {
        c.range(&format!("{path}.{name}"), rate, 0.0, 1.0);
    }
    c.finite(&format!("{path}.coef"), f64::from(r.coef));
}

fn check_extraction(c: &mut Checker, e: &ExtractionEstimate) {
    let path = "$.extraction_estimate";
    c.text(&format!("{path}.data"), &e.data, MAX_TEXT_CHARS);
    if e.student_n_params == 0 {
        c.error(format!("{path}.student_n_params"), "expected a positive parameter count");
    }
    if e.student_tokens == 0 || e.frontier_tokens == 0 {
        c.error(format!("{path}.student_tokens"), "expected positive token counts for the student and the frontier");
    }
    let losses = [("analog_loss", e.analog_loss), ("frontier_loss", e.frontier_loss), ("student_loss", e.student_loss)];
    for (name, loss) in losses {
        c.range(&format!("{path}.{name}"), loss, 0.0, f64::MAX);
    }
    if !c.finite(&format!("{path}.gap_closed"), e.gap_closed) || losses.iter().any(|(_, l)| !l.is_finite()) {
        return;
    }
    let gap = e.analog_loss - e.frontier_loss;
    if gap <= 0.0 {
        c.error(format!("{path}.frontier_loss"), "the frontier's loss must be below the analog's for a gap to be closed");
    } else if ((e.analog_loss - e.student_loss) / gap - e.gap_closed).abs() > 1e-3 {
        c.error(
            format!("{path}.gap_closed"),
            format!("expected (analog − student) / (analog − frontier) = {:.4}, found {}", (e.analog_loss - e.student_loss) / gap, e.gap_closed),
        );
    }
}

fn check_intervention(c: &mut Checker, path: &str, iv: &Intervention, report: &TransferReport) {
    c.id(&format!("{path}.id"), &iv.id);
    c.text(&format!("{path}.concept"), &iv.concept, MAX_TEXT_CHARS);

    // Pairs: exactly one source; inline pairs must hash to the declared sha256.
    let pairs = &iv.pairs;
    c.sha256(&format!("{path}.pairs.sha256"), &pairs.sha256);
    if !(2..=MAX_PAIRS).contains(&pairs.n_pairs) {
        c.error(format!("{path}.pairs.n_pairs"), format!("expected 2..={MAX_PAIRS} pairs, found {}", pairs.n_pairs));
    }
    match (&pairs.inline, &pairs.url) {
        (Some(inline), None) => check_inline_pairs(c, &format!("{path}.pairs"), inline, pairs.n_pairs, &pairs.sha256),
        (None, Some(url)) => c.url(&format!("{path}.pairs.url"), url),
        _ => c.error(format!("{path}.pairs"), "expected exactly one of `inline` and `url`"),
    }

    if iv.analog_layer >= report.analog.n_layers {
        c.error(format!("{path}.analog_layer"), format!("expected a layer below analog.n_layers = {}, found {}", report.analog.n_layers, iv.analog_layer));
    }

    let v = &iv.vector;
    let vpath = format!("{path}.vector");
    if c.finite(&format!("{vpath}.norm"), f64::from(v.norm)) && v.norm < 0.0 {
        c.error(format!("{vpath}.norm"), "expected a norm ≥ 0");
    }
    if c.finite(&format!("{vpath}.mean_resid_norm"), f64::from(v.mean_resid_norm)) && v.mean_resid_norm < 0.0 {
        c.error(format!("{vpath}.mean_resid_norm"), "expected a norm ≥ 0");
    }
    match (&v.values, &v.url, &v.sha256) {
        (Some(values), None, None) => {
            if values.len() != report.analog.d_model {
                c.error(format!("{vpath}.values"), format!("expected {} values (analog.d_model), found {}", report.analog.d_model, values.len()));
            }
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                c.error(format!("{vpath}.values[{i}]"), "expected a finite number");
            }
        }
        (None, Some(url), Some(sha)) => {
            c.url(&format!("{vpath}.url"), url);
            c.sha256(&format!("{vpath}.sha256"), sha);
        }
        (None, Some(_), None) => c.error(format!("{vpath}.sha256"), "a vector given by `url` needs its `sha256`"),
        _ => c.error(vpath.clone(), "expected either `values`, or `url` with `sha256`"),
    }

    let has_frontier_results = iv.results.iter().any(|r| r.frontier_native.is_some() || r.frontier_mapped.is_some() || r.random_baseline.is_some());
    match (&report.frontier, iv.frontier_layer) {
        (Some(f), Some(layer)) if layer >= f.n_layers => {
            c.error(format!("{path}.frontier_layer"), format!("expected a layer below frontier.n_layers = {}, found {layer}", f.n_layers));
        }
        (None, Some(_)) => c.error(format!("{path}.frontier_layer"), "there is no frontier model in this report"),
        (_, None) if has_frontier_results => c.error(format!("{path}.frontier_layer"), "frontier results need the frontier layer they were measured at"),
        _ => {}
    }
    if let Some(m) = &iv.mapping {
        if report.frontier.is_none() {
            c.error(format!("{path}.mapping"), "there is no frontier model in this report");
        }
        if let Some(fvu) = m.fvu
            && c.finite(&format!("{path}.mapping.fvu"), fvu)
            && fvu < 0.0
        {
            c.error(format!("{path}.mapping.fvu"), "expected a fraction ≥ 0");
        }
        if let Some(cos) = m.cosine {
            c.range(&format!("{path}.mapping.cosine"), cos, -1.0, 1.0);
        }
    }

    check_evaluation(c, &format!("{path}.evaluation"), iv);

    if iv.results.is_empty() || iv.results.len() > MAX_COEFFICIENTS {
        c.error(format!("{path}.results"), format!("expected 1..={MAX_COEFFICIENTS} coefficients, found {}", iv.results.len()));
        return;
    }
    let mut previous: Option<f32> = None;
    for (j, row) in iv.results.iter().enumerate() {
        let rpath = format!("{path}.results[{j}]");
        if c.finite(&format!("{rpath}.coef"), f64::from(row.coef)) {
            if let Some(prev) = previous
                && row.coef <= prev
            {
                c.error(format!("{rpath}.coef"), format!("coefficients must be unique and increasing: {} follows {prev}", row.coef));
            }
            previous = Some(row.coef);
        }
        if report.frontier.is_none() && (row.frontier_native.is_some() || row.frontier_mapped.is_some() || row.random_baseline.is_some()) {
            c.error(rpath.clone(), "frontier results without a frontier model");
        }
        check_row(c, &rpath, row, iv);
    }
}

fn check_inline_pairs(c: &mut Checker, path: &str, inline: &[Pair], n_pairs: usize, sha256: &str) {
    if inline.len() != n_pairs {
        c.error(format!("{path}.n_pairs"), format!("expected {} (the number of inline pairs), found {n_pairs}", inline.len()));
    }
    for (k, pair) in inline.iter().enumerate().take(MAX_PAIRS + 1) {
        for (name, text) in [("positive", &pair.positive), ("negative", &pair.negative)] {
            c.text(&format!("{path}.inline[{k}].{name}"), text, MAX_PROMPT_CHARS);
        }
    }
    if let Ok(set) = PairSet::new(inline.to_vec()) {
        let actual = set.sha256();
        if actual != sha256 && sha256.len() == 64 {
            c.error(format!("{path}.sha256"), format!("the inline pairs hash to {actual}, not the declared sha256"));
        }
    }
}

fn check_evaluation(c: &mut Checker, path: &str, iv: &Intervention) {
    let e = &iv.evaluation;
    for (name, list) in [("logit_prompts", &e.logit_prompts), ("neutral_prompts", &e.neutral_prompts), ("neutral_texts", &e.neutral_texts)] {
        if list.len() > MAX_EVAL_PROMPTS {
            c.error(format!("{path}.{name}"), format!("expected at most {MAX_EVAL_PROMPTS} entries, found {}", list.len()));
            continue;
        }
        for (k, text) in list.iter().enumerate() {
            c.text(&format!("{path}.{name}[{k}]"), text, MAX_PROMPT_CHARS);
        }
    }
    for (name, token) in [("target", &e.target), ("counter", &e.counter)] {
        if let Some(t) = token {
            c.text(&format!("{path}.{name}"), t, 200);
        }
    }
    if e.target.is_some() != e.counter.is_some() {
        c.error(path, "`target` and `counter` go together");
    }
    if e.lexicon.len() > MAX_EVAL_PROMPTS {
        c.error(format!("{path}.lexicon"), format!("expected at most {MAX_EVAL_PROMPTS} words"));
    }
    if e.samples_per_prompt > MAX_SAMPLES {
        c.error(format!("{path}.samples_per_prompt"), format!("expected at most {MAX_SAMPLES}"));
    }
    if e.sample_tokens > MAX_SAMPLE_TOKENS {
        c.error(format!("{path}.sample_tokens"), format!("expected at most {MAX_SAMPLE_TOKENS}"));
    }
    c.range(&format!("{path}.temperature"), f64::from(e.temperature), 0.0, 100.0);
    if e.positions.end.is_some_and(|end| end <= e.positions.start) {
        c.error(format!("{path}.positions"), "expected `end` after `start`");
    }
    if iv.results.iter().filter_map(|r| r.analog.as_ref()).any(|m| iv.effect_metric.of(m).is_none()) {
        c.error(format!("{path}.effect_metric"), format!("`{}` is missing from some analog results", iv.effect_metric.name()));
    }
}

fn check_row(c: &mut Checker, path: &str, row: &CoefResult, _iv: &Intervention) {
    let parts = [
        ("analog", &row.analog),
        ("analog_random_baseline", &row.analog_random_baseline),
        ("frontier_native", &row.frontier_native),
        ("frontier_mapped", &row.frontier_mapped),
        ("random_baseline", &row.random_baseline),
    ];
    if parts.iter().all(|(_, m)| m.is_none()) {
        c.error(path, "expected at least one of analog, analog_random_baseline, frontier_native, frontier_mapped, random_baseline");
    }
    for (name, metrics) in parts {
        if let Some(m) = metrics {
            check_metrics(c, &format!("{path}.{name}"), m);
        }
    }
}

fn check_metrics(c: &mut Checker, path: &str, m: &Metrics) {
    let optional = [("logit_diff", m.logit_diff), ("logit_diff_shift", m.logit_diff_shift), ("perplexity", m.perplexity)];
    for (name, value) in optional {
        if let Some(v) = value {
            c.finite(&format!("{path}.{name}"), f64::from(v));
        }
    }
    for (name, value) in [("prob_target", m.prob_target), ("trigger_rate", m.trigger_rate)] {
        if let Some(v) = value {
            c.range(&format!("{path}.{name}"), f64::from(v), 0.0, 1.0);
        }
    }
    c.range(&format!("{path}.kl"), f64::from(m.kl), 0.0, f64::MAX);
    if let Some(p) = m.perplexity
        && p.is_finite()
        && p < 0.999
    {
        c.error(format!("{path}.perplexity"), format!("expected a perplexity ≥ 1, found {p}"));
    }
}
