//! The browser app, end to end in headless Chromium, with WebGPU (SwiftShader) and without it (the
//! CPU fallback): load the default analog, generate, extract from a built-in pair set, steer and
//! see the steered text differ, open the bundled report and see the comparison, reload and find
//! saved work, and load a malformed report and see its error.
//!
//! Needs the site built by Trunk: `cargo xtask test` builds it and runs these with `--ignored`
//! (`ANALOG_DIST` overrides where the site is). Screenshots go to `ANALOG_SCREENSHOTS`
//! (default `target/screenshots`).

mod webdriver;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use webdriver::{Browser, serve, serve_isolated};

const LOAD: Duration = Duration::from_secs(90);
const WORK: Duration = Duration::from_secs(240);
/// Re-measuring every intervention of the bundled report on the in-browser CPU backend.
const COMPARE: Duration = Duration::from_secs(480);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dist() -> PathBuf {
    let dist = std::env::var("ANALOG_DIST").map(PathBuf::from).unwrap_or_else(|_| root().join("target/dist"));
    assert!(dist.join("index.html").is_file(), "{} has no index.html: build the site (cargo xtask test does)", dist.display());
    dist
}

fn site() -> u16 {
    serve(vec![("/fixtures", root().join("tests/fixtures")), ("", dist())])
}

fn shots() -> PathBuf {
    std::env::var("ANALOG_SCREENSHOTS").map(PathBuf::from).unwrap_or_else(|_| root().join("target/screenshots"))
}

fn journey(webgpu: bool) {
    let port = site();
    let url = format!("http://127.0.0.1:{port}/");
    let browser = Browser::start(webgpu);
    let backend = if webgpu { "wgpu" } else { "cpu" };
    let shot = |name: &str, scroll_to: &str| {
        if !webgpu {
            browser.js("const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({block: 'start'});", json!([scroll_to]));
            browser.screenshot(&shots().join(format!("{name}.png")));
        }
    };

    // The default analog loads; the badge names the backend.
    browser.goto(&format!("{url}#/play"));
    browser.wait_state("model-status", "ready", LOAD);
    browser.wait("the backend badge", "return document.querySelector('[data-testid=backend-badge]').getAttribute('data-backend') !== 'none'", json!([]), LOAD);
    assert_eq!(browser.attr("backend-badge", "data-backend"), backend, "badge: {}", browser.text("backend-badge"));
    assert!(browser.text("model-status").contains("story-analog"), "{}", browser.text("model-status"));

    // Generate.
    browser.set_value("prompt", "Once upon a time");
    browser.set_value("max-tokens", "24");
    browser.click("generate");
    browser.wait_state("output", "done", WORK);
    let story = browser.text("output");
    assert!(story.len() > "Once upon a time".len() + 20, "generated: {story:?}");
    assert!(browser.count("token-view") == 1 && browser.text("token-view").contains("Once"));
    browser.click("inspect");
    browser.wait("the logit lens", "return document.querySelectorAll('[data-testid=logit-lens] tbody tr').length", json!([]), WORK);
    shot("playground", "main");

    // Extract from a built-in set, then steer.
    browser.click("tab-steer");
    browser.wait("the built-in pair sets", "return document.querySelector('[data-testid=pairs-select]').options.length >= 4", json!([]), LOAD);
    // The lab's own mood pairs, at the layer and coefficient its model card measured (analog lab mood).
    browser.set_value("pairs-select", "story-mood");
    browser.click("extract");
    browser.wait_state("vector-status", "ready", WORK);
    browser.set_value("layer", "0");
    browser.set_value("coef", "0.3");
    browser.set_value("steer-prompt", "Tom lived in a small house near the garden. He");
    browser.set_value("max-tokens", "16");
    browser.click("steer-generate");
    browser.wait_state("baseline-output", "done", WORK);
    browser.wait_state("steered-output", "done", WORK);
    let (baseline, steered) = (browser.text("baseline-output"), browser.text("steered-output"));
    assert_ne!(baseline, steered, "steering changed nothing");
    browser.click("save-vector");
    browser.wait("a saved vector", "return document.querySelectorAll('[data-testid=saved-vector]').length", json!([]), LOAD);
    shot("steering-extract", "#steer-title");
    shot("steering", "[data-testid=layer]");

    // A malformed report: its error, with the JSON path.
    browser.click("tab-reports");
    browser.set_value("report-url", &format!("http://127.0.0.1:{port}/fixtures/reports/invalid/unsorted-coefficients.json"));
    browser.click("report-load");
    browser.wait("the report error", "return document.querySelector('[data-testid=report-error]')", json!([]), WORK);
    let error = browser.text("report-error");
    assert!(error.contains("$.interventions[0].results[1].coef") && error.contains("increasing"), "{error}");

    // The bundled report and its comparison.
    browser.click("catalog-report");
    browser.wait("the report view", "return document.querySelector('[data-testid=report-view]')", json!([]), WORK);
    assert!(browser.text("report-view").contains("story-lab-transfer"));
    if !webgpu {
        // On SwiftShader every kernel runs on the CPU and the full re-measurement takes many
        // minutes; it is checked here on the CPU backend (the same code with another device).
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root().join("public/reports/story-lab-transfer.json")).expect("the bundled report"))
                .expect("the bundled report is JSON");
        let interventions = report["interventions"].as_array().map_or(0, Vec::len);
        browser.wait(
            "the comparison",
            "return document.querySelectorAll('[data-testid=report-intervention]').length === arguments[0]",
            json!([interventions]),
            COMPARE,
        );
        assert!(browser.text("report-view").contains("sha256 matches"), "{}", browser.text("report-view"));
        shot("reports", "[data-testid=report-view]");
    }

    // Reload: saved work is still there, and the URL kept the view.
    browser.goto(&format!("{url}#/steer"));
    browser.js("location.reload()", json!([]));
    browser.wait("the saved vector after a reload", "return document.querySelectorAll('[data-testid=saved-vector]').length", json!([]), LOAD);
    browser.wait_state("model-status", "ready", LOAD);
    assert!(browser.text("model-status").contains("from this browser's cache"), "second visit: {}", browser.text("model-status"));

    browser.click("tab-about");
    shot("about", "main");
}

