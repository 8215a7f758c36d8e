//! Network and files: bounded fetches with a timeout (in the worker, and on the page for the
//! catalog and the built-in pair sets), model files through Cache Storage with download progress
//! and sha256 checks, and local `File`s.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Cache, DedicatedWorkerGlobalScope, Headers, ReadableStreamDefaultReader, RequestInit, Response, ResponseInit, Window};

/// Model files are cached under this name; bump it when the cache layout changes.
const CACHE: &str = "analog-models-v1";
/// Seconds without a response before a fetch is abandoned.
const TIMEOUT_MS: i32 = 60_000;
/// The largest model file accepted (wasm32 has 4 GiB of memory, and weights are expanded to f32).
pub const MAX_MODEL_FILE: u64 = 1 << 30;

fn js_error(what: &str, e: JsValue) -> String {
    let text = e.as_string().or_else(|| Reflect::get(&e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string())).unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {text}")
}

/// Resolves `relative` against the URL of the document that names it.
pub fn join(base: &str, relative: &str) -> Result<String, String> {
    let url = web_sys::Url::new_with_base(relative, base).map_err(|e| js_error(&format!("`{relative}` is not a URL"), e))?;
    let href = url.href();
    analog_core::report::check_url(&href).map_err(|e| format!("{href}: {e}"))?;
    Ok(href)
}

/// A fetched body and whether it came from Cache Storage.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub from_cache: bool,
    /// The bytes' sha256 in hex: computed when they were downloaded, and kept with the cached copy.
    pub sha256: String,
}

/// The header of a cached copy holding its sha256, so that a warm load does not hash a file again.
const SHA256_HEADER: &str = "x-analog-sha256";

/// What fetches: the page's window or the worker's scope (web-sys gives them no common type).
pub trait Scope {
    fn fetch(&self, url: &str, init: &RequestInit) -> js_sys::Promise;
    fn set_timeout(&self, callback: &js_sys::Function, ms: i32) -> Result<i32, JsValue>;
    fn clear_timeout(&self, handle: i32);
}

/// The page's window and the worker's scope have the same methods under the same names.
macro_rules! impl_scope {
    ($($ty:ty),*) => {$(
        impl Scope for $ty {
            fn fetch(&self, url: &str, init: &RequestInit) -> js_sys::Promise {
                self.fetch_with_str_and_init(url, init)
            }
            fn set_timeout(&self, callback: &js_sys::Function, ms: i32) -> Result<i32, JsValue> {
                self.set_timeout_with_callback_and_timeout_and_arguments_0(callback, ms)
            }
            fn clear_timeout(&self, handle: i32) {
                self.clear_timeout_with_handle(handle);
            }
        }
    )*};
}

impl_scope!(DedicatedWorkerGlobalScope, Window);

async fn response(scope: &impl Scope, url: &str, what: &str) -> Result<Response, String> {
    let response = any_response(scope, url, what).await?;
    if !response.ok() {
        return Err(http_error(&response, url, what));
    }
    Ok(response)
}

fn http_error(response: &Response, url: &str, what: &str) -> String {
    format!("the {what} at {url}: HTTP {} {}", response.status(), response.status_text())
}

/// The response to a GET with a timeout, whatever its status.
async fn any_response(scope: &impl Scope, url: &str, what: &str) -> Result<Response, String> {
    let controller = AbortController::new().map_err(|e| js_error("AbortController", e))?;
    let init = RequestInit::new();
    init.set_signal(Some(&controller.signal()));
    let abort = Closure::once_into_js(move || controller.abort());
    let timer = scope.set_timeout(abort.unchecked_ref(), TIMEOUT_MS).unwrap_or(0);
    let result = JsFuture::from(scope.fetch(url, &init)).await;
    scope.clear_timeout(timer);
    Ok(result
        .map_err(|e| js_error(&format!("cannot fetch the {what} at {url} (network error or no answer within {} s)", TIMEOUT_MS / 1000), e))?
        .unchecked_into())
}

