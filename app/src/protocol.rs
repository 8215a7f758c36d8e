//! What the page and the model worker say to each other: serde enums sent as JSON strings (the worker also posts a
//! JSON array of events as one message, to batch new tokens).
//! Local files travel beside the JSON as `File` objects (structured clone, no copy into JSON).

use analog_core::device::BackendKind;
use analog_core::report::compare::Comparison;
use analog_core::report::{Intervention, TransferReport};
use analog_core::steering::metrics::MetricRow;
use analog_core::steering::{Aggregation, Method, PairFormat, SteeringVector, SweepRow};
use analog_core::{GenerateOptions, TokenText};
use serde::{Deserialize, Serialize};

/// A job number chosen by the page; events about a job carry it back.
pub type Job = u32;

/// Where a model's files come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A directory URL holding `config.json`, `model.safetensors` and `tokenizer.json`, and
    /// optionally `tokenizer_config.json` (its chat template); an HF repo resolves to
    /// `https://huggingface.co/<repo>/resolve/main/`. `sha256` maps file names to recorded digests;
    /// files it names are checked. `recorded_by` says who recorded them ("the catalog", "the
    /// report `…`"), for the messages.
    Url {
        base: String,
        label: String,
        sha256: Vec<(String, String)>,
        #[serde(default)]
        recorded_by: String,
    },
    /// Files the visitor picked or dropped; they arrive beside the message in this order. Either
    /// `config.json`, `model.safetensors` and `tokenizer.json`, or one `.gguf` file (with an
    /// optional `tokenizer.json`); `tokenizer_config.json` may come with both.
    Files { names: Vec<String> },
    /// The URL of one GGUF model file (configuration, weights, tokenizer and chat template in one);
    /// `sha256`, when given, is the file's recorded digest, checked as `Url`'s are.
    Gguf {
        url: String,
        label: String,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        recorded_by: String,
    },
}

/// One steering vector applied at one layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Steer {
    pub vector: SteeringVector,
    pub layer: usize,
    pub coef: f32,
    /// `coef` is a fraction of the layer's mean residual norm.
    pub normalise: bool,
}

/// Page → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Choose the backend: WebGPU when an adapter exists and `webgpu` is allowed, else the CPU.
    Init {
        webgpu: bool,
    },
    Load {
        job: Job,
        source: ModelSource,
    },
    /// Stream a generation; with `steer`, the vectors are added at every position. With `chat`,
    /// `prompt` is one user message in the model's chat format, and the output is the reply.
    Generate {
        job: Job,
        prompt: String,
        options: GenerateOptions,
        steer: Vec<Steer>,
        #[serde(default)]
        chat: bool,
    },
    /// Baseline then steered generation from the same prompt and seed (`chat` as in `Generate`).
    Compare {
        job: Job,
        prompt: String,
        options: GenerateOptions,
        steer: Steer,
        #[serde(default)]
        chat: bool,
    },
    /// Per-layer residual norms and the logit lens at the prompt's last token.
    Inspect {
        job: Job,
        prompt: String,
    },
    /// Extract a vector at every layer from JSONL/CSV pairs, with the layer sweep; with `chat`, each
    /// prompt is sent in the model's chat format (see `PromptFormat::Chat`).
    Extract {
        job: Job,
        pairs: String,
        format: PairFormat,
        method: Method,
        aggregation: Aggregation,
        #[serde(default)]
        chat: bool,
    },
    /// Metrics per coefficient (logit shift, KL, trigger rate, perplexity, random baseline).
    /// `pairs` (JSONL) is recorded in the measured intervention, ready for a report.
    Sweep {
        job: Job,
        steer: Steer,
        coefs: Vec<f32>,
        target: String,
        counter: String,
        prompts: Vec<String>,
        lexicon: Vec<String>,
        pairs: String,
        id: String,
        concept: String,
    },
    /// The visitor's measured interventions as a valid v1 `measurement` report of the loaded analog.
    Export {
        job: Job,
        interventions: Vec<Intervention>,
        publisher: String,
    },
    /// Fetch (or take) a transfer report, validate it and compare it with the loaded analog.
    Report {
        job: Job,
        url: String,
        text: Option<String>,
    },
    /// Stop `job` between two of its steps (tokens, batches of prompts, layers, coefficients);
    /// it ends with `Stopped` (a generation with its `Generated`, stopped: cancelled).
    Cancel {
        job: Job,
    },
}