/// The real SmolLM2-135M-Instruct GGUF file (`cargo xtask models`).
fn smollm2_gguf() -> PathBuf {
    let dir = std::env::var_os("ANALOG_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/analog-explorer/models"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `cargo xtask models`", path.display());
    path
}

/// A released model as people run it in browsers today: the SmolLM2-135M-Instruct GGUF through
/// the model box, from a hub id (against a local stand-in for huggingface.co) and as a local file;
/// chat in its template; extract a sentiment vector at a middle layer, steer with it, and export
/// it as a GGUF control vector. On SwiftShader (WebGPU without a GPU) a token of this model takes
/// about 10 s, so that run uses fewer pairs and tokens.
fn gguf_journey(webgpu: bool) {
    let gguf = smollm2_gguf();
    let models = gguf.parent().expect("the models folder").to_path_buf();
    let port = serve(vec![("/hub/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/resolve/main", models), ("/fixtures", root().join("tests/fixtures")), ("", dist())]);
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start(webgpu);
    let shot = |name: &str, scroll_to: &str| {
        if !webgpu {
            browser.js("const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({block: 'start'});", json!([scroll_to]));
            browser.screenshot(&shots().join(format!("{name}.png")));
        }
    };
    let started = std::time::Instant::now();
    let stage = |what: &str| eprintln!("gguf journey ({}): {what} at {:.0?}", if webgpu { "webgpu" } else { "cpu" }, started.elapsed());
    browser.goto(&format!("{base}/?hub={base}/hub/#/play"));
    browser.wait_state("model-status", "ready", LOAD);

    // A local .gguf file, as a visitor picking it.
    browser.upload("model-files", &gguf);
    browser.wait("the GGUF model", "return document.querySelector('[data-testid=model-status]').textContent.includes('30 layers')", json!([]), LOAD);
    browser.wait_state("model-status", "ready", LOAD);
    let status = browser.text("model-status");
    assert!(status.contains("chat template") && status.contains("d_model 576"), "{status}");

    stage("the local file loaded");
    // The same file from the hub (owner/name/file.gguf), downloaded with progress into the cache.
    browser.js("document.querySelector('[data-testid=model-status]').setAttribute('data-state', 'stale')", json!([]));
    browser.set_value("model-url", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
    browser.click("model-load");
    browser.wait_state("model-status", "ready", LOAD);
    assert!(browser.text("model-status").contains("SmolLM2-135M-Instruct-GGUF"), "{}", browser.text("model-status"));

    stage("the hub file loaded");
    // Chat in the model's template.
    browser.wait("the chat toggle", "return document.querySelector('[data-testid=chat-mode]')", json!([]), LOAD);
    assert!(
        browser.js("return document.querySelector('[data-testid=chat-mode]').checked", json!([])).as_bool().unwrap_or(false),
        "chat is on for an instruct model"
    );
    browser.set_value("prompt", "What is the capital of France?");
    browser.set_value("max-tokens", if webgpu { "6" } else { "12" });
    browser.set_value("temperature", "0");
    browser.click("generate");
    browser.wait_state("output", "done", WORK);
    let answer = browser.text("output");
    assert!(answer.contains("Paris"), "chat answer: {answer:?}");
    // The token view spells what each token stands for: the template's newlines and spaces as
    // markers, its special tokens by name, never the byte-level pieces (`Ċ`, `Ġ`).
    let tokens = browser.text("token-view");
    assert!(tokens.contains('↵') && tokens.contains('␣') && tokens.contains("<|im_start|>") && tokens.contains("Paris"), "{tokens}");
    assert!(!tokens.contains('Ċ') && !tokens.contains('Ġ'), "raw pieces in the token view: {tokens}");
    shot("real-model-chat", "main");
    if !webgpu {
        // The residual stream at 30 layers: the bars' chart reads, the lens spells its tokens.
        browser.click("inspect");
        browser.wait("the logit lens", "return document.querySelectorAll('[data-testid=logit-lens] tbody tr').length === 30", json!([]), WORK);
        let resid = readable_chart(&browser, "resid-chart", 30);
        assert!(resid.marker.starts_with("steering layer "), "{resid:?}");
        let lens = browser.text("logit-lens");
        assert!(!lens.contains('Ġ') && !lens.contains('Ċ') && lens.contains('␣'), "{lens}");
    }

    stage("chatted");
    // Extract a sentiment vector from a few built-in pairs at layer 15, steer, export.
    let pairs: Vec<&str> = include_str!("../public/datasets/sentiment.jsonl").lines().take(if webgpu { 2 } else { 8 }).collect();
    let pairs_file = std::env::temp_dir().join(format!("analog-sentiment-{}-{webgpu}.jsonl", std::process::id()));
    std::fs::write(&pairs_file, pairs.join("\n")).expect("a temporary pair set");
    browser.click("tab-steer");
    browser.upload("pairs-file", &pairs_file);
    browser.set_value("layer", "15");
    record_progress(&browser, "steer-progress");
    browser.click("extract");
    browser.wait_state("vector-status", "ready", WORK);
    assert!(browser.text("vector-status").contains("d_model 576"), "{}", browser.text("vector-status"));
    assert_progress_advanced(&browser, "the extraction");
    // The layer sweep over 30 layers: readable, the best layer marked; picking a point picks its layer.
    let sweep = readable_chart(&browser, "sweep-chart", 30);
    assert!(sweep.marker.starts_with("steering layer "), "{sweep:?}");
    browser.js("document.querySelector('[data-testid=sweep-chart] .point[data-x=\"20\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))", json!([]));
    browser.wait("layer 20 chosen", "return document.querySelector('[data-testid=layer]').value === '20'", json!([]), LOAD);
    browser.set_value("layer", "15");
    stage("extracted");
    browser.set_value("coef", "0.5");
    browser.set_value("steer-prompt", "I watched the movie last night. It was");
    browser.set_value("max-tokens", if webgpu { "2" } else { "8" });
    browser.click("steer-generate");
    browser.wait_state("baseline-output", "done", WORK);
    browser.wait_state("steered-output", "done", WORK);
    let (baseline, steered) = (browser.text("baseline-output"), browser.text("steered-output"));
    assert_ne!(baseline, steered, "steering the real model changed nothing");
    stage("steered");
    shot("real-model-steering", "[data-testid=layer]");
    browser.js(
        "window.__exported = null; const create = URL.createObjectURL; URL.createObjectURL = b => { b.arrayBuffer().then(a => { window.__exported = Array.from(new Uint8Array(a.slice(0, 4))).concat([a.byteLength]); }); return create(b); };",
        json!([]),
    );
    browser.click("export-gguf");
    let exported = browser.wait("the exported control vector", "return window.__exported", json!([]), LOAD);
    let bytes: Vec<u64> = serde_json::from_value(exported).expect("magic and length");
    assert_eq!(&bytes[..4], &[71, 71, 85, 70], "GGUF magic");
    assert!(bytes[4] > 576 * 4, "a control vector of one 576-wide direction at least: {} bytes", bytes[4]);
    stage("exported");
    if !webgpu {
        // The same pairs in the model's chat format: each prompt is the user's turn, read where the reply begins.
        // Other activations give another held-out layer sweep: its chart changes when the new vector arrives.
        browser.js("window.__sweep = document.querySelector('[data-testid=sweep-chart]').innerHTML", json!([]));
        browser.click("extract-chat");
        browser.click("extract");
        browser.wait("the chat-format sweep", "return document.querySelector('[data-testid=sweep-chart]').innerHTML !== window.__sweep", json!([]), WORK);
        browser.wait("the extraction to end", "return !document.querySelector('[data-testid=extract]').disabled", json!([]), WORK);
        assert!(browser.text("vector-status").contains("d_model 576"), "{}", browser.text("vector-status"));
        shot("real-model-extract-chat", "[data-testid=extract-chat]");
        stage("extracted in the chat format");
        studio_sweep_and_report(&browser);
        stage("measured across coefficients and compared as a report");
    }
    let _ = std::fs::remove_file(&pairs_file);
}

/// Starts recording each value the progress bar inside `testid` shows (polled every 5 ms).
fn record_progress(browser: &Browser, testid: &str) {
    browser.js(
        "window.__progress = []; clearInterval(window.__progressTimer); const id = arguments[0]; \
         window.__progressTimer = setInterval(() => { const p = document.querySelector(`[data-testid=${id}] progress`); \
         if (!p || !p.hasAttribute('value')) return; const seen = [p.getAttribute('aria-label'), Number(p.getAttribute('value')), Number(p.getAttribute('max'))]; \
         const last = window.__progress[window.__progress.length - 1]; \
         if (!last || last[0] !== seen[0] || last[1] !== seen[1]) window.__progress.push(seen); }, 5);",
        json!([testid]),
    );
}

/// The recorded bar went forward within one part of the job, with `value <= max` throughout.
fn assert_progress_advanced(browser: &Browser, job: &str) {
    let seen = browser.js("clearInterval(window.__progressTimer); return window.__progress", json!([]));
    let seen: Vec<(String, f64, f64)> = serde_json::from_value(seen).expect("recorded progress");
    assert!(seen.iter().all(|(_, value, max)| value <= max), "{job}: {seen:?}");
    let advanced = seen.windows(2).any(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1);
    assert!(advanced, "{job}: the progress bar never advanced: {seen:?}");
}

/// What [`readable_chart`] measured.
#[derive(Debug, serde::Deserialize)]
struct ChartLayout {
    x_ticks: Vec<String>,
    points: usize,
    marker: String,
}

/// Checks the chart `testid` as a reader sees it: x and y tick labels whose boxes do not overlap,
/// a legend that covers no point, at most 8 x ticks (whole numbers on a layer axis of `layers`),
/// and a point's value shown as text when it takes the keyboard focus.
fn readable_chart(browser: &Browser, testid: &str, layers: usize) -> ChartLayout {
    let layout = browser.js(
        "const fig = document.querySelector(`[data-testid=${arguments[0]}]`); \
         const boxes = sel => [...fig.querySelectorAll(sel)].map(e => e.getBoundingClientRect()); \
         const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom; \
         const overlapping = bs => bs.flatMap((a, i) => bs.slice(i + 1).filter(b => overlap(a, b)).map(b => [a.left, b.left])); \
         const legend = fig.querySelector('[data-testid=chart-legend]'); \
         const points = boxes('.point, .bar'); \
         return { x_ticks: [...fig.querySelectorAll('.x-tick')].map(e => e.textContent), x_overlaps: overlapping(boxes('.x-tick')), \
           y_overlaps: overlapping(boxes('.y-tick')), covered: legend ? points.filter(p => overlap(p, legend.getBoundingClientRect())).length : 0, \
           points: points.length, marker: (fig.querySelector('[data-testid=chart-marker]') || {}).textContent || '' };",
        json!([testid]),
    );
    assert_eq!(layout["x_overlaps"], json!([]), "{testid}: x tick labels overlap: {layout}");
    assert_eq!(layout["y_overlaps"], json!([]), "{testid}: y tick labels overlap: {layout}");
    assert_eq!(layout["covered"], json!(0), "{testid}: the legend covers points: {layout}");
    let chart: ChartLayout = serde_json::from_value(layout.clone()).expect("a chart layout");
    assert!(chart.points > 0 && (2..=8).contains(&chart.x_ticks.len()), "{testid}: {layout}");
    if layers > 0 {
        let ticks: Vec<usize> = chart.x_ticks.iter().map(|t| t.parse().unwrap_or_else(|_| panic!("{testid}: layer tick {t:?}"))).collect();
        assert!(ticks.iter().all(|t| *t < layers), "{testid}: {ticks:?}");
    }
    browser.js("document.querySelector(`[data-testid=${arguments[0]}] .point, [data-testid=${arguments[0]}] .bar`).focus()", json!([testid]));
    browser.wait(
        "the focused point's value",
        "return /: -?[0-9]/.test(document.querySelector(`[data-testid=${arguments[0]}] [data-testid=chart-readout]`).textContent)",
        json!([testid]),
        LOAD,
    );
    chart
}

/// On the real model: a coefficient sweep stopped midway (its bar advances, Stop ends it), one run
/// to the end (readable charts, the chosen coefficient marked), saved and exported as a report,
/// and that report opened and re-measured on the same 30-layer model.
fn studio_sweep_and_report(browser: &Browser) {
    let shot = |name: &str, scroll_to: &str| {
        browser.js("const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({block: 'start'});", json!([scroll_to]));
        browser.screenshot(&shots().join(format!("{name}.png")));
    };
    // The vector in use was extracted in the chat format: the report records it, and re-extracts it so.
    browser.set_value("steer-prompt", "I watched the movie last night. It was");
    browser.set_value("metric-target", " great");
    browser.set_value("metric-counter", " terrible");
    browser.set_value("metric-lexicon", "great, good, wonderful, love, amazing");
    // Stopped midway: the bar advances, then Stop ends the job between two measurements.
    record_progress(browser, "coef-progress");
    browser.click("coef-sweep");
    browser.wait(
        "two measurements",
        "const p = document.querySelector('[data-testid=coef-progress] progress'); return p && Number(p.getAttribute('value')) >= 2",
        json!([]),
        WORK,
    );
    assert_progress_advanced(browser, "the coefficient sweep");
    browser.js("document.querySelector('[data-testid=coef-progress] [data-testid=job-stop]').click()", json!([]));
    browser.wait("the sweep to stop", "return !document.querySelector('[data-testid=coef-progress]')", json!([]), WORK);
    assert!(browser.text("steer-error").contains("Stopped"), "{}", browser.text("steer-error"));
    assert_eq!(browser.count("coef-charts"), 0, "a stopped sweep shows no charts");

    // To the end.
    browser.click("coef-sweep");
    browser.wait("the coefficient charts", "return document.querySelector('[data-testid=coef-charts]')", json!([]), WORK);
    let chart = readable_chart(browser, "coef-logit-chart", 0);
    assert!(chart.marker.starts_with("coefficient "), "{chart:?}");
    shot("real-model-studio", "#steer-title");
    shot("real-model-coefficients", "[data-testid=steer-generate]");
    browser.click("save-results");

    // Exported as a report, opened from the file, re-measured here.
    browser.click("tab-reports");
    browser.js(
        "window.__report = null; const create = URL.createObjectURL; URL.createObjectURL = b => { b.text().then(t => { window.__report = t; }); return create(b); };",
        json!([]),
    );
    browser.click("export-report");
    let report = browser.wait("the exported report", "return window.__report", json!([]), LOAD);
    let path = std::env::temp_dir().join(format!("analog-smollm2-report-{}.json", std::process::id()));
    std::fs::write(&path, report.as_str().unwrap_or_default()).expect("a temporary report");
    record_progress(browser, "report-job");
    browser.upload("report-file", &path);
    browser.wait("the comparison", "return document.querySelector('[data-testid=report-intervention]')", json!([]), WORK);
    assert_progress_advanced(browser, "the report comparison");
    let view = browser.text("report-view");
    assert!(view.contains("sha256 matches") && view.contains("vector_reproduced1.000"), "{view}");
    readable_chart(browser, "report-chart", 0);
    shot("real-model-report", "[data-testid=report-view]");
    let _ = std::fs::remove_file(&path);
}

#[test]
#[ignore = "needs the site built by trunk and the real models: run by cargo xtask test"]
fn a_real_gguf_model_chats_and_steers_on_webgpu() {
    gguf_journey(true);
}

#[test]
#[ignore = "needs the site built by trunk and the real models: run by cargo xtask test"]
fn a_real_gguf_model_chats_and_steers_on_the_cpu() {
    gguf_journey(false);
}

#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn the_app_works_on_webgpu() {
    journey(true);
}

#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn the_app_works_on_the_cpu_fallback() {
    journey(false);
}

