//! Just enough of the W3C WebDriver protocol (over `ureq`) and a static file server to drive the
//! built app in headless Chromium from a Rust test.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Serves `roots` (URL prefix → directory, the first that has the file wins) on 127.0.0.1 until
/// the process ends.
pub fn serve(roots: Vec<(&'static str, PathBuf)>) -> u16 {
    serve_with(roots, false)
}

/// [`serve`], cross-origin isolated (COOP/COEP headers): pages get `SharedArrayBuffer`, so wasm threads.
pub fn serve_isolated(roots: Vec<(&'static str, PathBuf)>) -> u16 {
    serve_with(roots, true)
}

fn serve_with(roots: Vec<(&'static str, PathBuf)>, isolated: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let roots = roots.clone();
            std::thread::spawn(move || {
                let _ = respond(stream, &roots, isolated);
            });
        }
    });
    port
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "wasm" => "application/wasm",
        "css" => "text/css",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "md" | "jsonl" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(mut stream: TcpStream, roots: &[(&str, PathBuf)], isolated: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? <= 2 {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").split(['?', '#']).next().unwrap_or("/").to_string();
    // The first root whose prefix matches and that has the file (later roots overlay earlier ones
    // that lack it).
    let file = roots.iter().find_map(|(prefix, dir)| {
        let rest = path.strip_prefix(prefix)?;
        let rest = if rest.is_empty() || rest.ends_with('/') { format!("{rest}index.html") } else { rest.to_string() };
        let file = (!rest.contains("..")).then(|| dir.join(rest.trim_start_matches('/')))?;
        std::fs::read(&file).ok().map(|b| (file, b))
    });
    match file {
        Some((f, body)) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n{}Connection: close\r\n\r\n",
                mime(&f),
                body.len(),
                if isolated { "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n" } else { "" }
            )?;
            stream.write_all(&body)
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
    }
}

/// A chromedriver process and one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    _profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and headless Chromium; `webgpu` exposes SwiftShader's WebGPU adapter.
    pub fn start(webgpu: bool) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(120))).build().into();
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while agent.get(&format!("{root}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("analog-chromium-{}-{port}", std::process::id()));
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if webgpu {
            args.push("--enable-unsafe-webgpu".into());
        }
        // `CHROME` picks another browser binary (e.g. a GPU-enabled Chrome for the app benchmark).
        let binary = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": { "binary": binary, "args": args }, "goog:loggingPrefs": { "browser": "ALL" } } } });
        let mut browser = Browser { driver, base: String::new(), agent, _profile: profile };
        let session = browser.call("POST", &format!("{root}/session"), Some(caps));
        let id = session["sessionId"].as_str().expect("a session id").to_string();
        browser.base = format!("{root}/session/{id}");
        browser
    }

    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let response = match method {
            "POST" => self.agent.post(url).header("Content-Type", "application/json").send(body.unwrap_or(json!({})).to_string()),
            _ => self.agent.get(url).call(),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if value["value"]["error"].is_string() {
            panic!("{method} {url}: {}: {}", value["value"]["error"], value["value"]["message"]);
        }
        value["value"].clone()
    }

    /// Starts sampling the resident memory of this browser's renderer processes (the tab and its workers) every
    /// 50 ms; [`TabMemory::peak`] stops and gives the highest sum seen.
    pub fn watch_tab_memory(&self) -> TabMemory {
        let driver = self.driver.id();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(renderer_rss(driver));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        TabMemory { stop, thread }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &format!("{}/url", self.base), Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call("POST", &format!("{}/execute/sync", self.base), Some(json!({ "script": script, "args": args })))
    }

    /// Polls `script` until it returns something truthy; panics with `what` and the page's
    /// visible errors after `timeout`.
    pub fn wait(&self, what: &str, script: &str, args: Value, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, args.clone());
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > timeout {
                let errors =
                    self.js("return [...document.querySelectorAll('.error, [data-testid=model-status]')].map(e => e.textContent).join(' | ')", json!([]));
                panic!("timed out after {timeout:?} waiting for {what}; page says: {errors}\nconsole:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for `[data-testid=id]` to have `data-state` equal to `state`.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) {
        self.wait(
            &format!("{id} to be {state}"),
            "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e && e.getAttribute('data-state') === arguments[1];",
            json!([id, state]),
            timeout,
        );
    }

    pub fn click(&self, id: &str) {
        self.wait(
            &format!("{id} to be enabled"),
            "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e && !e.disabled;",
            json!([id]),
            Duration::from_secs(60),
        );
        self.js("document.querySelector(`[data-testid=\"${arguments[0]}\"]`).click()", json!([id]));
    }

    /// Sets an input's value the way typing does (an `input` and a `change` event).
    pub fn set_value(&self, id: &str, value: &str) {
        self.js(
            "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([id, value]),
        );
    }

    pub fn text(&self, id: &str) -> String {
        self.js("const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e ? e.textContent : null;", json!([id]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn attr(&self, id: &str, name: &str) -> String {
        self.js("const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e ? e.getAttribute(arguments[1]) : null;", json!([id, name]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn count(&self, id: &str) -> usize {
        self.js("return document.querySelectorAll(`[data-testid=\"${arguments[0]}\"]`).length;", json!([id])).as_u64().unwrap_or(0) as usize
    }

    /// Picks `path` in the file input `[data-testid=id]` (as a visitor choosing a file does).
    pub fn upload(&self, id: &str, path: &Path) {
        let element =
            self.call("POST", &format!("{}/element", self.base), Some(json!({ "using": "css selector", "value": format!("[data-testid=\"{id}\"]") })));
        let element = element.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("an element id").to_string();
        let path = path.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.call("POST", &format!("{}/element/{element}/value", self.base), Some(json!({ "text": path.display().to_string() })));
    }

    /// Runs a Chrome DevTools Protocol command on the page (chromedriver's `goog/cdp/execute`).
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        self.call("POST", &format!("{}/goog/cdp/execute", self.base), Some(json!({ "cmd": command, "params": params })))
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let data = self.call("GET", &format!("{}/screenshot", self.base), None);
        let bytes = base64_decode(data.as_str().expect("base64 screenshot"));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    /// The browser console's messages since the last call.
    pub fn console(&self) -> String {
        let log = self.call("POST", &format!("{}/se/log", self.base), Some(json!({ "type": "browser" })));
        log.as_array().map(|entries| entries.iter().map(|e| format!("{} {}", e["level"], e["message"])).collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

/// Standard base64 (the screenshot encoding), without a dependency.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A running sample of a browser's renderer memory (see [`Browser::watch_tab_memory`]).
pub struct TabMemory {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl TabMemory {
    /// The highest resident bytes of the renderer processes seen since the watch began.
    pub fn peak(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Resident bytes of the renderer processes (`--type=renderer`) descended from process `root` (Linux `/proc`).
fn renderer_rss(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut parent = std::collections::HashMap::new();
    for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent pid is the second field after the parenthesised command name.
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) {
            parent.insert(pid, ppid);
        }
    }
    let descends = |mut pid: u32| {
        while let Some(&up) = parent.get(&pid) {
            if up == root {
                return true;
            }
            if up <= 1 {
                return false;
            }
            pid = up;
        }
        false
    };
    parent
        .keys()
        .filter(|&&pid| descends(pid) && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(15).any(|w| w == b"--type=renderer")))
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0) * 1024
        })
        .sum()
}
