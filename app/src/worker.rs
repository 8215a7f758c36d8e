//! The model worker: owns the model and runs every job (download, generate, extract, measure,
//! compare) off the page's thread. Requests queue and run one at a time; `Cancel` is read between
//! tokens, because the decoder yields to the worker's event loop after each one.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use analog_core::chat::{ChatMessage, ChatTemplate};
use analog_core::device::BackendKind;
use analog_core::report::{self, InterventionInputs};
use analog_core::steering::metrics::{self, EvalSpec};
use analog_core::steering::{Application, PairFormat, PairSet, SteeringVector, VectorModel};
use analog_core::weights::Footprint;
use analog_core::{Decoder, Device, GenerateOptions, Hooks, ModelConfig, Positions, Progress, TextModel, TokenTexts, WeightFiles, device};
use futures::StreamExt;
use futures::channel::mpsc;
use js_sys::Array;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::fetch::{self, Fetched};
use crate::protocol::{CoefficientSweep, Event, Job, LayerView, ModelInfo, ModelSource, Request, Steer, file_name, is_gguf};

/// The loaded model and what the page needs to know about it.
struct Loaded {
    model: TextModel,
    info: ModelInfo,
    /// Why the chat template that came with the model cannot be used (chat requests fail with it).
    chat_error: Option<String>,
}

/// A model's files as fetched or read, before the model is built from them.
enum ModelFiles {
    /// `config.json`, `model.safetensors` and `tokenizer.json`.
    Hf { config: Vec<u8>, weights: Vec<u8>, tokenizer: Vec<u8> },
    /// One GGUF file, and a `tokenizer.json` that replaces the tokenizer it describes.
    Gguf { file: Vec<u8>, tokenizer: Option<Vec<u8>> },
}

/// What a load brings in: the files, `tokenizer_config.json` (a chat template) when present, and
/// what the page shows about where they came from.
struct Incoming {
    label: String,
    files: ModelFiles,
    tokenizer_config: Option<Vec<u8>>,
    from_cache: bool,
    verified: Option<String>,
    /// The weights file's sha256 when fetching already knows it (computed on download, kept with the cached copy).
    weights_sha256: Option<String>,
}

/// Local files: one `.gguf` (with an optional `tokenizer.json`), or `config.json`,
/// `model.safetensors` and `tokenizer.json`; `tokenizer_config.json` with either. Only the files
/// used are read.
async fn read_local(names: &[String], files: &[web_sys::File]) -> Result<Incoming, Vec<String>> {
    let find = |name: &str| names.iter().position(|n| n == name).and_then(|i| files.get(i));
    let read = async |name: &str| -> Result<Option<Vec<u8>>, Vec<String>> {
        match find(name) {
            Some(file) => fetch::read_file(file).await.map(Some).map_err(errors),
            None => Ok(None),
        }
    };
    let require =
        |bytes: Option<Vec<u8>>, name: &str| bytes.ok_or_else(|| errors(format!("pick or drop `{name}` with the other model files (or one .gguf file)")));
    let ggufs: Vec<&String> = names.iter().filter(|n| is_gguf(n)).collect();
    let (label, files) = match ggufs.as_slice() {
        [] => {
            let config = require(read("config.json").await?, "config.json")?;
            let tokenizer = require(read("tokenizer.json").await?, "tokenizer.json")?;
            let weights = require(read("model.safetensors").await?, "model.safetensors")?;
            ("local files".to_string(), ModelFiles::Hf { config, weights, tokenizer })
        }
        [gguf] => {
            let file = require(read(gguf).await?, gguf)?;
            (gguf.to_string(), ModelFiles::Gguf { file, tokenizer: read("tokenizer.json").await? })
        }
        many => {
            let many: Vec<&str> = many.iter().map(|n| n.as_str()).collect();
            return Err(errors(format!("pick or drop one .gguf file at a time (got {})", many.join(", "))));
        }
    };
    Ok(Incoming { label, files, tokenizer_config: read("tokenizer_config.json").await?, from_cache: false, verified: None, weights_sha256: None })
}

struct Worker {
    scope: DedicatedWorkerGlobalScope,
    /// The device the loaded model runs on, and its kind (the badge).
    device: Device,
    backend: BackendKind,
    /// The WebGPU device, when the browser offers one, and the largest buffer it allows: a model
    /// with a larger tensor runs on the CPU instead.
    gpu: Option<(Device, u64)>,
    model: Option<Loaded>,
    cancelled: Rc<RefCell<HashSet<Job>>>,
}