/// Untrusted strings render as text: a report carrying `<script>` and `onerror` payloads in its
/// free-text fields (and one whose error message quotes a payload) injects no element and runs
/// nothing, and the page itself runs under its Content Security Policy with no inline script.
#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn untrusted_report_strings_are_shown_as_text_only() {
    const PAYLOAD: &str = r#"<img src="x" onerror="window.__pwned = 1"><script>window.__pwned = 2</script>"#;
    let fixture = root().join("tests/fixtures/reports/valid/fixture-lab.json");
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture).expect("fixture report")).expect("JSON");
    report["publisher"]["name"] = json!(PAYLOAD);
    report["interventions"][0]["concept"] = json!(PAYLOAD);
    report["provenance"]["hardware"] = json!(PAYLOAD);
    let hostile = std::env::temp_dir().join(format!("analog-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&hostile).expect("temp dir");
    std::fs::write(hostile.join("text.json"), report.to_string()).expect("write report");
    report["provenance"]["date"] = json!(PAYLOAD);
    std::fs::write(hostile.join("invalid.json"), report.to_string()).expect("write report");
    let port = serve(vec![("/hostile", hostile.clone()), ("", dist())]);

    let browser = Browser::start(false);
    browser.goto(&format!("http://127.0.0.1:{port}/#/reports"));
    browser.wait_state("model-status", "ready", LOAD);
    let policy = browser.js("const m = document.querySelector('meta[http-equiv=Content-Security-Policy]'); return m ? m.content : ''", json!([]));
    let policy = policy.as_str().unwrap_or_default();
    assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval'") && policy.contains("connect-src 'self' https: blob:"), "policy: {policy:?}");
    assert_eq!(browser.js("return [...document.scripts].filter(s => !s.src).length", json!([])), json!(0), "inline scripts in the page");

    let injected = "return window.__pwned === undefined && document.querySelectorAll('main img[src=x], main script').length === 0";
    browser.set_value("report-url", &format!("http://127.0.0.1:{port}/hostile/text.json"));
    browser.click("report-load");
    browser.wait("the report view", "return document.querySelector('[data-testid=report-view]')", json!([]), WORK);
    assert!(browser.text("report-view").contains(PAYLOAD), "the payload is not shown as text: {}", browser.text("report-view"));
    assert_eq!(browser.js(injected, json!([])), json!(true), "a payload was injected or ran");

    browser.set_value("report-url", &format!("http://127.0.0.1:{port}/hostile/invalid.json"));
    browser.click("report-load");
    browser.wait("the report error", "return document.querySelector('[data-testid=report-error]')", json!([]), WORK);
    let error = browser.text("report-error");
    assert!(error.contains("$.provenance.date"), "{error}");
    assert_eq!(browser.js(injected, json!([])), json!(true), "a payload in an error message was injected or ran");
    let _ = std::fs::remove_dir_all(&hostile);
}

/// A report with the study sections renders them with their verdicts against the thresholds (the
/// fixture's mapped refusal direction reaches 67% of the native shift: below the paper's 70% bar),
/// its per-layer CKA as a table, and its refusal and extraction figures; About shows the size
/// sweep's figure as the lab published it.
#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn a_report_shows_its_study_sections_with_verdicts() {
    let port = serve(vec![("/fixtures", root().join("tests/fixtures/reports/valid")), ("", dist())]);
    let browser = Browser::start(false);
    browser.goto(&format!("http://127.0.0.1:{port}/#/reports"));
    browser.wait_state("model-status", "ready", LOAD);
    browser.set_value("report-url", &format!("http://127.0.0.1:{port}/fixtures/fixture-lab-study.json"));
    browser.click("report-load");
    browser.wait("the study sections", "return document.querySelector('[data-testid=report-study]')", json!([]), WORK);
    let outcomes = browser.js(
        "return [...document.querySelectorAll('[data-testid=report-study] table.verdicts tbody tr')].map(r => [r.cells[0].textContent, r.className])",
        json!([]),
    );
    let outcomes: Vec<(String, String)> = serde_json::from_value(outcomes).expect("verdict rows");
    let outcome = |check: &str| outcomes.iter().filter(|(c, _)| c.starts_with(check)).map(|(_, class)| class.as_str()).collect::<Vec<_>>();
    assert_eq!(outcome("mapper_beats_mean_ablation"), vec!["outcome-pass", "outcome-pass"], "{outcomes:?}");
    assert_eq!(outcome("refusal_direction_transfers"), vec!["outcome-fail"], "{outcomes:?}");
    assert_eq!(outcome("frontier_reconstruction"), vec!["outcome-pass"], "{outcomes:?}");
    let cka_cells = browser.js("return document.querySelectorAll('[data-testid=report-study] table.cka tbody td').length", json!([]));
    assert_eq!(cka_cells, json!(8), "2 analog × 4 frontier layers");
    assert!(browser.text("report-extraction").contains("25% of the gap closed"), "{}", browser.text("report-extraction"));
    assert!(browser.text("report-refusal").contains("analog 50%, frontier 50%"), "{}", browser.text("report-refusal"));

    // The lab's own sweep report for the 4.8% analog, opened from the catalog, as a visitor would.
    browser.js(
        "[...document.querySelectorAll('[data-testid=catalog-report]')].find(b => b.parentElement.textContent.includes('story-sweep-5pct')).click()",
        json!([]),
    );
    browser.wait("the sweep report's study", "return document.querySelector('[data-testid=report-study] table.mappers')", json!([]), WORK);
    assert!(browser.text("report-view").contains("story-sweep-5pct"));
    browser.js("document.querySelector('[data-testid=report-study]').scrollIntoView()", json!([]));
    browser.screenshot(&shots().join("report-study.png"));
    browser.click("tab-about");
    let loaded = "const i = document.querySelector('[data-testid=about-sweep] img'); return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : null";
    assert_eq!(browser.wait("the sweep figure", loaded, json!([]), WORK), json!(880));
    browser.js("document.querySelector('[data-testid=about-sweep]').scrollIntoView()", json!([]));
    browser.screenshot(&shots().join("about-sweep.png"));
}