/// A loaded model, as the page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub label: String,
    pub architecture: String,
    pub n_params: usize,
    pub n_layers: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub weights_sha256: String,
    pub bytes: u64,
    /// What was checked against recorded digests, e.g. "model.safetensors matches the sha256 the
    /// catalog records"; `None` when nothing recorded a digest (local files, a bare URL).
    pub verified: Option<String>,
    /// The model came with a chat template (in its GGUF file or `tokenizer_config.json`), so
    /// prompts can be sent as chat messages. Also true when the template is there but cannot be
    /// used: chat requests then fail with the template's error.
    #[serde(default)]
    pub has_chat_template: bool,
    /// Bytes the weights hold on the device (quantised where it keeps them so).
    #[serde(default)]
    pub weight_bytes: u64,
    /// Seconds per stage of loading, in order (files, sha256, checks, then header, tokenizer and weights for a GGUF
    /// file, or build).
    #[serde(default)]
    pub load_profile: Vec<(String, f64)>,
    /// The worker's WebAssembly memory once loaded: it never shrinks, so this is its peak so far.
    #[serde(default)]
    pub wasm_memory_bytes: u64,
}

/// One layer of the residual-stream view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerView {
    pub layer: usize,
    pub resid_norm: f32,
    /// The logit lens: most likely next tokens read from this layer's residual, as the text each
    /// stands for, with their probabilities.
    pub top: Vec<(TokenText, f32)>,
}

/// The metrics of a vector across coefficients, and the measured intervention they make (absent
/// when the vector cannot be recorded in a report), as the studio shows and saves them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CoefficientSweep {
    pub rows: Vec<MetricRow>,
    pub intervention: Option<Intervention>,
}

/// Worker → page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The worker listens: messages sent before this would be lost, so the page queues them.
    Started,
    /// The worker runs; which backend it chose and why.
    Ready {
        backend: BackendKind,
        reason: String,
    },
    Progress {
        job: Job,
        what: String,
        done: u64,
        total: Option<u64>,
        bytes_per_s: Option<f64>,
    },
    Loaded {
        job: Job,
        info: ModelInfo,
        from_cache: bool,
    },
    /// Prompt tokens of a generation: ids, vocabulary pieces, and what each stands for.
    Prompt {
        job: Job,
        stream: u8,
        ids: Vec<u32>,
        pieces: Vec<String>,
        #[serde(default)]
        texts: Vec<TokenText>,
    },
    /// One generated token; `stream` 0 is the only or baseline output, 1 the steered one. `text`
    /// is what it adds to the output; `shown` what the token view shows for it.
    Token {
        job: Job,
        stream: u8,
        id: u32,
        piece: String,
        text: String,
        #[serde(default)]
        shown: TokenText,
    },
    Generated {
        job: Job,
        stream: u8,
        tokens: usize,
        seconds: f64,
        /// Prompt tokens prefilled before the first new token.
        #[serde(default)]
        prompt_tokens: usize,
        /// From the start to the first new token: the prefill and one step.
        #[serde(default)]
        first_token_seconds: f64,
        /// WebGPU compute dispatches per token after the first (absent on the CPU).
        #[serde(default)]
        dispatches_per_token: Option<f64>,
        stop: String,
    },
    Inspected {
        job: Job,
        layers: Vec<LayerView>,
    },
    Extracted {
        job: Job,
        vector: SteeringVector,
        sweep: Vec<SweepRow>,
    },
    Swept {
        job: Job,
        sweep: Box<CoefficientSweep>,
    },
    Exported {
        job: Job,
        json: String,
    },
    /// The report is valid; its comparison follows.
    ReportParsed {
        job: Job,
        report: Box<TransferReport>,
    },
    /// The report validated; `comparison` is absent when it cannot be compared with this model.
    ReportChecked {
        job: Job,
        report: Box<TransferReport>,
        comparison: Option<Box<Comparison>>,
        note: Option<String>,
    },
    /// A job failed; `errors` lists every problem (report validation gives one per JSON path).
    Failed {
        job: Job,
        errors: Vec<String>,
    },
    /// A job ended early because the page asked it to stop (`Cancel`).
    Stopped {
        job: Job,
    },
}