type JobResult = Result<(), Vec<String>>;

fn errors(e: impl ToString) -> Vec<String> {
    vec![e.to_string()]
}

/// Starts the worker: call from the worker binary's `main`.
pub fn start() {
    console_error_panic_hook::set_once();
    count_dispatches();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let cancelled = Rc::new(RefCell::new(HashSet::new()));
    let (tx, mut rx) = mpsc::unbounded::<(Request, Vec<web_sys::File>)>();
    let on_message = {
        let cancelled = cancelled.clone();
        let scope = scope.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            let parts: Array = if data.is_array() { data.unchecked_into() } else { Array::of1(&data) };
            let text = parts.get(0).as_string().unwrap_or_default();
            let files = parts.iter().skip(1).filter_map(|f| f.dyn_into::<web_sys::File>().ok()).collect();
            match serde_json::from_str::<Request>(&text) {
                Ok(Request::Cancel { job }) => {
                    cancelled.borrow_mut().insert(job);
                }
                Ok(request) => {
                    let _ = tx.unbounded_send((request, files));
                }
                Err(e) => post(&scope, &Event::Failed { job: 0, errors: vec![format!("the worker cannot read this request: {e}")] }),
            }
        })
    };
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&scope, &Event::Started);
    wasm_bindgen_futures::spawn_local(async move {
        let mut worker = Worker { scope, device: device::cpu(), backend: BackendKind::Cpu, gpu: None, model: None, cancelled };
        while let Some((request, files)) = rx.next().await {
            let job = request_job(&request);
            let result = worker.handle(request, files).await;
            let stopped = worker.cancelled.borrow_mut().remove(&job);
            match result {
                Err(_) if stopped => worker.send(&Event::Stopped { job }),
                Err(errors) => worker.send(&Event::Failed { job, errors }),
                Ok(()) => {}
            }
        }
    });
}

fn request_job(request: &Request) -> Job {
    match request {
        Request::Init { .. } => 0,
        Request::Load { job, .. }
        | Request::Generate { job, .. }
        | Request::Compare { job, .. }
        | Request::Inspect { job, .. }
        | Request::Extract { job, .. }
        | Request::Sweep { job, .. }
        | Request::Report { job, .. }
        | Request::Export { job, .. }
        | Request::Cancel { job } => *job,
    }
}

/// Posts several events as one message (a JSON array of them), as the page's bridge reads it.
fn post_all(scope: &DedicatedWorkerGlobalScope, events: &[Event]) {
    match serde_json::to_string(events) {
        Ok(text) => {
            let _ = scope.post_message(&JsValue::from_str(&text));
        }
        Err(_) => events.iter().for_each(|e| post(scope, e)),
    }
}