/// A benchmark, not a pass/fail test (`cargo xtask bench-app` runs it on the size-optimised site):
/// page load to the first generated token on a second visit (warm caches), and decode speed.
#[test]
#[ignore = "benchmark: run by cargo xtask bench-app"]
fn benchmark_first_token_and_decode() {
    let port = site();
    let url = format!("http://127.0.0.1:{port}/#/play");
    for webgpu in [false, true] {
        let browser = Browser::start(webgpu);
        browser.goto(&url);
        browser.wait_state("model-status", "ready", LOAD);
        browser.goto("about:blank");
        browser.goto(&url);
        browser.wait_state("model-status", "ready", LOAD);
        browser.click("generate");
        let first =
            browser.wait("the first token", "return document.querySelector('[data-testid=output]').getAttribute('data-first-token-ms')", json!([]), WORK);
        browser.wait_state("output", "done", WORK);
        browser.set_value("max-tokens", "200");
        browser.set_value("temperature", "1");
        browser.click("generate");
        browser.wait(
            "the 200-token generation",
            "const o = document.querySelector('[data-testid=output]'); return o.getAttribute('data-state') === 'done' && o.getAttribute('data-first-token-ms') !== arguments[0];",
            json!([first.clone()]),
            WORK,
        );
        let rate = browser.attr("output", "data-tokens-per-s");
        let backend = browser.attr("backend-badge", "data-backend");
        println!("BENCH backend={backend} first_token_ms={} decode_tokens_per_s={rate}", first.as_str().unwrap_or_default());
    }
}