impl Event {
    /// The job an event belongs to (0 for `Ready`).
    pub fn job(&self) -> Job {
        match self {
            Self::Started | Self::Ready { .. } => 0,
            Self::Progress { job, .. }
            | Self::Loaded { job, .. }
            | Self::Prompt { job, .. }
            | Self::Token { job, .. }
            | Self::Generated { job, .. }
            | Self::Inspected { job, .. }
            | Self::Extracted { job, .. }
            | Self::Swept { job, .. }
            | Self::Exported { job, .. }
            | Self::ReportParsed { job, .. }
            | Self::ReportChecked { job, .. }
            | Self::Failed { job, .. }
            | Self::Stopped { job } => *job,
        }
    }
}

/// Where the HF hub serves files; `?hub=` on the page replaces it with a stand-in on this machine.
pub const HF_HUB: &str = "https://huggingface.co/";

/// The hub base a page URL's `hub=` asks for: plain http on this machine only (a stand-in server
/// for tests), so that a shared link cannot send the model box's repo ids to another host.
pub fn hub_base(requested: &str) -> Result<String, String> {
    let requested = requested.trim();
    analog_core::report::check_url(requested)?;
    if !requested.to_ascii_lowercase().starts_with("http://") {
        return Err(format!("`hub={requested}` must be a plain http URL on this machine (a stand-in for huggingface.co)"));
    }
    Ok(if requested.ends_with('/') { requested.to_string() } else { format!("{requested}/") })
}

/// Where a model named in the model box lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// A folder URL (ending in `/`) holding `config.json`, `model.safetensors`, `tokenizer.json`.
    Folder(String),
    /// The URL of one `.gguf` file.
    Gguf(String),
}

/// Resolves what a visitor types into the model box: an HF repo id `owner/name` (a folder),
/// `owner/name/file.gguf` (one file of the repo), or a URL (a `.gguf` file, else a folder).
/// `hub` is [`HF_HUB`] or a stand-in from [`hub_base`].
pub fn model_location(input: &str, hub: &str) -> Result<ModelLocation, String> {
    let input = input.trim();
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        // https anywhere, plain http only on this machine; no credentials, no look-alike hosts.
        analog_core::report::check_url(input)?;
        if is_gguf(input) {
            return Ok(ModelLocation::Gguf(input.to_string()));
        }
        return Ok(ModelLocation::Folder(if input.ends_with('/') { input.to_string() } else { format!("{input}/") }));
    }
    let parts: Vec<&str> = input.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !s.starts_with('.');
    match parts.as_slice() {
        [owner, name] if valid(owner) && valid(name) => Ok(ModelLocation::Folder(format!("{hub}{input}/resolve/main/"))),
        [owner, name, file] if valid(owner) && valid(name) && valid(file) && is_gguf(file) => {
            Ok(ModelLocation::Gguf(format!("{hub}{owner}/{name}/resolve/main/{file}")))
        }
        _ => Err(format!("`{input}` is neither an HF repo id (owner/name), a GGUF file of one (owner/name/file.gguf) nor an https URL")),
    }
}