fn content_length(response: &Response) -> Option<u64> {
    response.headers().get("content-length").ok().flatten().and_then(|v| v.parse().ok())
}

/// Reads a body chunk by chunk, refusing more than `limit` bytes and reporting progress.
async fn read_body(response: &Response, limit: u64, what: &str, progress: &mut dyn FnMut(u64, Option<u64>, Option<f64>)) -> Result<Vec<u8>, String> {
    let total = content_length(response);
    if let Some(total) = total.filter(|&t| t > limit) {
        return Err(format!("the {what} is {total} bytes; the limit is {limit}"));
    }
    let body = response.body().ok_or_else(|| format!("the {what} has no body"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(limit) as usize);
    let started = js_sys::Date::now();
    let mut last_report = 0.0;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| js_error(&format!("reading the {what}"), e))?;
        if Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(|e| js_error(&format!("reading the {what}"), e))?.unchecked_into();
        if bytes.len() as u64 + u64::from(value.length()) > limit {
            let _ = reader.cancel();
            return Err(format!("the {what} is larger than the limit of {limit} bytes"));
        }
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        let now = js_sys::Date::now();
        if now - last_report > 100.0 {
            last_report = now;
            let seconds = (now - started) / 1000.0;
            progress(bytes.len() as u64, total, (seconds > 0.0).then(|| bytes.len() as f64 / seconds));
        }
    }
    let seconds = (js_sys::Date::now() - started) / 1000.0;
    progress(bytes.len() as u64, total.or(Some(bytes.len() as u64)), (seconds > 0.0).then(|| bytes.len() as f64 / seconds));
    Ok(bytes)
}

/// Fetches a small document (a report, a pair set) with a timeout and a size limit.
pub async fn bounded(scope: &DedicatedWorkerGlobalScope, url: &str, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    analog_core::report::check_url(url).map_err(|e| format!("{url}: {e}"))?;
    let response = response(scope, url, what).await?;
    read_body(&response, limit, what, &mut |_, _, _| {}).await
}

/// The largest document the page fetches (the catalog, a built-in pair set).
const PAGE_LIMIT: u64 = 16 << 20;

/// Fetches a document of the site from the page (`url` may be relative to it), with the
/// worker's timeout and a size limit; `what` names it in errors.
pub async fn page_text(url: &str, what: &str) -> Result<String, String> {
    let window = web_sys::window().ok_or("the page has no window")?;
    let response = response(&window, url, what).await?;
    let bytes = read_body(&response, PAGE_LIMIT, what, &mut |_, _, _| {}).await?;
    // As `Response.text()` decodes: invalid UTF-8 becomes U+FFFD.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn open_cache(scope: &DedicatedWorkerGlobalScope) -> Option<Cache> {
    let caches = scope.caches().ok()?;
    JsFuture::from(caches.open(CACHE)).await.ok().map(JsCast::unchecked_into)
}

/// Download progress: what, bytes done, bytes in all (when known), bytes per second.
pub type Progress<'a> = dyn FnMut(&str, u64, Option<u64>, Option<f64>) + 'a;

/// A model file: from Cache Storage when present (and still matching `sha256`), otherwise
/// downloaded with progress, checked and cached. Cache failures (quota, private mode) only cost
/// the next visit a download.
pub async fn model_file(
    scope: &DedicatedWorkerGlobalScope,
    url: &str,
    name: &str,
    sha256: Option<&str>,
    recorded_by: &str,
    progress: &mut Progress<'_>,
) -> Result<Fetched, String> {
    let fetched = cached_file(scope, url, name, sha256, recorded_by, false, progress).await?;
    fetched.ok_or_else(|| format!("the {name} at {url} is missing"))
}