/// The model status once a GGUF model (not the default analog) is ready.
const GGUF_READY: &str = "const s = document.querySelector('[data-testid=model-status]'); return !!s && s.textContent.includes('.gguf') && s.getAttribute('data-state') === 'ready';";

/// A story opening of about 20 tokens: the app and wllama continue it for 128 greedy tokens.
const SHORT_PROMPT: &str = "Once upon a time, in a small village by the sea, there lived a girl named Lily who loved to";

/// About 200 tokens of prose, for prefill.
const LONG_PROMPT: &str = "The history of the lighthouse begins with fires lit on hilltops to guide ships home at night. \
Ancient sailors relied on these beacons, and the Pharos of Alexandria, built in the third century before our era, \
became one of the wonders of the world. Medieval towns along the coast kept lanterns burning in church towers, and \
by the eighteenth century engineers were designing towers of stone that could stand against the worst winter storms. \
The Eddystone lighthouse, rebuilt four times, taught builders how to dovetail granite blocks so that waves could not \
pull them apart. Lenses came next: Augustin Fresnel's stepped glass rings gathered the light of a single flame into a \
beam that could be seen twenty miles away. Keepers trimmed wicks, wound clockwork and logged every passing ship, \
often living for months with only their families and the sound of the sea. Today most lights are automatic, yet \
people still climb the narrow stairs to look out over the water and imagine the long nights of the keepers.";

/// The real models the side-by-side benchmark runs, as `cargo xtask models` names their files.
const BENCH_MODELS: [&str; 2] = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"];

fn wllama_dir() -> PathBuf {
    std::env::var_os("ANALOG_WLLAMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/analog-explorer/wllama/node_modules/@wllama/wllama"))
}

/// One engine's figures in the side-by-side benchmark.
#[derive(Debug, Default)]
struct Run {
    /// From navigation start to the first new token, as a visitor who asks the moment the model is ready would see
    /// it: for the app, the page's time at ready plus its time from asking to the first token (`data-ready-ms`,
    /// `data-requested-ms`, `data-first-token-ms`), which leaves out the WebDriver commands that type the prompt and
    /// click; wllama's page asks at once by itself.
    first_token_ms: f64,
    /// The app's first token from navigation start with those WebDriver commands included.
    first_token_driven_ms: f64,
    decode_tokens: f64,
    decode_tokens_per_s: f64,
    prefill_tokens: f64,
    prefill_tokens_per_s: f64,
    peak_tab_bytes: u64,
    /// The app's seconds per stage of loading on the timed visit (`data-load-profile`).
    load_profile: String,
    /// WebGPU compute dispatches per decoded token (the app on WebGPU).
    dispatches_per_token: f64,
    /// The model's layers, as the app's model status says.
    layers: usize,
    /// The app worker's WebAssembly memory once the model is loaded, and the bytes its weights hold.
    wasm_memory_bytes: f64,
    weight_bytes: f64,
}