/// Whether a URL or file name names a GGUF file (the query and fragment aside).
pub fn is_gguf(name: &str) -> bool {
    let path = name.split(['?', '#']).next().unwrap_or_default();
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// The file name at the end of a URL, for progress and messages.
pub fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_urls_resolve() {
        let model_url = |input: &str| model_location(input, HF_HUB);
        let folder = |url: &str| Ok(ModelLocation::Folder(url.into()));
        let gguf = |url: &str| Ok(ModelLocation::Gguf(url.into()));
        assert_eq!(model_url("HuggingFaceTB/SmolLM2-135M"), folder("https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/"));
        assert_eq!(model_url(" https://example.org/m "), folder("https://example.org/m/"));
        assert_eq!(model_url("http://127.0.0.1:8080/models/a/"), folder("http://127.0.0.1:8080/models/a/"));
        assert_eq!(
            model_url("Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf"),
            gguf("https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf")
        );
        assert_eq!(model_url("https://example.org/m/a.GGUF?download=1"), gguf("https://example.org/m/a.GGUF?download=1"));
        assert_eq!(model_location("o/n/m.gguf", "http://127.0.0.1:9/"), gguf("http://127.0.0.1:9/o/n/resolve/main/m.gguf"));
        assert_eq!(model_location("o/n", "http://127.0.0.1:9/"), folder("http://127.0.0.1:9/o/n/resolve/main/"));
        for bad in [
            "",
            "a/b/c",
            "a/b/c.safetensors",
            "a/b/../c.gguf",
            "a/b/.gguf",
            "javascript:alert(1)",
            "http://example.org/x",
            "http://example.org/x.gguf",
            "../etc",
            "a/..",
            "http://localhost.evil.org/m",
            "http://localhost:1@evil.org/m",
        ] {
            assert!(model_url(bad).is_err(), "{bad}");
        }
        assert_eq!(file_name("https://h/o/n/resolve/main/m.gguf?x=1"), "m.gguf");
    }

    #[test]
    fn only_a_local_stand_in_replaces_the_hub() {
        assert_eq!(hub_base("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(hub_base("http://localhost:1/hub/").unwrap(), "http://localhost:1/hub/");
        for bad in ["https://evil.org/", "http://evil.org/", "http://localhost:1@evil.org/", "javascript:alert(1)", ""] {
            assert!(hub_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_from_earlier_pages_read_without_chat() {
        let text = r#"{"generate":{"job":1,"prompt":"hi","options":{"max_new_tokens":4,"sampling":{"temperature":0.0,"top_k":0,"top_p":1.0,"seed":1},"stop_at_eos":true},"steer":[]}}"#;
        assert!(matches!(serde_json::from_str::<Request>(text).unwrap(), Request::Generate { chat: false, .. }));
    }

    #[test]
    fn vectors_survive_the_trip_to_the_page() {
        // Internally tagged enums buffer their content, and serde then cannot read the integer map
        // keys of `SteeringVector::directions`: the messages must stay externally tagged.
        let direction = analog_core::steering::Direction { norm: 1.0, mean_resid_norm: 2.0, direction: vec![1.0, 0.0] };
        let vector = SteeringVector {
            format: analog_core::steering::vector::FORMAT.into(),
            model: analog_core::steering::VectorModel { id: "m".into(), weights_sha256: String::new(), d_model: 2 },
            site: analog_core::steering::HookSite::ResidPost,
            method: Method::MeanDiff,
            aggregation: Aggregation::Last,
            pairs: analog_core::steering::VectorPairs { sha256: String::new(), n_pairs: 1, prompt_format: analog_core::steering::PromptFormat::Chat },
            directions: [(3, direction)].into(),
        };
        let event = Event::Extracted { job: 1, vector: vector.clone(), sweep: Vec::new() };
        let back: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert!(matches!(back, Event::Extracted { vector: v, .. } if v == vector));
    }

    #[test]
    fn sweeps_cross_typed_and_absent_metrics_stay_absent() {
        let metrics = |shift| analog_core::steering::metrics::Metrics {
            logit_diff: None,
            logit_diff_shift: shift,
            prob_target: None,
            kl: 0.5,
            trigger_rate: Some(0.25),
            perplexity: None,
        };
        let sweep = CoefficientSweep { rows: vec![MetricRow { coef: -0.5, steered: metrics(Some(1.5)), random: metrics(None) }], intervention: None };
        let event = Event::Swept { job: 2, sweep: Box::new(sweep.clone()) };
        let back: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert!(matches!(back, Event::Swept { job: 2, sweep: s } if *s == sweep));
    }

    #[test]
    fn messages_round_trip() {
        let r = Request::Cancel { job: 3 };
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(matches!(back, Request::Cancel { job: 3 }));
    }
}
