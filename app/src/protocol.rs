//! What the page and the model worker say to each other: serde enums sent as JSON strings.
//! Local files travel beside the JSON as `File` objects (structured clone, no copy into JSON).

use analog_core::GenerateOptions;
use analog_core::device::BackendKind;
use analog_core::report::compare::Comparison;
use analog_core::report::{Intervention, TransferReport};
use analog_core::steering::metrics::MetricRow;
use analog_core::steering::{Aggregation, Method, PairFormat, SteeringVector, SweepRow};
use serde::{Deserialize, Serialize};

/// A job number chosen by the page; events about a job carry it back.
pub type Job = u32;

/// Where a model's three files come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A directory URL holding `config.json`, `model.safetensors` and `tokenizer.json`
    /// (an HF repo resolves to `https://huggingface.co/<repo>/resolve/main/`). `sha256` maps file
    /// names to recorded digests; files it names are checked. `recorded_by` says who recorded
    /// them ("the catalog", "the report `…`"), for the messages.
    Url {
        base: String,
        label: String,
        sha256: Vec<(String, String)>,
        #[serde(default)]
        recorded_by: String,
    },
    /// Files the visitor picked or dropped; they arrive beside the message in this order.
    Files { names: Vec<String> },
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
    /// Stream a generation; with `steer`, the vectors are added at every position.
    Generate {
        job: Job,
        prompt: String,
        options: GenerateOptions,
        steer: Vec<Steer>,
    },
    /// Baseline then steered generation from the same prompt and seed.
    Compare {
        job: Job,
        prompt: String,
        options: GenerateOptions,
        steer: Steer,
    },
    /// Per-layer residual norms and the logit lens at the prompt's last token.
    Inspect {
        job: Job,
        prompt: String,
    },
    /// Extract a vector at every layer from JSONL/CSV pairs, with the layer sweep.
    Extract {
        job: Job,
        pairs: String,
        format: PairFormat,
        method: Method,
        aggregation: Aggregation,
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
}

/// One layer of the residual-stream view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerView {
    pub layer: usize,
    pub resid_norm: f32,
    /// The logit lens: most likely next tokens read from this layer's residual.
    pub top: Vec<(String, f32)>,
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
    /// Prompt tokens of a generation (ids and pieces).
    Prompt {
        job: Job,
        stream: u8,
        ids: Vec<u32>,
        pieces: Vec<String>,
    },
    /// One generated token; `stream` 0 is the only or baseline output, 1 the steered one.
    Token {
        job: Job,
        stream: u8,
        id: u32,
        piece: String,
        text: String,
    },
    Generated {
        job: Job,
        stream: u8,
        tokens: usize,
        seconds: f64,
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
            | Self::Failed { job, .. } => *job,
        }
    }
}

/// Resolves what a visitor types into the model box: an `owner/name` HF repo id or a URL.
pub fn model_url(input: &str) -> Result<String, String> {
    let input = input.trim();
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        // https anywhere, plain http only on this machine; no credentials, no look-alike hosts.
        analog_core::report::check_url(input)?;
        return Ok(if input.ends_with('/') { input.to_string() } else { format!("{input}/") });
    }
    let parts: Vec<&str> = input.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !s.starts_with('.');
    if parts.len() == 2 && parts.iter().all(|p| valid(p)) {
        return Ok(format!("https://huggingface.co/{input}/resolve/main/"));
    }
    Err(format!("`{input}` is neither an HF repo id (owner/name) nor an https URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_urls_resolve() {
        assert_eq!(model_url("HuggingFaceTB/SmolLM2-135M").unwrap(), "https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/");
        assert_eq!(model_url(" https://example.org/m ").unwrap(), "https://example.org/m/");
        assert_eq!(model_url("http://127.0.0.1:8080/models/a/").unwrap(), "http://127.0.0.1:8080/models/a/");
        for bad in
            ["", "a/b/c", "javascript:alert(1)", "http://example.org/x", "../etc", "a/..", "http://localhost.evil.org/m", "http://localhost:1@evil.org/m"]
        {
            assert!(model_url(bad).is_err(), "{bad}");
        }
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
            pairs: analog_core::steering::VectorPairs { sha256: String::new(), n_pairs: 1 },
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