/// The app as a visitor uses it: a first visit fills the cache, the second is timed from navigation start to the
/// first token of a plain (not chat) completion of `tokens` greedy tokens; then, on the CPU, a ~200-token prompt for
/// prefill. On WebGPU (SwiftShader here) the run also counts compute dispatches per token.
fn app_run(base: &str, file: &str, webgpu: bool, tokens: usize) -> Run {
    let browser = Browser::start(webgpu);
    let memory = browser.watch_tab_memory();
    let url = format!("{base}/?hub={base}/hub/#/play?model=bench/gguf/{file}");
    browser.goto(&url);
    browser.wait("the GGUF model (first visit)", GGUF_READY, json!([]), LOAD);
    browser.goto("about:blank");
    browser.goto(&url);
    browser.wait("the GGUF model (warm cache)", GGUF_READY, json!([]), LOAD);
    browser.wait(
        "the chat toggle",
        "return document.querySelector('[data-testid=chat-mode]') || document.querySelector('[data-testid=generate]')",
        json!([]),
        LOAD,
    );
    let load_profile = browser
        .js(
            "const s = document.querySelector('[data-testid=model-status] [data-load-profile]'); return s ? s.getAttribute('data-load-profile') : ''",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status_number = |name: &str| {
        browser
            .js("const s = document.querySelector('[data-testid=model-status] [data-load-profile]'); return s ? parseFloat(s.getAttribute(arguments[0])) : null", json!([name]))
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let (wasm_memory_bytes, weight_bytes) = (status_number("data-wasm-memory-bytes"), status_number("data-weight-bytes"));
    let layers = browser
        .js("const m = document.querySelector('[data-testid=model-status]').textContent.match(/(\\d+) layers/); return m ? parseInt(m[1]) : 0", json!([]))
        .as_u64()
        .unwrap_or_default() as usize;
    browser.js("const c = document.querySelector('[data-testid=chat-mode]'); if (c && c.checked) c.click();", json!([]));
    browser.set_value("prompt", SHORT_PROMPT);
    browser.set_value("max-tokens", &tokens.to_string());
    browser.set_value("temperature", "0");
    browser.click("generate");
    browser.wait_state("output", "done", WORK);
    let number = |name: &str| browser.attr("output", name).parse::<f64>().unwrap_or(f64::NAN);
    let ready_ms = status_number("data-ready-ms");
    let asked_to_first = number("data-first-token-ms") - number("data-requested-ms");
    let mut run = Run {
        first_token_ms: ready_ms + asked_to_first,
        first_token_driven_ms: number("data-first-token-ms"),
        decode_tokens_per_s: number("data-decode-tokens-per-s"),
        dispatches_per_token: number("data-dispatches-per-token"),
        load_profile,
        layers,
        wasm_memory_bytes,
        weight_bytes,
        ..Run::default()
    };
    run.decode_tokens = number("data-new-tokens");
    if !webgpu {
        // Waits for this run's prompt (a first token that is end-of-text sends no token event).
        browser.set_value("prompt", LONG_PROMPT);
        browser.set_value("max-tokens", "1");
        browser.click("generate");
        browser.wait(
            "the long prompt",
            "const o = document.querySelector('[data-testid=output]'); return o.getAttribute('data-state') === 'done' && o.getAttribute('data-prompt-tokens') > 100;",
            json!([]),
            WORK,
        );
        run.prefill_tokens_per_s = number("data-prefill-tokens-per-s");
        run.prefill_tokens = number("data-prompt-tokens");
    }
    run.peak_tab_bytes = memory.peak();
    run
}

/// wllama on the same file through `tests/bench/wllama`, warm cache as for the app.
fn wllama_run(base: &str, file: &str, threads: usize) -> Run {
    let browser = Browser::start(false);
    let memory = browser.watch_tab_memory();
    let encode = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    let url = format!(
        "{base}/peer/index.html?model={}&threads={threads}&short={}&long={}",
        encode(&format!("{base}/hub/bench/gguf/resolve/main/{file}")),
        encode(SHORT_PROMPT),
        encode(LONG_PROMPT)
    );
    let mut result = json!(null);
    for _visit in 0..2 {
        browser.goto("about:blank");
        browser.goto(&url);
        result = browser.wait("wllama's run", "return window.__result", json!([]), WORK);
    }
    assert!(result["error"].is_null(), "wllama: {result}");
    let number = |name: &str| result[name].as_f64().unwrap_or(f64::NAN);
    Run {
        first_token_ms: number("first_token_ms"),
        decode_tokens: number("decode_tokens"),
        decode_tokens_per_s: number("decode_tokens_per_s"),
        prefill_tokens: number("prefill_tokens"),
        prefill_tokens_per_s: number("prefill_tokens_per_s"),
        peak_tab_bytes: memory.peak(),
        ..Run::default()
    }
}

/// Issue 20's side-by-side benchmark (not a pass/fail test; `cargo xtask bench-app` runs it): the app on its wasm CPU
/// backend and wllama, in headless Chromium on this machine, load the same GGUF file and run the same prompts; wllama
/// single-threaded, then with every thread on a cross-origin isolated page. Prints one `BENCH` line per engine and a
/// table of ratios.
#[test]
#[ignore = "benchmark: run by cargo xtask bench-app"]
fn benchmark_real_models_against_wllama() {
    let models = smollm2_gguf().parent().expect("the models folder").to_path_buf();
    let wllama = wllama_dir();
    assert!(wllama.join("esm/index.js").is_file(), "{} is missing: run `cargo xtask bench-app`", wllama.display());
    let roots = vec![("/hub/bench/gguf/resolve/main", models.clone()), ("/wllama", wllama), ("/peer", root().join("tests/bench/wllama")), ("", dist())];
    let (plain, isolated) = (serve(roots.clone()), serve_isolated(roots));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for file in BENCH_MODELS {
        let size = std::fs::metadata(models.join(file)).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            println!("BENCH skipped {file}: not in {}", models.display());
            continue;
        }
        let app = app_run(&format!("http://127.0.0.1:{plain}"), file, false, 128);
        // WebGPU on SwiftShader (a CPU rasteriser): a few tokens, for the dispatch count and the record.
        let gpu = app_run(&format!("http://127.0.0.1:{plain}"), file, true, 6);
        let single = wllama_run(&format!("http://127.0.0.1:{plain}"), file, 1);
        let threaded = wllama_run(&format!("http://127.0.0.1:{isolated}"), file, cores);
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!("\n{file} ({:.1} MiB), headless Chromium, wasm CPU:", mib(size));
        println!("{:<32} {:>10} {:>14} {:>15} {:>15} {:>14}", "engine", "decode tok/s", "(tokens)", "prefill tok/s", "first token ms", "peak tab MiB");
        for (name, r) in [
            ("analog app (1 thread)", &app),
            ("analog app WebGPU (SwiftShader)", &gpu),
            ("wllama 1 thread", &single),
            (&*format!("wllama {cores} threads"), &threaded),
        ] {
            println!(
                "{name:<32} {:>12.2} {:>14.0} {:>15.1} {:>15.0} {:>14.0}",
                r.decode_tokens_per_s,
                r.decode_tokens,
                r.prefill_tokens_per_s,
                r.first_token_ms,
                mib(r.peak_tab_bytes)
            );
            println!(
                "BENCH model={file} engine={} decode_tokens_per_s={:.2} prefill_tokens_per_s={:.1} prefill_tokens={:.0} first_token_ms={:.0} peak_tab_mib={:.0}",
                name.replace(' ', "_"),
                r.decode_tokens_per_s,
                r.prefill_tokens_per_s,
                r.prefill_tokens,
                r.first_token_ms,
                mib(r.peak_tab_bytes)
            );
        }
        let ratio = |a: f64, b: f64| a / b;
        println!("targets for {file}:");
        println!("  decode vs wllama 1 thread:  {:.2}x (target >= 3)", ratio(app.decode_tokens_per_s, single.decode_tokens_per_s));
        println!("  decode vs wllama {cores} threads: {:.2}x (target >= 1.5)", ratio(app.decode_tokens_per_s, threaded.decode_tokens_per_s));
        println!("  prefill vs wllama 1 thread: {:.2}x (target >= 1)", ratio(app.prefill_tokens_per_s, single.prefill_tokens_per_s));
        println!(
            "  first token after load, warm cache: {:.2} s (target < 2; {:.2} s with the WebDriver commands that type and click)",
            app.first_token_ms / 1000.0,
            app.first_token_driven_ms / 1000.0
        );
        println!(
            "  peak tab memory / GGUF size: {:.2}x (target <= 1.5; wllama 1 thread {:.2}x)",
            app.peak_tab_bytes as f64 / size as f64,
            single.peak_tab_bytes as f64 / size as f64
        );
        println!("  load profile, warm cache (seconds per stage): CPU {} | WebGPU {}", app.load_profile, gpu.load_profile);
        println!(
            "  app worker's wasm memory after loading: {:.0} MiB = {:.2}x the GGUF file, for {:.0} MiB of weights held",
            app.wasm_memory_bytes / f64::from(1 << 20),
            app.wasm_memory_bytes / size as f64,
            app.weight_bytes / f64::from(1 << 20)
        );
        // Seven weight matrices a layer (q, k, v, o, gate, up, down) and the unembedding.
        let matrices = 7 * gpu.layers + 1;
        println!(
            "  WebGPU (SwiftShader): {:.0} compute dispatches per decoded token for {matrices} weight matrices: {:.2} a matrix (goal <= 2); {:.2} tok/s",
            gpu.dispatches_per_token,
            gpu.dispatches_per_token / matrices as f64,
            gpu.decode_tokens_per_s
        );
        println!("BENCH model={file} engine=analog_app_webgpu dispatches_per_token={:.1} load_profile_cpu=\"{}\"", gpu.dispatches_per_token, app.load_profile);
    }
}

/// The malformed-input corpus (`tests/fixtures/malformed`, the CLI's cases) through the page: every
/// broken model folder ends in the model status's error with the expected words, every broken
/// pair set, vector or GGUF file in the steering studio's error panel, every broken report in the
/// report error panel; the page keeps working after each.
#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn malformed_inputs_show_an_error_panel() {
    let corpus = root().join("tests/fixtures/malformed");
    let expected: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(corpus.join("expected.json")).expect("expected.json")).expect("JSON");
    // Model cases hold only the files they break; the rest comes from the qwen2 fixture (as in
    // `cli/tests/malformed.rs`).
    let mut roots: Vec<(&'static str, PathBuf)> = vec![("/malformed", corpus.clone())];
    for case in expected.keys().filter(|case| case.starts_with("model/")) {
        roots.push((Box::leak(format!("/malformed/{case}").into_boxed_str()), root().join("tests/fixtures/qwen2")));
    }
    roots.extend([("/fixtures", root().join("tests/fixtures")), ("", dist())]);
    let port = serve(roots);
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start(false);
    browser.goto(&format!("{base}/#/play"));
    browser.wait_state("model-status", "ready", LOAD);
    let case_timeout = Duration::from_secs(30);

    // A broken model through the model box, as a visitor pasting a URL would: its error in the status.
    let refused = |case: &str, url: &str, phrase: &str| {
        browser.js("document.querySelector('[data-testid=model-status]').setAttribute('data-state', 'stale')", json!([]));
        browser.set_value("model-url", url);
        browser.click("model-load");
        browser.wait_state("model-status", "error", case_timeout);
        let status = browser.text("model-status");
        assert!(status.contains(phrase), "{case}: expected {phrase:?} in the model status, found {status:?}");
    };
    let mut models = 0;
    for (case, phrase) in expected.iter().filter(|(case, _)| case.starts_with("model/")) {
        refused(case, &format!("{base}/malformed/{case}/"), phrase);
        models += 1;
    }
    assert!(models >= 20, "only {models} model cases");

    // GGUF model files by URL; a template that loops is only caught when it renders (the CLI's
    // case chats with it), so it is left to `cli/tests/malformed.rs`.
    for (case, phrase) in expected.iter().filter(|(case, _)| case.starts_with("gguf-model/") && !case.contains("endless")) {
        refused(case, &format!("{base}/malformed/{case}"), phrase);
    }

    // A well-formed model (d_model 32, 2 layers: what the vector cases were written for) loads
    // after all that.
    browser.set_value("model-url", &format!("{base}/fixtures/qwen2/"));
    browser.click("model-load");
    browser.wait_state("model-status", "ready", LOAD);

    // Pair sets, vectors and GGUF files through the steering studio's file inputs.
    browser.click("tab-steer");
    for (case, phrase) in expected.iter().filter(|(case, _)| ["pairs/", "vector/", "gguf/"].iter().any(|p| case.starts_with(p))) {
        let input = if case.starts_with("pairs/") { "pairs-file" } else { "vector-file" };
        let name = case.rsplit('/').next().unwrap_or_default();
        browser.upload(input, &corpus.join(case));
        let found = browser.wait(
            &format!("the steering error for {case}"),
            "const e = document.querySelector('[data-testid=steer-error]'); return e && e.textContent.startsWith(arguments[0] + ':') ? e.textContent : null;",
            json!([name]),
            case_timeout,
        );
        let found = found.as_str().unwrap_or_default();
        assert!(found.contains(phrase.as_str()), "{case}: expected {phrase:?} in the steering error, found {found:?}");
    }

    // Reports through the report box.
    browser.click("tab-reports");
    for (case, phrase) in expected.iter().filter(|(case, _)| case.starts_with("report/")) {
        browser.js("const e = document.querySelector('[data-testid=report-error]'); if (e) e.setAttribute('data-stale', '1');", json!([]));
        browser.set_value("report-url", &format!("{base}/malformed/{case}"));
        browser.click("report-load");
        let found = browser.wait(
            &format!("the report error for {case}"),
            "const e = document.querySelector('[data-testid=report-error]'); return e && !e.hasAttribute('data-stale') ? e.textContent : null;",
            json!([]),
            case_timeout,
        );
        let found = found.as_str().unwrap_or_default();
        assert!(found.contains(phrase.as_str()), "{case}: expected {phrase:?} in the report error, found {found:?}");
    }

    // Nothing broke: the model still generates.
    browser.click("tab-play");
    browser.set_value("max-tokens", "4");
    browser.click("generate");
    browser.wait_state("output", "done", WORK);
    browser.click("tab-steer");
    browser.upload("vector-file", &corpus.join("vector/wrong-dimension.json"));
    browser.wait("the steering error", "return document.querySelector('[data-testid=steer-error]')", json!([]), case_timeout);
    browser.screenshot(&shots().join("malformed-vector.png"));
}