fn post(scope: &DedicatedWorkerGlobalScope, event: &Event) {
    let text = serde_json::to_string(event).unwrap_or_else(|e| format!(r#"{{"failed":{{"job":0,"errors":["cannot encode an event: {e}"]}}}}"#));
    let _ = scope.post_message(&JsValue::from_str(&text));
}

/// Lets the event loop run (and deliver `Cancel`) before the next step.
async fn yield_now(scope: &DedicatedWorkerGlobalScope) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// How long new tokens wait to be posted together: the page then renders a few tokens at a time (about as often as
/// a screen refreshes at 30 Hz) instead of once per token, which left less of a 2-core machine to the worker.
const TOKEN_BATCH_MS: f64 = 33.0;

/// How long generation runs between two yields to the worker's event loop. A turn of the loop is not free: in
/// Chromium on this project's 2-core test machine it took 3.5–6 ms (a timer, a MessageChannel or
/// `scheduler.postTask` alike), which at one yield per 12 ms token cost a third of SmolLM2's decode speed. Tokens
/// reach the page without yielding (`postMessage` does not wait); only Cancel waits for a yield.
const YIELD_EVERY_MS: f64 = 100.0;

fn now_s() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// Counts this worker's WebGPU compute dispatches in `__analogDispatches` by wrapping
/// `GPUComputePassEncoder.prototype.dispatchWorkgroups` (and the indirect form): the number of kernels each
/// token takes is what bounds small-model decoding on a GPU. Does nothing without WebGPU.
const COUNT_DISPATCHES: &str = "const P = self.GPUComputePassEncoder && self.GPUComputePassEncoder.prototype; \
    if (!P || self.__analogDispatches !== undefined) return; self.__analogDispatches = 0; \
    for (const name of ['dispatchWorkgroups', 'dispatchWorkgroupsIndirect']) { const f = P[name]; \
    if (f) P[name] = function (...a) { self.__analogDispatches++; return f.apply(this, a); }; }";

fn count_dispatches() {
    if let Err(e) = js_sys::Function::new_no_args(COUNT_DISPATCHES).call0(&JsValue::UNDEFINED) {
        web_sys::console::warn_2(&"cannot count WebGPU dispatches".into(), &e);
    }
}

/// WebGPU compute dispatches so far (see [`count_dispatches`]).
fn dispatch_count(scope: &DedicatedWorkerGlobalScope) -> Option<f64> {
    js_sys::Reflect::get(scope, &JsValue::from_str("__analogDispatches")).ok()?.as_f64()
}

/// The size of this worker's WebAssembly memory.
fn wasm_memory_bytes() -> u64 {
    let buffer = wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer();
    buffer.unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
}

/// Seconds spent in each stage of loading a model, in order.
struct LoadProfile {
    stages: Vec<(String, f64)>,
    /// The stage under way and when it began.
    current: (String, f64),
}

impl LoadProfile {
    fn begin(name: &str) -> Self {
        Self { stages: Vec::new(), current: (name.to_string(), now_s()) }
    }

    /// Ends the stage under way and begins `name`.
    fn stage(&mut self, name: &str) {
        let now = now_s();
        let (ended, began) = std::mem::replace(&mut self.current, (name.to_string(), now));
        self.stages.push((ended, now - began));
    }

    /// Every stage, the one under way ended now; core's closing `done` stage is left out.
    fn finish(mut self) -> Vec<(String, f64)> {
        self.stage("");
        self.stages.retain(|(name, seconds)| name != "done" && *seconds > 0.0);
        self.stages
    }
}

/// A long job's steps (batches of prompts, layers, coefficients): each is posted as progress, and
/// the worker yields to its event loop after it, so that a Stop from the page is read there and
/// ends the job with [`analog_core::Error::Cancelled`]. A step takes tens of milliseconds at least;
/// a yield about 5 (see [`YIELD_EVERY_MS`]).
struct JobSteps {
    scope: DedicatedWorkerGlobalScope,
    job: Job,
    cancelled: Rc<RefCell<HashSet<Job>>>,
}

impl Progress for JobSteps {
    fn step(&mut self, what: &str, done: usize, total: usize) -> impl std::future::Future<Output = analog_core::Result<()>> {
        post(&self.scope, &Event::Progress { job: self.job, what: what.to_string(), done: done as u64, total: Some(total as u64), bytes_per_s: None });
        async move {
            yield_now(&self.scope).await;
            if self.cancelled.borrow().contains(&self.job) { Err(analog_core::Error::Cancelled) } else { Ok(()) }
        }
    }
}

impl Worker {
    fn send(&self, event: &Event) {
        post(&self.scope, event);
    }

    fn model(&self) -> Result<&Loaded, Vec<String>> {
        self.model.as_ref().ok_or_else(|| errors("no model is loaded yet"))
    }

    fn is_cancelled(&self, job: Job) -> bool {
        self.cancelled.borrow().contains(&job)
    }

    /// The steps of a long `job`, as progress events; a Stop ends it at the next step.
    fn steps(&self, job: Job) -> JobSteps {
        JobSteps { scope: self.scope.clone(), job, cancelled: self.cancelled.clone() }
    }

    async fn handle(&mut self, request: Request, files: Vec<web_sys::File>) -> JobResult {
        match request {
            Request::Init { webgpu } => {
                let (device, backend, reason) = choose_backend(&self.scope, webgpu).await;
                if backend == BackendKind::Wgpu {
                    let limit = gpu_buffer_limit(&self.scope).await.unwrap_or(u64::MAX);
                    self.gpu = Some((device.clone(), limit));
                }
                self.device = device;
                self.backend = backend;
                self.send(&Event::Ready { backend, reason });
                Ok(())
            }
            Request::Load { job, source } => self.load(job, source, files).await,
            Request::Generate { job, prompt, options, steer, chat } => {
                let mut hooks = steering_hooks(&self.model()?.info, &steer)?;
                let ids = self.prompt_ids(&prompt, chat)?;
                self.generate(job, 0, &ids, &options, &mut hooks).await
            }
            Request::Compare { job, prompt, options, steer, chat } => {
                let mut steered = steering_hooks(&self.model()?.info, std::slice::from_ref(&steer))?;
                let ids = self.prompt_ids(&prompt, chat)?;
                self.generate(job, 0, &ids, &options, &mut Hooks::new()).await?;
                self.generate(job, 1, &ids, &options, &mut steered).await
            }
            Request::Inspect { job, prompt } => {
                let loaded = self.model()?;
                let ids = loaded.model.encode(&prompt).map_err(errors)?;
                let rows = analog_core::lens::logit_lens(&loaded.model, &ids, 5).await.map_err(errors)?;
                let tokenizer = &loaded.model.tokenizer;
                let layers = rows
                    .into_iter()
                    .map(|r| LayerView {
                        layer: r.layer,
                        resid_norm: r.resid_norm,
                        top: r.top.into_iter().map(|(id, p)| (TokenTexts::default().next(tokenizer, id), p)).collect(),
                    })
                    .collect();
                self.send(&Event::Inspected { job, layers });
                Ok(())
            }
            Request::Extract { job, pairs, format, method, aggregation, chat } => self.extract(job, &pairs, format, method, aggregation, chat).await,
            Request::Sweep { job, steer, coefs, target, counter, prompts, lexicon, pairs, id, concept } => {
                let loaded = self.model()?;
                let spec = EvalSpec::sweep(prompts, Some(target), Some(counter), lexicon, steer.normalise);
                let vector = chosen_layer(&loaded.info, &steer)?;
                let rows = metrics::evaluate(&loaded.model, &vector, &coefs, &spec, &mut self.steps(job)).await.map_err(errors)?;
                let pairs = PairSet::parse(&pairs, PairFormat::Jsonl).map_err(errors)?;
                let intervention =
                    report::Intervention::measured(&id, &concept, &pairs, &vector, steer.layer, spec, report::MetricName::LogitDiffShift, &rows).ok();
                self.send(&Event::Swept { job, sweep: Box::new(CoefficientSweep { rows, intervention }) });
                Ok(())
            }
            Request::Export { job, interventions, publisher } => {
                let loaded = self.model()?;
                let info = &loaded.info;
                let analog = report::AnalogModel::of(&loaded.model, info.label.clone(), info.weights_sha256.clone(), None);
                let provenance = report::Provenance {
                    code_revision: env!("CARGO_PKG_VERSION").into(),
                    seeds: [("evaluation".to_string(), 0)].into(),
                    date: js_sys::Date::new_0().to_iso_string().as_string().unwrap_or_default().chars().take(10).collect(),
                    hardware: format!("browser ({})", self.scope.navigator().user_agent().unwrap_or_default()),
                    software: Some(format!("analog-explorer {} in the browser (burn 0.22)", env!("CARGO_PKG_VERSION"))),
                };
                let report = report::TransferReport::measured(analog, publisher, interventions, provenance)
                    .validated()
                    .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
                self.send(&Event::Exported { job, json: report.to_json() });
                Ok(())
            }
            Request::Report { job, url, text } => self.report(job, &url, text).await,
            Request::Cancel { .. } => Ok(()),
        }
    }

    /// Fetches or reads a model's files, then builds it on the device its footprint allows.
    async fn load(&mut self, job: Job, source: ModelSource, files: Vec<web_sys::File>) -> JobResult {
        let mut profile = LoadProfile::begin("files");
        let incoming = match source {
            ModelSource::Url { base, label, sha256, recorded_by } => self.fetch_folder(job, base, label, &sha256, &recorded_by).await?,
            ModelSource::Gguf { url, label, sha256, recorded_by } => {
                let name = file_name(&url).to_string();
                let Fetched { bytes, from_cache, sha256: weights_sha256 } =
                    fetch::model_file(&self.scope, &url, &name, sha256.as_deref(), &recorded_by, &mut self.progress(job)).await.map_err(errors)?;
                let verified = sha256.is_some().then(|| format!("sha256 of {name} verified against {recorded_by}"));
                let files = ModelFiles::Gguf { file: bytes, tokenizer: None };
                Incoming { label, files, tokenizer_config: None, from_cache, verified, weights_sha256: Some(weights_sha256) }
            }
            ModelSource::Files { names } => read_local(&names, &files).await?,
        };
        profile.stage("sha256");
        self.send(&Event::Progress { job, what: "building the model".into(), done: 0, total: None, bytes_per_s: None });
        yield_now(&self.scope).await;
        // The new files are in (a typo or a network error has left the old model usable); the old
        // model goes before the new one is built, so a switch never holds two models' tensors.
        self.model = None;
        let Incoming { label, files, tokenizer_config, from_cache, verified, weights_sha256 } = incoming;
        let (weights, weight_files) = match &files {
            ModelFiles::Hf { weights, .. } => (weights, WeightFiles::Single(weights)),
            ModelFiles::Gguf { file, .. } => (file, WeightFiles::Gguf(file)),
        };
        let sha = match weights_sha256 {
            Some(sha) => sha,
            None => fetch::sha256_hex(&self.scope, weights).await,
        };
        profile.stage("checks");
        let bytes = weights.len() as u64;
        // From the header alone (safetensors or GGUF): refuse what cannot fit before building.
        let footprint = analog_core::weights::footprint(&weight_files).map_err(errors)?;
        self.place(&footprint, bytes)?;
        profile.stage("build");
        let model = match &files {
            ModelFiles::Hf { config, weights: _, tokenizer } => TextModel::from_bytes(config, &weight_files, tokenizer, &self.device),
            ModelFiles::Gguf { file, tokenizer } => {
                TextModel::from_gguf_in_stages(file, tokenizer.as_deref(), &self.device, &mut |stage| profile.stage(stage.name()))
            }
        }
        .map_err(errors)?;
        drop(files);
        // `tokenizer_config.json`'s template replaces the GGUF file's; one that cannot be used
        // leaves the model usable for plain prompts, and chat requests report why.
        let (model, chat_error) = match tokenizer_config.map(|bytes| ChatTemplate::from_tokenizer_config(&bytes)) {
            Some(Ok(template)) => (model.with_chat_template(template), None),
            Some(Err(e)) if model.chat_template.is_none() => (model, Some(format!("tokenizer_config.json: {e}"))),
            Some(Err(_)) | None => (model, None),
        };
        let c = model.config();
        let info = ModelInfo {
            label,
            architecture: c.architecture.model_type().to_string(),
            n_params: model.model.n_params,
            n_layers: c.n_layers,
            d_model: c.d_model,
            vocab_size: c.vocab_size,
            context_length: c.context_length,
            weights_sha256: sha,
            bytes,
            verified,
            has_chat_template: model.chat_template.is_some() || chat_error.is_some(),
            weight_bytes: model.model.weight_bytes(),
            load_profile: profile.finish(),
            wasm_memory_bytes: wasm_memory_bytes(),
        };
        self.model = Some(Loaded { model, info: info.clone(), chat_error });
        self.send(&Event::Loaded { job, info, from_cache });
        Ok(())
    }

    /// Posts download progress of `job`.
    fn progress(&self, job: Job) -> impl FnMut(&str, u64, Option<u64>, Option<f64>) + use<> {
        let scope = self.scope.clone();
        move |what: &str, done: u64, total: Option<u64>, rate: Option<f64>| {
            post(&scope, &Event::Progress { job, what: what.to_string(), done, total, bytes_per_s: rate })
        }
    }

    /// A model folder by URL: the three files (checked against `sha256` where it names them) and
    /// `tokenizer_config.json` when the folder has one.
    async fn fetch_folder(&self, job: Job, base: String, label: String, sha256: &[(String, String)], recorded_by: &str) -> Result<Incoming, Vec<String>> {
        let checked: Vec<&str> =
            ["config.json", "tokenizer.json", "model.safetensors"].into_iter().filter(|name| sha256.iter().any(|(n, _)| n == name)).collect();
        let verified = (!checked.is_empty()).then(|| format!("sha256 of {} verified against {recorded_by}", checked.join(", ")));
        let expected = |name: &str| sha256.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
        let mut progress = self.progress(job);
        let mut cached = true;
        let mut get = async |name: &str, progress: &mut fetch::Progress<'_>| -> Result<(Vec<u8>, String), Vec<String>> {
            let Fetched { bytes, from_cache, sha256 } =
                fetch::model_file(&self.scope, &format!("{base}{name}"), name, expected(name).as_deref(), recorded_by, progress).await.map_err(errors)?;
            cached &= from_cache;
            Ok((bytes, sha256))
        };
        let (config, _) = get("config.json", &mut progress).await?;
        // Before the weights come down: what config.json says they need, refused now if it cannot be held.
        let planned = analog_core::weights::footprint_of_config(&ModelConfig::from_hf_json(&config).map_err(errors)?);
        self.placement(&planned, 0)?;
        let (tokenizer, _) = get("tokenizer.json", &mut progress).await?;
        let (weights, weights_sha256) = get("model.safetensors", &mut progress).await?;
        let name = "tokenizer_config.json";
        let tokenizer_config =
            fetch::optional_model_file(&self.scope, &format!("{base}{name}"), name, &mut progress).await.map_err(errors)?.map(|fetched| fetched.bytes);
        let files = ModelFiles::Hf { config, weights, tokenizer };
        Ok(Incoming { label, files, tokenizer_config, from_cache: cached, verified, weights_sha256: Some(weights_sha256) })
    }

    /// The ids of `prompt`: as typed, or with `chat` as one user message in the model's chat format.
    fn prompt_ids(&self, prompt: &str, chat: bool) -> Result<Vec<u32>, Vec<String>> {
        let loaded = self.model()?;
        if !chat {
            return loaded.model.encode(prompt).map_err(errors);
        }
        if let (None, Some(e)) = (&loaded.model.chat_template, &loaded.chat_error) {
            return Err(errors(e));
        }
        loaded.model.chat_ids(&[ChatMessage::user(prompt)]).map_err(errors)
    }

    /// Picks the device for a model of this footprint: WebGPU when every tensor (quantised matrices
    /// as their packed codes) fits its largest buffer, else the CPU (the badge says why), and refuses
    /// what the CPU cannot hold in a wasm32 memory.
    fn place(&mut self, footprint: &Footprint, file_bytes: u64) -> JobResult {
        let (device, backend, reason) = self.placement(footprint, file_bytes)?;
        if self.gpu.is_some() && backend != self.backend {
            self.send(&Event::Ready { backend, reason });
        }
        self.device = device;
        self.backend = backend;
        Ok(())
    }

    /// Where [`Self::place`] would put a model of this footprint, and why; or why it cannot be held.
    fn placement(&self, footprint: &Footprint, file_bytes: u64) -> Result<(Device, BackendKind, String), Vec<String>> {
        let (device, backend, reason) = match &self.gpu {
            Some((gpu, limit)) if footprint.device_largest_bytes <= *limit => (gpu.clone(), BackendKind::Wgpu, WEBGPU_FOUND.to_string()),
            Some((_, limit)) => (
                device::cpu(),
                BackendKind::Cpu,
                format!(
                    "a tensor needs {} MB on the GPU (`{}` is {} MB as f32), over this GPU's largest buffer ({} MB): this model runs on the CPU",
                    footprint.device_largest_bytes >> 20,
                    footprint.largest,
                    footprint.largest_bytes >> 20,
                    limit >> 20
                ),
            ),
            None => (self.device.clone(), self.backend, String::new()),
        };
        // The CPU keeps quantised weights quantised, as the device footprint counts them.
        if backend == BackendKind::Cpu && footprint.device_bytes.saturating_add(file_bytes) > WASM_MEMORY_BUDGET {
            return Err(errors(format!(
                "this model needs {} MB of weights plus its {} MB file while loading, more than the {} MB a browser tab's WebAssembly memory can hold{}; pick a smaller model",
                footprint.device_bytes >> 20,
                file_bytes >> 20,
                WASM_MEMORY_BUDGET >> 20,
                if self.gpu.is_some() { "" } else { " (WebGPU would hold the weights outside it)" },
            )));
        }
        Ok((device, backend, reason))
    }

    /// Streams the generation that continues `ids` as `stream` of `job`.
    async fn generate(&self, job: Job, stream: u8, ids: &[u32], options: &GenerateOptions, hooks: &mut Hooks) -> JobResult {
        let loaded = self.model()?;
        let model = &loaded.model;
        let pieces = ids.iter().map(|&id| model.tokenizer.piece(id).unwrap_or_default()).collect();
        let mut spelled = TokenTexts::default();
        let texts = ids.iter().map(|&id| spelled.next(&model.tokenizer, id)).collect();
        self.send(&Event::Prompt { job, stream, ids: ids.to_vec(), pieces, texts });
        let started = now_s();
        let mut first_token_seconds = None;
        let mut dispatches_at_first_token = None;
        let mut decoder = Decoder::new(model, ids, options, hooks).map_err(errors)?;
        let mut last_yield = js_sys::Date::now();
        let (mut batch, mut last_post) = (Vec::new(), 0.0);
        while let Some(token) = decoder.next(hooks).await.map_err(errors)? {
            first_token_seconds.get_or_insert_with(|| now_s() - started);
            dispatches_at_first_token.get_or_insert_with(|| dispatch_count(&self.scope));
            let piece = model.tokenizer.piece(token.id).unwrap_or_default();
            let shown = spelled.next(&model.tokenizer, token.id);
            batch.push(Event::Token { job, stream, id: token.id, piece, text: token.text, shown });
            if js_sys::Date::now() - last_post >= TOKEN_BATCH_MS {
                post_all(&self.scope, &std::mem::take(&mut batch));
                last_post = js_sys::Date::now();
            }
            // Let Cancel in now and then (see YIELD_EVERY_MS).
            if js_sys::Date::now() - last_yield > YIELD_EVERY_MS {
                yield_now(&self.scope).await;
                last_yield = js_sys::Date::now();
            }
            if self.is_cancelled(job) {
                decoder.cancel();
            }
        }
        if !batch.is_empty() {
            post_all(&self.scope, &batch);
        }
        let out = decoder.finish().map_err(errors)?;
        let stop = serde_json::to_value(out.stop).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        // A first token that is end-of-text ends the run without a token event: the prompt took the whole run.
        let seconds = now_s() - started;
        let first_token_seconds = first_token_seconds.unwrap_or(seconds);
        let dispatches_per_token = match (self.backend, dispatches_at_first_token.flatten(), dispatch_count(&self.scope)) {
            (BackendKind::Wgpu, Some(first), Some(end)) if out.ids.len() > 1 => Some((end - first) / (out.ids.len() - 1) as f64),
            _ => None,
        };
        self.send(&Event::Generated { job, stream, tokens: out.ids.len(), seconds, prompt_tokens: ids.len(), first_token_seconds, dispatches_per_token, stop });
        Ok(())
    }

    async fn extract(
        &self,
        job: Job,
        text: &str,
        format: PairFormat,
        method: analog_core::steering::Method,
        aggregation: analog_core::steering::Aggregation,
        chat: bool,
    ) -> JobResult {
        use analog_core::steering::{HookSite, PromptFormat, collect_ids, encode_pairs};
        let loaded = self.model()?;
        let pairs = PairSet::parse(text, format).map_err(errors)?;
        if let (true, None, Some(e)) = (chat, &loaded.model.chat_template, &loaded.chat_error) {
            return Err(errors(e));
        }
        let encoded = encode_pairs(&loaded.model, &pairs, if chat { PromptFormat::Chat } else { PromptFormat::Plain }).map_err(errors)?;
        let mut steps = self.steps(job);
        let acts = collect_ids(&loaded.model.model, &encoded, HookSite::ResidPost, aggregation, &mut steps).await.map_err(errors)?;
        let identity = VectorModel { id: loaded.info.label.clone(), weights_sha256: loaded.info.weights_sha256.clone(), d_model: loaded.info.d_model };
        let layers: Vec<usize> = (0..loaded.info.n_layers).collect();
        let mut vector = analog_core::steering::steering_vector(&acts, method, &layers, identity, &pairs).map_err(errors)?;
        // Recorded, so a report of this vector re-extracts it the same way.
        vector.pairs.prompt_format = if chat { PromptFormat::Chat } else { PromptFormat::Plain };
        let sweep = analog_core::steering::sweep_with(&acts, &mut steps).await.map_err(errors)?;
        self.send(&Event::Extracted { job, vector, sweep });
        Ok(())
    }

    async fn report(&self, job: Job, url: &str, text: Option<String>) -> JobResult {
        let bytes = match text {
            Some(text) => text.into_bytes(),
            None => fetch::bounded(&self.scope, url, report::MAX_REPORT_BYTES as u64, "report").await.map_err(errors)?,
        };
        let parsed = report::parse(&bytes).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let report = Box::new(parsed.clone());
        let Some(loaded) = self.model.as_ref() else {
            self.send(&Event::ReportChecked { job, report, comparison: None, note: Some("load a model to compare".into()) });
            return Ok(());
        };
        self.send(&Event::ReportParsed { job, report: report.clone() });
        if loaded.info.d_model != parsed.analog.d_model || loaded.info.n_layers != parsed.analog.n_layers {
            let note = format!("this report is about `{}`; load it to compare (the loaded model has another shape)", parsed.analog.id);
            self.send(&Event::ReportChecked { job, report, comparison: None, note: Some(note) });
            return Ok(());
        }
        let mut inputs = Vec::new();
        for iv in &parsed.interventions {
            let pairs = match (iv.inline_pairs(), &iv.pairs.url) {
                (Some(pairs), _) => pairs.map_err(errors)?,
                (None, Some(rel)) => {
                    let target = fetch::join(url, rel).map_err(errors)?;
                    let bytes = fetch::bounded(&self.scope, &target, 16 << 20, "pair set").await.map_err(errors)?;
                    iv.pairs_from_bytes(&bytes, PairFormat::from_name(rel)).map_err(errors)?
                }
                (None, None) => return Err(errors(format!("{}: the pair set has neither inline pairs nor a URL", iv.id))),
            };
            let vector_file = match &iv.vector.url {
                Some(rel) => Some(fetch::bounded(&self.scope, &fetch::join(url, rel).map_err(errors)?, 64 << 20, "vector").await.map_err(errors)?),
                None => None,
            };
            inputs.push(InterventionInputs { pairs, vector: iv.vector_from_bytes(vector_file.as_deref()).map_err(errors)? });
        }
        let local = VectorModel { id: loaded.info.label.clone(), weights_sha256: loaded.info.weights_sha256.clone(), d_model: loaded.info.d_model };
        let comparison = report::compare(&loaded.model, &local, &parsed, &inputs, &mut self.steps(job)).await.map_err(errors)?;
        self.send(&Event::ReportChecked { job, report, comparison: Some(Box::new(comparison)), note: None });
        Ok(())
    }
}

/// The vector's direction at the layer chosen to steer at; a vector from another model, or one
/// with no direction at that layer, is an error (steering would silently change nothing).
fn chosen_layer(model: &ModelInfo, steer: &Steer) -> Result<SteeringVector, Vec<String>> {
    steer.vector.check_fits(model.d_model, model.n_layers).map_err(errors)?;
    steer.vector.check_layer(steer.layer).map_err(errors)?;
    Ok(steer.vector.select_layers(&[steer.layer]))
}

/// The hooks that add each vector at its chosen layer.
fn steering_hooks(model: &ModelInfo, steer: &[Steer]) -> Result<Hooks, Vec<String>> {
    let mut hooks = Hooks::new();
    for s in steer {
        let how = Application { coef: s.coef, positions: Positions::ALL, normalise: s.normalise, ablate: false, preserve_norm: false };
        hooks = chosen_layer(model, s)?.edits(&how).into_iter().fold(hooks, Hooks::edit);
    }
    Ok(hooks)
}

/// The badge's reason when the model runs on WebGPU.
const WEBGPU_FOUND: &str = "WebGPU adapter found";

/// What the CPU backend may hold in a wasm32 memory (4 GiB addressable, less the program, the
/// tokenizer and the activations).
const WASM_MEMORY_BUDGET: u64 = 3 << 30;

/// The largest buffer WebGPU allows a kernel to read (`maxStorageBufferBindingSize`, bounded by
/// `maxBufferSize`): burn asks for the adapter's own limits, so those are the ones that apply.
async fn gpu_buffer_limit(scope: &DedicatedWorkerGlobalScope) -> Option<u64> {
    let gpu = js_sys::Reflect::get(&scope.navigator(), &JsValue::from_str("gpu")).ok()?;
    let request: js_sys::Function = js_sys::Reflect::get(&gpu, &JsValue::from_str("requestAdapter")).ok()?.dyn_into().ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let limits = js_sys::Reflect::get(&adapter, &JsValue::from_str("limits")).ok()?;
    let limit = |name: &str| js_sys::Reflect::get(&limits, &JsValue::from_str(name)).ok()?.as_f64();
    Some(limit("maxStorageBufferBindingSize")?.min(limit("maxBufferSize")?) as u64)
}

/// WebGPU when the browser offers an adapter (and the page allows it), else burn's CPU backend;
/// the reason is shown on the backend badge.
async fn choose_backend(scope: &DedicatedWorkerGlobalScope, allow: bool) -> (Device, BackendKind, String) {
    if !allow {
        return (device::cpu(), BackendKind::Cpu, "WebGPU turned off (?webgpu=0)".into());
    }
    let gpu = js_sys::Reflect::get(&scope.navigator(), &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return (device::cpu(), BackendKind::Cpu, "this browser has no WebGPU".into());
    }
    match device::wgpu_async().await {
        Ok(device) => (device, BackendKind::Wgpu, WEBGPU_FOUND.into()),
        Err(e) => {
            web_sys::console::warn_1(&format!("WebGPU unavailable: {e}").into());
            (device::cpu(), BackendKind::Cpu, "the browser offers no WebGPU adapter".into())
        }
    }
}