/// A model file that may be absent (`tokenizer_config.json`): `None` when the server answers
/// 404, or when it cannot be reached (the other files may have come from the cache: a visit
/// offline still loads the model, logging why this file is missing); otherwise as [`model_file`].
pub async fn optional_model_file(scope: &DedicatedWorkerGlobalScope, url: &str, name: &str, progress: &mut Progress<'_>) -> Result<Option<Fetched>, String> {
    cached_file(scope, url, name, None, "", true, progress).await
}

async fn cached_file(
    scope: &DedicatedWorkerGlobalScope,
    url: &str,
    name: &str,
    sha256: Option<&str>,
    recorded_by: &str,
    optional: bool,
    progress: &mut Progress<'_>,
) -> Result<Option<Fetched>, String> {
    let cache = open_cache(scope).await;
    if let Some(cache) = &cache
        && let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await
        && let Ok(hit) = hit.dyn_into::<Response>()
    {
        let bytes = read_body(&hit, MAX_MODEL_FILE, name, &mut |done, total, _| progress(&format!("{name} (cache)"), done, total, None)).await?;
        // Copies cached by earlier versions have no digest beside them.
        let got = match hit.headers().get(SHA256_HEADER).ok().flatten().filter(|h| h.len() == 64) {
            Some(stored) => stored,
            None => sha256_hex(scope, &bytes).await,
        };
        if sha256.is_none_or(|want| got == want) {
            return Ok(Some(Fetched { bytes, from_cache: true, sha256: got }));
        }
        let _ = JsFuture::from(cache.delete_with_str(url)).await;
    }
    let response = match any_response(scope, url, name).await {
        Ok(response) if optional && response.status() == 404 => return Ok(None),
        Ok(response) => response,
        Err(e) if optional => {
            web_sys::console::warn_1(&format!("going on without it: {e}").into());
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if !response.ok() {
        return Err(http_error(&response, url, name));
    }
    let mut bytes = read_body(&response, MAX_MODEL_FILE, name, &mut |done, total, rate| progress(name, done, total, rate)).await?;
    let got = sha256_hex(scope, &bytes).await;
    if let Some(want) = sha256
        && got != want
    {
        return Err(format!("{name} from {url} has sha256 {got}, but {recorded_by} records {want}: refusing it"));
    }
    // With its length, so that the next visit reads it into a buffer of the right size at once (growing one by
    // doubling briefly held 1.5× a 250 MB file in wasm memory, which never shrinks).
    let init = ResponseInit::new();
    if let Ok(headers) = Headers::new()
        && headers.set("content-length", &bytes.len().to_string()).is_ok()
        && headers.set(SHA256_HEADER, &got).is_ok()
    {
        init.set_headers_headers(&headers);
    }
    if let Some(cache) = &cache
        && let Ok(copy) = Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init)
    {
        let _ = JsFuture::from(cache.put_with_str(url, &copy)).await;
    }
    Ok(Some(Fetched { bytes, from_cache: false, sha256: got }))
}

/// The sha256 of `bytes` in hex, by the browser's SubtleCrypto where it is there (native code: about 20× the wasm
/// implementation, which took 2.2 s of the 3 s SmolLM2's GGUF file took to load from the cache), else in wasm.
pub async fn sha256_hex(scope: &DedicatedWorkerGlobalScope, bytes: &[u8]) -> String {
    let subtle = async {
        let subtle = scope.crypto().ok()?.subtle();
        // `digest` copies the bytes before it returns: the view on wasm memory is not used after that.
        let promise = subtle.digest_with_str_and_u8_array("SHA-256", bytes).ok()?;
        let digest = JsFuture::from(promise).await.ok()?;
        Some(Uint8Array::new(&digest).to_vec().iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    match subtle.await {
        Some(hex) => hex,
        None => analog_core::report::sha256_hex(bytes),
    }
}

/// The bytes of a file the visitor picked or dropped.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    if file.size() > MAX_MODEL_FILE as f64 {
        return Err(format!("{} is {} bytes; the limit is {MAX_MODEL_FILE}", file.name(), file.size()));
    }
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| js_error(&format!("reading {}", file.name()), e))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}