/// Keeps a handle on every worker the page starts, so that a test can make one fail the way a
/// crashed one does (a trap in its wasm reaches the page as an `error` event).
const WORKER_SPY: &str = "(() => { const Native = window.Worker; if (!Native) return; window.__workers = []; \
    window.Worker = function (...args) { const w = new Native(...args); window.__workers.push(w); return w; }; \
    window.Worker.prototype = Native.prototype; })();";

const SAVED_KEY: &str = "analog-explorer/v1";

/// `whenRunning(test, act)`: runs `act` once, in the same task as the DOM change that makes
/// `test()` true (a poll from the test could miss a short job entirely).
const WHEN_RUNNING: &str = "function whenRunning(test, act) { \
    const observer = new MutationObserver(() => { if (test()) { observer.disconnect(); act(); } }); \
    observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}); }";

/// A generation has started streaming.
const GENERATING: &str = "() => document.querySelector('[data-testid=output]').getAttribute('data-state') === 'running'";

fn saved_counts(browser: &Browser) -> (usize, usize, usize) {
    (browser.count("saved-pairs"), browser.count("saved-vector"), browser.count("saved-result"))
}

/// Runs `script`, which reloads the page (at once or when some job starts), and waits for the
/// new page: a marker set on the old one must be gone.
fn reload_after(browser: &Browser, script: &str) {
    browser.js(&format!("window.__stale = 1; {script}"), json!([]));
    browser.wait("the reload", "return window.__stale === undefined && document.readyState === 'complete'", json!([]), LOAD);
}

fn stored(browser: &Browser) -> String {
    browser.js("return localStorage.getItem(arguments[0])", json!([SAVED_KEY])).as_str().unwrap_or_default().to_string()
}

/// Nothing a visitor saved is lost: a pair set, a vector and a measured result survive a reload
/// in the middle of an extraction and in the middle of a generation; a crashed worker is replaced,
/// the page says so and the model comes back with one click; a full storage quota is shown with
/// an export that holds everything; stored data this version cannot read is kept aside.
#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn saved_work_survives_reloads_a_worker_crash_and_a_full_quota() {
    let port = site();
    let url = format!("http://127.0.0.1:{port}/");
    let browser = Browser::start(false);
    browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": WORKER_SPY }));
    browser.goto(&format!("{url}#/steer"));
    browser.wait_state("model-status", "ready", LOAD);

    // Save a pair set, a vector and a result.
    browser.wait("the built-in pair sets", "return document.querySelector('[data-testid=pairs-select]').options.length >= 4", json!([]), LOAD);
    browser.set_value("pairs-select", "story-mood");
    browser.wait("the mood pairs", "return parseInt(document.querySelector('details.pairs summary').textContent) > 4", json!([]), LOAD);
    browser.set_value("pairs-name", "my mood");
    browser.click("save-pairs");
    browser.click("extract");
    browser.wait_state("vector-status", "ready", WORK);
    browser.click("save-vector");
    browser.click("coef-sweep");
    browser.click("save-results");
    let saved = saved_counts(&browser);
    assert_eq!(saved, (1, 1, 1), "saved pair sets, vectors, results");
    let before = stored(&browser);
    assert!(before.contains("my mood") && before.contains("coefficient-sweep"), "{before}");

    // Reload in the middle of an extraction: the reload fires the moment its progress shows.
    reload_after(
        &browser,
        &format!(
            "{WHEN_RUNNING} whenRunning(() => document.querySelector('[data-testid=steer-progress]'), () => location.reload()); document.querySelector('[data-testid=extract]').click();"
        ),
    );
    browser.wait_state("model-status", "ready", LOAD);
    browser.wait("the saved work after a reload", "return document.querySelectorAll('[data-testid=saved-result]').length", json!([]), LOAD);
    assert_eq!(saved_counts(&browser), saved, "after a reload mid-extraction");
    assert_eq!(stored(&browser), before, "the stored work changed across a reload mid-extraction");

    // Reload in the middle of a generation.
    browser.click("tab-play");
    browser.set_value("max-tokens", "250");
    reload_after(
        &browser,
        &format!("{WHEN_RUNNING} whenRunning({GENERATING}, () => location.reload()); document.querySelector('[data-testid=generate]').click();"),
    );
    browser.wait_state("model-status", "ready", LOAD);
    browser.click("tab-steer");
    browser.wait("the saved work after a reload", "return document.querySelectorAll('[data-testid=saved-result]').length", json!([]), LOAD);
    assert_eq!(saved_counts(&browser), saved, "after a reload mid-generation");
    assert_eq!(stored(&browser), before, "the stored work changed across a reload mid-generation");

    // The worker crashes mid-generation: a new one starts, the page says what happened, and the
    // model comes back with "Try again".
    browser.click("tab-play");
    let workers = browser.js("return window.__workers.length", json!([])).as_u64().unwrap_or(0);
    assert!(workers >= 1, "the spy saw no worker");
    browser.set_value("max-tokens", "250");
    browser.js(
        &format!(
            "{WHEN_RUNNING} whenRunning({GENERATING}, () => {{ const w = window.__workers[window.__workers.length - 1]; w.terminate(); \
             w.dispatchEvent(new ErrorEvent('error', {{message: 'RuntimeError: unreachable'}})); }}); \
             document.querySelector('[data-testid=generate]').click();"
        ),
        json!([]),
    );
    browser.wait_state("model-status", "error", LOAD);
    let status = browser.text("model-status");
    assert!(status.contains("model worker stopped") && status.contains("fresh one was started"), "{status}");
    assert_ne!(browser.attr("output", "data-state"), "running", "the interrupted generation still says it runs");
    assert_eq!(browser.js("return window.__workers.length", json!([])).as_u64(), Some(workers + 1), "no new worker");
    browser.click("model-retry");
    browser.wait_state("model-status", "ready", LOAD);
    browser.set_value("max-tokens", "8");
    browser.click("generate");
    browser.wait_state("output", "done", WORK);
    assert_eq!(stored(&browser), before, "the stored work changed across a worker crash");

    // A full quota: the page says so and offers an export that holds everything, including what
    // could not be stored.
    browser.click("tab-steer");
    browser.js(
        "window.__setItem = Storage.prototype.setItem; \
         Storage.prototype.setItem = function () { throw new DOMException('The quota has been exceeded.', 'QuotaExceededError'); }; \
         window.__exported = null; const create = URL.createObjectURL; \
         URL.createObjectURL = (blob) => { blob.text().then(t => { window.__exported = t; }); return create(blob); };",
        json!([]),
    );
    browser.set_value("pairs-name", "made while full");
    browser.click("save-pairs");
    browser.wait("the storage error", "return document.querySelector('[data-testid=storage-error]')", json!([]), LOAD);
    assert!(browser.text("storage-error").contains("quota"), "{}", browser.text("storage-error"));
    browser.click("storage-export");
    let exported = browser.wait("the export", "return window.__exported", json!([]), LOAD);
    let exported = exported.as_str().unwrap_or_default();
    assert!(exported.contains("made while full") && exported.contains("my mood") && exported.contains("coefficient-sweep"), "export: {exported}");
    browser.js("Storage.prototype.setItem = window.__setItem;", json!([]));
    browser.set_value("pairs-name", "after the quota");
    browser.click("save-pairs");
    browser.wait("the storage error to clear", "return !document.querySelector('[data-testid=storage-error]')", json!([]), LOAD);
    let after = stored(&browser);
    assert!(after.contains("made while full") && after.contains("after the quota") && after.contains("my mood"), "{after}");

    // Stored data this version cannot read is kept aside, not overwritten.
    browser.js("localStorage.setItem(arguments[0], '{\"format\": \"from the future\", ')", json!([SAVED_KEY]));
    browser.js("location.reload()", json!([]));
    browser.wait("the unreadable-data warning", "return document.querySelector('[data-testid=storage-unreadable]')", json!([]), LOAD);
    let kept = browser.js("return localStorage.getItem(arguments[0] + '.unreadable')", json!([SAVED_KEY]));
    assert_eq!(kept.as_str(), Some("{\"format\": \"from the future\", "), "the unreadable data was not kept aside");
    // Saving over the damaged entry does not lose it: the next visit offers it again.
    browser.click("tab-steer");
    browser.wait_state("model-status", "ready", LOAD);
    reload_after(&browser, "location.reload()");
    browser.wait("the unreadable-data warning again", "return document.querySelector('[data-testid=storage-unreadable]')", json!([]), LOAD);
    browser.screenshot(&shots().join("storage-unreadable.png"));
}

/// A report's analog is loaded from the report's `url` only with the weights the report names:
/// a report recording another sha256 gets its download refused, the right one loads and says it
/// was verified, and the report is then opened again to compare.
#[test]
#[ignore = "needs the site built by trunk: run by cargo xtask test"]
fn a_reports_analog_loads_only_with_the_weights_it_names() {
    let bundled = root().join("public/reports/story-lab-transfer.json");
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(bundled).expect("the bundled report")).expect("JSON");
    assert_eq!(report["analog"]["url"], json!("../models/story-analog/"));
    let dir = std::env::temp_dir().join(format!("analog-report-analog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("good.json"), report.to_string()).expect("write report");
    report["analog"]["weights_sha256"] = json!("1".repeat(64));
    std::fs::write(dir.join("bad.json"), report.to_string()).expect("write report");
    let port = serve(vec![("/under-test", dir.clone()), ("/fixtures", root().join("tests/fixtures")), ("", dist())]);
    let base = format!("http://127.0.0.1:{port}");

    let browser = Browser::start(false);
    browser.goto(&format!("{base}/#/reports"));
    browser.wait_state("model-status", "ready", LOAD);
    assert!(browser.text("model-status").contains("verified against the catalog"), "{}", browser.text("model-status"));
    browser.set_value("model-url", &format!("{base}/fixtures/qwen2/"));
    browser.click("model-load");
    browser.wait(
        "another model",
        "const e = document.querySelector('[data-testid=model-status]'); return e.getAttribute('data-state') === 'ready' && e.textContent.includes('qwen2')",
        json!([]),
        LOAD,
    );

    // A report recording other weights: the download is refused.
    browser.set_value("report-url", &format!("{base}/under-test/bad.json"));
    browser.click("report-load");
    browser.wait("the offer to load the report's analog", "return document.querySelector('[data-testid=report-load-analog]')", json!([]), LOAD);
    browser.js("document.querySelector('[data-testid=report-view]').scrollIntoView({block: 'start'})", json!([]));
    browser.screenshot(&shots().join("report-analog-offer.png"));
    browser.click("report-load-analog");
    browser.wait_state("model-status", "error", LOAD);
    let status = browser.text("model-status");
    assert!(status.contains(&format!("but the report `story-lab-transfer` records {}", "1".repeat(64))) && status.contains("refusing it"), "{status}");

    // The report's own weights: loaded, verified, and the report opened again to compare.
    browser.set_value("report-url", &format!("{base}/under-test/good.json"));
    browser.click("report-load");
    browser.click("report-load-analog");
    browser.wait_state("model-status", "ready", LOAD);
    let status = browser.text("model-status");
    assert!(status.contains("story-analog") && status.contains("model.safetensors verified against the report `story-lab-transfer`"), "{status}");
    browser.wait("the comparison to start", "return document.querySelector('[data-testid=report-progress]')", json!([]), LOAD);
    assert_eq!(browser.count("report-load-analog"), 0, "still offering to load the analog it has loaded");
    let _ = std::fs::remove_dir_all(&dir);
}
